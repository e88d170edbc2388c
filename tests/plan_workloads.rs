//! Read-only plans for real workloads, built from Debian packages in the sandbox (`scripts/
//! sandbox.sh run --images busybox,postgres,nginx,redis,mosquitto`): each service runs normally
//! and is exercised with its own client through `docker exec`; then `rodiff plan` must give flags
//! with which (a) the image, run read-only by hand with exactly those flags, passes the same
//! exercise, and (b) `rodiff verify` passes. A plan with a mount removed must fail verification and
//! name the path. A broker that saves its state only when it stops (mosquitto) keeps it with a
//! plan made while it ran (ownership evidence), also with the Kubernetes patch's init container on
//! volumes that start empty and root-owned; the patch passes `kubernetes-validate --strict` when
//! `make deploy-venv` has made it available.

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
    // /var/log/postgresql (root:postgres 1775): ownership evidence, although it logs to stderr.
    mounts: &[("/run/postgresql", "tmpfs"), ("/var/lib/postgresql", "volume"), ("/var/log/postgresql", "tmpfs")],
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

const MOSQUITTO_EXERCISE: &str = r#"mosquitto_pub -h 127.0.0.1 -q 1 -r -t rodiff/greeting -m hello &&
        test "$(mosquitto_sub -h 127.0.0.1 -t rodiff/greeting -C 1 -W 10)" = hello"#;

