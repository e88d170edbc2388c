//! Output formats for changes: `docker diff`'s lines, a JSON array, and JSON lines.

use std::io::{self, Write};
use std::sync::Mutex;

use crate::layer::{ChangeSink, Flow};
use crate::model::Change;

/// An output format for a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `A /path` lines, exactly as `docker diff` prints them; `T` changes are left out.
    Docker,
    /// One JSON array of change objects.
    Json,
    /// One JSON change object per line, streamed as the scan finds them.
    Jsonl,
}

/// Writes one change as a `docker diff` line (nothing for kind `T`, which docker cannot see).
///
/// Names a line cannot carry are escaped C-style: bytes that are not UTF-8 as `\xff`, control
/// characters other than tab (newline, carriage return, DEL, the C1 controls …) as `\n`, `\r` or
/// `\xNN` for each byte. Everything else, backslashes included, is printed as it is, as `docker
/// diff` does.
pub fn write_docker_line(out: &mut impl Write, change: &Change) -> io::Result<()> {
    if !change.kind.visible_to_docker() {
        return Ok(());
    }
    out.write_all(&[change.kind.letter() as u8, b' '])?;
    write_escaped(out, change.path_bytes())?;
    out.write_all(b"\n")
}

/// Writes one change as a JSON object (no trailing newline): the change's `Serialize` form.
///
/// `path` is a string when the path is UTF-8, otherwise an array of its byte values (the
/// convention of `journalctl -o json`), so that every name survives the round trip; see
/// [`Change`] for the fields.
pub fn write_json_object(out: &mut impl Write, change: &Change) -> io::Result<()> {
    serde_json::to_writer(out, change).map_err(io::Error::from)
}

/// Writes changes in `format` (a whole document: the JSON array is opened and closed).
pub fn write_all(out: &mut impl Write, format: Format, changes: &[Change]) -> io::Result<()> {
    match format {
        Format::Docker => changes.iter().try_for_each(|c| write_docker_line(out, c)),
        Format::Jsonl => changes.iter().try_for_each(|c| {
            write_json_object(out, c)?;
            out.write_all(b"\n")
        }),
        Format::Json => {
            out.write_all(b"[")?;
            for (i, c) in changes.iter().enumerate() {
                out.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
                write_json_object(out, c)?;
            }
            out.write_all(if changes.is_empty() { b"]\n" } else { b"\n]\n" })
        }
    }
}

/// A sink that writes each batch as it arrives, in a line-oriented format.
pub struct Streaming<W: Write + Send> {
    format: Format,
    out: Mutex<W>,
}

impl<W: Write + Send> Streaming<W> {
    /// Streams `format` (docker or jsonl) to `out`.
    pub fn new(format: Format, out: W) -> Streaming<W> {
        assert!(format != Format::Json, "a JSON array is not streamed line by line");
        Streaming { format, out: Mutex::new(out) }
    }

