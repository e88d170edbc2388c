//! `rodiff diff` against `docker diff` on real containers in the sandbox daemon: a corpus of file
//! operations (plus a `setcap` made from the host), compared as sets with the Docker API's own answer for the same container, running
//! and stopped; odd names checked losslessly in JSON; a container that swaps a directory for a
//! symlink to `/` while rodiff scans it; and the error paths (exit codes, messages).

mod common;

use std::collections::BTreeSet;

use common::corpus::{CORPUS, FIXTURE};
use common::docker::*;

struct Corpus {
    container: Container,
    image: String,
}

impl Drop for Corpus {
    fn drop(&mut self) {
        let _ = std::process::Command::new("docker").args(["rm", "-f", "-v", &self.container.name]).output();
        let _ = std::process::Command::new("docker").args(["rmi", &self.image]).output();
    }
}

/// Builds the fixture image and runs the corpus in a container with a volume at `/vol`.
fn corpus() -> Corpus {
    let base = Container::run("fixture", &[], BUSYBOX, &["sh", "-c", FIXTURE]);
    docker(&["wait", &base.name]);
    let image = format!("rodiff-test/corpus:{}-{}", std::process::id(), base.name.rsplit('-').next().unwrap());
    docker(&["commit", &base.name, &image]);
    let container = Container::run("corpus", &["-v", "/vol"], &image, &["sleep", "3600"]);
    container.sh(CORPUS);
    // setcap (busybox has none): set from the host, through the container's mount namespace.
    common::ops::set_capability(&container.host_path("/fx/caps/bind"), Some(&common::ops::CAP_NET_BIND_SERVICE));
    Corpus { container, image }
}

fn rodiff_docker_set(name: &str) -> BTreeSet<(char, Vec<u8>)> {
    let out = rodiff(&["diff", name]);
    assert!(out.status.success(), "rodiff diff {name}: {}", String::from_utf8_lossy(&out.stderr));
    parse_docker_lines(&out.stdout)
}

fn assert_same_as_docker(name: &str, expected: &BTreeSet<(char, String)>) {
    let ours = lossy(&rodiff_docker_set(name));
    let only_ours: Vec<_> = ours.difference(expected).collect();
    let only_docker: Vec<_> = expected.difference(&ours).collect();
    assert!(only_ours.is_empty() && only_docker.is_empty(), "only rodiff: {only_ours:?}\nonly docker: {only_docker:?}");
}

#[test]
fn corpus_matches_docker_diff_running_and_stopped() {
    if !sandbox() {
        return;
    }
    let c = corpus();
    let name = &c.container.name;
    let expected = c.container.docker_changes();
    assert!(expected.len() > 40, "the corpus should make many changes: {expected:?}");
    assert_same_as_docker(name, &expected);

    // JSON: same entries plus T; odd names round-trip byte for byte.
    let json = rodiff_json(name);
    let paths: BTreeSet<Vec<u8>> = json.iter().map(json_path).collect();
    assert!(paths.contains(b"/fx/new\nline".as_slice()));
    assert!(paths.contains(b"/fx/bad\xffbyte".as_slice()));
    assert!(paths.contains(b"/fx/with space".as_slice()));
    let kind_of = |p: &str| json.iter().find(|v| json_path(v) == p.as_bytes()).map(|v| v["kind"].as_str().unwrap().to_string());
    assert_eq!(kind_of("/fx/tmpd").as_deref(), Some("T"), "temp file made and removed leaves a touched dir");
    // Opening for writing and chmod-and-back copy a file up on overlayfs (a write that fails under
    // --read-only); btrfs has no copy-up and nothing differs.
    let copy_up = if storage_driver() == "btrfs" { None } else { Some("T") };
    assert_eq!(kind_of("/fx/keep/same").as_deref(), copy_up, "opened for writing, unchanged");
    assert_eq!(kind_of("/fx/keep/again").as_deref(), copy_up, "chmod and back");
    let vol = json.iter().find(|v| json_path(v) == b"/vol").expect("/vol mount point");
    assert_eq!(vol["mountpoint"], true);
    assert_eq!(kind_of("/fx/fifo").as_deref(), Some("A"));
    assert_eq!(kind_of("/fx/caps/bind").as_deref(), Some("C"), "setcap changes no stat field, but docker diff sees it");
    assert_eq!(json.iter().find(|v| json_path(v) == b"/fx/fifo").unwrap()["type"], "fifo");
    let big = json.iter().find(|v| json_path(v) == b"/fx/big").unwrap();
    assert_eq!(big["size"], 8 << 20);

    // jsonl carries the same changes as json.
    let out = rodiff(&["diff", name, "--format", "jsonl"]);
    assert!(out.status.success());
    let lines: BTreeSet<String> = out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| {
        let v: serde_json::Value = serde_json::from_slice(l).unwrap();
        v.to_string()
    }).collect();
    let from_json: BTreeSet<String> = json.iter().map(|v| v.to_string()).collect();
    assert_eq!(lines, from_json);

    // Stopped: the same answer.
    docker(&["stop", "-t", "1", name]);
    let stopped = c.container.docker_changes();
    assert_eq!(stopped, expected);
    assert_same_as_docker(name, &stopped);
    assert_no_helper_snapshots();
}

