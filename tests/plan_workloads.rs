//! Read-only plans for real workloads, built from Debian packages in the sandbox (`scripts/
//! sandbox.sh run --images busybox,postgres,nginx,redis`): each service runs normally and is
//! exercised with its own client through `docker exec`; then `rodiff plan` must give flags with
//! which (a) the image, run read-only by hand with exactly those flags, passes the same exercise,
//! and (b) `rodiff verify` passes. A plan with a mount removed must fail verification and name the
//! path.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::docker::*;
use common::require;

/// A service to run, exercise and plan.
struct Workload {
    /// Short name, for container names.
    key: &'static str,
    image: &'static str,
    /// Succeeds (through `docker exec … sh -c`) once the service answers.
    ready: &'static str,
    /// Uses the service with its own client, making it write; must succeed.
    exercise: &'static str,
    /// Like `exercise`, and passes again on the same data (`rodiff verify` probes before the
    /// graceful stop and after the restart).
    again: &'static str,
    /// Mounts the plan must have, as (path, kind).
    mounts: &'static [(&'static str, &'static str)],
    /// Seconds `rodiff verify` waits before its probe.
    wait: &'static str,
}

const POSTGRES: Workload = Workload {
    key: "pg",
    image: "rodiff-demo/postgres:15",
    ready: "pg_isready -q",
    exercise: r#"psql -v ON_ERROR_STOP=1 -q -c "CREATE TABLE visits (id serial PRIMARY KEY, at timestamptz DEFAULT now());
        INSERT INTO visits DEFAULT VALUES; INSERT INTO visits DEFAULT VALUES;" &&
        test "$(psql -tA -c 'SELECT count(*) FROM visits')" = 2"#,
    // Two rows before the stop; four after the restart (the table kept) — or two, had the restart
    // lost it, which the probe cannot tell from a first run.
    again: r#"psql -v ON_ERROR_STOP=1 -q -c "CREATE TABLE IF NOT EXISTS visits (id serial PRIMARY KEY, at timestamptz DEFAULT now());
        INSERT INTO visits DEFAULT VALUES; INSERT INTO visits DEFAULT VALUES;" &&
        n=$(psql -tA -c 'SELECT count(*) FROM visits') && { [ "$n" = 2 ] || [ "$n" = 4 ]; }"#,
    mounts: &[("/run/postgresql", "tmpfs"), ("/var/lib/postgresql", "volume")],
    wait: "8",
};

const NGINX_EXERCISE: &str = r#"curl -fsS http://127.0.0.1/ | grep -q "Welcome to nginx" &&
        test "$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1/missing)" = 404 &&
        grep -q 'GET /missing' /var/log/nginx/access.log"#;

const NGINX: Workload = Workload {
    key: "nginx",
    image: "rodiff-demo/nginx:bookworm",
    ready: "curl -fsS -o /dev/null http://127.0.0.1/",
    exercise: NGINX_EXERCISE,
    again: NGINX_EXERCISE,
    // The image ships /run/lock and the (empty) log files: volumes, which Docker fills from the
    // image, where a tmpfs would hide them.
    mounts: &[("/run", "volume"), ("/var/lib/nginx", "volume"), ("/var/log/nginx", "volume")],
    wait: "3",
};

const REDIS_EXERCISE: &str = r#"r() { redis-cli -s /run/redis/redis-server.sock "$@"; }
        r SET greeting hello | grep -q OK && r SAVE | grep -q OK && test "$(r GET greeting)" = hello &&
        test -s /var/lib/redis/dump.rdb && grep -q 'DB saved on disk' /var/log/redis/redis-server.log"#;

/// redis writes where few look: its pid file and socket in /run/redis, its log in /var/log/redis
/// (redis:adm 2750: a root-owned tmpfs would lock it out), its snapshots in /var/lib/redis.
const REDIS: Workload = Workload {
    key: "redis",
    image: "rodiff-demo/redis:bookworm",
    ready: "redis-cli -s /run/redis/redis-server.sock ping | grep -q PONG",
    exercise: REDIS_EXERCISE,
    again: REDIS_EXERCISE,
    mounts: &[("/run/redis", "tmpfs"), ("/var/lib/redis", "volume"), ("/var/log/redis", "tmpfs")],
    wait: "3",
};

/// Mounts a plan may have beyond the expected ones: a database may make (and remove) a temp file
/// in /tmp at start-up, or not.
const OPTIONAL: &[(&str, &str)] = &[("/tmp", "tmpfs")];

