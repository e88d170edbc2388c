//! `rodiff watch` against the sandbox's Docker (and containerd): the union of diffs over time,
//! with what was written and removed in between marked transient.
//!
//! Run: `RODIFF_CONTAINERD=1 scripts/sandbox.sh run --images busybox -- cargo test --test watch`

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::containerd::{self as ctrd, CtrContainer};
use common::docker::*;

/// A container that keeps /srv/kept and, every 0.6 s, makes a file in /var/cache/tmpw and removes
/// it 0.5 s later (each name once): diffs taken every 0.2 s see some of them, the last diff none.
const CHURN: &str = "mkdir -p /var/cache/tmpw && echo k > /srv/kept; i=0; while true; do i=$((i+1)); \
    echo $i > /var/cache/tmpw/f$i; sleep 0.5; rm /var/cache/tmpw/f$i; sleep 0.1; done";

fn entries(stdout: &[u8]) -> Vec<serde_json::Value> {
    parse_json(stdout)
}

fn transient(json: &[serde_json::Value]) -> Vec<String> {
    json.iter().filter(|v| v["evidence"] == "transient").map(|v| String::from_utf8_lossy(&json_path(v)).into_owned()).collect()
}

#[test]
fn watch_keeps_files_made_and_removed_between_diffs() {
    if !sandbox() {
        return;
    }
    let c = Container::run("watch", &[], BUSYBOX, &["sh", "-c", CHURN]);
    let started = Instant::now();
    let out = rodiff(&["watch", &c.name, "--interval", "0.2", "--duration", "3", "--format", "json"]);
    let took = started.elapsed();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(20), "{took:?}");
    let json = entries(&out.stdout);
    let gone = transient(&json);
    assert!(!gone.is_empty() && gone.iter().all(|p| p.starts_with("/var/cache/tmpw/f")), "{gone:?}");
    // What is still there is reported as a diff reports it, not transient.
    let kept = json.iter().find(|v| json_path(v) == b"/srv/kept").expect("/srv/kept");
    assert!(kept["evidence"].is_null() && kept["kind"] == "A");
    // The last diff is the container's diff then: every entry that is not transient is in a diff
    // taken now, unless it is one of the churning files.
    let now = rodiff_json(&c.name);
    for v in json.iter().filter(|v| v["evidence"].is_null()) {
        let path = json_path(v);
        assert!(now.iter().any(|n| json_path(n) == path) || path.starts_with(b"/var/cache/tmpw/f"), "{}", String::from_utf8_lossy(&path));
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("diffs of container") && stderr.contains("transient"), "{stderr}");

    // The plan for everything seen gives the churning directory a place to write.
    let out = rodiff(&["watch", &c.name, "--interval", "0.2", "--duration", "2", "--plan"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let flags = String::from_utf8_lossy(&out.stdout);
    assert!(flags.starts_with("--read-only") && flags.contains("/var/cache"), "{flags}");
}

#[test]
fn watch_ends_when_the_container_exits_or_on_sigint() {
    if !sandbox() {
        return;
    }
    let c = Container::run("watchexit", &[], BUSYBOX, &["sh", "-c", "echo a > /srv/a; sleep 2; echo b > /srv/b"]);
    let started = Instant::now();
    let out = rodiff(&["watch", &c.name, "--interval", "0.2", "--until-exit", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(30), "{:?}", started.elapsed());
    let paths: Vec<Vec<u8>> = entries(&out.stdout).iter().map(json_path).collect();
    assert!(paths.contains(&b"/srv/a".to_vec()) && paths.contains(&b"/srv/b".to_vec()), "{paths:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("not running"));

    // Without an end: SIGINT ends it, the union is printed, the exit status is 0.
    let c = Container::run("watchint", &[], BUSYBOX, &["sh", "-c", "echo a > /srv/a; sleep 3600"]);
    std::thread::sleep(Duration::from_millis(500));
    let child = Command::new(env!("CARGO_BIN_EXE_rodiff"))
        .args(["watch", &c.name, "--interval", "0.2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).lines().any(|l| l == "A /srv/a"), "{}", String::from_utf8_lossy(&out.stdout));

    // A container that is not there: exit 3, as for diff.
    let out = rodiff(&["watch", "no-such-container-watch", "--duration", "1"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn watch_through_containerd() {
    if !ctrd::sandbox() {
        return;
    }
    let image = ctrd::import("default", BUSYBOX);
    let c = CtrContainer::run("default", &ctrd::unique_id("watch"), "overlayfs", &[], &image, &["sh", "-c", CHURN]);
    let out = ctrd::rodiff(&["--runtime", "containerd", "-n", "default", "watch", &c.id, "--interval", "0.2", "--duration", "3", "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = entries(&out.stdout);
    let gone = transient(&json);
    assert!(!gone.is_empty() && gone.iter().all(|p| p.starts_with("/var/cache/tmpw/f")), "{gone:?}");
    assert!(json.iter().any(|v| json_path(v) == b"/srv/kept" && v["evidence"].is_null()));
}
