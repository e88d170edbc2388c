//! `rodiff diff --runtime containerd` on real containerd containers in the sandbox's standalone
//! containerd (root on btrfs, so both snapshotters work): the oracle corpus on the overlayfs and
//! btrfs snapshotters against `docker diff` of the same corpus, a bind mount's mount point, a fake
//! Kubernetes pod selected with `--pod`, Docker's containerd image store (through a stand-in
//! Docker API), and the error paths.

mod common;

use std::collections::BTreeSet;
use std::path::Path;

use common::containerd::{self as ctrd, ctr, CtrContainer};
use common::corpus::{CORPUS, FIXTURE};
use common::docker::{docker, json_path, parse_json, Container, BUSYBOX};

/// `(kind, path)` as Docker renders paths (invalid UTF-8 as U+FFFD).
type Entries = BTreeSet<(char, String)>;

/// The fixture image, built in the sandbox dockerd, and what `docker diff` says about the corpus
/// run on it in a Docker container (with a volume at `/vol`, as docker_oracle.rs does).
struct DockerCorpus {
    image: String,
    expected: Entries,
    docker_mounts: Vec<String>,
}

impl Drop for DockerCorpus {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rmi", "-f", &self.image]).output();
    }
}

fn docker_corpus() -> DockerCorpus {
    let base = Container::run("ctrd-fixture", &[], BUSYBOX, &["sh", "-c", FIXTURE]);
    docker(&["wait", &base.name]);
    let image = format!("rodiff-test/ctrd-corpus:{}", base.name.rsplit('-').take(2).collect::<Vec<_>>().join("-"));
    docker(&["commit", &base.name, &image]);
    let c = Container::run("ctrd-corpus", &["-v", "/vol"], &image, &["sleep", "3600"]);
    // Image layers keep whole-second mtimes, and `docker diff` takes a file whose mtime is in the
    // same second as the image's for unchanged (rodiff follows that rule). The containerd run
    // comes seconds later, so let the corpus's `touch` land in a later second here too.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    c.sh(CORPUS);
    let expected = c.docker_changes();
    DockerCorpus { image, expected, docker_mounts: vec!["/vol".into()] }
}

fn under(path: &str, dir: &str) -> bool {
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/')) || dir == "/"
}

/// rodiff's JSON for a containerd container: docker-visible entries that are not mount points,
/// and the whole JSON.
fn rodiff_entries(c: &CtrContainer) -> (Entries, Vec<serde_json::Value>) {
    let out = c.rodiff_diff(&["--format", "json"]);
    assert!(out.status.success(), "rodiff diff {}: {}", c.id, String::from_utf8_lossy(&out.stderr));
    let json = parse_json(&out.stdout);
    let entries = json
        .iter()
        .filter(|v| v["kind"] != "T" && v["mountpoint"] != true)
        .map(|v| (v["kind"].as_str().unwrap().chars().next().unwrap(), String::from_utf8_lossy(&json_path(v)).into_owned()))
        .collect();
    (entries, json)
}

fn kind_of(json: &[serde_json::Value], path: &str) -> Option<String> {
    json.iter().find(|v| json_path(v) == path.as_bytes()).map(|v| v["kind"].as_str().unwrap().to_string())
}

