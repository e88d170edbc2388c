//! What rodiff reads of the Docker Engine API and of Docker's files: an inspect response (parsed
//! by bollard's model, then reduced to what `resolve` reads: state, data root, overlay2 directories,
//! mount destinations), the `/_ping` response's `Api-Version` header, the layerdb's `mount-id` and
//! `init-id` files, `/info`'s `SecurityOptions`.
//!
//! Invariants: never panics; a layerdb id is never a path (no `/`, no `.`, not empty) and is the
//! file's trimmed text; overlay2 directories are non-empty and named by `UpperDir`/`LowerDir`; the
//! data root holds the container's own files (`<root>/containers/<id>/`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rodiff::fuzzing::{daemon_is_rootless, inspect, layerdb_id, parse_api_version};

fuzz_target!(|data: &[u8]| {
    if let Some(id) = layerdb_id(data) {
        assert!(!id.is_empty());
        assert!(id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        assert_eq!(Some(id), std::str::from_utf8(data).ok().map(str::trim));
    }
    if let Some(inspected) = inspect(data) {
        if let Ok((upper, lowers)) = &inspected.overlay {
            assert!(!upper.is_empty());
            assert!(lowers.iter().all(|l| !l.is_empty() && !l.contains(':')));
        }
        if let Some(root) = &inspected.data_root {
            assert!(root.components().count() <= data.len());
        }
        let _ = (inspected.removing, inspected.mount_destinations.len());
    }
    let text = String::from_utf8_lossy(data);
    if let Some((major, minor)) = parse_api_version(&text) {
        assert!(text.to_ascii_lowercase().contains("api-version"));
        let _ = (major, minor);
    }
    let options: Vec<String> = text.lines().map(str::to_string).collect();
    if daemon_is_rootless(&options) {
        assert!(text.contains("name=rootless"));
    }
});
