//! Adversarial probes of the Podman support (review of the podman branch): edge cases of the
//! `podman diff` dialect, plans of Podman's own entries written by the application, and a plan's
//! flags given to the `podman run` CLI. Run in `RODIFF_PODMAN=1 scripts/sandbox.sh run --images
//! busybox,redis -- cargo test --test break_podman`.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::docker::{lossy, parse_docker_lines, BUSYBOX};

struct Podman {
    host: String,
}

impl Podman {
    fn get(rootless: bool) -> Option<Podman> {
        let var = if rootless { "RODIFF_PODMAN_ROOTLESS_HOST" } else { "RODIFF_PODMAN_HOST" };
        let host = std::env::var(var).ok().filter(|h| !h.is_empty());
        common::require(host.is_some(), &format!("a Podman service ({var})")).then(|| Podman { host: host.unwrap() })
    }

    fn podman(&self, args: &[&str]) -> String {
        common::run(Command::new("podman").arg("--url").arg(&self.host).args(args)).trim().to_string()
    }

    fn rodiff(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rodiff")).arg("-H").arg(&self.host).args(args).output().expect("run rodiff")
    }

    fn run(&self, prefix: &str, extra: &[&str], image: &str, cmd: &[&str]) -> Ctr<'_> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("rodiff-brk-{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(cmd);
        self.podman(&args);
        Ctr { podman: self, name }
    }

    /// Waits until `podman exec NAME test -e MARKER` succeeds.
    fn wait_for(&self, name: &str, marker: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new("podman").arg("--url").arg(&self.host).args(["exec", name, "test", "-e", marker]).status().unwrap().success() {
            assert!(Instant::now() < deadline, "{name}: {marker} never appeared");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn changes(&self, name: &str) -> BTreeSet<(char, String)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let socket = self.host.strip_prefix("unix://").expect("a unix socket");
            let version = bollard::ClientVersion { major_version: 1, minor_version: 41 };
            let client = bollard::Docker::connect_with_unix(socket, 120, &version).unwrap();
            let changes = client.container_changes(name).await.unwrap().unwrap_or_default();
            changes
                .into_iter()
                .map(|c| {
                    let kind = match c.kind as i64 {
                        0 => 'C',
                        1 => 'A',
                        2 => 'D',
                        k => panic!("unknown change kind {k}"),
                    };
                    (kind, c.path)
                })
                .collect()
        })
    }

    fn rodiff_changes(&self, name: &str) -> BTreeSet<(char, String)> {
        let out = self.rodiff(&["diff", name]);
        assert!(out.status.success(), "rodiff diff {name}: {}", String::from_utf8_lossy(&out.stderr));
        lossy(&parse_docker_lines(&out.stdout))
    }

    fn plan_json(&self, name: &str) -> serde_json::Value {
        let out = self.rodiff(&["plan", name, "--format", "json"]);
        assert!(out.status.success(), "rodiff plan {name}: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("plan JSON")
    }
}

struct Ctr<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for Ctr<'_> {
    fn drop(&mut self) {
        let _ = Command::new("podman").arg("--url").arg(&self.podman.host).args(["rm", "-f", "-v", "-t", "0", &self.name]).output();
    }
}

fn assert_same(podman: &Podman, name: &str) {
    let expected = podman.changes(name);
    let ours = podman.rodiff_changes(name);
    let only_ours: Vec<_> = ours.difference(&expected).collect();
    let only_podman: Vec<_> = expected.difference(&ours).collect();
    assert!(only_ours.is_empty() && only_podman.is_empty(), "{}: only rodiff: {only_ours:?}\nonly podman diff: {only_podman:?}", podman.host);
}

