//! The plan renderers, fed plans with hostile container names, image references, mount paths and
//! reasons: `docker run` flags, compose, Kubernetes, JSON.
//!
//! Invariants: JSON reads back to the same plans (and renders again to the same bytes); the docker
//! line, split as a POSIX shell splits it, is exactly `docker_args` (one line per plan: a name
//! never starts a line of its own); compose and Kubernetes YAML parse (serde_yaml) and say what the
//! plan says — the service or container name, `read_only`, each tmpfs `PATH:OPTIONS`, each volume
//! `NAME:PATH`, each `mountPath` and volume name — and a path a runtime could not carry is an
//! error, never a rendering of another path.
#![no_main]

use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rodiff::dialect::Dialect;
use rodiff::plan::render::{docker_args, render, tmpfs_options, volume_name, PlanFormat};
use rodiff::plan::{names, MountKind, Plan, PlannedMount};
use serde_yaml::Value;

fn string(u: &mut Unstructured) -> Result<String> {
    // Mostly short, often from a hostile alphabet.
    if u.arbitrary()? {
        let n = u.int_in_range(0..=12)?;
        const ALPHABET: &[&str] =
            &["a", "0", "x", "-", ".", ":", ",", "'", "\"", "\\", "\n", "#", " ", "y", "1", "e", "\u{85}", "\u{2028}", "\u{feff}", "é", "$", "{", "&", "*", "!", "|", ">", "%", "@", "`", "\t", "\r", "?", "~", "[", "_"];
        let mut s = String::new();
        for _ in 0..n {
            s.push_str(u.choose(ALPHABET)?);
        }
        Ok(s)
    } else {
        u.arbitrary()
    }
}

fn path(u: &mut Unstructured) -> Result<PathBuf> {
    let mut bytes = b"/".to_vec();
    if u.arbitrary()? {
        bytes.extend(string(u)?.as_bytes());
    } else {
        bytes.extend(u.arbitrary::<&[u8]>()?);
    }
    Ok(PathBuf::from(OsStr::from_bytes(&bytes)))
}

fn plan(u: &mut Unstructured, taken: &mut HashSet<String>) -> Result<Plan> {
    let mut container = string(u)?;
    while !taken.insert(container.clone()) {
        container.push('x');
    }
    let image = if u.arbitrary()? { Some(string(u)?) } else { None };
    let mut mounts = Vec::new();
    for _ in 0..u.int_in_range(0..=4)? {
        mounts.push(PlannedMount {
            path: path(u)?,
            kind: if u.arbitrary()? { MountKind::Tmpfs } else { MountKind::Volume },
            name: String::new(),
            persistent: u.arbitrary()?,
            seed: u.arbitrary()?,
            uid: u.arbitrary()?,
            gid: u.arbitrary()?,
            mode: u.int_in_range(0..=0o7777)?,
            rule: string(u)?,
            reason: string(u)?,
            covers: vec![path(u)?],
            anticipated: u.arbitrary()?,
            anticipates: if u.arbitrary()? { vec![path(u)?] } else { Vec::new() },
            evidence: if u.arbitrary()? { Some(string(u)?) } else { None },
        });
    }
    names::assign(&mut mounts);
    // Docker's flags or Podman's (`--read-only-tmpfs=false`, tmpfs owners as `U`).
    let runtime = if u.arbitrary()? { Dialect::Podman } else { Dialect::Docker };
    Ok(Plan { container, image, mounts, ignored: Vec::new(), uncovered: Vec::new(), runtime })
}