/// Debian's MQTT broker, started as root (it drops to user mosquitto). Its package gives
/// /var/lib/mosquitto to mosquitto, and with Debian's `persistence true` the broker saves its
/// state there (mosquitto.db) only when it stops: a diff of the running container cannot show
/// it; ownership evidence covers it. Its log is in /var/log/mosquitto, its pid file in
/// /run/mosquitto.
const MOSQUITTO: Workload = Workload {
    key: "mqtt",
    image: "rodiff-demo/mosquitto:bookworm",
    ready: "mosquitto_pub -h 127.0.0.1 -t rodiff/ready -m x",
    exercise: MOSQUITTO_EXERCISE,
    again: MOSQUITTO_EXERCISE,
    mounts: &[("/run/mosquitto", "tmpfs"), ("/var/lib/mosquitto", "volume"), ("/var/log/mosquitto", "tmpfs")],
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
/// planned. From observed writes only (`--observed-only`: ownership evidence would cover it
/// anyway), `rodiff plan` cannot see /var/lib/redis (nothing was written there yet); `verify
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
    let plan: serde_json::Value = serde_json::from_str(&ok(&rodiff(&["plan", &original.name, "--format", "json", "--observed-only"]), "rodiff plan")).unwrap();
    let before = mounts_of(&plan);
    assert!(!before.iter().any(|(p, _)| p == "/var/lib/redis"), "nothing was saved yet, yet the plan has /var/lib/redis: {plan:#}");

    let probe = format!("{} && redis-cli -s /run/redis/redis-server.sock SET greeting hello | grep -q OK", REDIS.ready);
    let started = Instant::now();
    let out = rodiff(&["verify", &original.name, "--fix", "--observed-only", "--format", "json", "--probe", &probe, "--wait", "3", "--stop-timeout", "5"]);
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

#[test]
fn mosquitto_runs_read_only_with_its_plan() {
    workload(&MOSQUITTO);
}

/// The retained message a broker run keeps across a graceful stop and a start, when it can save
/// its state.
const RETAIN: &str = "mosquitto_pub -h 127.0.0.1 -q 1 -r -t rodiff/kept -m across-restarts";
const RETAINED: &str = r#"test "$(mosquitto_sub -h 127.0.0.1 -t rodiff/kept -C 1 -W 5)" = across-restarts"#;

/// Runs `c` (made, not started, or stopped): publishes a retained message, stops it gracefully
/// (SIGTERM: the broker saves its state), and returns its log.
fn publish_and_stop(c: &Container) -> String {
    wait_until(c, MOSQUITTO.ready);
    c.sh(RETAIN);
    docker(&["stop", "-t", "30", &c.name]);
    let logs = Command::new("docker").args(["logs", &c.name]).output().unwrap();
    String::from_utf8_lossy(&logs.stdout).into_owned() + &String::from_utf8_lossy(&logs.stderr)
}

/// `ls -ln`-like facts about a volume's root and what is in it: "UID GID MODE" and the names.
fn volume_root(volume: &str) -> (String, Vec<String>) {
    let mount = format!("type=volume,src={volume},dst=/v,volume-nocopy");
    let c = Container::run("vol", &["--mount", &mount, "--entrypoint", "sh"], BUSYBOX, &["-c", "stat -c '%u %g %a' /v; ls -A /v"]);
    docker(&["wait", &c.name]);
    let out = docker(&["logs", &c.name]);
    let mut lines = out.lines().map(str::to_string);
    (lines.next().unwrap_or_default(), lines.collect())
}

/// A broker's state is saved only when it stops. Planned from the running container (which has
/// written nothing there), run read-only with exactly the plan's flags, stopped gracefully: its
/// state file is in the volume and a restart finds the retained message. With --observed-only
/// the plan has no place for it, and the message is lost.
#[test]
fn mosquitto_saves_its_state_at_shutdown_with_a_plan_from_the_running_container() {
    if !sandbox() || !image_available(MOSQUITTO.image) {
        return;
    }
    let original = Container::run("mqtt-own", &[], MOSQUITTO.image, &[]);
    wait_until(&original, MOSQUITTO.ready);
    original.sh(MOSQUITTO.exercise);
    let uid = original.sh("id -u mosquitto").trim().to_string();
    assert!(original.sh("ls -A /var/lib/mosquitto").trim().is_empty(), "the broker saved its state while running");

    let out = rodiff(&["plan", &original.name, "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let plan: serde_json::Value = serde_json::from_str(&ok(&out, "rodiff plan --format json")).unwrap();
    assert_eq!(stderr.matches("is running").count(), 1, "one note on what a running diff cannot see: {stderr}");
    assert!(stderr.contains("graceful stop") && stderr.contains("plan again") && stderr.contains("verify --fix"), "{stderr}");
    let data = plan["mounts"].as_array().unwrap().iter().find(|m| m["path"] == "/var/lib/mosquitto").unwrap_or_else(|| panic!("{plan:#}"));
    assert_eq!(data["kind"], "volume");
    assert_eq!(data["anticipated"], true, "{data:#}");
    assert_eq!(data["covers"], serde_json::json!([]), "{data:#}");
    assert_eq!(data["evidence"], format!("owned by uid {uid}, which the container's processes run as"), "{data:#}");
    // Configuration stays read-only, whoever owns it.
    assert!(plan["mounts"].as_array().unwrap().iter().all(|m| !m["path"].as_str().unwrap().starts_with("/etc")), "{plan:#}");
    let flags = ok(&rodiff(&["plan", &original.name]), "rodiff plan").trim_end().to_string();
    let compose = ok(&rodiff(&["plan", &original.name, "--format", "compose"]), "rodiff plan --format compose");
    let comment = format!("# /var/lib/mosquitto: anticipated, no write seen yet: owned by uid {uid}, which the container's processes run as\n");
    assert!(compose.contains(&comment), "{compose}");
    let observed = ok(&rodiff(&["plan", &original.name, "--observed-only"]), "rodiff plan --observed-only").trim_end().to_string();
    assert!(!observed.contains("/var/lib/mosquitto") && flags.contains("/var/lib/mosquitto"), "{flags}\n{observed}");

    // Exactly the plan's flags, read-only: the state is saved at `docker stop` and found again.
    for (what, flags, kept) in [("plan", &flags, true), ("observed-only plan", &observed, false)] {
        let name = format!("{}-{}", original.name, if kept { "ro" } else { "observed" });
        let volumes = Volumes(flags.split_whitespace().filter_map(|w| w.split_once(':')).filter(|(v, _)| !v.starts_with('/')).map(|(v, _)| v.to_string()).collect());
        let ro = Container { name: name.clone() };
        let script = format!("docker create --network none --name {name} {flags} {}", MOSQUITTO.image);
        ok(&Command::new("sh").args(["-c", &script]).output().unwrap(), &script);
        docker(&["start", &name]);
        let log = publish_and_stop(&ro);
        let data_volume = format!("{}-var-lib-mosquitto", original.name);
        if kept {
            assert!(log.contains("Saving in-memory database"), "{what}: the broker logs to stderr too: {log}");
            assert!(!log.contains("Read-only file system") && !log.contains("Error saving"), "{what}: {log}");
            assert_eq!(docker(&["inspect", "-f", "{{.State.ExitCode}}", &name]), "0", "{what}: {log}");
            let (_, files) = volume_root(&data_volume);
            assert!(files.contains(&"mosquitto.db".to_string()), "{what}: no mosquitto.db in {data_volume}: {files:?}\n{log}");
            docker(&["start", &name]);
            wait_until(&ro, MOSQUITTO.ready);
            ro.sh(RETAINED);
        } else {
            // The issue's broker: it runs read-only, and cannot save its state when it stops.
            assert!(log.contains("Read-only file system") || log.contains("Error saving"), "{what}: {log}");
            docker(&["start", &name]);
            wait_until(&ro, MOSQUITTO.ready);
            assert!(
                !Command::new("docker").args(["exec", &name, "sh", "-c", RETAINED]).output().unwrap().status.success(),
                "{what}: the retained message survived without a place to save it"
            );
        }
        drop(ro);
        drop(volumes);
    }
}

/// The Kubernetes patch, tried the way a cluster behaves: every volume (PVC or emptyDir) starts
/// empty, root-owned, 755, and Docker must not fill it (`volume-nocopy`); the rendered init
/// container's command runs against them, then the service, read-only with them, starts, saves
/// its state at a graceful stop and finds it after a start. The patch, merged into a Deployment,
/// passes `kubernetes-validate --strict`.
#[test]
fn mosquitto_k8s_init_container_gives_empty_root_owned_volumes_their_owner() {
    if !sandbox() || !image_available(MOSQUITTO.image) {
        return;
    }
    let original = Container::run("mqtt-k8s", &[], MOSQUITTO.image, &[]);
    wait_until(&original, MOSQUITTO.ready);
    original.sh(MOSQUITTO.exercise);
    let plan: serde_json::Value = serde_json::from_str(&ok(&rodiff(&["plan", &original.name, "--format", "json"]), "rodiff plan --format json")).unwrap();
    let k8s = ok(&rodiff(&["plan", &original.name, "--format", "k8s"]), "rodiff plan --format k8s");
    assert!(k8s.contains("# /var/lib/mosquitto: anticipated, no write seen yet: owned by uid"), "{k8s}");
    // The init container's script: the quoted string after `- "-c"` (our YAML writer quotes it
    // JSON-style).
    let line = k8s.lines().skip_while(|l| l.trim() != "- \"-c\"").nth(1).unwrap_or_else(|| panic!("no sh -c in\n{k8s}"));
    let script: String = serde_json::from_str(line.trim().trim_start_matches("- ")).unwrap_or_else(|e| panic!("{line}: {e}"));

    let mounts = plan["mounts"].as_array().unwrap();
    let volumes = Volumes(mounts.iter().map(|m| format!("{}-k8s-{}", original.name, m["name"].as_str().unwrap())).collect());
    let mut init_args: Vec<String> = Vec::new();
    let mut run_args: Vec<String> = vec!["--read-only".into()];
    for (m, volume) in mounts.iter().zip(&volumes.0) {
        docker(&["volume", "create", volume]);
        let (root, files) = volume_root(volume);
        assert_eq!((root.as_str(), files.len()), ("0 0 755", 0), "{volume}: a fresh volume, as a cluster gives it");
        let name = m["name"].as_str().unwrap();
        init_args.extend(["--mount".into(), format!("type=volume,src={volume},dst=/rodiff-seed/{name},volume-nocopy")]);
        run_args.extend(["--mount".into(), format!("type=volume,src={volume},dst={},volume-nocopy", m["path"].as_str().unwrap())]);
    }
    let mut args: Vec<&str> = vec!["--user", "0", "--entrypoint", "sh"];
    args.extend(init_args.iter().map(String::as_str));
    let init = Container::run("mqtt-init", &args, MOSQUITTO.image, &["-c", &script]);
    assert_eq!(docker(&["wait", &init.name]), "0", "the init container failed: {}\n{script}", docker(&["logs", &init.name]));
    for (m, volume) in mounts.iter().zip(&volumes.0) {
        let (root, _) = volume_root(volume);
        let want = format!("{} {} {:o}", m["uid"], m["gid"], m["mode"].as_u64().unwrap());
        assert_eq!(root, want, "{volume}: after the init container, the owner and mode of {}", m["path"]);
    }

    let args: Vec<&str> = run_args.iter().map(String::as_str).collect();
    let service = Container::run("mqtt-k8s-ro", &args, MOSQUITTO.image, &[]);
    let log = publish_and_stop(&service);
    assert!(log.contains("Saving in-memory database") && !log.contains("Read-only file system") && !log.contains("Error"), "{log}");
    docker(&["start", &service.name]);
    wait_until(&service, MOSQUITTO.ready);
    service.sh(RETAINED);
    drop(service);
    drop(init);
    drop(volumes);

    validate_k8s(&k8s);
}

/// `make deploy-venv`'s kubernetes-validate (its Kubernetes version and --strict, as `make
/// test-deploy` runs it) on the patch merged into a Deployment; once it has been seen to reject
/// a misspelt field.
fn validate_k8s(patch: &str) {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let venv = root.join("target/deploy-venv/bin");
    if !require(venv.join("kubernetes-validate").exists(), "kubernetes-validate (make deploy-venv)") {
        return;
    }
    let version = std::fs::read_to_string(root.join("Makefile"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("KUBERNETES_VERSION").map(|v| v.trim_start_matches([' ', ':', '=']).trim().to_string()))
        .expect("KUBERNETES_VERSION in the Makefile");
    let dir = tempfile::tempdir().unwrap();
    let patch_file = dir.path().join("patch.yaml");
    std::fs::write(&patch_file, patch).unwrap();
    let deployment = dir.path().join("deployment.yaml");
    let merge = Command::new(venv.join("python"))
        .arg(root.join("deploy/test/plan_deployment.py"))
        .args([&patch_file, std::path::Path::new(MOSQUITTO.image), &deployment])
        .output()
        .unwrap();
    ok(&merge, "deploy/test/plan_deployment.py");
    let validate = |file: &std::path::Path| {
        Command::new(venv.join("kubernetes-validate")).args(["--quiet", "--no-warn", "-k", &version, "--strict"]).arg(file).output().unwrap()
    };
    let merged = std::fs::read_to_string(&deployment).unwrap();
    ok(&validate(&deployment), &format!("kubernetes-validate --strict of the merged Deployment:\n{merged}"));
    let misspelt = dir.path().join("misspelt.yaml");
    std::fs::write(&misspelt, merged.replacen("mountPath:", "mountPth:", 1)).unwrap();
    assert!(!validate(&misspelt).status.success(), "kubernetes-validate --strict accepted a misspelt field");
}

/// A container that never ran (no processes to read): who it runs as is its configured user
/// (`USER redis` in the image: Docker's `Config.User`), resolved in the image's /etc/passwd. Every
/// directory the redis package gives redis is anticipated; no note about a running container.
#[test]
fn a_container_that_never_ran_is_planned_from_its_configured_user() {
    if !sandbox() || !image_available(REDIS.image) {
        return;
    }
    let probe = Container::run("redis-id", &["--entrypoint", "id"], REDIS.image, &["-u"]);
    docker(&["wait", &probe.name]);
    let uid = docker(&["logs", &probe.name]);
    let created = Container { name: format!("{}-created", probe.name) };
    docker(&["create", "--network", "none", "--name", &created.name, REDIS.image]);
    let out = rodiff(&["plan", &created.name, "--format", "json"]);
    let plan: serde_json::Value = serde_json::from_str(&ok(&out, "rodiff plan --format json")).unwrap();
    assert!(!String::from_utf8_lossy(&out.stderr).contains("is running"), "{}", String::from_utf8_lossy(&out.stderr));
    let anticipated: Vec<(String, String)> = plan["mounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            assert_eq!(m["anticipated"], true, "nothing was written: {m:#}");
            (m["path"].as_str().unwrap().to_string(), m["evidence"].as_str().unwrap_or_default().to_string())
        })
        .collect();
    let evidence = format!("owned by uid {uid}, which the container's configured user (redis) is");
    let want: Vec<(String, String)> = ["/run/redis", "/var/lib/redis", "/var/log/redis"].iter().map(|p| (p.to_string(), evidence.clone())).collect();
    assert_eq!(anticipated, want, "{plan:#}");
    let observed = ok(&rodiff(&["plan", &created.name, "--observed-only"]), "rodiff plan --observed-only");
    assert_eq!(observed.trim_end(), "--read-only");
}
