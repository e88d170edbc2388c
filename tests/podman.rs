//! Podman through its Docker-compatible API (`podman system service`), rootful and rootless (the
//! sandbox's two services, `RODIFF_PODMAN=1`): `rodiff diff` against `podman diff` (the compat
//! API's `/containers/{id}/changes`) on the oracle corpus, running and stopped; the xattr namespace
//! each service's layers use; and a plan for a real workload verified through the same API.

mod common;

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::corpus::{CORPUS, FIXTURE};
use common::docker::{lossy, parse_docker_lines, BUSYBOX};

/// One of the sandbox's Podman services.
struct Podman {
    /// Its endpoint, `unix://…/podman.sock`.
    host: String,
    /// It runs as the unprivileged user the sandbox made.
    rootless: bool,
}

impl Podman {
    /// The service of the sandbox (`RODIFF_PODMAN_HOST` or `RODIFF_PODMAN_ROOTLESS_HOST`); `None`
    /// skips the test (a failure under `CI=true`).
    fn get(rootless: bool) -> Option<Podman> {
        let var = if rootless { "RODIFF_PODMAN_ROOTLESS_HOST" } else { "RODIFF_PODMAN_HOST" };
        let host = std::env::var(var).ok().filter(|h| !h.is_empty());
        common::require(host.is_some(), &format!("a Podman service ({var}: run the tests in `RODIFF_PODMAN=1 scripts/sandbox.sh run`)"))
            .then(|| Podman { host: host.unwrap(), rootless })
    }

    /// Runs `podman --url HOST ARGS`; panics on failure.
    fn podman(&self, args: &[&str]) -> String {
        common::run(Command::new("podman").arg("--url").arg(&self.host).args(args)).trim().to_string()
    }

    /// Runs rodiff against this service (`-H HOST`).
    fn rodiff(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rodiff")).arg("-H").arg(&self.host).args(args).output().expect("run rodiff")
    }

    /// `podman run -d --name NAME EXTRA IMAGE CMD…` under a unique name (network none: the
    /// services' default).
    fn run(&self, prefix: &str, extra: &[&str], image: &str, cmd: &[&str]) -> Ctr<'_> {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("rodiff-{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut args = vec!["run", "-d", "--name", &name];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(cmd);
        self.podman(&args);
        Ctr { podman: self, name }
    }

    /// What the service's own diff says (the compat API's `/containers/{name}/changes`, what
    /// `podman diff` prints), as `(kind, path)`.
    fn changes(&self, name: &str) -> BTreeSet<(char, String)> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let socket = self.host.strip_prefix("unix://").expect("a unix socket");
            let version = bollard::ClientVersion { major_version: 1, minor_version: 41 };
            let client = bollard::Docker::connect_with_unix(socket, 120, &version).unwrap();
            let changes = client.container_changes(name).await.unwrap_or_else(|e| panic!("podman diff {name}: {e}")).unwrap_or_default();
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

    /// `rodiff diff NAME` (docker format) as `(kind, lossy path)`; panics when it fails.
    fn rodiff_changes(&self, name: &str) -> BTreeSet<(char, String)> {
        let out = self.rodiff(&["diff", name]);
        assert!(out.status.success(), "rodiff diff {name}: {}", String::from_utf8_lossy(&out.stderr));
        lossy(&parse_docker_lines(&out.stdout))
    }

    /// `rodiff diff NAME --format json`, parsed.
    fn rodiff_json(&self, name: &str) -> Vec<serde_json::Value> {
        let out = self.rodiff(&["diff", name, "--format", "json"]);
        assert!(out.status.success(), "rodiff diff --format json {name}: {}", String::from_utf8_lossy(&out.stderr));
        common::docker::parse_json(&out.stdout)
    }
}

/// A container of a Podman service, removed (with its anonymous volumes) on drop.
struct Ctr<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for Ctr<'_> {
    fn drop(&mut self) {
        let _ = Command::new("podman").arg("--url").arg(&self.podman.host).args(["rm", "-f", "-v", "-t", "0", &self.name]).output();
    }
}

/// An image made by the test, removed on drop.
struct Image<'a> {
    podman: &'a Podman,
    name: String,
}

