//! Helpers for tests against the sandbox's standalone containerd (`RODIFF_CONTAINERD=1
//! scripts/sandbox.sh run -- …`, as `make test` does, sets `CONTAINERD_ADDRESS` and
//! `RODIFF_RUNC_ROOT`).

use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{require, run};

/// Whether the sandbox containerd is available (skips locally, fails under CI when it is not).
pub fn sandbox() -> bool {
    require(
        std::env::var_os("CONTAINERD_ADDRESS").is_some() && std::env::var_os("RODIFF_SANDBOX").is_some(),
        "the sandbox containerd (run the tests with `make test`)",
    )
}

/// The sandbox containerd's socket.
pub fn address() -> String {
    std::env::var("CONTAINERD_ADDRESS").expect("CONTAINERD_ADDRESS")
}

/// Runs `ctr -a ADDRESS -n NS ARGS…`; panics on failure.
pub fn ctr(ns: &str, args: &[&str]) -> String {
    run(Command::new("ctr").args(["-a", &address(), "-n", ns]).args(args)).trim().to_string()
}

/// Copies a docker image of the sandbox dockerd into containerd namespace `ns`; returns the
/// reference containerd knows it by (`docker.io/NAME:TAG`).
pub fn import(ns: &str, docker_image: &str) -> String {
    let script = format!("docker save {docker_image} | ctr -a {} -n {ns} images import - >/dev/null", address());
    run(Command::new("sh").args(["-c", &script]));
    if docker_image.contains('/') {
        format!("docker.io/{docker_image}")
    } else {
        format!("docker.io/library/{docker_image}")
    }
}

/// A unique container id with a readable prefix.
pub fn unique_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("rodiff-{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

/// A containerd container started with `ctr run -d`, removed with its snapshot on drop.
pub struct CtrContainer {
    /// Its namespace.
    pub ns: String,
    /// Its id.
    pub id: String,
}

impl CtrContainer {
    /// `ctr run -d --snapshotter S [extra] IMAGE ID CMD…` (runc state kept in the sandbox).
    pub fn run(ns: &str, id: &str, snapshotter: &str, extra: &[&str], image: &str, cmd: &[&str]) -> CtrContainer {
        let runc_root = std::env::var("RODIFF_RUNC_ROOT").expect("RODIFF_RUNC_ROOT");
        let mut args = vec!["run", "-d", "--runc-root", &runc_root, "--snapshotter", snapshotter];
        args.extend_from_slice(extra);
        args.extend_from_slice(&[image, id]);
        args.extend_from_slice(cmd);
        // `ctr run -d` keeps its stdout open through the container's: do not wait for EOF.
        let status = Command::new("ctr")
            .args(["-a", &address(), "-n", ns])
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("ctr run");
        assert!(status.success(), "ctr run {args:?} failed");
        CtrContainer { ns: ns.to_string(), id: id.to_string() }
    }

    /// `sh -c SCRIPT` in the running container; panics on failure.
    pub fn sh(&self, script: &str) -> String {
        static N: AtomicUsize = AtomicUsize::new(0);
        let exec_id = format!("exec-{}", N.fetch_add(1, Ordering::Relaxed));
        ctr(&self.ns, &["tasks", "exec", "--exec-id", &exec_id, &self.id, "sh", "-c", script])
    }

    /// Stops the container: its task is killed and deleted; the record and snapshot stay.
    pub fn stop(&self) {
        ctr(&self.ns, &["tasks", "rm", "-f", &self.id]);
    }

    /// The `(destination, type)` of the mounts in the container's OCI spec.
    pub fn spec_mounts(&self) -> Vec<(String, String)> {
        let info: serde_json::Value = serde_json::from_str(&ctr(&self.ns, &["containers", "info", &self.id])).expect("ctr c info JSON");
        info["Spec"]["mounts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|m| (m["destination"].as_str().unwrap_or_default().to_string(), m["type"].as_str().unwrap_or_default().to_string()))
            .collect()
    }

    /// `rodiff --runtime containerd -n NS diff ID ARGS…`.
    pub fn rodiff_diff(&self, args: &[&str]) -> Output {
        let mut all = vec!["--runtime", "containerd", "-n", &self.ns, "diff", &self.id];
        all.extend_from_slice(args);
        rodiff(&all)
    }
}

impl Drop for CtrContainer {
    fn drop(&mut self) {
        let addr = address();
        let ctr = |args: &[&str]| Command::new("ctr").args(["-a", &addr, "-n", &self.ns]).args(args).output();
        let _ = ctr(&["tasks", "rm", "-f", &self.id]);
        let _ = ctr(&["containers", "rm", &self.id]);
    }
}

/// Runs the rodiff binary.
pub fn rodiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rodiff")).args(args).output().expect("run rodiff")
}