/// The corpus in a containerd container on `snapshotter`, compared with `docker diff` of the
/// corpus in a Docker container, minus what only Docker made (its volume's mount point) and what
/// would land on the containerd container's tmpfs mounts; running, then stopped.
fn corpus_on(snapshotter: &str) {
    let docker_side = docker_corpus();
    let image = ctrd::import("default", &docker_side.image);
    let c = CtrContainer::run("default", &ctrd::unique_id(&format!("corpus-{snapshotter}")), snapshotter, &[], &image, &["sleep", "3600"]);
    c.sh(CORPUS);

    let tmpfs: Vec<String> = c.spec_mounts().into_iter().filter(|(_, t)| t == "tmpfs").map(|(d, _)| d).collect();
    assert!(tmpfs.iter().any(|d| d == "/run"), "ctr's default spec mounts a tmpfs on /run: {tmpfs:?}");
    let expected: Entries = docker_side
        .expected
        .iter()
        .filter(|(_, p)| !docker_side.docker_mounts.iter().any(|m| under(p, m)))
        .filter(|(_, p)| !tmpfs.iter().any(|t| under(p, t)))
        .cloned()
        .collect();
    assert!(expected.len() > 40, "the corpus should make many changes: {expected:?}");

    let check = |when: &str| {
        let (ours, json) = rodiff_entries(&c);
        let only_ours: Vec<_> = ours.difference(&expected).collect();
        let only_docker: Vec<_> = expected.difference(&ours).collect();
        assert!(
            only_ours.is_empty() && only_docker.is_empty(),
            "{snapshotter}, {when}: only rodiff: {only_ours:?}\nonly docker diff: {only_docker:?}"
        );
        // runc made /run (the image has none) for the tmpfs: annotated, from the OCI spec.
        let run = json.iter().find(|v| json_path(v) == b"/run").expect("/run mount point");
        assert_eq!(run["mountpoint"], true, "{run}");
        assert_eq!(kind_of(&json, "/fx/tmpd").as_deref(), Some("T"), "temp file made and removed leaves a touched dir");
        let copy_up = if snapshotter == "overlayfs" { Some("T") } else { None };
        assert_eq!(kind_of(&json, "/fx/keep/same").as_deref(), copy_up, "opened for writing, unchanged");
        assert!(json.iter().any(|v| json_path(v) == b"/fx/bad\xffbyte"), "non-UTF-8 name kept byte for byte");
    };
    check("running");
    c.stop();
    check("stopped");
    if snapshotter == "btrfs" {
        assert_no_helper_snapshots();
    }
    drop(c);
    let _ = ctr("default", &["images", "rm", &image]);
}

/// rodiff's read-only helper snapshots (btrfs engine) must not outlive the runs that made them.
fn assert_no_helper_snapshots() {
    let dir = Path::new(&std::env::var("RODIFF_SANDBOX").unwrap()).join("ctrd-btrfs/.rodiff-snapshots");
    let leaked = common::btrfs::leaked_helper_snapshots(&dir);
    assert!(leaked.is_empty(), "helper snapshots left in {}: {leaked:?}", dir.display());
}

/// No `View` snapshot may be left behind (rodiff never makes one).
fn assert_no_views(ns: &str, snapshotter: &str) {
    let list = ctr(ns, &["snapshots", "--snapshotter", snapshotter, "ls"]);
    assert!(!list.lines().skip(1).any(|l| l.split_whitespace().nth(2) == Some("View")), "a View snapshot was left:\n{list}");
}

#[test]
fn corpus_matches_docker_diff_on_overlayfs() {
    if !ctrd::sandbox() {
        return;
    }
    corpus_on("overlayfs");
    assert_no_views("default", "overlayfs");
}

#[test]
fn corpus_matches_docker_diff_on_btrfs() {
    if !ctrd::sandbox() {
        return;
    }
    corpus_on("btrfs");
    assert_no_views("default", "btrfs");
}

