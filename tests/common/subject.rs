//! A busybox container on either runtime of the sandbox, for cases that run the same way on both:
//! the sandbox's dockerd (overlay2, or btrfs with `RODIFF_STORAGE_DRIVER=btrfs`) and its
//! standalone containerd (`RODIFF_CONTAINERD=1`: the overlayfs and the btrfs snapshotter).
//!
//! What differs is hidden here: how a container is made, entered and diffed, and the oracle a
//! diff is held against — the Docker API's own diff on Docker; on containerd, which has none, the
//! naive two-tree comparison ([`super::naive`]) of the container's merged view (as its processes
//! see it) with the image (a read-only view snapshot of the container's parent, mounted by the
//! test), the runtime's mount points left out of both.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::OnceLock;

use super::containerd::{self as ctrd, CtrContainer};
use super::docker::{self, json_path, lossy, parse_docker_lines, parse_json, Container, BUSYBOX};
use super::{naive, run};

/// `(kind, path bytes)`: a change as `docker diff` shows it.
pub type Changes = BTreeSet<(char, Vec<u8>)>;

/// The containerd namespace the containers of these cases live in.
const NAMESPACE: &str = "default";

/// Where a case runs.
#[derive(Clone, Copy, Debug)]
pub enum Runtime {
    /// The sandbox's dockerd, whatever its storage driver.
    Docker,
    /// The sandbox's containerd, with this snapshotter (`overlayfs`, `btrfs`).
    Containerd(&'static str),
}

impl Runtime {
    /// Both snapshotters of the sandbox's containerd.
    pub const CONTAINERD: [Runtime; 2] = [Runtime::Containerd("overlayfs"), Runtime::Containerd("btrfs")];

    /// `docker overlay2`, `containerd btrfs`: for messages.
    pub fn label(&self) -> String {
        match self {
            Runtime::Docker => format!("docker {}", docker::storage_driver()),
            Runtime::Containerd(snapshotter) => format!("containerd {snapshotter}"),
        }
    }

    /// Whether the runtime is there (skips locally, fails under CI when it is not).
    pub fn available(&self) -> bool {
        match self {
            Runtime::Docker => docker::sandbox(),
            Runtime::Containerd(_) => ctrd::sandbox(),
        }
    }

    /// Runs `cmd` in a new busybox container (no network) with the capabilities `caps` added
    /// (`SYS_ADMIN`, `MKNOD`); it is removed on drop.
    pub fn run(&self, prefix: &str, caps: &[&str], cmd: &[&str]) -> Subject {
        match *self {
            Runtime::Docker => {
                let extra: Vec<&str> = caps.iter().flat_map(|cap| ["--cap-add", cap]).collect();
                Subject::Docker(Container::run(prefix, &extra, BUSYBOX, cmd))
            }
            Runtime::Containerd(snapshotter) => {
                let caps: Vec<String> = caps.iter().map(|cap| format!("CAP_{cap}")).collect();
                let extra: Vec<&str> = caps.iter().flat_map(|cap| ["--cap-add", cap.as_str()]).collect();
                let id = ctrd::unique_id(&format!("{prefix}-{snapshotter}"));
                let c = CtrContainer::run(NAMESPACE, &id, snapshotter, &extra, containerd_busybox(), cmd);
                let mount_points = c.spec_mounts().into_iter().map(|(destination, _)| destination.into_bytes()).collect();
                Subject::Containerd { c, snapshotter, mount_points }
            }
        }
    }
}

/// The busybox image of the sandbox's dockerd, imported into containerd once per test binary.
fn containerd_busybox() -> &'static str {
    static IMAGE: OnceLock<String> = OnceLock::new();
    IMAGE.get_or_init(|| ctrd::import(NAMESPACE, BUSYBOX))
}

