//! Helpers for tests against the sandbox's Docker daemon (`scripts/sandbox.sh run -- …` sets
//! `DOCKER_HOST` and `RODIFF_SANDBOX`).

use std::collections::BTreeSet;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{require, run};

/// The image the sandbox builds from busybox-static.
pub const BUSYBOX: &str = "rodiff-test/busybox:latest";

/// Whether a sandbox daemon is available (skips locally, fails under CI when it is not).
pub fn sandbox() -> bool {
    require(std::env::var_os("RODIFF_SANDBOX").is_some(), "the Docker sandbox (run the tests with `make test`)")
}

/// The sandbox daemon's storage driver (`overlay2`, `btrfs`).
pub fn storage_driver() -> String {
    docker(&["info", "-f", "{{.Driver}}"])
}

/// Runs the docker CLI against the sandbox; panics on failure.
pub fn docker(args: &[&str]) -> String {
    run(Command::new("docker").args(args)).trim().to_string()
}

/// Runs the rodiff binary.
pub fn rodiff(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rodiff")).args(args).output().expect("run rodiff")
}

/// `rodiff diff NAME --format json`, parsed; panics when it fails.
pub fn rodiff_json(name: &str) -> Vec<serde_json::Value> {
    let out = rodiff(&["diff", name, "--format", "json"]);
    assert!(out.status.success(), "rodiff diff --format json {name}: {}", String::from_utf8_lossy(&out.stderr));
    parse_json(&out.stdout)
}

/// A uniquely named container, removed (with its anonymous volumes) on drop.
pub struct Container {
    /// Its name.
    pub name: String,
}

impl Container {
    /// `docker run -d --network none [extra] IMAGE CMD…` under a unique name.
    pub fn run(prefix: &str, extra: &[&str], image: &str, cmd: &[&str]) -> Container {
        static N: AtomicUsize = AtomicUsize::new(0);
        let name = format!("rodiff-{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let mut args = vec!["run", "-d", "--network", "none", "--name", &name];
        args.extend_from_slice(extra);
        args.push(image);
        args.extend_from_slice(cmd);
        docker(&args);
        Container { name }
    }

    /// `docker exec NAME sh -c SCRIPT`.
    pub fn sh(&self, script: &str) -> String {
        docker(&["exec", &self.name, "sh", "-c", script])
    }

    /// The host path of `path` in the running container's root filesystem, through its mount
    /// namespace (`/proc/<State.Pid>/root`): for what `sh` in a busybox image cannot do.
    pub fn host_path(&self, path: &str) -> std::path::PathBuf {
        let pid = docker(&["inspect", "-f", "{{.State.Pid}}", &self.name]);
        assert!(pid != "0", "{} is not running", self.name);
        std::path::PathBuf::from(format!("/proc/{pid}/root{path}"))
    }

    /// What the Docker API's `/containers/{id}/changes` says, as `(kind, path)` with the path as
    /// Docker renders it (invalid UTF-8 replaced by U+FFFD).
    pub fn docker_changes(&self) -> BTreeSet<(char, String)> {
        self.try_docker_changes().unwrap_or_else(|e| panic!("docker diff {}: {e}", self.name))
    }

    /// [`Container::docker_changes`], or Docker's error (it fails on paths beyond `PATH_MAX`).
    pub fn try_docker_changes(&self) -> Result<BTreeSet<(char, String)>, String> {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let host = super::client_options(rodiff::Runtime::Docker).docker_host;
            let socket = host.strip_prefix("unix://").expect("a unix socket");
            // Debian's dockerd 20.10 speaks API 1.41 at most; ask for no more.
            let version = bollard::ClientVersion { major_version: 1, minor_version: 41 };
            let client = bollard::Docker::connect_with_unix(socket, 120, &version).unwrap();
            let changes = client.container_changes(&self.name).await.map_err(|e| e.to_string())?.unwrap_or_default();
            Ok(changes
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
                .collect())
        })
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker").args(["rm", "-f", "-v", &self.name]).output();
    }
}

/// Parses `rodiff diff --format docker` output back into `(kind, path bytes)`, undoing the C-style
/// escapes.
pub fn parse_docker_lines(text: &[u8]) -> BTreeSet<(char, Vec<u8>)> {
    text.split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|line| {
            assert!(line.len() > 2 && line[1] == b' ', "bad line {:?}", String::from_utf8_lossy(line));
            (line[0] as char, unescape(&line[2..]))
        })
        .collect()
}

fn unescape(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 1 < s.len() {
            match s[i + 1] {
                b'n' => {
                    out.push(b'\n');
                    i += 2;
                    continue;
                }
                b'r' => {
                    out.push(b'\r');
                    i += 2;
                    continue;
                }
                b'x' if i + 4 <= s.len() => {
                    let hex = std::str::from_utf8(&s[i + 2..i + 4]).unwrap();
                    out.push(u8::from_str_radix(hex, 16).unwrap());
                    i += 4;
                    continue;
                }
                _ => {}
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// Parses rodiff's JSON array output into values.
pub fn parse_json(stdout: &[u8]) -> Vec<serde_json::Value> {
    serde_json::from_slice::<serde_json::Value>(stdout).expect("rodiff JSON").as_array().unwrap().clone()
}

/// A JSON change's path as bytes (string, or array of byte values).
pub fn json_path(v: &serde_json::Value) -> Vec<u8> {
    match &v["path"] {
        serde_json::Value::String(s) => s.as_bytes().to_vec(),
        serde_json::Value::Array(bytes) => bytes.iter().map(|b| b.as_u64().unwrap() as u8).collect(),
        other => panic!("bad path {other}"),
    }
}

/// `(kind, lossy path)` as Docker would render a path.
pub fn lossy(set: &BTreeSet<(char, Vec<u8>)>) -> BTreeSet<(char, String)> {
    set.iter().map(|(k, p)| (*k, String::from_utf8_lossy(p).into_owned())).collect()
}