/// Shapes the corpus lacks: a lower directory replaced by a file, and by a symlink (no whiteout,
/// no opaque marker: `podman diff` says `C` of the new entry and nothing of what was below it);
/// chmod only; a directory's mode; a hard link; writes in /run; a name with a newline.
fn edge_shapes_match_podman_diff(rootless: bool) {
    let Some(podman) = Podman::get(rootless) else { return };
    let script = "rm -rf /srv/tree && echo file > /srv/tree \
        && rm -rf /srv/rendir && ln -s /tmp /srv/rendir \
        && chmod 600 /srv/data/a.txt && chmod 700 /srv/del \
        && ln /srv/data/b.txt /srv/hardlink \
        && mkdir -p /run/app && echo x > /run/app/pid && echo y > /run/flag \
        && touch \"/srv/new$(printf '\\nline')\" \
        && touch /done && sleep 3600";
    let c = podman.run("shapes", &[], BUSYBOX, &["sh", "-c", script]);
    podman.wait_for(&c.name, "/done");
    assert_same(&podman, &c.name);
}

#[test]
fn rootful_edge_shapes_match_podman_diff() {
    edge_shapes_match_podman_diff(false);
}

#[test]
fn rootless_edge_shapes_match_podman_diff() {
    edge_shapes_match_podman_diff(true);
}

/// Whether the plan (JSON) covers `path`: a mount at it or above it.
fn plan_covers(plan: &serde_json::Value, path: &str) -> bool {
    let text = plan.to_string();
    let mut p = std::path::Path::new(path);
    loop {
        if text.contains(&format!("\"{}\"", p.display())) && p != std::path::Path::new("/") {
            return true;
        }
        match p.parent() {
            Some(parent) => p = parent,
            None => return false,
        }
    }
}

/// Writes under /run (which Podman does not mount over: they land in the layer) are planned.
#[test]
fn writes_in_run_are_planned_under_podman() {
    let Some(podman) = Podman::get(false) else { return };
    let c = podman.run("run", &[], BUSYBOX, &["sh", "-c", "mkdir -p /run/app && echo 1 > /run/app/pid && touch /done && sleep 3600"]);
    podman.wait_for(&c.name, "/done");
    let plan = podman.plan_json(&c.name);
    assert!(plan_covers(&plan, "/run/app/pid"), "the plan leaves /run/app out: {plan:#}");
}