/// A running container on one of the runtimes.
pub enum Subject {
    /// On the sandbox's dockerd.
    Docker(Container),
    /// On the sandbox's containerd.
    Containerd {
        /// The container.
        c: CtrContainer,
        /// Its snapshotter.
        snapshotter: &'static str,
        /// The destinations of its OCI spec's mounts: runc makes those directories in the
        /// rootfs, and the merged view shows the mounted filesystems there.
        mount_points: Vec<Vec<u8>>,
    },
}

impl Subject {
    /// Its name (Docker) or id (containerd).
    pub fn name(&self) -> &str {
        match self {
            Subject::Docker(c) => &c.name,
            Subject::Containerd { c, .. } => &c.id,
        }
    }

    /// `sh -c SCRIPT` in the container; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        match self {
            Subject::Docker(c) => c.sh(script),
            Subject::Containerd { c, .. } => c.sh(script),
        }
    }

    /// The host path of `path` in the running container's root filesystem, through its mount
    /// namespace (`/proc/<pid>/root`).
    pub fn host_path(&self, path: &str) -> PathBuf {
        match self {
            Subject::Docker(c) => c.host_path(path),
            Subject::Containerd { c, .. } => PathBuf::from(format!("/proc/{}/root{path}", task_pid(c))),
        }
    }

    /// `rodiff diff` of the container (with the runtime's options) and `args`.
    pub fn rodiff_diff(&self, args: &[&str]) -> Output {
        match self {
            Subject::Docker(c) => {
                let mut all = vec!["diff", c.name.as_str()];
                all.extend_from_slice(args);
                docker::rodiff(&all)
            }
            Subject::Containerd { c, .. } => c.rodiff_diff(args),
        }
    }

    /// Whether `path` is a mount point the runtime made (never on Docker, whose init layer hides
    /// them): left out of what is compared.
    pub fn is_mount_point(&self, path: &[u8]) -> bool {
        match self {
            Subject::Docker(_) => false,
            Subject::Containerd { mount_points, .. } => mount_points.iter().any(|m| m == path),
        }
    }

    /// `rodiff diff --format FORMAT`'s paths (`jsonl` or `docker`), mount points left out;
    /// panics when it fails.
    pub fn paths(&self, format: &str) -> Vec<Vec<u8>> {
        let out = self.rodiff_diff(&["--format", format]);
        assert!(out.status.success(), "rodiff diff {} --format {format}: {}", self.name(), String::from_utf8_lossy(&out.stderr));
        let paths: Vec<Vec<u8>> = match format {
            "jsonl" => out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| json_path(&serde_json::from_slice(l).unwrap())).collect(),
            "docker" => parse_docker_lines(&out.stdout).into_iter().map(|(_, p)| p).collect(),
            other => panic!("no paths of format {other}"),
        };
        paths.into_iter().filter(|p| !self.is_mount_point(p)).collect()
    }

    /// `rodiff diff --format json`, parsed, mount points left out; panics when it fails.
    pub fn json(&self) -> Vec<serde_json::Value> {
        let out = self.rodiff_diff(&["--format", "json"]);
        assert!(out.status.success(), "rodiff diff {} --format json: {}", self.name(), String::from_utf8_lossy(&out.stderr));
        parse_json(&out.stdout).into_iter().filter(|v| !self.is_mount_point(&json_path(v))).collect()
    }

    /// What `rodiff diff` (docker format) says, mount points left out.
    pub fn changes(&self) -> Changes {
        let out = self.rodiff_diff(&[]);
        assert!(out.status.success(), "rodiff diff {}: {}", self.name(), String::from_utf8_lossy(&out.stderr));
        parse_docker_lines(&out.stdout).into_iter().filter(|(_, p)| !self.is_mount_point(p)).collect()
    }

    /// Asserts that rodiff's diff is the oracle's: the Docker API's diff (compared as Docker
    /// renders names: invalid UTF-8 replaced), or on containerd the naive comparison of the
    /// merged view with the image (exact bytes); and that the JSON diff carries the exact bytes
    /// of each path in `exact`.
    pub fn assert_oracle_parity(&self, exact: &[&[u8]]) {
        let ours = self.changes();
        match self {
            Subject::Docker(c) => assert_eq!(lossy(&ours), c.docker_changes(), "rodiff diff against docker diff of {}", c.name),
            Subject::Containerd { .. } => {
                let naive = self.naive_changes();
                let only_ours: Vec<_> = lossy(&ours.difference(&naive).cloned().collect()).into_iter().collect();
                let only_naive: Vec<_> = lossy(&naive.difference(&ours).cloned().collect()).into_iter().collect();
                assert!(only_ours.is_empty() && only_naive.is_empty(), "{}: only rodiff: {only_ours:?}\nonly the merged view: {only_naive:?}", self.name());
            }
        }
        let json: BTreeSet<Vec<u8>> = self.json().iter().map(json_path).collect();
        for path in exact {
            assert!(json.contains(*path), "{:?} missing from the JSON diff of {}", String::from_utf8_lossy(path), self.name());
        }
    }

    /// The naive oracle on containerd: the merged view against the image, mount points skipped.
    fn naive_changes(&self) -> Changes {
        let Subject::Containerd { c, snapshotter, mount_points } = self else { panic!("the naive oracle is for containerd") };
        let image = ImageView::mount(c, snapshotter);
        naive::diff_skipping(&self.host_path("/"), &image.target, mount_points)
    }
}

