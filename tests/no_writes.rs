//! rodiff reads layers and never writes them: every inode of every layer of the sandbox daemon's
//! storage (the container's writable layer, its image's layers, and every other layer there) keeps
//! its access, modification and change times and its extended attributes through repeated `diff`,
//! `plan` and `verify` — also with the content comparison of same-size rewrites, which reads file
//! bytes. On btrfs, no helper snapshot is left behind, none is made inside the runtime's data root,
//! and one left by a `kill -9` is swept by the next run.
//!
//! The recorder itself must not disturb what it records: it opens directories with `O_NOATIME`
//! (the tests run as root) and reads no file content.
//!
//! Run: `scripts/sandbox.sh run -- cargo test --test no_writes` (overlay2), and with
//! `RODIFF_STORAGE_DRIVER=btrfs`.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::corpus::{CORPUS, FIXTURE};
use common::docker::*;

/// What a write would change about an inode.
#[derive(Clone, Debug, PartialEq, Eq)]
struct InodeTimes {
    atime: (i64, i64),
    mtime: (i64, i64),
    ctime: (i64, i64),
    xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

/// Every inode below `root` (not following symlinks), by path.
fn record(root: &Path, out: &mut BTreeMap<PathBuf, InodeTimes>) {
    let st = match rustix::fs::lstat(root) {
        Ok(st) => st,
        Err(e) => panic!("{}: {e}", root.display()),
    };
    out.insert(root.to_path_buf(), InodeTimes {
        atime: (st.st_atime, st.st_atime_nsec as i64),
        mtime: (st.st_mtime, st.st_mtime_nsec as i64),
        ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        xattrs: xattrs(root),
    });
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::Directory {
        return;
    }
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::NOATIME | OFlags::CLOEXEC;
    let dir = rustix::fs::open(root, flags, Mode::empty()).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    for name in names {
        record(&root.join(name), out);
    }
}

/// An inode's extended attributes and their values (`lgetxattr`: a symlink's own).
fn xattrs(path: &Path) -> BTreeMap<Vec<u8>, Vec<u8>> {
    let mut list = vec![0u8; 64 * 1024];
    let n = rustix::fs::llistxattr(path, &mut list).unwrap_or(0);
    let mut out = BTreeMap::new();
    for name in list[..n].split(|&b| b == 0).filter(|n| !n.is_empty()) {
        let cname = std::ffi::CString::new(name).unwrap();
        let mut value = vec![0u8; 64 * 1024];
        let len = rustix::fs::lgetxattr(path, cname.as_c_str(), &mut value).unwrap_or(0);
        out.insert(name.to_vec(), value[..len].to_vec());
    }
    out
}

/// The directories that hold the sandbox daemon's layers: `<data root>/overlay2/<layer>/diff`, or
/// `<data root>/btrfs/subvolumes/<layer>`.
fn layer_dirs() -> Vec<PathBuf> {
    let root = PathBuf::from(docker(&["info", "-f", "{{.DockerRootDir}}"]));
    let driver = storage_driver();
    let (base, inner) = match driver.as_str() {
        "overlay2" => (root.join("overlay2"), Some("diff")),
        "btrfs" => (root.join("btrfs/subvolumes"), None),
        other => panic!("storage driver {other}: not one this test knows"),
    };
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&base)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name() != Some("l".as_ref()))
        .map(|p| match inner {
            Some(inner) => p.join(inner),
            None => p,
        })
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Every inode of every layer in `dirs`.
fn snapshot(dirs: &[PathBuf]) -> BTreeMap<PathBuf, InodeTimes> {
    let mut all = BTreeMap::new();
    for dir in dirs {
        if dir.exists() {
            record(dir, &mut all);
        }
    }
    all
}

/// The differences between two records, as lines (at most 20).
fn differences(before: &BTreeMap<PathBuf, InodeTimes>, after: &BTreeMap<PathBuf, InodeTimes>) -> Vec<String> {
    let mut out = Vec::new();
    for (path, was) in before {
        match after.get(path) {
            None => out.push(format!("{}: gone", path.display())),
            Some(now) if now != was => out.push(format!("{}: {was:?} -> {now:?}", path.display())),
            Some(_) => {}
        }
    }
    for path in after.keys().filter(|p| !before.contains_key(*p)) {
        out.push(format!("{}: new", path.display()));
    }
    out.truncate(20);
    out
}

/// The tests of this file one at a time: each records every layer of the daemon, which the
/// other's container would change.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ok(out: &std::process::Output, what: &str) {
    assert!(out.status.success(), "{what}: {}", String::from_utf8_lossy(&out.stderr));
}

/// The btrfs helper-snapshot directories of the sandbox (none on overlay2): what is in them.
fn helper_snapshots() -> Vec<PathBuf> {
    let Ok(sandbox) = std::env::var("RODIFF_SANDBOX") else { return Vec::new() };
    let out = Command::new("find").args([&sandbox, "-maxdepth", "4", "-name", ".rodiff-snapshots"]).output().unwrap();
    let mut held = Vec::new();
    for dir in String::from_utf8_lossy(&out.stdout).lines() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let name = entry.unwrap().file_name();
            // The lock file stays; snapshots must not.
            if name.as_bytes().starts_with(b"rodiff-") {
                held.push(Path::new(dir).join(name));
            }
        }
    }
    held
}