/// Splits a line as a POSIX shell splits it, for the quoting `shell_quote` uses: bare words,
/// `\x`, `'…'`, and bash's `$'…'` with `\\`, `\'` and `\xNN`.
fn shell_words(line: &str) -> Vec<Vec<u8>> {
    let b = line.as_bytes();
    let (mut words, mut word, mut in_word, mut i) = (Vec::new(), Vec::new(), false, 0);
    while i < b.len() {
        match b[i] {
            b' ' => {
                if in_word {
                    words.push(std::mem::take(&mut word));
                }
                in_word = false;
                i += 1;
            }
            b'\'' => {
                in_word = true;
                let end = i + 1 + b[i + 1..].iter().position(|&c| c == b'\'').expect("closing quote");
                word.extend(&b[i + 1..end]);
                i = end + 1;
            }
            b'$' if b.get(i + 1) == Some(&b'\'') => {
                in_word = true;
                i += 2;
                loop {
                    match b[i] {
                        b'\'' => break,
                        b'\\' => {
                            match b[i + 1] {
                                b'x' => {
                                    let hex = std::str::from_utf8(&b[i + 2..i + 4]).unwrap();
                                    word.push(u8::from_str_radix(hex, 16).expect("hex"));
                                    i += 4;
                                    continue;
                                }
                                c @ (b'\\' | b'\'') => word.push(c),
                                c => panic!("unexpected escape \\{}", c as char),
                            }
                            i += 2;
                        }
                        c => {
                            word.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
            }
            // Outside quotes, a backslash quotes the next byte (`'\''` is how a quote is written).
            b'\\' => {
                in_word = true;
                word.push(*b.get(i + 1).expect("a byte after a backslash"));
                i += 2;
            }
            b'$' | b'"' | b'`' | b'\n' | b';' | b'&' | b'|' | b'<' | b'>' | b'(' | b')' | b'*' | b'?' | b'[' | b'#' | b'~' | b'\t' => {
                panic!("unquoted shell metacharacter {:?} in {line:?}", b[i] as char)
            }
            c => {
                in_word = true;
                word.push(c);
                i += 1;
            }
        }
    }
    if in_word {
        words.push(word);
    }
    words
}

fn yaml(text: &str) -> Value {
    serde_yaml::from_str(text).unwrap_or_else(|e| panic!("YAML does not parse: {e}\n{text}"))
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}"))
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut taken = HashSet::new();
    let mut plans = Vec::new();
    for _ in 0..u.int_in_range(1..=3).unwrap_or(1) {
        match plan(&mut u, &mut taken) {
            Ok(p) => plans.push(p),
            Err(_) => break,
        }
    }
    if plans.is_empty() {
        return;
    }

    // JSON: the same plans back, the same bytes again.
    let json = render(&plans, PlanFormat::Json).unwrap();
    let back: Vec<Plan> = if plans.len() == 1 { vec![serde_json::from_str(&json).unwrap()] } else { serde_json::from_str(&json).unwrap() };
    assert_eq!(back, plans);
    assert_eq!(render(&back, PlanFormat::Json).unwrap(), json);

    // Whether Docker's syntax (and the YAML formats, which share it) can carry every path, and no
    // two containers would share a volume.
    let mut volumes = HashSet::new();
    let mut labels = HashSet::new();
    let shared = plans.len() > 1
        && !plans.iter().all(|p| {
            p.mounts.iter().all(|m| {
                volumes.insert(volume_name(p, m))
                    && labels.insert(names::label(std::path::Path::new(&format!("{}-{}", p.container, m.name))))
            })
        });
    let representable = plans.iter().all(|p| docker_args(p).is_ok()) && !shared;

    // docker: one line per plan (after its comment when there are several), words = docker_args.
    match render(&plans, PlanFormat::Docker) {
        Ok(text) => {
            assert!(representable);
            let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
            assert_eq!(lines.len(), plans.len(), "{text:?}");
            for (line, plan) in lines.iter().zip(&plans) {
                assert_eq!(shell_words(line), docker_args(plan).unwrap(), "{line:?}");
            }
        }
        Err(_) => assert!(!representable),
    }

    // compose
    match render(&plans, PlanFormat::Compose) {
        Ok(text) => {
            assert!(representable);
            let doc = yaml(&text);
            let services = doc["services"].as_mapping().expect("services");
            assert_eq!(services.len(), plans.len(), "{text}");
            for plan in &plans {
                let service = services.get(Value::String(plan.container.clone())).unwrap_or_else(|| panic!("service {:?} in\n{text}", plan.container));
                assert_eq!(service["read_only"], Value::Bool(true));
                let tmpfs: Vec<&str> = service.get("tmpfs").map(|l| l.as_sequence().unwrap().iter().map(str_of).collect()).unwrap_or_default();
                let volumes: Vec<&str> = service.get("volumes").map(|l| l.as_sequence().unwrap().iter().map(str_of).collect()).unwrap_or_default();
                let want_tmpfs: Vec<String> = plan.mounts.iter().filter(|m| m.kind == MountKind::Tmpfs)
                    .map(|m| format!("{}:{}", m.path.to_str().unwrap(), tmpfs_options(m))).collect();
                let want_volumes: Vec<String> = plan.mounts.iter().filter(|m| m.kind == MountKind::Volume)
                    .map(|m| format!("{}:{}", volume_name(plan, m), m.path.to_str().unwrap())).collect();
                assert_eq!(tmpfs, want_tmpfs);
                assert_eq!(volumes, want_volumes);
            }
        }
        Err(_) => assert!(!representable),
    }

    // Kubernetes
    match render(&plans, PlanFormat::K8s) {
        Ok(text) => {
            assert!(representable);
            let doc = yaml(&text);
            let spec = &doc["spec"]["template"]["spec"];
            let containers = spec["containers"].as_sequence().expect("containers");
            assert_eq!(containers.len(), plans.len());
            let volumes: Vec<&str> = spec.get("volumes").map(|v| v.as_sequence().unwrap().iter().map(|v| str_of(&v["name"])).collect()).unwrap_or_default();
            for (c, plan) in containers.iter().zip(&plans) {
                assert_eq!(str_of(&c["name"]), plan.container);
                assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], Value::Bool(true));
                let mounts: Vec<(&str, &str)> = c.get("volumeMounts")
                    .map(|l| l.as_sequence().unwrap().iter().map(|m| (str_of(&m["name"]), str_of(&m["mountPath"]))).collect())
                    .unwrap_or_default();
                assert_eq!(mounts.len(), plan.mounts.len());
                for ((name, mount_path), m) in mounts.iter().zip(&plan.mounts) {
                    assert_eq!(*mount_path, m.path.to_str().unwrap());
                    assert!(volumes.contains(name), "volume {name:?} in\n{text}");
                }
            }
            if let Some(init) = spec.get("initContainers") {
                for i in init.as_sequence().unwrap() {
                    let command: Vec<&str> = i["command"].as_sequence().unwrap().iter().map(str_of).collect();
                    assert_eq!(command[..2], ["sh", "-c"]);
                }
            }
        }
        Err(_) => assert!(!representable),
    }
});
