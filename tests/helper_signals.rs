//! SIGINT/SIGTERM at random moments of `rodiff diff` on the btrfs dockerd (found by an adversarial
//! review: a signal while the snapshot ioctl ran leaked the snapshot in a quarter of the runs)
//! must leave no helper snapshot behind, and the process must end with 128 + the signal, not a
//! spurious error. Only meaningful on btrfs (run by `make test` on the btrfs dockerd).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::docker::*;

fn helper_dir() -> Option<std::path::PathBuf> {
    let sb = std::env::var("RODIFF_SANDBOX").ok()?;
    let out = Command::new("find").args([&sb, "-maxdepth", "4", "-name", ".rodiff-snapshots"]).output().ok()?;
    String::from_utf8_lossy(&out.stdout).lines().next().map(Into::into)
}

#[test]
fn signals_at_any_moment_leave_no_helper_snapshot() {
    if !sandbox() || storage_driver() != "btrfs" {
        return;
    }
    let c = Container::run("signals", &[], BUSYBOX, &["sh", "-c", "mkdir -p /data; i=0; while true; do dd if=/dev/zero of=/data/f$((i%50)) bs=64k count=16 2>/dev/null; i=$((i+1)); done"]);
    std::thread::sleep(Duration::from_secs(3));
    assert!(rodiff(&["diff", &c.name]).status.success());
    let dir = helper_dir().expect("helper dir after one run");
    let mut seed = 7u64;
    let mut leaks = Vec::new();
    let mut odd = Vec::new();
    for i in 0..80 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let delay = Duration::from_micros(5_000 + (seed >> 33) % 60_000);
        let sig = if i % 2 == 0 { libc::SIGINT } else { libc::SIGTERM };
        let child = Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["diff", &c.name])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        unsafe { libc::kill(child.id() as i32, sig) };
        let out = child.wait_with_output().unwrap();
        let code = out.status.code();
        // Death by the signal itself: it came before the handler thread existed (nothing made yet).
        if code.is_some() && code != Some(128 + sig) && code != Some(0) {
            odd.push(format!("delay {delay:?} sig {sig}: status {:?} stderr {}", out.status, String::from_utf8_lossy(&out.stderr)));
        }
        let left: Vec<String> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        if !left.is_empty() {
            leaks.push(format!("delay {delay:?} sig {sig}: {left:?}"));
            // Let the next run's sweep clean up so that each leak is counted once.
            assert!(rodiff(&["diff", &c.name]).status.success());
        }
    }
    eprintln!("odd exits: {odd:#?}");
    assert!(leaks.is_empty(), "leaked helper snapshots:\n{}", leaks.join("\n"));
    assert!(odd.is_empty(), "unexpected exits:\n{}", odd.join("\n"));
}
