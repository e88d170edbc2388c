//! Helpers for the live-evidence tests (`tests/live_docker.rs`, `tests/live_containerd.rs`): the
//! busybox image's `/bin/tmpfile-holder` (`tests/tools/tmpfile-holder.c`), waiting until its files
//! are held, and what rodiff reports.

use rodiff::{Processes, ClientOptions};

use super::docker::json_path;

/// A shell script, run in the container, that waits until its processes hold at least `n` files
/// without a name (`ls -l /proc/*/fd` shows `-> … (deleted)`), and fails after 20 s.
pub fn wait_held_script(n: usize) -> String {
    format!(
        "i=0; until [ \"$(ls -l /proc/[0-9]*/fd 2>/dev/null | grep -c ' (deleted)$')\" -ge {n} ]; do \
         i=$((i+1)); [ $i -lt 400 ] || {{ ls -l /proc/[0-9]*/fd >&2; exit 1; }}; sleep 0.05; done"
    )
}

/// The container's processes as rodiff resolves them, and the former paths of the deleted files
/// they hold open on the root filesystem (rodiff's `live` module), sorted.
pub fn held(container: &str, options: &ClientOptions) -> (Processes, Vec<Vec<u8>>) {
    let client = rodiff::Client::new(options.clone()).expect("client");
    let resolved = client.resolve(&container.into(), &Default::default()).unwrap_or_else(|e| panic!("resolve {container}: {e}"));
    let resolved = resolved.into_iter().next().expect("one container");
    let files = rodiff::live::open_deleted(&resolved.processes)
        .unwrap_or_else(|e| panic!("live evidence of {container}: {e}"));
    let mut paths: Vec<Vec<u8>> = files.iter().map(|f| std::os::unix::ffi::OsStrExt::as_bytes(f.path.as_os_str()).to_vec()).collect();
    paths.sort();
    (resolved.processes, paths)
}

/// Whether `path` is `/DIR/#<inode>`, the name the kernel gives an `O_TMPFILE` file in `dir`.
pub fn is_tmpfile_in(path: &[u8], dir: &str) -> bool {
    path.strip_prefix(format!("{dir}/#").as_bytes()).is_some_and(|ino| !ino.is_empty() && ino.iter().all(u8::is_ascii_digit))
}

/// The JSON change at `path`, if any.
pub fn entry<'a>(json: &'a [serde_json::Value], path: &str) -> Option<&'a serde_json::Value> {
    json.iter().find(|v| json_path(v) == path.as_bytes())
}

/// Asserts that `dir` is reported `T`, type `dir`, with the image's mode `mode`. With
/// `live_only` (btrfs: the layer keeps no trace of such a write) the report must come from the
/// live evidence (`"evidence": "open-deleted"`); on overlayfs the copied-up directory may tell
/// first.
pub fn assert_touched(json: &[serde_json::Value], dir: &str, mode: u32, live_only: bool) {
    let v = entry(json, dir).unwrap_or_else(|| panic!("{dir} is not reported: {json:#?}"));
    assert_eq!((v["kind"].as_str(), v["type"].as_str(), v["mode"].as_u64()), (Some("T"), Some("dir"), Some(mode as u64)), "{v}");
    if live_only {
        assert_eq!(v["evidence"], "open-deleted", "{v}");
    }
}

/// Asserts that no change carries live evidence.
pub fn assert_no_evidence(json: &[serde_json::Value]) {
    let with: Vec<_> = json.iter().filter(|v| v.get("evidence").is_some()).collect();
    assert!(with.is_empty(), "live evidence where there should be none: {with:?}");
}

/// `0o1777`: `/tmp` and `/var/tmp` in the busybox image.
pub const STICKY_WORLD: u32 = 0o1777;

/// Whether the sandbox dockerd's layer keeps no trace of a write that leaves no name (btrfs: no
/// copy-up), so that only live evidence can tell.
pub fn live_only() -> bool {
    super::docker::storage_driver() == "btrfs"
}