impl Drop for Image<'_> {
    fn drop(&mut self) {
        let _ = Command::new("podman").arg("--url").arg(&self.podman.host).args(["rmi", "-f", &self.name]).output();
    }
}

fn assert_same(podman: &Podman, name: &str, expected: &BTreeSet<(char, String)>) {
    let ours = podman.rodiff_changes(name);
    let only_ours: Vec<_> = ours.difference(expected).collect();
    let only_podman: Vec<_> = expected.difference(&ours).collect();
    assert!(only_ours.is_empty() && only_podman.is_empty(), "{}: only rodiff: {only_ours:?}\nonly podman diff: {only_podman:?}", podman.host);
}

/// The corpus on the fixture image (`podman commit`), with a volume at `/vol`: rodiff's docker
/// format equals Podman's diff, running and stopped; the JSON keeps rodiff's own kinds (`T`) and
/// marks the volume as a mount point.
fn corpus_matches_podman_diff(podman: &Podman) {
    let base = podman.run("fixture", &[], BUSYBOX, &["sh", "-c", FIXTURE]);
    podman.podman(&["wait", &base.name]);
    let image = Image { podman, name: format!("localhost/rodiff-test/corpus:{}", base.name.rsplit_once("fixture-").unwrap().1) };
    podman.podman(&["commit", &base.name, &image.name]);
    let c = podman.run("corpus", &["-v", "/vol"], &image.name, &["sleep", "3600"]);
    podman.podman(&["exec", &c.name, "sh", "-c", CORPUS]);

    let expected = podman.changes(&c.name);
    assert!(expected.len() > 40, "the corpus should make many changes: {expected:?}");
    assert_same(podman, &c.name, &expected);

    let json = podman.rodiff_json(&c.name);
    let entry = |p: &str| json.iter().find(|v| common::docker::json_path(v) == p.as_bytes()).cloned();
    let kind_of = |p: &str| entry(p).map(|v| v["kind"].as_str().unwrap().to_string());
    assert_eq!(kind_of("/fx/tmpd").as_deref(), Some("T"), "temp file made and removed leaves a touched dir");
    assert_eq!(kind_of("/fx/keep/same").as_deref(), Some("T"), "opened for writing, unchanged");
    assert_eq!(entry("/vol").expect("/vol mount point")["mountpoint"], true);

    // Stopped: the same answer.
    podman.podman(&["stop", "-t", "1", &c.name]);
    let stopped = podman.changes(&c.name);
    assert_eq!(stopped, expected);
    assert_same(podman, &c.name, &stopped);
}

#[test]
fn rootful_corpus_matches_podman_diff_running_and_stopped() {
    let Some(podman) = Podman::get(false) else { return };
    corpus_matches_podman_diff(&podman);
}

#[test]
fn rootless_corpus_matches_podman_diff_running_and_stopped() {
    let Some(podman) = Podman::get(true) else { return };
    corpus_matches_podman_diff(&podman);
}

/// Which namespace the markers are in, seen on the layer itself: an opaque directory (deleted and
/// re-created) carries `trusted.overlay.opaque` under the rootful service and `user.overlay.opaque`
/// under the rootless one — and rodiff, told which by Podman, reads the right one (its `D` entries
/// for the old content come from that marker).
#[test]
fn each_service_is_read_in_the_namespace_it_mounts_with() {
    for rootless in [false, true] {
        let Some(podman) = Podman::get(rootless) else { return };
        let c = podman.run("opaque", &[], BUSYBOX, &["sh", "-c", "rm -rf /srv/del && mkdir /srv/del && echo n > /srv/del/new && sleep 3600"]);
        // Wait for the command's writes.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !podman.changes(&c.name).contains(&('A', "/srv/del/new".to_string())) {
            assert!(std::time::Instant::now() < deadline, "the container made no /srv/del/new");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let inspect: serde_json::Value = serde_json::from_str(&podman.podman(&["inspect", &c.name])).unwrap();
        let upper = std::path::PathBuf::from(inspect[0]["GraphDriver"]["Data"]["UpperDir"].as_str().unwrap());
        let dir = upper.join("srv/del");
        let (ours, other) = if podman.rootless { ("user.overlay.opaque", "trusted.overlay.opaque") } else { ("trusted.overlay.opaque", "user.overlay.opaque") };
        let get = |name: &str| rustix::fs::lgetxattr(&dir, name, &mut [0u8; 8]).ok();
        assert!(get(ours).is_some(), "{}: {} has no {ours}", podman.host, dir.display());
        assert!(get(other).is_none(), "{}: {} has {other}", podman.host, dir.display());
        let expected = podman.changes(&c.name);
        assert_same(&podman, &c.name, &expected);
        let json = podman.rodiff_json(&c.name);
        assert!(json.iter().any(|v| common::docker::json_path(v) == b"/srv/del/1" && v["kind"] == "D"), "{}: {json:?}", podman.host);
    }
}

