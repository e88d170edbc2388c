//! `rodiff verify` through a container's whole life (sandbox: `scripts/sandbox.sh run -- cargo
//! test --test verify_lifecycle`, overlay2 or btrfs): a small program in the busybox image that
//! writes its state only when it is stopped (SIGTERM), and logs the failure to do so only to a
//! file on a tmpfs — the case a read-only run cannot see and a shadow run with a writable root
//! can.
//!
//! - its plan, made while it runs, lacks the state directory: `verify` fails, the shadow run
//!   naming the file, its kind and that it appeared at stop;
//! - `verify --fix` adds the mount and its plan passes; run read-only by hand with that plan, the
//!   program's state survives a `docker stop` and comes back after a `docker start`.

mod common;

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::docker::*;

/// The program: notes its start (and a restored state) in /tmp/app.log; on SIGTERM saves its
/// state to /var/lib/app/state and exits 0. A failure to save goes to /tmp/app.log only (a tmpfs
/// under the plan), never to the container's log: nothing but the shadow run can see it.
const SAVER: &str = r#"echo started >> /tmp/app.log
if [ -f /var/lib/app/state ]; then echo "restored: $(cat /var/lib/app/state)" >> /tmp/app.log; fi
trap '{ mkdir -p /var/lib/app && echo saved > /var/lib/app/state; } 2>>/tmp/app.log; exit 0' TERM
while :; do sleep 1 & wait $!; done"#;

const PROBE: &str = "grep -q started /tmp/app.log";

