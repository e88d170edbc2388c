//! `rodiff watch` against the sandbox's Docker (and containerd): the union of diffs over time,
//! with what was written and removed in between marked transient, and what fanotify heard of
//! files that lived shorter than the interval.
//!
//! Run: `RODIFF_CONTAINERD=1 scripts/sandbox.sh run --images busybox -- cargo test --test watch`
//! (and with `RODIFF_STORAGE_DRIVER=btrfs`, skipping `watch_through_containerd`).

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

/// A container that, from a start file on, makes a file under /var/cache/burst and removes it about
/// 50 ms later, again and again (each name once): no diff taken seconds apart sees them.
fn burst(dir: &str) -> String {
    format!(
        "mkdir -p {dir} && echo k > /srv/kept; while [ ! -e /tmp/go ]; do sleep 0.05; done; i=0; \
         while true; do i=$((i+1)); echo $i > {dir}/f$i; sleep 0.05; rm {dir}/f$i; done"
    )
}

/// The burst files a watch's JSON names that no diff saw: each of those is kind T, transient, a
/// file (a diff may have caught one or two alive: kind A).
fn burst_files(json: &[serde_json::Value], dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/f");
    let files: Vec<&serde_json::Value> = json.iter().filter(|v| json_path(v).starts_with(prefix.as_bytes())).collect();
    let heard: Vec<&serde_json::Value> = files.iter().copied().filter(|v| v["kind"] == "T").collect();
    for v in &files {
        assert!(v["kind"] == "A" || (v["evidence"] == "transient" && v["type"] == "file" && v.get("mode").is_none()), "{v}");
    }
    assert!(files.len() - heard.len() <= 2, "{files:?}");
    heard.iter().map(|v| String::from_utf8_lossy(&json_path(v)).into_owned()).collect()
}

