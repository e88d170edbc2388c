//! The diff renderers, fed changes with hostile names (any bytes: newlines, quotes, backslashes,
//! bytes that are not UTF-8, control characters): what a container names its files.
//!
//! Invariants: `--format json` is one JSON document, `jsonl` one JSON object a line, and in both
//! every field reads back to exactly what was written: the path's bytes (a string, or an array of
//! byte values), kind, type, metadata (mtime as the exact `sec.nsec` text), container, evidence;
//! serializing the change again gives the same bytes. `--format docker` is one line per change
//! docker can see, valid UTF-8 with no control character but tab, and the same as the path when
//! the path needs no escaping.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rodiff::render::{write_all, Format};
use rodiff::{Change, ChangeKind, Evidence, FileType, Metadata};
use serde_json::Value;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

const KINDS: [ChangeKind; 4] = [ChangeKind::Added, ChangeKind::Changed, ChangeKind::Deleted, ChangeKind::Touched];
const TYPES: [FileType; 7] =
    [FileType::File, FileType::Dir, FileType::Symlink, FileType::Fifo, FileType::Socket, FileType::Char, FileType::Block];

fn change(u: &mut Unstructured) -> Result<Change> {
    let path: &[u8] = u.arbitrary()?;
    let mut c = Change::new(PathBuf::from(OsStr::from_bytes(path)), *u.choose(&KINDS)?, *u.choose(&TYPES)?);
    if u.arbitrary()? {
        c.metadata = Some(Metadata {
            mode: u.arbitrary()?,
            uid: u.arbitrary()?,
            gid: u.arbitrary()?,
            size: u.arbitrary()?,
            mtime_sec: u.arbitrary()?,
            mtime_nsec: u.int_in_range(0..=999_999_999)?,
        });
    }
    c.mountpoint = u.arbitrary()?;
    c.container = u.arbitrary()?;
    c.evidence = *u.choose(&[None, Some(Evidence::OpenDeleted), Some(Evidence::Transient)])?;
    Ok(c)
}

fn path_of(v: &Value) -> Vec<u8> {
    match v {
        Value::String(s) => s.as_bytes().to_vec(),
        Value::Array(bytes) => bytes.iter().map(|b| u8::try_from(b.as_u64().expect("a byte")).expect("a byte")).collect(),
        other => panic!("path is {other}"),
    }
}

/// One object read back: every field as written.
fn check_object(text: &str, c: &Change) {
    let v: Value = serde_json::from_str(text).expect("an object parses");
    let path = path_of(&v["path"]);
    assert_eq!(path, c.path_bytes());
    // A path is a string exactly when it is UTF-8.
    assert_eq!(v["path"].is_string(), std::str::from_utf8(c.path_bytes()).is_ok());
    assert_eq!(v["kind"], c.kind.letter().to_string());
    assert_eq!(v["type"], c.file_type.name());
    if let Some(m) = &c.metadata {
        assert_eq!((v["mode"].as_u64(), v["uid"].as_u64(), v["gid"].as_u64(), v["size"].as_u64()),
            (Some(m.mode.into()), Some(m.uid.into()), Some(m.gid.into()), Some(m.size)));
        #[derive(serde::Deserialize)]
        struct Mtime<'a> {
            #[serde(borrow)]
            mtime: &'a serde_json::value::RawValue,
        }
        let raw: Mtime = serde_json::from_str(text).expect("mtime");
        assert_eq!(raw.mtime.get(), format!("{}.{:09}", m.mtime_sec, m.mtime_nsec));
    } else {
        assert!(v.get("mode").is_none() && v.get("mtime").is_none());
    }
    assert_eq!(v.get("mountpoint").and_then(Value::as_bool).unwrap_or(false), c.mountpoint);
    assert_eq!(v.get("container").map(|s| s.as_str().expect("container is a string")), c.container.as_deref());
    assert_eq!(v.get("evidence").map(|s| s.as_str().expect("evidence is a string")), c.evidence.map(Evidence::name));
    // The same change serialized again: the same bytes.
    assert_eq!(serde_json::to_string(c).unwrap(), text);
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut changes = Vec::new();
    while changes.len() < 16 && !u.is_empty() {
        match change(&mut u) {
            Ok(c) => changes.push(c),
            Err(_) => break,
        }
    }

    let mut out = Vec::new();
    write_all(&mut out, Format::Jsonl, &changes).unwrap();
    let text = std::str::from_utf8(&out).expect("JSON lines are UTF-8");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), changes.len(), "one line per change");
    for (line, c) in lines.iter().zip(&changes) {
        check_object(line, c);
    }

    let mut out = Vec::new();
    write_all(&mut out, Format::Json, &changes).unwrap();
    let doc: Vec<&serde_json::value::RawValue> = serde_json::from_slice(&out).expect("a JSON array");
    assert_eq!(doc.len(), changes.len());
    for (object, c) in doc.iter().zip(&changes) {
        check_object(object.get(), c);
    }

    let mut out = Vec::new();
    write_all(&mut out, Format::Docker, &changes).unwrap();
    let text = std::str::from_utf8(&out).expect("docker lines are UTF-8");
    let visible: Vec<&Change> = changes.iter().filter(|c| c.kind.visible_to_docker()).collect();
    let lines: Vec<&str> = text.split_terminator('\n').collect();
    assert_eq!(lines.len(), visible.len(), "one line per visible change");
    for (line, c) in lines.iter().zip(visible) {
        assert!(!line.chars().any(|ch| ch != '\t' && ch.is_control()), "{line:?}");
        let (letter, path) = line.split_at(2);
        assert_eq!(letter, format!("{} ", c.kind.letter()));
        let plain = std::str::from_utf8(c.path_bytes()).is_ok_and(|s| !s.chars().any(|ch| ch != '\t' && ch.is_control()));
        if plain {
            assert_eq!(path.as_bytes(), c.path_bytes());
        }
    }
});