fn saver() -> Container {
    let c = Container::run("saver", &[], BUSYBOX, &["sh", "-c", SAVER]);
    let deadline = Instant::now() + Duration::from_secs(30);
    while Command::new("docker").args(["exec", &c.name, "sh", "-c", PROBE]).output().map_or(true, |o| !o.status.success()) {
        assert!(Instant::now() < deadline, "{} never started", c.name);
        std::thread::sleep(Duration::from_millis(100));
    }
    c
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// What verification made for `original` and left behind (nothing, if it cleaned up).
fn leftovers(original: &str) -> String {
    let id = docker(&["inspect", "-f", "{{.Id}}", original]);
    let filter = format!("label=rodiff.verify={id}");
    docker(&["ps", "-aq", "--filter", &filter]) + &docker(&["volume", "ls", "-q", "--filter", &filter])
}

/// The plan's mounts as (path, kind).
fn mounts_of(plan: &serde_json::Value) -> Vec<(String, String)> {
    let mounts = plan["mounts"].as_array().unwrap_or_else(|| panic!("no mounts in {plan:#}"));
    mounts.iter().map(|m| (m["path"].as_str().unwrap().to_string(), m["kind"].as_str().unwrap().to_string())).collect()
}

/// The number of rounds of additions `verify --fix` reported on stderr.
fn rounds(stderr: &str) -> usize {
    let line = stderr.lines().find(|l| l.contains("the plan holds after")).unwrap_or_else(|| panic!("no verdict line:\n{stderr}"));
    let n = line.split("after ").nth(1).and_then(|r| r.split(' ').next()).unwrap();
    n.parse().unwrap_or_else(|_| panic!("bad line {line}"))
}

#[test]
fn a_file_written_only_at_sigterm_fails_verify_and_the_shadow_run_names_it() {
    if !sandbox() {
        return;
    }
    let c = saver();
    let out = rodiff(&["plan", &c.name, "--format", "json"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let mounts = mounts_of(&plan);
    // The running program wrote its log, and nothing else yet.
    assert_eq!(mounts, [("/tmp".to_string(), "tmpfs".to_string())], "{plan:#}");

    let started = Instant::now();
    let out = rodiff(&["verify", &c.name, "--probe", PROBE, "--wait", "2", "--stop-timeout", "5"]);
    let (stdout, stderr) = text(&out);
    eprintln!("verify (plan without the state dir) on {}: {:.1} s", storage_driver(), started.elapsed().as_secs_f64());
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // The read-only run alone looks fine: it ran, passed its probe, stopped with 0 and came back.
    assert!(stdout.contains("read-only run: after 2.0 s: running"), "{stdout}");
    assert!(stdout.contains("graceful stop: stopped in") && stdout.contains("exit code 0"), "{stdout}");
    assert!(stdout.contains("restart (same volumes): running again"), "{stdout}");
    assert!(!stdout.contains("writes refused by the read-only root filesystem"), "the container's log had no error to show:\n{stdout}");
    // The shadow run names the writes, with kind, type and when.
    assert!(stdout.contains("shadow run (writable root): ran, stopped in"), "{stdout}");
    for line in ["  A /var/lib/app/state (file, at stop)", "  A /var/lib/app (dir, at stop)"] {
        assert!(stdout.lines().any(|l| l == line), "no line {line:?}:\n{stdout}");
    }
    // Nothing else: the log in /tmp is covered, the runtime's own writes are not the program's.
    let uncovered: Vec<&str> = stdout.lines().filter(|l| l.starts_with("  A ") || l.starts_with("  C ") || l.starts_with("  T ") || l.starts_with("  D ")).collect();
    assert!(uncovered.iter().all(|l| l.contains(" /var/lib") && l.ends_with(", at stop)")), "{stdout}");
    let error = stderr.lines().find(|l| l.starts_with("rodiff:")).unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(error.contains(&c.name) && error.contains("/var/lib/app/state (at stop)"), "{error}");
    assert_eq!(leftovers(&c.name), "", "verification left containers or volumes behind");

    // The same plan, given back as a file, fails the same way.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), plan.to_string()).unwrap();
    let out = rodiff(&["verify", &c.name, "--plan", file.path().to_str().unwrap(), "--probe", PROBE, "--wait", "1"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("  A /var/lib/app/state (file, at stop)"), "{stdout}");
}

#[test]
fn verify_fix_adds_the_state_dir_and_the_state_survives_stop_and_start() {
    if !sandbox() {
        return;
    }
    let driver = storage_driver();
    let c = saver();
    let started = Instant::now();
    let out = rodiff(&["verify", &c.name, "--fix", "--format", "json", "--probe", PROBE, "--wait", "2", "--stop-timeout", "5"]);
    let (stdout, stderr) = text(&out);
    let took = started.elapsed();
    assert!(out.status.success(), "verify --fix: exit {:?}\n{stdout}\n{stderr}", out.status.code());
    let n = rounds(&stderr);
    eprintln!("verify --fix rounds: saver on {driver}: {n} ({:.1} s)", took.as_secs_f64());
    assert_eq!(n, 1, "{stderr}");
    // Round 0 failed on the write at stop; round 1 added a volume over it (a volume: `plan`'s rules
    // keep what the application writes), saying which rule and why.
    assert!(stderr.contains("A /var/lib/app/state (file, at stop)"), "{stderr}");
    let added: Vec<&str> = stderr.lines().filter(|l| l.contains(": round 1: + ")).collect();
    assert_eq!(added.len(), 1, "{stderr}");
    let state_dir = |path: &str| std::path::Path::new("/var/lib/app/state").starts_with(path) && path != "/var/lib/app/state";
    let mount = added[0].split(": + volume ").nth(1).and_then(|r| r.split(' ').next()).unwrap_or_else(|| panic!("not a volume: {}", added[0]));
    assert!(state_dir(mount) && added[0].contains(" (") && added[0].contains(" for "), "{}", added[0]);
    let plan: serde_json::Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    let mut mounts = mounts_of(&plan);
    mounts.sort();
    assert_eq!(mounts, [("/tmp".into(), "tmpfs".into()), (mount.into(), "volume".into())], "{plan:#}");
    assert_eq!(leftovers(&c.name), "", "verification left containers or volumes behind");

    // The fixed plan passes `verify` on its own.
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), plan.to_string()).unwrap();
    let out = rodiff(&["verify", &c.name, "--plan", file.path().to_str().unwrap(), "--probe", PROBE, "--wait", "1"]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success() && stdout.contains("verified:"), "{stdout}{stderr}");

    // And it keeps the data: read-only by hand with its docker flags, stopped, started again.
    let flags_out = rodiff(&["verify", &c.name, "--fix", "--probe", PROBE, "--wait", "1"]);
    let (flags, stderr) = text(&flags_out);
    assert!(flags_out.status.success(), "{stderr}");
    let flags: Vec<&str> = flags.split_whitespace().collect();
    let volume = flags.windows(2).find(|w| w[0] == "--volume" && w[1].ends_with(&format!(":{mount}"))).map(|w| w[1].split(':').next().unwrap().to_string());
    let volume = volume.unwrap_or_else(|| panic!("no volume for {mount} in {flags:?}"));
    let _volume = RemoveVolume(volume.clone());
    let ro = Container { name: format!("{}-ro", c.name) };
    let mut args = vec!["run", "-d", "--network", "none", "--name", &ro.name];
    args.extend(flags.iter().copied());
    args.extend([BUSYBOX, "sh", "-c", SAVER]);
    docker(&args);
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", &ro.name]), "true");
    docker(&["stop", "-t", "5", &ro.name]);
    assert_eq!(docker(&["inspect", "-f", "{{.State.ExitCode}}", &ro.name]), "0");
    docker(&["start", &ro.name]);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = Command::new("docker").args(["exec", &ro.name, "cat", "/tmp/app.log"]).output().unwrap();
        if String::from_utf8_lossy(&log.stdout).contains("restored: saved") {
            break;
        }
        assert!(Instant::now() < deadline, "the state did not come back:\n{}", String::from_utf8_lossy(&log.stdout));
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A named volume, removed on drop (after the container that uses it).
struct RemoveVolume(String);

impl Drop for RemoveVolume {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["volume", "rm", "-f", &self.0]).output();
    }
}

/// A program whose save at SIGTERM fails loudly: the read-only copy's own log has the
/// `Read-only file system` line, written at stop, and that alone fails it — named with its path
/// and when — beside the shadow run's `A /srv/state (file, at stop)`.
#[test]
fn a_read_only_error_logged_at_stop_fails_verify() {
    if !sandbox() {
        return;
    }
    let c = Container::run("loud", &[], BUSYBOX, &["sh", "-c", "trap 'echo saved > /srv/state; exit 0' TERM; while :; do sleep 1 & wait $!; done"]);
    let out = rodiff(&["verify", &c.name, "--probe", "true", "--wait", "2", "--stop-timeout", "5"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("read-only run: after 2.0 s: running"), "{stdout}");
    let refused = "writes refused by the read-only root filesystem:\n  /srv/state (at stop)\n";
    assert!(stdout.contains(refused) && stdout.contains("Read-only file system"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "failed: writes refused by the read-only root filesystem (at stop)"), "{stdout}");
    assert!(stdout.lines().any(|l| l == "  A /srv/state (file, at stop)"), "{stdout}");
    let error = stderr.lines().find(|l| l.starts_with("rodiff:")).unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(error.contains("writes refused at /srv/state"), "{error}");
    assert_eq!(leftovers(&c.name), "", "verification left containers or volumes behind");
}