/// Held by tests that look at (or deliberately leak) btrfs helper snapshots.
static HELPER_SNAPSHOTS: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// On btrfs, no helper snapshot may outlive the rodiff process that made it. (Other tests' runs
/// may hold live ones right now; those are theirs to remove.)
fn assert_no_helper_snapshots() {
    if storage_driver() != "btrfs" {
        return;
    }
    let _held = HELPER_SNAPSHOTS.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(&std::env::var("RODIFF_SANDBOX").unwrap()).join("docker-btrfs/.rodiff-snapshots");
    let leaked = common::btrfs::leaked_helper_snapshots(&dir);
    assert!(leaked.is_empty(), "helper snapshots of finished processes left in {}: {leaked:?}", dir.display());
}

#[test]
fn symlink_swapped_in_during_the_scan_is_never_followed() {
    if !sandbox() {
        return;
    }
    let c = Container::run("swap", &[], BUSYBOX, &["sh", "-c", r#"
        mkdir -p /sw/sub && echo 1 > /sw/f1 && echo 3 > /sw/sub/f3
        while :; do mv /sw /sw.d; ln -s / /sw; rm /sw; mv /sw.d /sw; done"#]);
    let allowed = ["", "/f1", "/sub", "/sub/f3"];
    let mut seen = 0;
    for _ in 0..40 {
        let out = rodiff(&["diff", &c.name, "--format", "jsonl"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for line in out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            let v: serde_json::Value = serde_json::from_slice(line).unwrap();
            let path = String::from_utf8_lossy(&json_path(&v)).into_owned();
            for root in ["/sw.d", "/sw"] {
                if let Some(rest) = path.strip_prefix(root) {
                    if rest.is_empty() || rest.starts_with('/') {
                        assert!(allowed.contains(&rest), "reported {path}: outside the layer");
                        seen += 1;
                        break;
                    }
                }
            }
        }
    }
    assert!(seen > 0, "the swapping directory was never seen");
}

#[test]
fn errors_name_the_container_or_endpoint_with_contract_exit_codes() {
    if !sandbox() {
        return;
    }
    let out = rodiff(&["diff", "no-such-container-rodiff"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no-such-container-rodiff") && err.lines().count() == 1, "{err}");

    let out = rodiff(&["-H", "unix:///nonexistent/docker.sock", "diff", "x"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unix:///nonexistent/docker.sock") && err.lines().count() == 1, "{err}");

    let out = rodiff(&["diff", "x", "--format", "yaml"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn an_unsupported_storage_driver_exits_4_naming_it() {
    if !sandbox() {
        return;
    }
    // A second, throw-away sandbox whose dockerd uses the vfs driver.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh");
    let out = std::process::Command::new(script)
        .env("RODIFF_STORAGE_DRIVER", "vfs")
        .args(["run", "--images", "busybox", "--", "sh", "-c"])
        .arg(r#"docker run --name on-vfs --network none rodiff-test/busybox:latest touch /x >/dev/null && exec "$0" diff on-vfs"#)
        .arg(env!("CARGO_BIN_EXE_rodiff"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    let line = err.lines().find(|l| l.starts_with("rodiff:")).expect("an error line from rodiff");
    assert!(line.contains("on-vfs") && line.contains("storage driver vfs (supported: overlay2, btrfs)"), "{line}");
}

/// A dockerd with `userns-remap`: its overlay2 layers belong to the remapped root, not to root,
/// yet it mounts them without `userxattr`, so their markers are `trusted.overlay.*`. An opaque
/// directory (deleted and re-created) and a renamed directory are reported as `docker diff`
/// reports them. (A throw-away overlay2 sandbox of its own; run once, from the overlay2 sandbox.)
#[test]
fn a_userns_remap_daemon_is_read_with_trusted_markers() {
    if !sandbox() {
        return;
    }
    if storage_driver() != "overlay2" {
        eprintln!("not applicable: runs once, from the overlay2 sandbox");
        return;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh");
    let out = std::process::Command::new(script)
        .env("RODIFF_USERNS_REMAP", "1")
        .env("RODIFF_STORAGE_DRIVER", "overlay2")
        .args(["run", "--images", "busybox", "--", "sh", "-c"])
        .arg(r#"set -e
            docker run -d --name remapped --network none rodiff-test/busybox:latest sleep 3600 >/dev/null
            docker exec remapped sh -c 'rm -rf /srv/del && mkdir /srv/del && echo n > /srv/del/new && mv /srv/rendir /srv/rendir2'
            echo "upper owner: $(stat -c %u "$(docker inspect -f '{{.GraphDriver.Data.UpperDir}}' remapped)")"
            docker diff remapped | sort > "$RODIFF_SANDBOX/docker.txt"
            "$0" diff remapped | sort > "$RODIFF_SANDBOX/rodiff.txt"
            echo "docker diff:"; cat "$RODIFF_SANDBOX/docker.txt"
            echo "rodiff diff:"; cat "$RODIFF_SANDBOX/rodiff.txt"
            cmp -s "$RODIFF_SANDBOX/docker.txt" "$RODIFF_SANDBOX/rodiff.txt""#)
        .arg(env!("CARGO_BIN_EXE_rodiff"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "rodiff and docker diff differ:\n{report}");
    let owner = stdout.lines().find_map(|l| l.strip_prefix("upper owner: ")).expect("the upper directory's owner");
    assert_ne!(owner, "0", "the layer should belong to the remapped root:\n{report}");
    assert!(stdout.contains("D /srv/del/1") && stdout.contains("A /srv/rendir2/inner/f"), "{report}");
}

/// btrfs: a run interrupted mid-scan removes its helper snapshot; one killed outright leaves it,
/// and the next run sweeps it.
#[test]
fn interrupted_or_killed_runs_leave_no_helper_snapshot() {
    if !sandbox() {
        return;
    }
    if storage_driver() != "btrfs" {
        eprintln!("not applicable: helper snapshots exist only on btrfs");
        return;
    }
    // Enough changes (~500 KB of output, more than rodiff's 256 KB buffer and the pipe's 64 KB)
    // that the output, a pipe nobody reads, blocks the scan while the helper snapshot exists.
    let c = Container::run("killed", &[], BUSYBOX, &["sh", "-c", "mkdir /many && cd /many && for i in $(seq 25000); do : > file-$i; done; touch /done; sleep 3600"]);
    while std::process::Command::new("docker").args(["exec", &c.name, "test", "-e", "/done"]).status().map(|s| !s.success()).unwrap_or(true) {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let _held = HELPER_SNAPSHOTS.lock().unwrap_or_else(|e| e.into_inner());
    let helpers = std::path::Path::new(&std::env::var("RODIFF_SANDBOX").unwrap()).join("docker-btrfs/.rodiff-snapshots");
    // Other tests run rodiff at the same time: count only the snapshots of the process under test.
    let count = |pid: u32| {
        let prefix = format!("rodiff-{pid}-");
        std::fs::read_dir(&helpers)
            .map(|rd| rd.flatten().filter(|e| e.file_name().to_string_lossy().starts_with(&prefix)).count())
            .unwrap_or(0)
    };
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGKILL] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["diff", &c.name])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while count(pid) == 0 {
            assert!(std::time::Instant::now() < deadline, "no helper snapshot appeared");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        assert_eq!(count(pid), 1, "the scan should be blocked on its output");
        unsafe { libc::kill(pid as i32, signal) };
        let status = child.wait().unwrap();
        if signal == libc::SIGKILL {
            assert_eq!(count(pid), 1, "SIGKILL cannot clean up");
            // The next run sweeps it.
            let out = rodiff(&["diff", &c.name]);
            assert!(out.status.success());
        } else {
            assert_eq!(std::os::unix::process::ExitStatusExt::into_raw(status) >> 8, 128 + signal, "exit status");
        }
        assert_eq!(count(pid), 0, "helper snapshot left after signal {signal}");
    }
}

/// `(kind, path, type)` of every change `rodiff diff --format json` reports, `T` included.
fn rodiff_kinds(name: &str) -> BTreeSet<(String, Vec<u8>, String)> {
    rodiff_json(name)
        .iter()
        .map(|v| (v["kind"].as_str().unwrap().to_string(), json_path(v), v["type"].as_str().unwrap().to_string()))
        .collect()
}

#[test]
fn reads_by_the_application_docker_diff_and_find_change_nothing() {
    if !sandbox() {
        return;
    }
    // On btrfs (relatime), the first read of a file or listing of a directory rewrites its inode
    // item: the state every container is in once its application, `docker diff`, a backup tool
    // or a scanner has read it. None of that is a write.
    let c = corpus();
    let name = &c.container.name;
    let before = rodiff_kinds(name);
    c.container.sh("find / -xdev -type f -exec cat {} + > /dev/null 2>&1; ls -laR / > /dev/null 2>&1; true");
    docker(&["diff", name]);
    let pid = docker(&["inspect", "-f", "{{.State.Pid}}", name]);
    common::run(std::process::Command::new("find").arg(format!("/proc/{pid}/root/")).arg("-xdev"));
    assert_eq!(rodiff_kinds(name), before, "reads changed what rodiff reports");
    assert_same_as_docker(name, &c.container.docker_changes());
}

#[test]
fn a_reader_that_closes_the_pipe_early_is_not_an_error() {
    if !sandbox() {
        return;
    }
    // More output than a pipe holds (64 KiB), so that rodiff writes after `head` has gone.
    let c = Container::run("pipe", &[], BUSYBOX, &["sh", "-c", "mkdir /w && for i in $(seq 8000); do : > /w/file-with-a-long-name-$i; done; exec sleep 3600"]);
    while c.sh("ls /w | wc -l").trim() != "8000" {
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    for format in ["docker", "jsonl"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["diff", &c.name, "--format", format])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdout = child.stdout.take().unwrap();
        let mut first = [0u8; 64];
        std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
        drop(stdout);
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{format}: {:?} {}", out.status, String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "{format}: {}", String::from_utf8_lossy(&out.stderr));
    }
}

/// Without CAP_SYS_ADMIN the kernel hides `trusted.overlay.*` attributes (an opaque directory
/// reads as plain, and the deletions under it vanish from the diff): an overlay2 diff refuses to
/// run rather than answer short.
#[test]
fn an_overlay_diff_without_cap_sys_admin_is_an_error_not_a_shorter_diff() {
    if !sandbox() || storage_driver() != "overlay2" {
        return;
    }
    let c = Container::run("nocap", &[], BUSYBOX, &["sh", "-c", "rm -rf /usr/share && mkdir /usr/share && echo x > /usr/share/x; sleep 3600"]);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let out = std::process::Command::new("setpriv")
        .args(["--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", env!("CARGO_BIN_EXE_rodiff"), "diff", &c.name])
        .output()
        .expect("setpriv");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("CAP_SYS_ADMIN") && stderr.contains(&c.name), "{stderr}");
    assert!(out.stdout.is_empty(), "nothing printed: {}", String::from_utf8_lossy(&out.stdout));
    // With it, the opaque directory's deletion is there.
    let out = rodiff(&["diff", &c.name]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("C /usr/share"), "{}", String::from_utf8_lossy(&out.stdout));
}

/// Tampering that metadata hides: an image file rewritten with other bytes of the same size and
/// its mtime put back (`touch -r`). `docker diff` shows nothing; rodiff must say `C` on both
/// engines, because the bytes differ. The same rewrite with identical bytes is no change (`T` on
/// overlay2, where the copy-up is a write rodiff sees; nothing on btrfs).
#[test]
fn a_same_size_rewrite_with_its_mtime_restored_is_a_change() {
    if !sandbox() {
        return;
    }
    let script = "touch -r /etc/group /tmp/ref; tr 'a-z' 'b-za' < /etc/group > /tmp/x; cat /tmp/x > /etc/group; touch -r /tmp/ref /etc/group; \
        touch -r /etc/passwd /tmp/ref2; cat /etc/passwd > /tmp/y; cat /tmp/y > /etc/passwd; touch -r /tmp/ref2 /etc/passwd; sleep 3600";
    let c = Container::run("tamper", &[], BUSYBOX, &["sh", "-c", script]);
    std::thread::sleep(std::time::Duration::from_millis(800));
    let json = rodiff_json(&c.name);
    let kind = |p: &str| json.iter().find(|v| json_path(v) == p.as_bytes()).map(|v| v["kind"].as_str().unwrap().to_string());
    assert_eq!(kind("/etc/group").as_deref(), Some("C"), "{json:?}");
    let expected_same = if storage_driver() == "overlay2" { Some("T") } else { None };
    assert_eq!(kind("/etc/passwd").as_deref(), expected_same, "{json:?}");
    // docker diff cannot see the tampering (its rule is metadata only): rodiff reports more.
    assert!(!c.docker_changes().iter().any(|(_, p)| p == "/etc/group"));
}

/// A user who may use the Docker socket but is not root: the API answers, the layer cannot be read.
/// The error is one line naming the container, says its cause once, and what rodiff needs.
#[test]
fn a_user_with_the_docker_socket_but_not_root_is_told_what_is_needed() {
    if !sandbox() {
        return;
    }
    let c = Container::run("nonroot", &[], BUSYBOX, &["sh", "-c", "echo x > /new; sleep 3600"]);
    // The sandbox's socket lives in a directory only root may enter: bind it into one everyone
    // may (the tests run in the sandbox's own mount namespace), open to all like a `docker` group.
    let host = std::env::var("DOCKER_HOST").unwrap();
    let socket = host.strip_prefix("unix://").unwrap();
    let dir = tempfile::Builder::new().prefix("rodiff-nonroot").tempdir_in("/tmp").unwrap();
    std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let open = dir.path().join("docker.sock");
    std::fs::write(&open, b"").unwrap();
    common::run(std::process::Command::new("mount").arg("--bind").arg(socket).arg(&open));
    common::run(std::process::Command::new("chmod").arg("666").arg(&open));
    let out = std::process::Command::new("setpriv")
        .args(["--reuid", "65534", "--regid", "65534", "--clear-groups", "--inh-caps", "-all", "--bounding-set", "-all"])
        .arg(env!("CARGO_BIN_EXE_rodiff"))
        .args(["-H", &format!("unix://{}", open.display()), "diff", &c.name])
        .output()
        .expect("setpriv");
    let _ = std::process::Command::new("umount").arg(&open).output();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains(&c.name), "names the container: {stderr}");
    assert!(stderr.contains("CAP_SYS_ADMIN") || stderr.contains("run it as root"), "says what is needed: {stderr}");
    assert!(stderr.matches("Permission denied").count() <= 1, "the cause once: {stderr}");
    eprintln!("as uid 65534 with the socket: {}", stderr.trim());
}