/// The pid of a containerd container's task (`ctr tasks ls`: `TASK PID STATUS`).
fn task_pid(c: &CtrContainer) -> u32 {
    let tasks = ctrd::ctr(&c.ns, &["tasks", "ls"]);
    let line = tasks.lines().find(|l| l.split_whitespace().next() == Some(c.id.as_str())).unwrap_or_else(|| panic!("no task {}: {tasks}", c.id));
    let pid = line.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!(pid != 0, "{} is not running", c.id);
    pid
}

/// The image of a containerd container, as its parent snapshot: a read-only view snapshot,
/// mounted below the sandbox's directory; unmounted and removed on drop.
struct ImageView {
    ns: String,
    snapshotter: String,
    key: String,
    _dir: tempfile::TempDir,
    target: PathBuf,
}

impl ImageView {
    fn mount(c: &CtrContainer, snapshotter: &str) -> ImageView {
        let snapshots = |args: &[&str]| -> String {
            let mut all = vec!["snapshots", "--snapshotter", snapshotter];
            all.extend_from_slice(args);
            ctrd::ctr(&c.ns, &all)
        };
        // `ctr run` names the container's snapshot after the container.
        let info: serde_json::Value = serde_json::from_str(&snapshots(&["info", &c.id])).expect("ctr snapshots info JSON");
        let parent = info["Parent"].as_str().unwrap_or_else(|| panic!("{} has no parent snapshot: {info}", c.id)).to_string();
        let key = format!("{}-image-view", c.id);
        snapshots(&["view", &key, &parent]);
        let dir = tempfile::Builder::new().prefix("image-view.").tempdir_in(std::env::var("RODIFF_SANDBOX").expect("RODIFF_SANDBOX")).unwrap();
        let target = dir.path().join("rootfs");
        std::fs::create_dir(&target).unwrap();
        let view = ImageView { ns: c.ns.clone(), snapshotter: snapshotter.to_string(), key, _dir: dir, target };
        // `mount -t TYPE SOURCE TARGET -o OPTIONS`, as ctr prints it.
        let command = snapshots(&["mounts", &view.target.display().to_string(), &view.key]);
        run(Command::new("sh").args(["-c", &command]));
        view
    }
}

impl Drop for ImageView {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
        let _ = Command::new("ctr")
            .args(["-a", &ctrd::address(), "-n", &self.ns, "snapshots", "--snapshotter", &self.snapshotter, "rm", &self.key])
            .output();
    }
}