/// Names, full ids and id prefixes resolve; Podman's own entries are marked in JSON and left out of
/// the docker format; a name the service does not know is exit 3.
#[test]
fn names_ids_and_prefixes_resolve_and_unknown_names_exit_3() {
    let Some(podman) = Podman::get(false) else { return };
    let c = podman.run("refs", &[], BUSYBOX, &["sh", "-c", "echo x > /x && sleep 3600"]);
    let id = podman.podman(&["inspect", "-f", "{{.Id}}", &c.name]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while podman.changes(&c.name).is_empty() {
        assert!(std::time::Instant::now() < deadline, "the container wrote nothing");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for reference in [c.name.as_str(), id.as_str(), &id[..12]] {
        let diff = podman.rodiff_changes(reference);
        assert!(diff.contains(&('A', "/x".to_string())), "{reference}: {diff:?}");
    }
    // Podman's own entries (the fixture image has none): in the layer, marked as mount points,
    // left out of the docker format as `podman diff` leaves them out.
    let json = podman.rodiff_json(&c.name);
    let hosts = json.iter().find(|v| common::docker::json_path(v) == b"/etc/hosts").expect("Podman makes /etc/hosts in the layer");
    assert_eq!(hosts["mountpoint"], true, "{hosts}");
    let diff = podman.rodiff_changes(&c.name);
    assert!(!diff.iter().any(|(_, p)| p == "/etc/hosts" || p == "/run/.containerenv"), "{diff:?}");
    assert_eq!(diff, podman.changes(&c.name));

    let out = podman.rodiff(&["diff", "no-such-container-rodiff"]);
    assert_eq!(out.status.code(), Some(3), "{}", String::from_utf8_lossy(&out.stderr));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-container-rodiff") && err.lines().count() == 1, "{err}");
}

/// `$CONTAINER_HOST` (Podman's variable) is the endpoint when `$DOCKER_HOST` is unset; an `ssh://`
/// one is a usage error.
#[test]
fn container_host_is_honoured_when_docker_host_is_unset() {
    let Some(podman) = Podman::get(true) else { return };
    let c = podman.run("envhost", &[], BUSYBOX, &["sleep", "3600"]);
    let run = |container_host: &str| {
        Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["diff", &c.name])
            .env_remove("DOCKER_HOST")
            .env("CONTAINER_HOST", container_host)
            .output()
            .unwrap()
    };
    let out = run(&podman.host);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let out = run("ssh://core@example.com:22/run/user/1000/podman/podman.sock");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CONTAINER_HOST"));
}

/// A real workload (Debian's redis-server, as user redis, socket in `/run/redis`): its plan is in
/// Podman's flags, and `rodiff verify` proves it through the same API (create, start, exec, logs,
/// stop, restart, remove) on the rootful and the rootless service; nothing it made is left.
#[test]
fn a_redis_plan_is_verified_through_podman() {
    for rootless in [false, true] {
        let Some(podman) = Podman::get(rootless) else { return };
        let c = podman.run("redis", &[], "rodiff-demo/redis:bookworm", &[]);
        let probe = "redis-cli -s /run/redis/redis-server.sock ping | grep -qx PONG";
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !Command::new("podman").arg("--url").arg(&podman.host).args(["exec", &c.name, "sh", "-c", probe]).status().unwrap().success() {
            assert!(std::time::Instant::now() < deadline, "{}: redis did not answer", podman.host);
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        let out = podman.rodiff(&["plan", &c.name]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let flags = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(flags.starts_with("--read-only --read-only-tmpfs=false "), "{flags}");
        assert!(flags.contains("--tmpfs /run/redis:") && !flags.contains("uid="), "{flags}");

        let out = podman.rodiff(&["verify", &c.name, "--probe", probe, "--wait", "2"]);
        let report = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "{}: verify failed:\n{report}", podman.host);
        let left = podman.podman(&["ps", "-a", "--filter", "label=rodiff.verify", "--format", "{{.Names}}"]);
        assert!(left.is_empty(), "{}: verification containers left: {left}", podman.host);
    }
}

/// A Podman whose layers fuse-overlayfs mounts (`overlay.mount_program` in storage.conf; its upper
/// directories hold fuse-overlayfs's own whiteouts and markers): exit 4, naming the program — from
/// the libpod `/info` of a real service, a throw-away one started by the test (rootful, its own
/// storage and socket in the sandbox's directory), with busybox saved from the sandbox's service.
#[test]
fn layers_mounted_by_fuse_overlayfs_are_unsupported_storage() {
    let Some(podman) = Podman::get(false) else { return };
    let program = "/usr/bin/fuse-overlayfs";
    if !common::require(std::path::Path::new(program).exists() && std::path::Path::new("/dev/fuse").exists(), "fuse-overlayfs and /dev/fuse") {
        return;
    }
    let dir = tempfile::Builder::new().prefix("podman-fuse.").tempdir_in(std::env::var("RODIFF_SANDBOX").unwrap()).unwrap();
    let d = dir.path();
    let storage = format!(
        "[storage]\ndriver = \"overlay\"\ngraphroot = \"{0}/root\"\nrunroot = \"{0}/run\"\n[storage.options.overlay]\nmount_program = \"{program}\"\n",
        d.display()
    );
    std::fs::write(d.join("storage.conf"), storage).unwrap();
    let containers = format!(
        "[containers]\nnetns = \"none\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\nevents_logfile_path = \"{0}/events.log\"\ntmp_dir = \"{0}/tmp\"\n[network]\nnetwork_config_dir = \"{0}/networks\"\n",
        d.display()
    );
    std::fs::write(d.join("containers.conf"), containers).unwrap();
    std::fs::write(d.join("registries.conf"), "").unwrap();
    let socket = d.join("podman.sock");
    let mut service = Command::new("podman")
        .env("CONTAINERS_CONF", d.join("containers.conf"))
        .env("CONTAINERS_STORAGE_CONF", d.join("storage.conf"))
        .env("CONTAINERS_REGISTRIES_CONF", d.join("registries.conf"))
        .args(["system", "service", "--time=0"])
        .arg(format!("unix://{}", socket.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(d.join("podman.log")).unwrap())
        .spawn()
        .unwrap();
    struct Stop<'a>(&'a mut std::process::Child, &'a Podman);
    impl Drop for Stop<'_> {
        fn drop(&mut self) {
            let _ = Command::new("podman").arg("--url").arg(&self.1.host).args(["rm", "-a", "-f", "-t", "0"]).output();
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let fuse = Podman { host: format!("unix://{}", socket.display()), rootless: false };
    let guard = Stop(&mut service, &fuse);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !Command::new("podman").arg("--url").arg(&fuse.host).arg("version").output().unwrap().status.success() {
        assert!(std::time::Instant::now() < deadline, "the fuse-overlayfs podman did not come up: {}", std::fs::read_to_string(d.join("podman.log")).unwrap_or_default());
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let archive = d.join("busybox.tar");
    podman.podman(&["save", "-o", archive.to_str().unwrap(), BUSYBOX]);
    fuse.podman(&["load", "-i", archive.to_str().unwrap()]);
    let c = fuse.run("fuse", &[], BUSYBOX, &["sh", "-c", "echo x > /x && sleep 3600"]);
    let info: serde_json::Value = serde_json::from_str(&fuse.podman(&["info", "--format", "json"])).unwrap();
    assert!(info["store"]["graphOptions"].to_string().contains(program), "{}", info["store"]);

    let out = fuse.rodiff(&["diff", &c.name]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains(&c.name) && err.contains(program) && err.lines().count() == 1, "{err}");
    drop(c);
    drop(guard);
}