/// `--no-hosts`: Podman mounts nothing at /etc/hosts, so an application that writes it writes
/// the layer and fails under --read-only. The entry is not Podman's and must not be marked as a
/// mount point, and the plan must cover it.
#[test]
fn an_etc_hosts_the_application_writes_is_not_a_mount_point() {
    let Some(podman) = Podman::get(false) else { return };
    let c = podman.run("nohosts", &["--no-hosts"], BUSYBOX, &["sh", "-c", "echo '10.0.0.1 db' >> /etc/hosts && touch /done && sleep 3600"]);
    podman.wait_for(&c.name, "/done");
    let plan = podman.plan_json(&c.name);
    let out = podman.rodiff(&["diff", &c.name, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let json = common::docker::parse_json(&out.stdout);
    let hosts = json.iter().find(|v| common::docker::json_path(v) == b"/etc/hosts").expect("the application's /etc/hosts is in the layer");
    assert!(
        plan_covers(&plan, "/etc/hosts") && hosts["mountpoint"] != true,
        "the application's own /etc/hosts is taken for Podman's mount point ({hosts}) and the plan leaves it out: {plan:#}"
    );
}

/// The flags `rodiff plan` prints for Podman, given to the `podman run` CLI (as the README tells
/// an operator to do), start the workload read-only, and it answers.
#[test]
fn plan_flags_are_accepted_by_the_podman_cli() {
    for rootless in [false, true] {
        let Some(podman) = Podman::get(rootless) else { return };
        let c = podman.run("redisplan", &[], "rodiff-demo/redis:bookworm", &[]);
        let probe = "redis-cli -s /run/redis/redis-server.sock ping | grep -qx PONG";
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new("podman").arg("--url").arg(&podman.host).args(["exec", &c.name, "sh", "-c", probe]).status().unwrap().success() {
            assert!(Instant::now() < deadline, "redis did not answer");
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = podman.rodiff(&["plan", &c.name]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let flags = String::from_utf8_lossy(&out.stdout).trim().to_string();
        eprintln!("{}: plan: {flags}", podman.host);
        // Shell word splitting, as an operator pastes them.
        let name = format!("{}-ro", c.name);
        let cmd = format!("podman --url '{}' run -d --name '{name}' {flags} rodiff-demo/redis:bookworm", podman.host);
        let out = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
        let ro = Ctr { podman: &podman, name: name.clone() };
        assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new("podman").arg("--url").arg(&podman.host).args(["exec", &ro.name, "sh", "-c", probe]).status().unwrap().success() {
            let logs = Command::new("podman").arg("--url").arg(&podman.host).args(["logs", &ro.name]).output().unwrap();
            assert!(Instant::now() < deadline, "{cmd}: redis did not answer read-only: {}", String::from_utf8_lossy(&logs.stderr));
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

/// `$CONTAINER_HOST` edge cases: one that is garbage is a usage error naming it, not a silent
/// fallback; `-H` wins over both variables; `$DOCKER_HOST` wins over `$CONTAINER_HOST`.
#[test]
fn container_host_precedence_and_garbage() {
    let bin = env!("CARGO_BIN_EXE_rodiff");
    let run = |args: &[&str], docker: Option<&str>, container: Option<&str>| {
        let mut cmd = Command::new(bin);
        cmd.args(args).env_remove("DOCKER_HOST").env_remove("CONTAINER_HOST");
        if let Some(d) = docker {
            cmd.env("DOCKER_HOST", d);
        }
        if let Some(c) = container {
            cmd.env("CONTAINER_HOST", c);
        }
        cmd.output().unwrap()
    };
    let out = run(&["diff", "x"], None, Some("garbage-not-a-uri"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "garbage $CONTAINER_HOST: {err}");
    let out = run(&["diff", "x"], Some("unix:///nonexistent/d.sock"), Some("ssh://a@b/c"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "DOCKER_HOST should win: {err}");
    assert!(err.contains("/nonexistent/d.sock"), "{err}");
    let out = run(&["-H", "unix:///nonexistent/h.sock", "diff", "x"], Some("unix:///nonexistent/d.sock"), Some("unix:///nonexistent/c.sock"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/h.sock"), "-H should win: {err}");
    // An empty $DOCKER_HOST is unset (as docker's CLI has it): $CONTAINER_HOST is then used.
    let out = run(&["diff", "x"], Some(""), Some("unix:///nonexistent/c.sock"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/c.sock"), "empty DOCKER_HOST: {err}");
}

fn redis<'a>(podman: &'a Podman, prefix: &str) -> Ctr<'a> {
    let c = podman.run(prefix, &[], "rodiff-demo/redis:bookworm", &[]);
    let probe = "redis-cli -s /run/redis/redis-server.sock ping | grep -qx PONG";
    let deadline = Instant::now() + Duration::from_secs(30);
    while !Command::new("podman").arg("--url").arg(&podman.host).args(["exec", &c.name, "sh", "-c", probe]).status().unwrap().success() {
        assert!(Instant::now() < deadline, "redis did not answer");
        std::thread::sleep(Duration::from_millis(200));
    }
    c
}

/// A plan saved as JSON without `"runtime"` (one made before Podman support, by hand, or of the
/// same workload under Docker) given to `verify --plan` for a Podman container: verify talks to
/// Podman, so it must give Podman the options Podman takes (U, not uid=/gid=), not fail on them.
#[test]
fn a_plan_without_runtime_verifies_on_podman() {
    let Some(podman) = Podman::get(false) else { return };
    let c = redis(&podman, "docplan");
    let mut plan = podman.plan_json(&c.name);
    let plan = plan.as_array_mut().map(|a| a.remove(0)).unwrap_or(plan);
    let mut plan = plan;
    plan.as_object_mut().unwrap().remove("runtime");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plan.json");
    std::fs::write(&file, plan.to_string()).unwrap();
    let probe = "redis-cli -s /run/redis/redis-server.sock ping | grep -qx PONG";
    let out = podman.rodiff(&["verify", &c.name, "--plan", file.to_str().unwrap(), "--probe", probe, "--wait", "2"]);
    let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "a runtime-less plan on Podman:\n{report}\nplan: {plan}");
}

/// `rodiff verify` against the rootless service interrupted (SIGINT) while its copies run: the
/// copies and their volumes are removed.
#[test]
fn an_interrupted_verify_leaves_nothing_on_rootless_podman() {
    let Some(podman) = Podman::get(true) else { return };
    let c = redis(&podman, "sigint");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rodiff"))
        .arg("-H")
        .arg(&podman.host)
        .args(["verify", &c.name, "--probe", "true", "--wait", "60"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mine = || podman.podman(&["ps", "-a", "--filter", "label=rodiff.verify", "--format", "{{.Names}}"]);
    let deadline = Instant::now() + Duration::from_secs(60);
    while mine().lines().count() < 2 {
        assert!(Instant::now() < deadline, "verify made no containers");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(1));
    rustix::process::kill_process(rustix::process::Pid::from_raw(child.id() as i32).unwrap(), rustix::process::Signal::INT).unwrap();
    let status = child.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    let left = mine();
    let volumes = podman.podman(&["volume", "ls", "--format", "{{.Name}}"]);
    let volumes: Vec<&str> = volumes.lines().filter(|v| v.starts_with("rodiff-verify")).collect();
    for v in &volumes {
        let _ = Command::new("podman").arg("--url").arg(&podman.host).args(["volume", "rm", "-f", v]).output();
    }
    for n in left.lines() {
        let _ = Command::new("podman").arg("--url").arg(&podman.host).args(["rm", "-f", "-v", "-t", "0", n]).output();
    }
    assert!(left.is_empty() && volumes.is_empty(), "after SIGINT ({status}, {err}): containers {left:?}, volumes {volumes:?}");
}

/// A rootful container with its own user namespace (`--uidmap`/`--gidmap`): containers/storage
/// gives it layers owned by the mapped ids. rodiff's docker format must still equal podman diff,
/// and the plan's tmpfs owner is the container's root (0), not the host id it maps to.
#[test]
fn a_uidmapped_container_matches_podman_diff_and_plans_container_ids() {
    let Some(podman) = Podman::get(false) else { return };
    let script = "echo changed > /srv/data/a.txt && chmod 600 /srv/data/b.txt && mkdir -p /run/app && echo 1 > /run/app/pid \
        && mkdir /var/cache && chown 65534:65534 /var/cache && touch /var/cache/x && touch /done && sleep 3600";
    let c = podman.run("uidmap", &["--uidmap", "0:200000:65536", "--gidmap", "0:200000:65536"], BUSYBOX, &["sh", "-c", script]);
    podman.wait_for(&c.name, "/done");
    assert_same(&podman, &c.name);
    let plan = podman.plan_json(&c.name);
    let plan = plan.as_array().map(|a| a[0].clone()).unwrap_or(plan);
    let mount = |p: &str| plan["mounts"].as_array().unwrap().iter().find(|m| m["path"] == p).cloned();
    let run = mount("/run/app").or_else(|| mount("/run")).unwrap_or_else(|| panic!("no mount for /run/app: {plan:#}"));
    assert_eq!(run["uid"].as_u64().unwrap_or(0), 0, "the host's id for the container's root: {run}");
    if let Some(cache) = mount("/var/cache") {
        assert_eq!(cache["uid"].as_u64().unwrap_or(0), 65534, "{cache}");
    }
}

/// Names a line cannot carry (a newline, a byte that is not UTF-8), next to podman diff (lossy).
#[test]
fn odd_names_match_podman_diff() {
    for rootless in [false, true] {
        let Some(podman) = Podman::get(rootless) else { return };
        let script = "touch \"/srv/$(printf 'nl\\nname')\" \"/srv/$(printf 'bad\\377byte')\" \"/srv/$(printf 'tab\\tname')\" '/srv/back\\slash' \
            && mkdir \"/srv/$(printf 'dir\\377')\" && touch \"/srv/$(printf 'dir\\377')/in\" && touch /done && sleep 3600";
        let c = podman.run("odd", &[], BUSYBOX, &["sh", "-c", script]);
        podman.wait_for(&c.name, "/done");
        assert_same(&podman, &c.name);
    }
}

/// `podman rm -f` while rodiff walks a big layer: rodiff either gives the whole diff or fails —
/// never exit 0 with fewer entries.
#[test]
fn removal_mid_scan_is_an_error_not_a_shorter_diff() {
    let Some(podman) = Podman::get(false) else { return };
    for (attempt, delay_ms) in [20u64, 60, 150].into_iter().enumerate() {
        let script = "mkdir -p /srv/many && cd /srv/many && i=0; while [ $i -lt 20000 ]; do : > f$i; i=$((i+1)); done; touch /done; sleep 3600";
        let c = podman.run(&format!("rmscan{attempt}"), &[], BUSYBOX, &["sh", "-c", script]);
        let deadline = Instant::now() + Duration::from_secs(120);
        while !Command::new("podman").arg("--url").arg(&podman.host).args(["exec", &c.name, "test", "-e", "/done"]).status().unwrap().success() {
            assert!(Instant::now() < deadline, "the container did not finish writing");
            std::thread::sleep(Duration::from_millis(300));
        }
        let full = podman.rodiff(&["diff", &c.name]);
        assert!(full.status.success());
        let full_lines = full.stdout.iter().filter(|&&b| b == b'\n').count();
        let child = Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .arg("-H")
            .arg(&podman.host)
            .args(["diff", &c.name])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = Command::new("podman").arg("--url").arg(&podman.host).args(["rm", "-f", "-t", "0", &c.name]).output();
        let out = child.wait_with_output().unwrap();
        let lines = out.stdout.iter().filter(|&&b| b == b'\n').count();
        assert!(
            !out.status.success() || lines == full_lines,
            "attempt {attempt}: exit 0 with {lines} of {full_lines} lines after podman rm: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("attempt {attempt} ({delay_ms} ms): {:?}, {lines}/{full_lines}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr).trim());
    }
}

/// The rootless service stores the container's ids shifted (its root is the service's user, its
/// uid 100 a subordinate id): a plan's JSON (and compose/k8s renderings) must speak the
/// container's ids, as for the rootful service (redis: 100:101), not the host's.
#[test]
fn a_rootless_plan_speaks_the_containers_ids() {
    let Some(podman) = Podman::get(true) else { return };
    let c = redis(&podman, "rlids");
    let plan = podman.plan_json(&c.name);
    let plan = plan.as_array().map(|a| a[0].clone()).unwrap_or(plan);
    let m = plan["mounts"].as_array().unwrap().iter().find(|m| m["path"] == "/run/redis").cloned().unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!((m["uid"].as_u64(), m["gid"].as_u64()), (Some(100), Some(101)), "{m}");
    let out = podman.rodiff(&["plan", &c.name, "--format", "compose"]);
    let compose = String::from_utf8_lossy(&out.stdout);
    assert!(!compose.contains("uid=10000") && !compose.contains("uid=99"), "{compose}");
}

/// containers/storage's overlay diff records a directory as `C` when an entry is added to it or
/// deleted from it even if the directory's size, mode and time equal the image's (its "parent of
/// an added or deleted entry" rule, moby PR 13590): an application that restores a directory's
/// time after writing in it (tar -x, cp -a, rsync -a do) still changed it.
#[test]
fn a_directory_whose_time_was_restored_matches_podman_diff() {
    for rootless in [false, true] {
        let Some(podman) = Podman::get(rootless) else { return };
        let script = "m=$(stat -c %Y /srv/data); echo x > /srv/data/new; touch -d @$m /srv/data; \
            m=$(stat -c %Y /srv/del); rm /srv/del/1; touch -d @$m /srv/del; touch /done; sleep 3600";
        let c = podman.run("mtime", &[], BUSYBOX, &["sh", "-c", script]);
        podman.wait_for(&c.name, "/done");
        assert_same(&podman, &c.name);
    }
}
