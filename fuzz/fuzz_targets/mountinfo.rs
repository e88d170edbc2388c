//! `/proc/<pid>/mountinfo` and `/proc/<pid>/cgroup`: text a container's processes shape (their
//! mount points and cgroup paths are names they chose).
//!
//! Invariants: never panics; every parsed mount's fields are the unescaped fields of one input
//! line (no more mounts than lines); unescaping never grows a field; cgroup paths kept are plain
//! absolute paths.
#![no_main]

use std::os::unix::ffi::OsStrExt;
use std::path::Component;

use libfuzzer_sys::fuzz_target;
use rodiff::fuzzing::{parse_cgroup_line, parse_mountinfo, unescape_mountinfo};

fuzz_target!(|data: &[u8]| {
    let mounts = parse_mountinfo(data);
    let lines = data.split(|&b| b == b'\n').count();
    assert!(mounts.len() <= lines);
    for m in &mounts {
        // A field never holds the separators of the line it came from: the kernel escapes them.
        for field in [m.root.as_os_str().as_bytes(), m.mount_point.as_os_str().as_bytes(), m.source.as_bytes()] {
            assert!(field.len() <= data.len());
        }
        let _ = m.root_is_deleted();
    }
    for field in data.split(|&b| b == b' ') {
        let out = unescape_mountinfo(field);
        assert!(out.len() <= field.len());
        // Printable fields without backslashes are kept as they are.
        if !field.contains(&b'\\') {
            assert_eq!(out, field);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        for line in text.lines() {
            if let Some((_, _, path)) = parse_cgroup_line(line) {
                assert!(path.has_root());
                assert!(path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_))));
            }
        }
    }
});