#[test]
fn watch_names_files_that_live_shorter_than_the_interval() {
    if !sandbox() {
        return;
    }
    let c = Container::run("burst", &[], BUSYBOX, &["sh", "-c", &burst("/var/cache/burst")]);
    let go = || c.sh("touch /tmp/go");
    // Diffs at 0 s and 3 s only: each sees one file at most; fanotify hears every one.
    let watch = std::thread::scope(|s| {
        let watch = s.spawn(|| rodiff(&["watch", &c.name, "--interval", "5", "--duration", "3", "--format", "json"]));
        std::thread::sleep(Duration::from_millis(500));
        go();
        watch.join().unwrap()
    });
    let stderr = String::from_utf8_lossy(&watch.stderr);
    assert!(watch.status.success(), "{stderr}");
    assert!(!stderr.contains("fanotify unavailable") && stderr.contains("0 queue overflows"), "{stderr}");
    let json = entries(&watch.stdout);
    let files = burst_files(&json, "/var/cache/burst");
    assert!(files.len() >= 5, "{files:?}\n{stderr}");
    // The docker format has no T: only what a diff caught alive.
    let out = rodiff(&["watch", &c.name, "--interval", "5", "--duration", "1"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.lines().filter(|l| l.contains("/var/cache/burst/f")).count() <= 2, "{text}");
    // The plan covers their directory.
    let out = rodiff(&["watch", &c.name, "--interval", "5", "--duration", "1", "--plan", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let covered = plan.to_string();
    assert!(covered.contains("\"/var/cache/burst\"") || covered.contains("\"/var/cache\""), "{plan:#}");
}

#[test]
fn watch_never_hears_another_container_on_the_same_filesystem() {
    if !sandbox() {
        return;
    }
    let c = Container::run("burst-mine", &[], BUSYBOX, &["sh", "-c", &burst("/var/cache/burst")]);
    let other = Container::run("burst-other", &[], BUSYBOX, &["sh", "-c", &burst("/var/cache/other")]);
    let watch = std::thread::scope(|s| {
        let watch = s.spawn(|| rodiff(&["watch", &c.name, "--interval", "5", "--duration", "3", "--format", "json"]));
        std::thread::sleep(Duration::from_millis(500));
        other.sh("touch /tmp/go");
        c.sh("touch /tmp/go");
        watch.join().unwrap()
    });
    assert!(watch.status.success(), "{}", String::from_utf8_lossy(&watch.stderr));
    let json = entries(&watch.stdout);
    assert!(burst_files(&json, "/var/cache/burst").len() >= 5, "{json:?}");
    let strays: Vec<_> = json.iter().map(json_path).filter(|p| p.starts_with(b"/var/cache/other")).collect();
    assert!(strays.is_empty(), "{:?}", strays.iter().map(|p| String::from_utf8_lossy(p)).collect::<Vec<_>>());
    // Every name is one this container made, or a directory leading to one.
    for v in json {
        let p = common::bpath(&json_path(&v));
        assert!(["/var/cache/burst", "/srv/kept", "/tmp/go"].iter().any(|d| p.starts_with(d) || std::path::Path::new(d).starts_with(&p)), "{v}");
    }
}

#[test]
fn watch_without_fanotify_says_so_once_and_polls() {
    if !sandbox() {
        return;
    }
    // Without CAP_DAC_READ_SEARCH no directory handle decodes (open_by_handle_at: EPERM). (Without
    // CAP_SYS_ADMIN there would be no filesystem mark either, but no diff: the btrfs engine
    // searches trees with it, the overlay engine needs it for trusted.overlay.* attributes.)
    let cap = "cap_dac_read_search";
    let c = Container::run("nofan", &[], BUSYBOX, &["sh", "-c", CHURN]);
    let out = Command::new("capsh")
        .arg(format!("--drop={cap}"))
        .args(["--", "-c", "exec \"$0\" \"$@\"", env!("CARGO_BIN_EXE_rodiff")])
        .args(["watch", &c.name, "--interval", "0.2", "--duration", "3", "--format", "json"])
        .output()
        .expect("capsh");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(stderr.matches("fanotify unavailable").count(), 1, "{stderr}");
    assert!(stderr.contains("Operation not permitted"), "{stderr}");
    // The polling result, as without fanotify.
    let json = entries(&out.stdout);
    let gone = transient(&json);
    assert!(!gone.is_empty() && gone.iter().all(|p| p.starts_with("/var/cache/tmpw/f")), "{gone:?}");
    assert!(json.iter().any(|v| json_path(v) == b"/srv/kept" && v["evidence"].is_null()));
    assert!(json.iter().all(|v| v["kind"] != "T" || !json_path(v).starts_with(b"/var/cache/tmpw/f")), "{json:?}");
}

/// The layer root of a Docker container, as rodiff resolves it.
fn layer_root(name: &str) -> std::path::PathBuf {
    let client = rodiff::Client::new(common::client_options(rodiff::Runtime::Docker)).unwrap();
    let resolved = client.resolve(&rodiff::Target::from(name), &rodiff::Stop::default()).unwrap();
    match &resolved[0].layer {
        rodiff::Layer::Overlay(l) => l.upper.clone(),
        rodiff::Layer::Btrfs(l) => l.subvolume.clone(),
    }
}

#[test]
fn fanotify_queue_overflows_are_counted() {
    if !sandbox() {
        return;
    }
    let c = Container::run("flood", &[], BUSYBOX, &["sleep", "3600"]);
    c.sh("mkdir -p /var/cache/flood");
    let mut listener = rodiff::watch::fanotify::Listener::open(&layer_root(&c.name)).expect("fanotify");
    // The reader pauses (nothing reads) while the container makes 20000 names: more than the
    // kernel's queue of 16384 events holds.
    c.sh("i=0; while [ $i -lt 20000 ]; do : > /var/cache/flood/f$i; i=$((i+1)); done");
    let mut heard = Vec::new();
    listener.drain(&mut heard).unwrap();
    assert!(listener.overflows() >= 1, "{} events, no overflow", listener.events());
    let strays: Vec<_> = heard.iter().filter(|h| !h.path.starts_with("/var/cache/flood")).collect();
    assert!(heard.len() < 20000 && strays.is_empty(), "{} {strays:?}", heard.len());
    // After the overflow it hears again.
    c.sh("echo x > /var/cache/flood/after");
    heard.clear();
    listener.drain(&mut heard).unwrap();
    assert!(heard.iter().any(|h| h.path == std::path::Path::new("/var/cache/flood/after")), "{heard:?}");
}

/// What the reader costs: a container makes and removes 100000 files as fast as it can while a
/// listener reads; prints the events read and the reader's CPU time. Run by hand:
/// `scripts/sandbox.sh run --images busybox -- cargo test --release --test watch -- --ignored --nocapture fanotify_reader_cost`
#[test]
#[ignore]
fn fanotify_reader_cost() {
    if !sandbox() {
        return;
    }
    let c = Container::run("cost", &[], BUSYBOX, &["sleep", "3600"]);
    c.sh("mkdir -p /var/cache/a /var/cache/b");
    let mut listener = rodiff::watch::fanotify::Listener::open(&layer_root(&c.name)).expect("fanotify");
    let done = std::sync::atomic::AtomicBool::new(false);
    let (cpu, heard, wall) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut heard = Vec::new();
            let mut count = 0usize;
            let started = Instant::now();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                listener.drain(&mut heard).unwrap();
                count += heard.len();
                heard.clear();
                if finished {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
            // SAFETY: getrusage fills the struct.
            let usage = unsafe {
                libc::getrusage(libc::RUSAGE_THREAD, usage.as_mut_ptr());
                usage.assume_init()
            };
            let cpu = Duration::new(usage.ru_utime.tv_sec as u64, usage.ru_utime.tv_usec as u32 * 1000)
                + Duration::new(usage.ru_stime.tv_sec as u64, usage.ru_stime.tv_usec as u32 * 1000);
            (cpu, count, started.elapsed())
        });
        let make = |d: &str| format!("cd /var/cache/{d}; i=0; while [ $i -lt 50000 ]; do : > f$i; i=$((i+1)); done; rm -f f*");
        let (a, b) = (make("a"), make("b"));
        std::thread::scope(|s| {
            s.spawn(|| c.sh(&a));
            s.spawn(|| c.sh(&b));
        });
        done.store(true, std::sync::atomic::Ordering::SeqCst);
        reader.join().unwrap()
    });
    eprintln!(
        "fanotify reader: {} events of the layer ({} names heard) in {wall:?}, {cpu:?} CPU: {:.0} events/s of CPU, {} overflows",
        listener.events(),
        heard,
        listener.events() as f64 / cpu.as_secs_f64(),
        listener.overflows()
    );
    assert_eq!(listener.overflows(), 0);
}

#[test]
fn watch_through_containerd_hears_bursts() {
    if !ctrd::sandbox() {
        return;
    }
    let image = ctrd::import("default", BUSYBOX);
    for snapshotter in ["overlayfs", "btrfs"] {
        let c = CtrContainer::run("default", &ctrd::unique_id("burst"), snapshotter, &[], &image, &["sh", "-c", &burst("/var/cache/burst")]);
        let watch = std::thread::scope(|s| {
            let watch = s.spawn(|| {
                ctrd::rodiff(&["--runtime", "containerd", "-n", "default", "watch", &c.id, "--interval", "5", "--duration", "3", "--format", "json"])
            });
            std::thread::sleep(Duration::from_millis(500));
            c.sh("touch /tmp/go");
            watch.join().unwrap()
        });
        let stderr = String::from_utf8_lossy(&watch.stderr);
        assert!(watch.status.success(), "{snapshotter}: {stderr}");
        let files = burst_files(&entries(&watch.stdout), "/var/cache/burst");
        assert!(files.len() >= 5, "{snapshotter}: {files:?}\n{stderr}");
    }
}
