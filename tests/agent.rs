//! `rodiff agent` against the sandbox's Docker and containerd: it lists containers and serves the
//! CLI's diff, keeps profiles (transient writes included) across restarts and `kill -9`, reports
//! drift, fails `/readyz` while a runtime restarts, and holds its descriptors and memory through a
//! churn of short-lived containers.
//!
//! Run: `RODIFF_CONTAINERD=1 scripts/sandbox.sh run --images busybox -- cargo test --test agent`

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::containerd::{self as ctrd, CtrContainer};
use common::docker::*;

/// The agent tests share one containerd, which one of them restarts: one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running `rodiff agent` on a free port, killed on drop.
struct Agent {
    child: Child,
    port: u16,
}

impl Agent {
    fn start(state: &Path, args: &[&str]) -> Agent {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let listen = format!("127.0.0.1:{port}");
        let child = Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["agent", "--listen", &listen, "--interval", "0.3", "--state"])
            .arg(state)
            .args(args)
            .stdin(Stdio::null())
            .spawn()
            .expect("rodiff agent");
        let agent = Agent { child, port };
        agent.wait_for("/livez", |status, _| status == 200);
        agent
    }

    /// `GET path`: status and body.
    fn get(&self, path: &str) -> (u16, String) {
        let mut stream = match TcpStream::connect(("127.0.0.1", self.port)) {
            Ok(s) => s,
            Err(_) => return (0, String::new()),
        };
        stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: agent\r\nConnection: close\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
        let body = if head.to_ascii_lowercase().contains("transfer-encoding: chunked") { unchunk(body) } else { body.to_string() };
        (status, body)
    }

    fn json(&self, path: &str) -> serde_json::Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "GET {path}: {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
    }

    /// Polls `path` until `done(status, body)`, for up to 30 s.
    fn wait_for(&self, path: &str, done: impl Fn(u16, &str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let (status, body) = self.get(path);
            if done(status, &body) {
                return body;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "GET {path} never became what was waited for: {status} {body}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The entry of `/v1/containers` for the container named or with id `name`, once it has
    /// `diffs` scans.
    fn container(&self, name: &str, diffs: u64) -> serde_json::Value {
        let find = |body: &str| -> Option<serde_json::Value> {
            let v: serde_json::Value = serde_json::from_str(body).ok()?;
            v["containers"].as_array()?.iter().find(|c| c["name"] == name || c["id"] == name).cloned()
        };
        let body = self.wait_for("/v1/containers", |_, body| find(body).is_some_and(|c| c["diffs"].as_u64() >= Some(diffs)));
        find(&body).unwrap()
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unchunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    while let Some((size, tail)) = rest.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&tail[..n]);
        rest = tail[n..].trim_start_matches("\r\n");
    }
    out
}

fn paths(json: &serde_json::Value) -> Vec<String> {
    json.as_array().unwrap().iter().map(|v| String::from_utf8_lossy(&json_path(v)).into_owned()).collect()
}

#[test]
fn the_agent_serves_the_clis_diff_and_a_profile_with_transient_writes_and_drift() {
    if !sandbox() {
        return;
    }
    let _serial = serial();
    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(state.path(), &["--runtimes", "docker"]);
    // A temporary file that lives long enough for a scan (0.3 s interval), then goes; a program
    // copied in (ELF, mode 755), a script without an x bit (by its #! header), and plain data.
    let script = "mkdir -p /var/cache/job && echo t > /var/cache/job/tmp && sleep 2 && rm /var/cache/job/tmp; \
        cp /bin/busybox /srv/tool; printf '#!/bin/sh\\necho hi\\n' > /srv/run.sh; chmod 644 /srv/run.sh; echo data > /srv/notes; \
        touch /tmp/ready; sleep 3600";
    let c = Container::run("agent", &[], BUSYBOX, &["sh", "-c", script]);
    let started = Instant::now();
    while docker(&["exec", &c.name, "sh", "-c", "test -e /tmp/ready && echo y || echo n"]) != "y" {
        assert!(started.elapsed() < Duration::from_secs(30));
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = agent.container(&c.name, 1)["diffs"].as_u64().unwrap();
    let entry = agent.container(&c.name, before + 2);
    assert_eq!(entry["runtime"], "docker");
    assert_eq!(entry["running"], true);
    assert!(entry["namespace"].is_null());

    // The diff is the CLI's, field for field.
    let served = agent.json(&format!("/v1/containers/{}/diff", c.name));
    let cli: serde_json::Value = serde_json::from_slice(&rodiff(&["diff", &c.name, "--format", "json"]).stdout).unwrap();
    assert_eq!(served, cli);
    // By id and id prefix too.
    let id = entry["id"].as_str().unwrap();
    assert_eq!(agent.json(&format!("/v1/containers/{}/diff", &id[..12])), cli);

    // The profile has what the diff has, and the file that came and went.
    let profile = agent.json(&format!("/v1/containers/{id}/profile"));
    let transient: Vec<_> = profile.as_array().unwrap().iter().filter(|v| v["evidence"] == "transient").map(|v| String::from_utf8_lossy(&json_path(v)).into_owned()).collect();
    assert_eq!(transient, ["/var/cache/job/tmp"], "{profile}");
    for p in paths(&cli) {
        assert!(paths(&profile).contains(&p), "{p} is in the diff but not the profile");
    }

    // Drift: the program and the script, not the data.
    let entry = agent.container(&c.name, 1);
    assert_eq!(entry["drift"]["executables"], serde_json::json!(["/srv/run.sh", "/srv/tool"]), "{entry}");
    let (_, metrics) = agent.get("/metrics");
    let drift_line = metrics.lines().find(|l| l.starts_with("rodiff_drifted_executables{") && l.contains(&format!("container=\"{}\"", c.name)));
    assert!(drift_line.is_some_and(|l| l.ends_with(" 2")), "{metrics}");
    for name in ["rodiff_watched_containers{runtime=\"docker\"}", "rodiff_scans_total{runtime=\"docker\"}", "rodiff_scan_duration_seconds_count", "rodiff_written_paths{kind=\"added\"}", "rodiff_written_bytes", "rodiff_runtime_up{runtime=\"docker\"} 1"] {
        assert!(metrics.contains(name), "{name} missing:\n{metrics}");
    }
    assert!(!metrics.contains("/srv/"), "no label per file path");

    // The plan covers the profile, transient directory included.
    let (status, flags) = agent.get(&format!("/v1/containers/{}/plan?format=docker", c.name));
    assert_eq!(status, 200, "{flags}");
    assert!(flags.starts_with("--read-only") && flags.contains("/var/cache") && flags.contains("/srv"), "{flags}");

    // Errors: JSON with a status that means something.
    let (status, body) = agent.get("/v1/containers/no-such-container/diff");
    assert_eq!(status, 404, "{body}");
    assert_eq!(serde_json::from_str::<serde_json::Value>(&body).unwrap()["kind"], "container_not_found");
    let (status, body) = agent.get(&format!("/v1/containers/{}/plan?format=yaml", c.name));
    assert_eq!(status, 400, "{body}");
    assert_eq!(agent.get("/nope").0, 404);
}

#[test]
fn the_agent_follows_containerd_namespaces_and_removals() {
    if !ctrd::sandbox() {
        return;
    }
    let _serial = serial();
    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(state.path(), &["--runtimes", "containerd"]);
    let image = ctrd::import("default", BUSYBOX);
    let id = ctrd::unique_id("agent");
    let c = CtrContainer::run("default", &id, "overlayfs", &[], &image, &["sh", "-c", "echo x > /srv/x; sleep 3600"]);
    let entry = agent.container(&id, 1);
    assert_eq!((entry["runtime"].as_str(), entry["namespace"].as_str()), (Some("containerd"), Some("default")), "{entry}");
    let served = agent.json(&format!("/v1/containers/{id}/diff"));
    let cli: serde_json::Value = serde_json::from_slice(&c.rodiff_diff(&["--format", "json"]).stdout).unwrap();
    assert_eq!(served, cli);
    assert!(paths(&served).contains(&"/srv/x".to_string()));
    drop(c);
    // Removed (through an event or the next listing): kept, marked, and its profile still served.
    let started = Instant::now();
    loop {
        let v = agent.json("/v1/containers");
        let c = v["containers"].as_array().unwrap().iter().find(|c| c["id"] == id.as_str()).cloned().unwrap();
        if c["removed_at"].is_number() {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "never marked removed: {c}");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(paths(&agent.json(&format!("/v1/containers/{id}/profile"))).contains(&"/srv/x".to_string()));
}

#[test]
fn profiles_survive_a_restart_and_kill_9() {
    if !sandbox() {
        return;
    }
    let _serial = serial();
    let state = tempfile::tempdir().unwrap();
    let c = Container::run("agent-keep", &[], BUSYBOX, &["sh", "-c", "echo a > /srv/a; echo t > /srv/t; sleep 1.5; rm /srv/t; sleep 3600"]);
    let (profile, entry) = {
        let agent = Agent::start(state.path(), &["--runtimes", "docker"]);
        agent.container(&c.name, 1);
        std::thread::sleep(Duration::from_secs(2));
        let entry = agent.container(&c.name, 2);
        let profile = agent.json(&format!("/v1/containers/{}/profile", c.name));
        assert!(profile.as_array().unwrap().iter().any(|v| json_path(v) == b"/srv/t" && v["evidence"] == "transient"), "{profile}");
        // SIGKILL: no chance to flush anything.
        unsafe { libc::kill(agent.pid() as i32, libc::SIGKILL) };
        (profile, entry)
    };
    // Gone while the agent was down: the new agent cannot rescan it, only remember it.
    docker(&["rm", "-f", &c.name]);
    let agent = Agent::start(state.path(), &["--runtimes", "docker"]);
    let id = entry["id"].as_str().unwrap();
    assert_eq!(agent.json(&format!("/v1/containers/{id}/profile")), profile);
    let after = agent.container(id, 0);
    assert_eq!(after["first_seen"], entry["first_seen"]);
    assert!(after["diffs"].as_u64() >= entry["diffs"].as_u64(), "{after} {entry}");
    let started = Instant::now();
    while !agent.container(id, 0)["removed_at"].is_number() {
        assert!(started.elapsed() < Duration::from_secs(20), "the removal was not noticed");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn readyz_fails_while_containerd_restarts_then_recovers() {
    if !ctrd::sandbox() {
        return;
    }
    let _serial = serial();
    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(state.path(), &["--runtimes", "containerd"]);
    agent.wait_for("/readyz", |status, _| status == 200);
    let config = format!("{}/ctrd/config.toml", std::env::var("RODIFF_SANDBOX").unwrap());
    let pid = common::run(Command::new("pgrep").args(["-f", "-x", &format!("containerd --config {config}")]));
    let pid: i32 = pid.lines().next().expect("the sandbox's containerd").trim().parse().unwrap();
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let body = agent.wait_for("/readyz", |status, _| status == 503);
    assert!(body.contains("containerd"), "{body}");
    let log = std::fs::File::options().append(true).open(format!("{}/ctrd/containerd.log", std::env::var("RODIFF_SANDBOX").unwrap())).unwrap();
    // Left running for the sandbox to end (setsid: a daemon, as the first containerd was).
    #[allow(clippy::zombie_processes)]
    Command::new("setsid").args(["containerd", "--config", &config]).stdin(Stdio::null()).stdout(log.try_clone().unwrap()).stderr(log).spawn().expect("containerd");
    agent.wait_for("/readyz", |status, _| status == 200);
    let (_, metrics) = agent.get("/metrics");
    assert!(metrics.contains("rodiff_runtime_up{runtime=\"containerd\"} 1"), "{metrics}");
}

/// Open descriptors and resident memory (KiB) of a process.
fn usage(pid: u32) -> (usize, u64) {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let rss = status.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok()).unwrap();
    (fds, rss)
}

#[test]
fn fifty_short_lived_containers_leave_no_descriptors_or_memory_behind() {
    if !sandbox() {
        return;
    }
    let _serial = serial();
    let state = tempfile::tempdir().unwrap();
    let agent = Agent::start(state.path(), &["--runtimes", "docker", "--concurrency", "4"]);
    let churn = |round: &str, n: usize| {
        let names: Vec<Container> = (0..n)
            .map(|i| Container::run(&format!("churn-{round}-{i}"), &[], BUSYBOX, &["sh", "-c", "mkdir -p /var/lib/app; for i in 1 2 3 4 5; do echo $i > /var/lib/app/f$i; sleep 0.2; done; sleep 1"]))
            .collect();
        for c in &names {
            agent.container(&c.name, 1);
        }
        drop(names); // docker rm -f each
        agent.wait_for("/v1/containers", |_, body| {
            let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
            v["containers"].as_array().is_some_and(|all| all.iter().all(|c| c["removed_at"].is_number()))
        });
    };
    churn("warm", 5);
    let before = usage(agent.pid());
    let started = Instant::now();
    churn("main", 50);
    let took = started.elapsed();
    std::thread::sleep(Duration::from_secs(1));
    let after = usage(agent.pid());
    let v = agent.json("/v1/containers");
    let all = v["containers"].as_array().unwrap();
    assert_eq!(all.len(), 55);
    let (_, metrics) = agent.get("/metrics");
    let errors: Vec<&str> = metrics.lines().filter(|l| l.starts_with("rodiff_scan_errors_total{")).collect();
    // A container removed while it is scanned is not an error of the agent's; anything else is.
    assert!(errors.iter().all(|l| l.contains("reason=\"container_not_found\"") || l.contains("reason=\"layer_vanished\"")), "{errors:?}");
    assert!(all.iter().all(|c| c["diffs"].as_u64() >= Some(1)), "every container was scanned");
    eprintln!(
        "churn: 50 containers in {:.1} s; agent descriptors {} -> {}, RSS {} KiB -> {} KiB; scan errors {errors:?}",
        took.as_secs_f64(),
        before.0,
        after.0,
        before.1,
        after.1
    );
    assert!(after.0 <= before.0 + 2, "descriptors grew: {before:?} -> {after:?}");
    assert!(after.1 <= before.1 + 16 * 1024, "memory grew by more than 16 MiB: {before:?} -> {after:?}");
}