#[test]
fn bind_mount_point_is_annotated_on_both_snapshotters() {
    if !ctrd::sandbox() {
        return;
    }
    let src = tempfile::Builder::new().prefix("rodiff-bind.").tempdir_in("/tmp").unwrap();
    let image = "docker.io/rodiff-test/busybox:latest";
    for snapshotter in ["overlayfs", "btrfs"] {
        let mount = format!("type=bind,src={},dst=/data/bound,options=rbind:rw", src.path().display());
        let c = CtrContainer::run("default", &ctrd::unique_id("bind"), snapshotter, &["--mount", &mount], image, &["sleep", "3600"]);
        c.sh("echo x > /data/bound/through-the-mount && echo y > /srv/data/a.txt && mkdir /made");
        let out = c.rodiff_diff(&["--format", "json"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let json = parse_json(&out.stdout);
        let entry = |p: &str| json.iter().find(|v| json_path(v) == p.as_bytes()).cloned();
        for p in ["/data", "/data/bound"] {
            let v = entry(p).unwrap_or_else(|| panic!("{snapshotter}: {p} missing: {json:?}"));
            assert_eq!((v["kind"].as_str(), v["mountpoint"].as_bool()), (Some("A"), Some(true)), "{snapshotter}: {v}");
        }
        assert!(entry("/data/bound/through-the-mount").is_none(), "{snapshotter}: a write through the bind mount is not the layer's");
        assert_eq!(entry("/srv/data/a.txt").map(|v| v["kind"].clone()), Some("C".into()), "{snapshotter}");
        assert_eq!(entry("/made").map(|v| (v["kind"].clone(), v["mountpoint"].clone())), Some(("A".into(), serde_json::Value::Null)));
        assert!(std::fs::read(src.path().join("through-the-mount")).is_ok());
    }
}

/// A snapshot made on the empty snapshot comes back from `Mounts` as a bind mount of its
/// directory (overlayfs snapshotter); the container record that uses it is made through the
/// containers API (not `ctr run`), with an OCI spec whose mount destinations rodiff reads.
#[test]
fn scratch_snapshot_bind_form_through_a_record_made_with_the_api() {
    use containerd_client::services::v1::containers_client::ContainersClient;
    use containerd_client::services::v1::{container::Runtime, Container as Record, CreateContainerRequest, DeleteContainerRequest};
    use containerd_client::tonic::Request;
    use containerd_client::with_namespace;

    if !ctrd::sandbox() {
        return;
    }
    let id = ctrd::unique_id("scratch");
    ctr("default", &["snapshots", "--snapshotter", "overlayfs", "prepare", &id]);
    let mounts = ctr("default", &["snapshots", "--snapshotter", "overlayfs", "mounts", "/target", &id]);
    // mount -t bind SOURCE /target -o rw,rbind
    let words: Vec<&str> = mounts.split_whitespace().collect();
    assert_eq!(&words[..3], ["mount", "-t", "bind"], "{mounts}");
    let dir = Path::new(words[3]);
    std::fs::write(dir.join("hello"), "hi").unwrap();
    std::fs::create_dir(dir.join("etc")).unwrap();
    std::fs::write(dir.join("etc/app.conf"), "x").unwrap();

    let spec = serde_json::json!({"ociVersion": "1.0.2", "mounts": [{"destination": "/etc/app.conf", "type": "bind", "source": "/dev/null"}]});
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let record = Record {
        id: id.clone(),
        image: String::new(),
        runtime: Some(Runtime { name: "io.containerd.runc.v2".into(), options: None }),
        spec: Some(prost_types::Any { type_url: "types.containerd.io/opencontainers/runtime-spec/1/Spec".into(), value: spec.to_string().into_bytes() }),
        snapshotter: "overlayfs".into(),
        snapshot_key: id.clone(),
        ..Default::default()
    };
    rt.block_on(async {
        let channel = containerd_client::connect(ctrd::address()).await.unwrap();
        let mut client = ContainersClient::new(channel);
        client.create(with_namespace!(CreateContainerRequest { container: Some(record) }, "default")).await.unwrap();
    });

    let out = ctrd::rodiff(&["--runtime", "containerd", "diff", &id, "--format", "json"]);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let got: Vec<(String, String, bool)> = if out.status.success() {
        parse_json(&out.stdout)
            .iter()
            .map(|v| (String::from_utf8_lossy(&json_path(v)).into_owned(), v["kind"].as_str().unwrap().to_string(), v["mountpoint"] == true))
            .collect()
    } else {
        Vec::new()
    };

    rt.block_on(async {
        let channel = containerd_client::connect(ctrd::address()).await.unwrap();
        let mut client = ContainersClient::new(channel);
        client.delete(with_namespace!(DeleteContainerRequest { id: id.clone() }, "default")).await.unwrap();
    });
    ctr("default", &["snapshots", "--snapshotter", "overlayfs", "rm", &id]);

    assert!(out.status.success(), "{stderr}");
    // A new directory leading to a mount destination counts as made for the mount point.
    let want = [("/etc", "A", true), ("/etc/app.conf", "A", true), ("/hello", "A", false)];
    let want: Vec<(String, String, bool)> = want.iter().map(|(p, k, m)| (p.to_string(), k.to_string(), *m)).collect();
    assert_eq!(got, want);
}

/// A fake pod: a sandbox (pause) container and two app containers, labelled as the CRI plugin
/// labels them, in namespace k8s.io.
#[test]
fn pod_selected_by_cri_labels_skipping_the_sandbox() {
    if !ctrd::sandbox() {
        return;
    }
    let ns = "k8s.io";
    let image = ctrd::import(ns, BUSYBOX);
    let pod = format!("web-{}", std::process::id());
    let labels = |kind: &str, container: &str| {
        vec![
            format!("io.kubernetes.pod.name={pod}"),
            "io.kubernetes.pod.namespace=shop".to_string(),
            format!("io.kubernetes.container.name={container}"),
            format!("io.cri-containerd.kind={kind}"),
        ]
    };
    let start = |kind: &str, name: &str, script: &str| {
        let mut extra = Vec::new();
        for l in labels(kind, name) {
            extra.push("--label".to_string());
            extra.push(l);
        }
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let script = format!("{script} && sleep 3600");
        CtrContainer::run(ns, &ctrd::unique_id(name), "overlayfs", &extra, &image, &["sh", "-c", &script])
    };
    let _pause = start("sandbox", "POD", "echo p > /srv/pause-wrote");
    let _app = start("container", "app", "echo a > /srv/app-wrote");
    let _side = start("container", "sidecar", "echo s > /srv/sidecar-wrote");
    // The writes happen as the containers start: wait for them.
    for c in [&_pause, &_app, &_side] {
        c.sh("while ! ls /srv/*-wrote >/dev/null 2>&1; do sleep 0.05; done");
    }

    let pod_ref = format!("shop/{pod}");
    let tagged = |args: &[&str]| -> BTreeSet<(String, String)> {
        let out = ctrd::rodiff(args);
        assert!(out.status.success(), "rodiff {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        parse_json(&out.stdout)
            .iter()
            .filter(|v| json_path(v).starts_with(b"/srv/"))
            .map(|v| (v["container"].as_str().expect("tagged with its container").to_string(), String::from_utf8_lossy(&json_path(v)).into_owned()))
            .collect()
    };
    let both: BTreeSet<(String, String)> =
        [("app", "/srv/app-wrote"), ("sidecar", "/srv/sidecar-wrote")].iter().map(|(c, p)| (c.to_string(), p.to_string())).collect();
    assert_eq!(tagged(&["--pod", &pod_ref, "diff", "--format", "json"]), both, "the pause container is left out");
    let app_only: BTreeSet<_> = both.iter().filter(|(c, _)| c == "app").cloned().collect();
    assert_eq!(tagged(&["--pod", &pod_ref, "--container", "app", "diff", "--format", "json"]), app_only);
    let side_only: BTreeSet<_> = both.iter().filter(|(c, _)| c == "sidecar").cloned().collect();
    assert_eq!(tagged(&["--pod", &pod_ref, "diff", "sidecar", "--format", "json"]), side_only);

    // The docker format carries the same lines (without tags).
    let out = ctrd::rodiff(&["--pod", &pod_ref, "diff"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("A /srv/app-wrote") && text.contains("A /srv/sidecar-wrote") && !text.contains("pause-wrote"), "{text}");

    let out = ctrd::rodiff(&["--pod", "shop/no-such-pod", "diff"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("pod shop/no-such-pod") && err.contains("k8s.io") && err.lines().count() == 1, "{err}");
}

#[test]
fn errors_name_socket_container_and_namespace() {
    // Socket missing: no sandbox needed.
    let out = ctrd::rodiff(&["--runtime", "containerd", "--address", "/nonexistent/containerd.sock", "diff", "x"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/containerd.sock") && err.lines().count() == 1, "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rodiff"))
        .env("CONTAINERD_ADDRESS", "unix:///nonexistent/c2.sock")
        .args(["--runtime", "containerd", "diff", "x"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/c2.sock"));

    if !ctrd::sandbox() {
        return;
    }
    let out = ctrd::rodiff(&["--runtime", "containerd", "diff", "no-such-container-rodiff"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-container-rodiff") && err.contains("namespace default") && err.lines().count() == 1, "{err}");

    let c = CtrContainer::run("default", &ctrd::unique_id("wrongns"), "overlayfs", &[], "docker.io/rodiff-test/busybox:latest", &["sleep", "3600"]);
    let out = ctrd::rodiff(&["--runtime", "containerd", "-n", "rodiff-elsewhere", "diff", &c.id]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&c.id) && err.contains("namespace rodiff-elsewhere") && err.lines().count() == 1, "{err}");
    // …and in the right namespace (here through $CONTAINERD_NAMESPACE) it is found.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rodiff"))
        .env("CONTAINERD_NAMESPACE", "default")
        .args(["--runtime", "containerd", "diff", &c.id])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("A /run"));
}

/// Docker 29's containerd image store: inspect has no layer paths, and the snapshot is keyed by
/// the container id in containerd namespace `moby`. A stand-in Docker API (the sandbox's
/// dockerd 20.10 has no containerd image store) answers `/_ping`, the inspect and `/info` as
/// Docker 29 does, pointing at the sandbox containerd; the snapshot is made by `ctr run`. Docker
/// removes the containerd record of a stopped container but keeps its snapshot: rodiff must not
/// need the record.
#[test]
fn docker_containerd_image_store_falls_back_to_namespace_moby() {
    if !ctrd::sandbox() {
        return;
    }
    let ns = "moby";
    let image = ctrd::import(ns, BUSYBOX);
    let id = format!("{:064x}", std::process::id() as u128 * 0x9e37_79b9_7f4a_7c15);
    let c = CtrContainer::run(ns, &id, "overlayfs", &[], &image, &["sh", "-c", "echo m > /srv/moby-wrote && sleep 3600"]);
    c.sh("while [ ! -f /srv/moby-wrote ]; do sleep 0.05; done");
    let fake = fake_docker::serve(&id, &ctrd::address());

    let diff = || {
        let out = ctrd::rodiff(&["-H", &format!("unix://{}", fake.socket.display()), "diff", "web29"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(diff().contains("A /srv/moby-wrote"));
    // Stopped the Docker way: task and record gone, snapshot kept. Docker holds its snapshots
    // with a lease; here a GC-root label keeps containerd's garbage collector off it once the
    // record that referenced it is gone.
    c.stop();
    ctr(ns, &["snapshots", "--snapshotter", "overlayfs", "label", &id, "containerd.io/gc.root=rodiff-test"]);
    ctr(ns, &["containers", "rm", "--keep-snapshot", &id]);
    assert!(diff().contains("A /srv/moby-wrote"));
    ctr(ns, &["snapshots", "--snapshotter", "overlayfs", "rm", &id]);
    let out = ctrd::rodiff(&["-H", &format!("unix://{}", fake.socket.display()), "diff", "web29"]);
    assert_eq!(out.status.code(), Some(4), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&id));
}

/// A stand-in for a Docker 29 daemon with the containerd image store: just enough HTTP/1.1.
mod fake_docker {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;

    /// The listening socket, removed on drop.
    pub struct Fake {
        pub socket: PathBuf,
        _dir: tempfile::TempDir,
    }

    /// Serves, on a fresh socket, container `web29` with id `id`, whose snapshots live in the
    /// containerd at `containerd`.
    pub fn serve(id: &str, containerd: &str) -> Fake {
        let dir = tempfile::Builder::new().prefix("rodiff-fake.").tempdir_in("/tmp").unwrap();
        let socket = dir.path().join("docker.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        let inspect = serde_json::json!({
            "Id": id, "Name": "/web29", "Driver": "overlayfs", "Image": "sha256:00",
            "Mounts": [], "HostConfig": {}, "State": {"Running": true},
        })
        .to_string();
        let info = serde_json::json!({
            "ID": "fake", "Driver": "overlayfs",
            "DriverStatus": [["driver-type", "io.containerd.snapshotter.v1"]],
            "Containerd": {"Address": containerd, "Namespaces": {"Containers": "moby", "Plugins": "plugins.moby"}},
        })
        .to_string();
        let id = id.to_string();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (inspect, info, id) = (inspect.clone(), info.clone(), id.clone());
                std::thread::spawn(move || handle(stream, &inspect, &info, &id));
            }
        });
        Fake { socket, _dir: dir }
    }

    /// Answers the requests of one connection: the container by name or id, as Docker does.
    fn handle(stream: UnixStream, inspect: &str, info: &str, id: &str) {
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut out = stream;
        loop {
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                return;
            }
            let mut length = 0usize;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 {
                    return;
                }
                if header == "\r\n" {
                    break;
                }
                if let Some(v) = header.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0; length];
            let _ = reader.read_exact(&mut body);
            let path = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
            let (status, body) = if path.ends_with("/_ping") {
                ("200 OK", "OK".to_string())
            } else if path.contains("/containers/web29/json") || path.contains(&format!("/containers/{id}/json")) {
                ("200 OK", inspect.to_string())
            } else if path.ends_with("/info") {
                ("200 OK", info.to_string())
            } else {
                ("404 Not Found", r#"{"message":"not here"}"#.to_string())
            };
            let http10 = request_line.trim_end().ends_with("HTTP/1.0");
            let response = format!(
                "HTTP/1.1 {status}\r\nApi-Version: 1.52\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{}\r\n{body}",
                body.len(),
                if http10 { "Connection: close\r\n" } else { "" }
            );
            if out.write_all(response.as_bytes()).is_err() || http10 {
                return;
            }
        }
    }
}

/// A container removed (`ctr containers rm`, which removes its snapshot) while four threads diff
/// it through one client, on the overlayfs snapshotter: each diff is the whole diff or an error,
/// never a shorter list — containerd deletes the snapshot's directory under the walk, and only
/// its word after the walk (the snapshot's `Stat`) tells a removal from a diff.
#[test]
fn a_container_removed_mid_scan_gives_the_whole_diff_or_an_error() {
    use rodiff::{Client, ErrorKind, Runtime, Target};

    if !ctrd::sandbox() {
        return;
    }
    let image = "docker.io/rodiff-test/busybox:latest";
    let options = rodiff::ClientOptions { namespace: Some("default".into()), ..common::client_options(Runtime::Containerd) };
    let client = Client::new(options).unwrap();
    let mut vanished = 0;
    for attempt in 0..3u64 {
        let c = CtrContainer::run("default", &ctrd::unique_id("rm"), "overlayfs", &[], image, &["sleep", "3600"]);
        c.sh("mkdir /w && cd /w && for d in $(seq 20); do mkdir $d; (cd $d && seq 1000 | xargs touch); done");
        c.stop();
        let target = Target::from(c.id.as_str());
        let full = client.diff(target.clone()).unwrap().len();
        assert!(full > 20_000, "{full}");
        let outcomes: Vec<Result<usize, rodiff::Error>> = std::thread::scope(|s| {
            let workers: Vec<_> = (0..4)
                .map(|_| {
                    s.spawn(|| {
                        let mut seen = Vec::new();
                        loop {
                            let result = client.diff(target.clone()).map(|changes| changes.len());
                            let gone = matches!(&result, Err(e) if e.kind() == ErrorKind::ContainerNotFound);
                            seen.push(result);
                            if gone || seen.len() > 200 {
                                return seen;
                            }
                        }
                    })
                })
                .collect();
            std::thread::sleep(std::time::Duration::from_millis(100 + 100 * attempt));
            ctr("default", &["containers", "rm", &c.id]);
            workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
        });
        for outcome in &outcomes {
            match outcome {
                Ok(n) => assert_eq!(*n, full, "a diff of {} returned {n} of its {full} changes without an error", c.id),
                Err(e) => {
                    assert!(matches!(e.kind(), ErrorKind::LayerVanished | ErrorKind::ContainerNotFound), "{}: {:?}: {e}", c.id, e.kind());
                    vanished += usize::from(e.kind() == ErrorKind::LayerVanished);
                }
            }
        }
        if vanished > 0 {
            break;
        }
    }
    assert!(vanished > 0, "no diff overlapped the removal in 3 attempts");
}

/// Ownership evidence on containerd: the redis image (`USER redis`, which containerd resolves into
/// the OCI spec's `process.user`) gives /var/lib/redis and /var/log/redis to redis. While the task
/// runs, who its processes run as comes from /proc; once stopped, from the spec's user. ctr's
/// default spec mounts a tmpfs on /run: /run/redis below it needs nothing.
#[test]
fn plan_anticipates_the_directories_the_image_gives_the_containers_user() {
    const REDIS: &str = "rodiff-demo/redis:bookworm";
    if !ctrd::sandbox() || !common::require(!docker(&["images", "-q", REDIS]).is_empty(), &format!("image {REDIS} (sandbox.sh --images redis)")) {
        return;
    }
    let image = ctrd::import("default", REDIS);
    let c = CtrContainer::run("default", &ctrd::unique_id("owned"), "overlayfs", &[], &image, &["sleep", "3600"]);
    let (uid, gid) = (c.sh("id -u"), c.sh("id -g"));
    assert_ne!(uid, "0", "the image's USER");
    let plan = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--runtime", "containerd", "-n", "default", "plan", c.id.as_str(), "--format", "json"];
        args.extend_from_slice(extra);
        let out = ctrd::rodiff(&args);
        assert!(out.status.success(), "rodiff plan: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let evidence = |plan: &serde_json::Value| -> Vec<(String, String)> {
        plan["mounts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["anticipated"] == true)
            .map(|m| (m["path"].as_str().unwrap().to_string(), m["evidence"].as_str().unwrap_or_default().to_string()))
            .collect()
    };
    let running = format!("owned by uid {uid}, which the container's processes run as");
    assert_eq!(
        evidence(&plan(&[])),
        [("/var/lib/redis".to_string(), running.clone()), ("/var/log/redis".to_string(), running)],
        "{:#}",
        plan(&[])
    );
    assert!(evidence(&plan(&["--observed-only"])).is_empty());
    c.stop();
    let stopped = format!("owned by uid {uid}, which the container's configured user ({uid}:{gid}) is");
    assert_eq!(evidence(&plan(&[])), [("/var/lib/redis".to_string(), stopped.clone()), ("/var/log/redis".to_string(), stopped)]);
    drop(c);
    let _ = ctr("default", &["images", "rm", &image]);
}