    /// Flushes and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.out.into_inner().unwrap_or_else(|e| e.into_inner());
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write + Send> ChangeSink for Streaming<W> {
    fn emit(&self, batch: Vec<Change>) -> io::Result<Flow> {
        // Format outside the lock; the lock only guards the copy into the writer.
        let mut text = Vec::with_capacity(batch.len() * 48);
        write_all(&mut text, self.format, &batch)?;
        self.out.lock().unwrap_or_else(|e| e.into_inner()).write_all(&text)?;
        Ok(Flow::Continue(()))
    }
}

/// Writes a path as a `docker diff` line carries it (see [`write_docker_line`]).
pub fn write_escaped(out: &mut (impl Write + ?Sized), bytes: &[u8]) -> io::Result<()> {
    // The common case: printable ASCII, nothing to escape.
    if bytes.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return out.write_all(bytes);
    }
    write!(out, "{}", crate::escape::Escaped(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, FileType};
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn change(path: &[u8], kind: ChangeKind) -> Change {
        Change::new(OsStr::from_bytes(path).into(), kind, FileType::File)
    }

    fn docker(path: &[u8], kind: ChangeKind) -> String {
        let mut out = Vec::new();
        write_docker_line(&mut out, &change(path, kind)).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json(path: &[u8]) -> serde_json::Value {
        let mut out = Vec::new();
        write_json_object(&mut out, &change(path, ChangeKind::Added)).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn docker_lines_escape_what_a_line_cannot_carry() {
        assert_eq!(docker(b"/etc/passwd", ChangeKind::Changed), "C /etc/passwd\n");
        assert_eq!(docker("/tmp/caf\u{e9} x".as_bytes(), ChangeKind::Added), "A /tmp/caf\u{e9} x\n");
        assert_eq!(docker(b"/tmp/a\nb", ChangeKind::Added), "A /tmp/a\\nb\n");
        assert_eq!(docker(b"/tmp/\xff\xfe.bin", ChangeKind::Deleted), "D /tmp/\\xff\\xfe.bin\n");
        assert_eq!(docker(b"/tmp/x", ChangeKind::Touched), "");
    }

    /// C1 controls (valid UTF-8: NEL ends a line for some readers, CSI starts a terminal escape)
    /// were printed as they are; found by the `diff_render` fuzz target.
    #[test]
    fn docker_lines_escape_c1_controls() {
        assert_eq!(docker("/a\u{85}b\u{9b}c\u{a0}".as_bytes(), ChangeKind::Added), "A /a\\xc2\\x85b\\xc2\\x9bc\u{a0}\n");
        assert_eq!(docker(b"/x\xc2\xc2\x9f", ChangeKind::Added), "A /x\\xc2\\xc2\\x9f\n");
    }

    #[test]
    fn json_paths_are_lossless() {
        assert_eq!(json(b"/a \"q\"\\\n\x01")["path"], "/a \"q\"\\\n\x01");
        let bytes: Vec<u64> = b"/x\xffy".iter().map(|&b| b as u64).collect();
        assert_eq!(json(b"/x\xffy")["path"], serde_json::json!(bytes));
        assert_eq!(json(b"/x")["kind"], "A");
        assert_eq!(json(b"/x")["type"], "file");
    }

    #[test]
    fn json_array_is_valid_when_empty_and_full() {
        let mut out = Vec::new();
        write_all(&mut out, Format::Json, &[]).unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap(), serde_json::json!([]));
        let mut out = Vec::new();
        write_all(&mut out, Format::Json, &[change(b"/a", ChangeKind::Added), change(b"/b", ChangeKind::Touched)]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[1]["kind"], "T");
        assert!(v[1].get("evidence").is_none(), "only live evidence has the field");
    }

    #[test]
    fn json_names_live_evidence() {
        let mut touched = change(b"/tmp", ChangeKind::Touched);
        touched.evidence = Some(crate::model::Evidence::OpenDeleted);
        let mut out = Vec::new();
        write_json_object(&mut out, &touched).unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap()["evidence"], "open-deleted");
    }

    fn full() -> Change {
        let mut c = change(b"/var/a\xffb", ChangeKind::Changed);
        c.metadata = Some(crate::model::Metadata {
            mode: 0o644,
            uid: 1000,
            gid: 50,
            size: 12,
            mtime_sec: 1_700_000_000,
            mtime_nsec: 5,
        });
        c.mountpoint = true;
        c.container = Some("web \"1\"".into());
        c.evidence = Some(crate::model::Evidence::OpenDeleted);
        c
    }

    #[test]
    fn json_object_fields_order_and_mtime_are_exact() {
        let mut out = Vec::new();
        write_json_object(&mut out, &full()).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"path":[47,118,97,114,47,97,255,98],"kind":"C","type":"file","mode":420,"uid":1000,"gid":50,"size":12,"mtime":1700000000.000000005,"mountpoint":true,"container":"web \"1\"","evidence":"open-deleted"}"#
        );
        let mut out = Vec::new();
        write_all(&mut out, Format::Jsonl, &[change(b"/a", ChangeKind::Added), change(b"/b", ChangeKind::Deleted)]).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "{\"path\":\"/a\",\"kind\":\"A\",\"type\":\"file\"}\n{\"path\":\"/b\",\"kind\":\"D\",\"type\":\"file\"}\n"
        );
        assert_eq!(serde_json::to_string(&full()).unwrap().as_bytes(), &json_bytes(&full())[..], "one encoding");
    }

    fn json_bytes(c: &Change) -> Vec<u8> {
        let mut out = Vec::new();
        write_json_object(&mut out, c).unwrap();
        out
    }

    /// The JSON of a change, read back, gives the same fields.
    #[test]
    fn json_round_trips_a_change() {
        use crate::model::path_json;
        use serde::Deserialize;
        use std::path::PathBuf;

        #[derive(Deserialize)]
        struct Back {
            #[serde(with = "path_json")]
            path: PathBuf,
            kind: String,
            #[serde(rename = "type")]
            file_type: String,
            mode: u32,
            uid: u32,
            gid: u32,
            size: u64,
            mtime: Box<serde_json::value::RawValue>,
            #[serde(default)]
            mountpoint: bool,
            container: Option<String>,
            evidence: Option<String>,
        }

        let mut changes = vec![full(), full()];
        changes[1].path = "/tmp/caf\u{e9}\n\u{1}\u{7f}".into();
        changes[1].mountpoint = false;
        changes[1].container = None;
        changes[1].evidence = None;
        for c in changes {
            let back: Back = serde_json::from_slice(&json_bytes(&c)).unwrap();
            let m = c.metadata.unwrap();
            assert_eq!(back.path, c.path);
            assert_eq!(back.kind, c.kind.letter().to_string());
            assert_eq!(back.file_type, c.file_type.name());
            assert_eq!((back.mode, back.uid, back.gid, back.size), (m.mode, m.uid, m.gid, m.size));
            let (sec, nsec) = back.mtime.get().split_once('.').unwrap();
            assert_eq!((sec.parse(), nsec.parse()), (Ok(m.mtime_sec), Ok(m.mtime_nsec)));
            assert_eq!(back.mountpoint, c.mountpoint);
            assert_eq!(back.container, c.container);
            assert_eq!(back.evidence.as_deref(), c.evidence.map(|e| e.name()));
        }
    }
}
