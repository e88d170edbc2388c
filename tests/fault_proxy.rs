//! A runtime that dies in the middle of an answer: between rodiff and the sandbox's dockerd sits a
//! proxy that passes the daemon's answers on until a byte budget is spent, then cuts every
//! connection — what rodiff sees when dockerd is killed mid-response. For budgets from nothing to
//! the whole conversation, every run ends one of two ways: the complete diff (equal to one made
//! without the proxy), or a one-line error with exit code 3 or 1 and nothing on stdout. Never a
//! partial diff presented as complete, never a hang.
//!
//! Run: `scripts/sandbox.sh run -- cargo test --test fault_proxy`.

mod common;

use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::docker::*;

/// A proxy on a unix socket in front of `upstream`, passing at most `budget` bytes of answers (in
/// all, over all connections) and then closing both sides of every connection.
struct Proxy {
    path: PathBuf,
    _dir: tempfile::TempDir,
    passed: Arc<AtomicI64>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: &Path, budget: i64) -> Proxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let passed = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (upstream, counter, stopping) = (upstream.to_path_buf(), passed.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        client.set_nonblocking(false).unwrap();
                        let server = UnixStream::connect(&upstream).unwrap();
                        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                        // Requests go through whole; answers until the budget is spent.
                        std::thread::spawn(move || pump(c2, s2, None));
                        let counter = counter.clone();
                        std::thread::spawn(move || pump(server, client, Some((counter, budget))));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Proxy { path, _dir: dir, passed, stop }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Copies `from` to `to`; with a budget, stops (closing both) once the bytes passed in all reach it.
fn pump(mut from: UnixStream, mut to: UnixStream, budget: Option<(Arc<AtomicI64>, i64)>) {
    let mut buf = [0u8; 4096];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut send = n;
        if let Some((passed, limit)) = &budget {
            let before = passed.fetch_add(n as i64, Ordering::SeqCst);
            send = (limit - before).clamp(0, n as i64) as usize;
        }
        if send > 0 && to.write_all(&buf[..send]).is_err() {
            break;
        }
        if send < n {
            break;
        }
    }
    let _ = from.shutdown(std::net::Shutdown::Both);
    let _ = to.shutdown(std::net::Shutdown::Both);
}

/// How to run `rodiff diff --format json` of one container through a given socket.
type DiffThrough<'a> = &'a dyn Fn(&Path) -> std::process::Output;

/// Sweeps the budget from nothing to the whole conversation with `upstream`: every run gives the
/// reference diff or a one-line error naming `runtime` and `name`, exit 3 or 1, stdout empty.
fn sweep(upstream: &Path, runtime: &str, name: &str, diff: DiffThrough<'_>) {
    // The whole conversation, through a proxy with no limit.
    let full = Proxy::start(upstream, i64::MAX);
    let out = diff(&full.path);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let reference = out.stdout;
    let total = full.passed.load(Ordering::SeqCst);
    drop(full);
    assert!(total > 200, "{runtime} said only {total} bytes");

    let mut outcomes = std::collections::BTreeMap::new();
    let budgets: Vec<i64> = (0..24).map(|i| total * i / 24).chain([1, 10, 100, total - 1]).collect();
    for budget in budgets {
        let proxy = Proxy::start(upstream, budget);
        let started = Instant::now();
        let out = diff(&proxy.path);
        let took = started.elapsed();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(took < Duration::from_secs(30), "{runtime}, budget {budget}: {took:?}");
        match out.status.code() {
            Some(0) => assert_eq!(out.stdout, reference, "{runtime}, budget {budget}: a diff, but not the whole one"),
            Some(code @ (1 | 3)) => {
                assert!(out.stdout.is_empty(), "{runtime}, budget {budget}: exit {code} after printing {}", String::from_utf8_lossy(&out.stdout));
                assert_eq!(stderr.lines().count(), 1, "{runtime}, budget {budget}: {stderr}");
                assert!(stderr.contains(runtime) && stderr.contains(name), "{runtime}, budget {budget}: names the runtime and container: {stderr}");
            }
            other => panic!("{runtime}, budget {budget}: exit {other:?}: {stderr}"),
        }
        *outcomes.entry(out.status.code().unwrap()).or_insert(0) += 1;
    }
    eprintln!("{runtime} cut after 0..{total} bytes of answers: exit codes {outcomes:?}");
    assert!(outcomes.contains_key(&3), "no cut made rodiff report {runtime} unreachable: {outcomes:?}");
}

#[test]
fn a_docker_cut_off_mid_answer_gives_the_whole_diff_or_one_clear_error() {
    if !sandbox() {
        return;
    }
    let c = Container::run("cut", &[], BUSYBOX, &["sh", "-c", "mkdir -p /w && echo a > /w/a && rm /bin/ls; sleep 3600"]);
    std::thread::sleep(Duration::from_millis(300));
    let host = std::env::var("DOCKER_HOST").unwrap();
    let upstream = PathBuf::from(host.strip_prefix("unix://").unwrap());
    let diff = |socket: &Path| {
        Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["--timeout", "5", "-H", &format!("unix://{}", socket.display()), "diff", &c.name, "--format", "json"])
            .output()
            .unwrap()
    };
    sweep(&upstream, "docker", &c.name, &diff);
}

#[test]
fn a_containerd_cut_off_mid_answer_gives_the_whole_diff_or_one_clear_error() {
    if !common::containerd::sandbox() {
        return;
    }
    use common::containerd as ctrd;
    let image = ctrd::import("default", BUSYBOX);
    let c = ctrd::CtrContainer::run("default", &ctrd::unique_id("cut"), "overlayfs", &[], &image, &["sh", "-c", "mkdir -p /w && echo a > /w/a; sleep 3600"]);
    std::thread::sleep(Duration::from_millis(300));
    let upstream = PathBuf::from(ctrd::address());
    let diff = |socket: &Path| {
        Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["--timeout", "5", "--runtime", "containerd", "--address"])
            .arg(socket)
            .args(["-n", "default", "diff", &c.id, "--format", "json"])
            .output()
            .unwrap()
    };
    sweep(&upstream, "containerd", &c.id, &diff);
}