fn image_available(image: &str) -> bool {
    let present = Command::new("docker").args(["image", "inspect", image]).output().is_ok_and(|o| o.status.success());
    require(present, &format!("image {image} (make test builds it: sandbox.sh --images …)"))
}

/// Runs `check` in the container until it succeeds; panics with the log if it does not within
/// two minutes or the container stops.
fn wait_until(c: &Container, check: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let ok = Command::new("docker").args(["exec", &c.name, "sh", "-c", check]).output().is_ok_and(|o| o.status.success());
        if ok {
            return;
        }
        let running = docker(&["inspect", "-f", "{{.State.Running}}", &c.name]) == "true";
        if !running || Instant::now() > deadline {
            let logs = Command::new("docker").args(["logs", &c.name]).output().unwrap();
            panic!(
                "{} never passed `{check}` (running: {running}); log:\n{}{}",
                c.name,
                String::from_utf8_lossy(&logs.stdout),
                String::from_utf8_lossy(&logs.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Named volumes, removed on drop.
struct Volumes(Vec<String>);

impl Drop for Volumes {
    fn drop(&mut self) {
        for v in &self.0 {
            let _ = Command::new("docker").args(["volume", "rm", "-f", v]).output();
        }
    }
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\n{}{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The plan's mounts as (path, kind).
fn mounts_of(plan: &serde_json::Value) -> BTreeSet<(String, String)> {
    plan["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["path"].as_str().unwrap().to_string(), m["kind"].as_str().unwrap().to_string()))
        .collect()
}

/// What verification made for `original` and left behind (nothing, if it cleaned up).
fn leftovers(original: &str) -> String {
    let id = docker(&["inspect", "-f", "{{.Id}}", original]);
    let filter = format!("label=rodiff.verify={id}");
    docker(&["ps", "-aq", "--filter", &filter]) + &docker(&["volume", "ls", "-q", "--filter", &filter])
}

/// Runs the workload, exercises it and returns it with its plan (JSON) and docker flags.
fn run_and_plan(w: &Workload) -> (Container, serde_json::Value, String) {
    let original = Container::run(w.key, &[], w.image, &[]);
    wait_until(&original, w.ready);
    original.sh(w.exercise);

    let plan: serde_json::Value = serde_json::from_str(&ok(&rodiff(&["plan", &original.name, "--format", "json"]), "rodiff plan --format json")).unwrap();
    let flags = ok(&rodiff(&["plan", &original.name]), "rodiff plan").trim_end().to_string();
    eprintln!("{}: rodiff plan: {flags}", w.key);

    let got = mounts_of(&plan);
    let want: BTreeSet<(String, String)> = w.mounts.iter().map(|(p, k)| (p.to_string(), k.to_string())).collect();
    let optional: BTreeSet<(String, String)> = OPTIONAL.iter().map(|(p, k)| (p.to_string(), k.to_string())).collect();
    assert!(want.is_subset(&got), "{}: plan {got:?} lacks some of {want:?}\n{plan:#}", w.key);
    assert!(got.difference(&want).all(|m| optional.contains(m)), "{}: unexpected mounts in {got:?}\n{plan:#}", w.key);
    assert!(plan["uncovered"].as_array().unwrap().is_empty(), "{plan:#}");
    assert!(flags.starts_with("--read-only "), "{flags}");

    // Every tmpfs keeps the owner and mode the directory has in the image.
    for m in plan["mounts"].as_array().unwrap().iter().filter(|m| m["kind"] == "tmpfs") {
        let path = m["path"].as_str().unwrap();
        let image_side = Container::run(&format!("{}-stat", w.key), &["--entrypoint", "stat"], w.image, &["-c", "%u %g %a", path]);
        docker(&["wait", &image_side.name]);
        let (uid, gid, mode) = (&m["uid"], &m["gid"], m["mode"].as_u64().unwrap());
        assert_eq!(docker(&["logs", &image_side.name]), format!("{uid} {gid} {mode:o}"), "{path}: owner and mode in the image");
        let opts = format!("{path}:uid={uid},gid={gid},mode={mode:o}");
        assert!(flags.contains(&format!("--tmpfs {opts}")), "{flags} lacks {opts}");
    }
    (original, plan, flags)
}

/// (a): the image, run read-only by hand with exactly the plan's flags, passes the exercise.
fn run_with_flags(w: &Workload, original: &Container, plan: &serde_json::Value, flags: &str) {
    let volumes = Volumes(
        plan["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["kind"] == "volume")
            .map(|m| format!("{}-{}", original.name, m["name"].as_str().unwrap()))
            .collect(),
    );
    let ro = Container { name: format!("{}-ro", original.name) };
    let script = format!("docker run -d --network none --name {} {flags} {}", ro.name, w.image);
    ok(&Command::new("sh").args(["-c", &script]).output().unwrap(), &script);
    assert_eq!(docker(&["inspect", "-f", "{{.HostConfig.ReadonlyRootfs}}", &ro.name]), "true");
    wait_until(&ro, w.ready);
    ro.sh(w.exercise);
    let logs = Command::new("docker").args(["logs", &ro.name]).output().unwrap();
    let log = String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr);
    assert!(!log.contains("Read-only file system"), "{}: read-only errors with the plan's flags:\n{log}", w.key);
    assert_eq!(docker(&["inspect", "-f", "{{.State.Running}}", &ro.name]), "true");
    drop(ro);
    drop(volumes);
}

/// (b): `rodiff verify` passes, with the exercise as its probe — through a graceful stop and a
/// restart of the read-only copy, and a shadow run that writes nothing outside the plan's mounts —
/// and leaves nothing behind.
/// `rodiff verify`'s probe: waits up to a minute for the service to answer (a slow start — a
/// loaded machine, a new database cluster — is not what is being verified), then `again`.
fn verify_probe(w: &Workload) -> String {
    format!("i=0; until {}; do i=$((i+1)); [ $i -lt 240 ] || exit 1; sleep 0.25; done; {}", w.ready, w.again)
}

fn verify_passes(w: &Workload, original: &Container) {
    let probe = verify_probe(w);
    let started = Instant::now();
    let out = rodiff(&["verify", &original.name, "--probe", &probe, "--wait", w.wait]);
    let text = ok(&out, "rodiff verify");
    eprintln!("{}: rodiff verify on {}: {:.1} s", w.key, storage_driver(), started.elapsed().as_secs_f64());
    assert!(text.contains("verified:"), "{text}");
    // Both copies stop on their stop signal, with 0, well before the stop timeout.
    for copy in ["graceful stop: stopped in ", "shadow run (writable root): ran, stopped in "] {
        let line = text.lines().find(|l| l.starts_with(copy)).unwrap_or_else(|| panic!("{}: no line {copy:?}:\n{text}", w.key));
        assert!(line.ends_with(", exit code 0"), "{}: not stopped cleanly: {line}\n{text}", w.key);
    }
    assert!(text.contains("restart (same volumes): running again"), "{text}");
    assert_eq!(text.matches("probe `").count(), 2, "the probe runs before the stop and after the restart:\n{text}");
    assert_eq!(leftovers(&original.name), "", "verification left containers or volumes behind");
}

/// (c): `rodiff verify --fix` converges: its final plan holds, has the mounts the workload needs,
/// and the rounds it took are printed (`verify --fix rounds: KEY on DRIVER: N`).
fn verify_fix_converges(w: &Workload, original: &Container) {
    let probe = verify_probe(w);
    let started = Instant::now();
    let out = rodiff(&["verify", &original.name, "--fix", "--format", "json", "--probe", &probe, "--wait", w.wait]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let plan = ok(&out, "rodiff verify --fix");
    let verdict = stderr.lines().find(|l| l.contains("the plan holds after")).unwrap_or_else(|| panic!("no verdict:\n{stderr}"));
    let rounds: usize = verdict.split("after ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    eprintln!("verify --fix rounds: {} on {}: {rounds} ({:.1} s)", w.key, storage_driver(), started.elapsed().as_secs_f64());
    let plan: serde_json::Value = serde_json::from_str(&plan).unwrap();
    let got = mounts_of(&plan);
    let want: BTreeSet<(String, String)> = w.mounts.iter().map(|(p, k)| (p.to_string(), k.to_string())).collect();
    assert!(want.is_subset(&got), "{}: fixed plan {got:?} lacks some of {want:?}\n{stderr}", w.key);
    // Every round but the last added something, and said what and why.
    assert!(stderr.matches(": + ").count() >= rounds, "{stderr}");
    assert_eq!(leftovers(&original.name), "", "verification left containers or volumes behind");
}

fn workload(w: &Workload) {
    if !sandbox() || !image_available(w.image) {
        return;
    }
    let (original, plan, flags) = run_and_plan(w);
    run_with_flags(w, &original, &plan, &flags);
    verify_passes(w, &original);
    verify_fix_converges(w, &original);
}

#[test]
fn postgres_runs_read_only_with_its_plan() {
    workload(&POSTGRES);
}

#[test]
fn nginx_runs_read_only_with_its_plan() {
    workload(&NGINX);
    if !sandbox() || !image_available(NGINX.image) {
        return;
    }
    // /run ships /run/lock: Kubernetes gets an emptyDir seeded by an init container.
    let c = Container::run("nginx-k8s", &[], NGINX.image, &[]);
    wait_until(&c, NGINX.ready);
    let k8s = ok(&rodiff(&["plan", &c.name, "--format", "k8s"]), "rodiff plan --format k8s");
    for needle in ["readOnlyRootFilesystem: true", "initContainers:", "cp -a /run/. /rodiff-seed/run/", "medium: Memory", "image: \"rodiff-demo/nginx:bookworm\""] {
        assert!(k8s.contains(needle), "k8s patch lacks {needle}:\n{k8s}");
    }
    let compose = ok(&rodiff(&["plan", &c.name, "--format", "compose"]), "rodiff plan --format compose");
    assert!(compose.contains("read_only: true") && compose.contains(":/var/lib/nginx\""), "{compose}");
}

#[test]
fn redis_runs_read_only_with_its_plan() {
    workload(&REDIS);
}

#[test]
fn a_plan_with_a_mount_removed_fails_verification_naming_the_path() {
    if !sandbox() || !image_available(POSTGRES.image) {
        return;
    }
    let original = Container::run("pg-neg", &[], POSTGRES.image, &[]);
    wait_until(&original, POSTGRES.ready);
    original.sh(POSTGRES.exercise);
    let out = rodiff(&["plan", &original.name, "--format", "json"]);
    let mut plan: serde_json::Value = serde_json::from_str(&ok(&out, "rodiff plan")).unwrap();
    let mounts = plan["mounts"].as_array_mut().unwrap();
    let before = mounts.len();
    mounts.retain(|m| m["path"] != "/var/lib/postgresql");
    assert_eq!(mounts.len(), before - 1, "the plan has /var/lib/postgresql: {plan:#}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), plan.to_string()).unwrap();

    let out = rodiff(&["verify", &original.name, "--plan", file.path().to_str().unwrap(), "--probe", POSTGRES.ready, "--wait", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // pg-start's `mkdir -p /var/lib/postgresql/data` is refused.
    assert!(stdout.contains("writes refused by the read-only root filesystem:\n  /var/lib/postgresql/data (during the run)\n"), "{stdout}");
    assert!(stdout.contains("Read-only file system"), "{stdout}");
    let line = stderr.lines().find(|l| l.starts_with("rodiff:")).expect("an error line");
    assert!(line.contains(&original.name) && line.contains("/var/lib/postgresql/data"), "{line}");
    assert_eq!(leftovers(&original.name), "", "verification left containers or volumes behind");
}

/// The issue's case on a real service: redis saves its data set when it stops (the image's
/// `save` points), and logs a failed save only to its own log file, on a tmpfs. A plan without
/// its data volume passes the run (nothing is written to /var/lib/redis while it runs) — the
/// shadow run sees `dump.rdb` appear at stop, and verification fails naming it.
#[test]
fn a_redis_plan_that_loses_the_data_set_at_stop_fails_verification() {
    if !sandbox() || !image_available(REDIS.image) {
        return;
    }
    let original = Container::run("redis-neg", &[], REDIS.image, &[]);
    wait_until(&original, REDIS.ready);
    original.sh(REDIS.exercise);
    let out = rodiff(&["plan", &original.name, "--format", "json"]);
    let mut plan: serde_json::Value = serde_json::from_str(&ok(&out, "rodiff plan")).unwrap();
    let mounts = plan["mounts"].as_array_mut().unwrap();
    let before = mounts.len();
    mounts.retain(|m| m["path"] != "/var/lib/redis");
    assert_eq!(mounts.len(), before - 1, "the plan has /var/lib/redis: {plan:#}");
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), plan.to_string()).unwrap();

    // The probe writes a key, and saves nothing itself.
    let probe = format!("{} && redis-cli -s /run/redis/redis-server.sock SET greeting hello | grep -q OK", REDIS.ready);
    let started = Instant::now();
    let out = rodiff(&["verify", &original.name, "--plan", file.path().to_str().unwrap(), "--probe", &probe, "--wait", "3", "--stop-timeout", "5"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("redis without its data volume on {}: {:.1} s; read-only copy: {}", storage_driver(), started.elapsed().as_secs_f64(),
        stdout.lines().find(|l| l.starts_with("graceful stop:")).unwrap_or("(no stop)"));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    // The run alone is fine: running, probe passed, nothing refused in the container's log.
    assert!(stdout.contains("read-only run: after 3.0 s: running"), "{stdout}");
    assert!(!stdout.contains("(dir, during the run)") && !stdout.contains("(file, during the run)"), "{stdout}");
    // The shadow run names the data set written at stop.
    assert!(stdout.lines().any(|l| l == "  A /var/lib/redis/dump.rdb (file, at stop)"), "{stdout}");
    // And the read-only copy did not stop as the shadow did: redis will not exit without its save
    // (killed after the stop timeout).
    let stop_problem = stdout.lines().find(|l| l.starts_with("failed: the read-only container exited with code ")).unwrap_or_else(|| panic!("{stdout}"));
    assert!(stop_problem.ends_with(" at stop (the writable shadow copy: code 0)"), "{stop_problem}");
    let line = stderr.lines().find(|l| l.starts_with("rodiff:")).expect("an error line");
    assert!(line.contains(&original.name) && line.contains("/var/lib/redis/dump.rdb (at stop)"), "{line}");
    assert_eq!(leftovers(&original.name), "", "verification left containers or volumes behind");
}

/// The issue's case from the start: a redis that was only written to (no SAVE) when it was
/// planned. `rodiff plan` cannot see /var/lib/redis (nothing was written there yet); `verify
/// --fix` finds `dump.rdb` written at stop and adds the volume `plan` would have given it, in one
/// round (`verify --fix rounds: redis-unsaved on DRIVER: 1`).
#[test]
fn verify_fix_gives_an_unsaved_redis_its_data_volume() {
    if !sandbox() || !image_available(REDIS.image) {
        return;
    }
    let original = Container::run("redis-unsaved", &[], REDIS.image, &[]);
    wait_until(&original, REDIS.ready);
    original.sh("redis-cli -s /run/redis/redis-server.sock SET greeting hello | grep -q OK");
    let plan: serde_json::Value = serde_json::from_str(&ok(&rodiff(&["plan", &original.name, "--format", "json"]), "rodiff plan")).unwrap();
    let before = mounts_of(&plan);
    assert!(!before.iter().any(|(p, _)| p == "/var/lib/redis"), "nothing was saved yet, yet the plan has /var/lib/redis: {plan:#}");

    let probe = format!("{} && redis-cli -s /run/redis/redis-server.sock SET greeting hello | grep -q OK", REDIS.ready);
    let started = Instant::now();
    let out = rodiff(&["verify", &original.name, "--fix", "--format", "json", "--probe", &probe, "--wait", "3", "--stop-timeout", "5"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let fixed = ok(&out, "rodiff verify --fix");
    let verdict = stderr.lines().find(|l| l.contains("the plan holds after")).unwrap_or_else(|| panic!("no verdict:\n{stderr}"));
    let rounds: usize = verdict.split("after ").nth(1).and_then(|r| r.split(' ').next()).and_then(|n| n.parse().ok()).unwrap();
    eprintln!("verify --fix rounds: redis-unsaved on {}: {rounds} ({:.1} s)", storage_driver(), started.elapsed().as_secs_f64());
    assert_eq!(rounds, 1, "{stderr}");
    assert!(stderr.contains("  A /var/lib/redis/dump.rdb (file, at stop)"), "{stderr}");
    let added = stderr.lines().find(|l| l.contains("round 1: + volume /var/lib/redis ")).unwrap_or_else(|| panic!("no volume added:\n{stderr}"));
    assert!(added.contains("(/var/lib/*: a service's data"), "the rule and reason `plan` gives: {added}");
    let fixed: serde_json::Value = serde_json::from_str(&fixed).unwrap();
    let mut want = before.clone();
    want.insert(("/var/lib/redis".into(), "volume".into()));
    assert_eq!(mounts_of(&fixed), want, "{fixed:#}");
    assert_eq!(leftovers(&original.name), "", "verification left containers or volumes behind");
}
