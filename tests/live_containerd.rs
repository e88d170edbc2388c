//! Live evidence on real containerd containers (the sandbox's standalone containerd, overlayfs and
//! btrfs snapshotters): the task's processes (`ListPids`, exec'd processes included) hold
//! `O_TMPFILE` files open in `/tmp` → `T /tmp`; a stopped task has no evidence and no error.
//! On btrfs the layer keeps no trace of such a write, so there the `T` can only come from the live
//! evidence; on both snapshotters the evidence itself is checked through the library.

mod common;

use common::containerd::{self as ctrd, CtrContainer};
use common::docker::{json_path, parse_json};
use common::live::*;

const IMAGE: &str = "docker.io/rodiff-test/busybox:latest";

fn options() -> rodiff::ClientOptions {
    rodiff::ClientOptions { namespace: Some("default".into()), ..common::client_options(rodiff::Runtime::Containerd) }
}

fn rodiff_json(c: &CtrContainer) -> Vec<serde_json::Value> {
    let out = c.rodiff_diff(&["--format", "json"]);
    assert!(out.status.success(), "rodiff diff {}: {}", c.id, String::from_utf8_lossy(&out.stderr));
    parse_json(&out.stdout)
}

/// The pid of the container's task, as `ctr tasks ls` shows it (`TASK PID STATUS`).
fn task_pid(c: &CtrContainer) -> u32 {
    let tasks = ctrd::ctr("default", &["tasks", "ls"]);
    let line = tasks.lines().find(|l| l.split_whitespace().next() == Some(c.id.as_str())).unwrap_or_else(|| panic!("{tasks}"));
    line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line}"))
}

fn held_tmpfiles_on(snapshotter: &str) {
    let live_only = snapshotter == "btrfs";
    let c = CtrContainer::run("default", &ctrd::unique_id(&format!("live-{snapshotter}")), snapshotter, &[], IMAGE, &["tmpfile-holder", "hold", "/tmp", "2"]);
    // An exec'd process (not a child of the task's init) holds one in /var/tmp.
    c.sh("tmpfile-holder hold /var/tmp >/dev/null 2>&1 &");
    c.sh(&wait_held_script(3));

    let (processes, files) = held(&c.id, &options());
    assert!(processes.pids.len() >= 2, "the task's init and the exec'd holder: {processes:?}");
    assert_eq!(processes.init, Some(task_pid(&c)), "the init is the task's pid: {processes:?}");
    let shown: Vec<String> = files.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    assert_eq!(files.iter().filter(|f| is_tmpfile_in(f, "/tmp")).count(), 2, "{snapshotter}: {shown:?}");
    assert_eq!(files.iter().filter(|f| is_tmpfile_in(f, "/var/tmp")).count(), 1, "{snapshotter}: {shown:?}");

    let json = rodiff_json(&c);
    assert_touched(&json, "/tmp", 0o1777, live_only);
    assert_touched(&json, "/var/tmp", 0o1777, live_only);
    assert_eq!(json.iter().filter(|v| json_path(v) == b"/tmp").count(), 1, "reported once");

    // Stopped (task deleted): no processes, no evidence, no error.
    c.stop();
    let (processes, files) = held(&c.id, &options());
    assert!(processes.init.is_none() && processes.pids.is_empty() && files.is_empty(), "{processes:?} {files:?}");
    let json = rodiff_json(&c);
    assert_no_evidence(&json);
    if live_only {
        assert!(entry(&json, "/tmp").is_none(), "nothing is left to tell on btrfs: {json:#?}");
    }
}

#[test]
fn tmpfiles_held_open_make_tmp_touched_on_overlayfs() {
    if !ctrd::sandbox() {
        return;
    }
    held_tmpfiles_on("overlayfs");
}

#[test]
fn tmpfiles_held_open_make_tmp_touched_on_btrfs() {
    if !ctrd::sandbox() {
        return;
    }
    held_tmpfiles_on("btrfs");
}

/// A task that has exited but is not deleted yet: `ListPids` lists nothing, and the diff works.
#[test]
fn an_exited_task_has_no_evidence() {
    if !ctrd::sandbox() {
        return;
    }
    let c = CtrContainer::run("default", &ctrd::unique_id("live-exited"), "btrfs", &[], IMAGE, &["tmpfile-holder", "once", "/tmp", "0"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !ctrd::ctr("default", &["tasks", "ls"]).lines().any(|l| l.starts_with(&c.id) && l.contains("STOPPED")) {
        assert!(std::time::Instant::now() < deadline, "the task did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (processes, _) = held(&c.id, &options());
    assert!(processes.init.is_none() && processes.pids.is_empty(), "{processes:?}");
    assert_no_evidence(&rodiff_json(&c));
}