#[test]
fn diff_plan_and_verify_change_no_inode_of_any_layer() {
    if !sandbox() {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // The corpus (adds, changes, deletes, opaque dirs, renames, hard links, chmod-only, fifos, odd
    // names) plus a same-size rewrite with its mtime restored, whose bytes rodiff compares.
    let base = Container::run("nowrite-fixture", &[], BUSYBOX, &["sh", "-c", FIXTURE]);
    docker(&["wait", &base.name]);
    let image = format!("rodiff-test/nowrite:{}", std::process::id());
    docker(&["commit", &base.name, &image]);
    let c = Container::run("nowrite", &[], &image, &["sleep", "3600"]);
    c.sh(CORPUS);
    c.sh("printf 'AAAA' > /etc/same-size && touch -r /etc/hostname /etc/same-size 2>/dev/null; \
          cp -p /bin/busybox /tmp/bb && printf 'B' | dd of=/tmp/bb bs=1 seek=100 conv=notrunc 2>/dev/null; \
          mkdir -p /var/lib/app && echo data > /var/lib/app/state");
    // Let every time the container's own writes set settle before the first record.
    std::thread::sleep(Duration::from_millis(50));

    let dirs = layer_dirs();
    assert!(dirs.len() >= 3, "the container's layer, its init layer and the image's layers: {dirs:?}");
    let before = snapshot(&dirs);
    assert!(before.len() > 100, "recorded only {} inodes", before.len());

    for format in ["docker", "json", "jsonl"] {
        ok(&rodiff(&["diff", &c.name, "--format", format]), "rodiff diff");
    }
    ok(&rodiff(&["plan", &c.name]), "rodiff plan");
    ok(&rodiff(&["plan", &c.name, "--format", "json"]), "rodiff plan --format json");
    let diffs = differences(&before, &snapshot(&dirs));
    assert!(diffs.is_empty(), "rodiff diff and plan of the running container changed inodes:\n{}", diffs.join("\n"));
    docker(&["stop", "-t", "0", &c.name]);
    let stopped_before = snapshot(&dirs);
    ok(&rodiff(&["diff", &c.name, "--format", "json"]), "rodiff diff (stopped)");
    ok(&rodiff(&["plan", &c.name, "--format", "json"]), "rodiff plan (stopped)");
    let diffs = differences(&stopped_before, &snapshot(&dirs));
    assert!(diffs.is_empty(), "rodiff diff and plan of the stopped container changed inodes:\n{}", diffs.join("\n"));
    docker(&["start", &c.name]);
    // verify runs new containers from the same image (their own layers come and go; the layers
    // recorded here must stay as they were), then removes them.
    let again = snapshot(&dirs);
    // (`sleep` as PID 1 ignores SIGTERM: a short stop timeout, so its stops do not wait 10 s.)
    let out = rodiff(&["verify", &c.name, "--wait", "1", "--stop-timeout", "1"]);
    // Whether the plan holds is not this test's question; that verify ran is.
    assert!(matches!(out.status.code(), Some(0) | Some(1)), "rodiff verify: {}", String::from_utf8_lossy(&out.stderr));
    let diffs = differences(&again, &snapshot(&dirs));
    assert!(diffs.is_empty(), "rodiff verify changed inodes of existing layers:\n{}", diffs.join("\n"));

    assert!(helper_snapshots().is_empty(), "helper snapshots left behind: {:?}", helper_snapshots());

    // The record sees what a careless reader does: a plain read of a file written after its last
    // read (relatime updates its access time) shows up. Otherwise the assertions above prove nothing.
    let state = c.host_path("/var/lib/app/state");
    c.sh("echo more >> /var/lib/app/state");
    let quiet = snapshot(&dirs);
    std::fs::read(&state).unwrap();
    assert!(!differences(&quiet, &snapshot(&dirs)).is_empty(), "a plain read of {} changed nothing the record sees", state.display());
    let _ = docker(&["rm", "-f", "-v", &c.name]);
    let _ = docker(&["rmi", "-f", &image]);
}

#[test]
fn no_helper_snapshot_inside_the_data_root_and_a_kill_9_leftover_is_swept() {
    if !sandbox() || storage_driver() != "btrfs" {
        return;
    }
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let root = PathBuf::from(docker(&["info", "-f", "{{.DockerRootDir}}"]));
    let c = Container::run("nowrite-kill", &[], BUSYBOX, &["sh", "-c", "mkdir -p /big && i=0; while [ $i -lt 20000 ]; do : > /big/f$i; i=$((i+1)); done; sleep 3600"]);
    // Wait for the files (a scan long enough to be killed in).
    for _ in 0..600 {
        if c.sh("ls /big | wc -l").trim() == "20000" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // kill -9 while the scan holds its helper snapshot: until one shows up, then at once.
    let mut left = Vec::new();
    for _ in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["diff", &c.name])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..2000 {
            left = helper_snapshots();
            if !left.is_empty() || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
        let _ = child.kill();
        let _ = child.wait();
        left = helper_snapshots();
        if !left.is_empty() {
            break;
        }
    }
    assert!(!left.is_empty(), "no run was killed while it held a helper snapshot; the test proved nothing");
    for snapshot in &left {
        assert!(!snapshot.starts_with(&root), "a helper snapshot inside the data root {}: {}", root.display(), snapshot.display());
    }
    // The next run sweeps what the killed one left, and leaves nothing itself.
    ok(&rodiff(&["diff", &c.name]), "rodiff diff after kill -9");
    let now = helper_snapshots();
    assert!(now.is_empty(), "still there after the next run: {now:?}");
}
