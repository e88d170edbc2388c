//! Live evidence on real Docker containers (run by `make test` on an overlay2 and on a btrfs
//! dockerd): writes that leave no name — `O_TMPFILE` files and unlinked files, held open by the
//! container's processes (`/bin/tmpfile-holder` of the busybox test image) — make their
//! directory `T`; memfds, tmpfs mounts, `/dev/shm` and volumes do not; a stopped container has no
//! evidence; and the plan's tmpfs on `/tmp` is what the program needs to run read-only.
//!
//! On btrfs the layer keeps no trace of such a write, so the `T` there can only come from the live
//! evidence; on both drivers the evidence itself is checked through the library.

mod common;

use std::collections::BTreeSet;
use std::process::Command;

use common::docker::*;
use common::live::*;

fn docker_options() -> rodiff::ClientOptions {
    common::client_options(rodiff::Runtime::Docker)
}

#[test]
fn tmpfiles_held_open_make_their_directories_touched() {
    if !sandbox() {
        return;
    }
    let c = Container::run("live-hold", &[], BUSYBOX, &["tmpfile-holder", "hold", "/tmp", "3"]);
    // Not State.Pid, nor a child of it: found through the container's cgroup.
    docker(&["exec", "-d", &c.name, "tmpfile-holder", "hold", "/var/tmp"]);
    c.sh(&wait_held_script(4));

    let (processes, files) = held(&c.name, &docker_options());
    let state_pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &c.name]).parse().unwrap();
    assert!(processes.pids.contains(&state_pid) && processes.pids.len() >= 2, "State.Pid and the exec'd process: {processes:?}");
    assert_eq!(processes.init, Some(state_pid), "the init is State.Pid: {processes:?}");
    let show = |f: &Vec<u8>| String::from_utf8_lossy(f).into_owned();
    assert_eq!(files.iter().filter(|f| is_tmpfile_in(f, "/tmp")).count(), 3, "{:?}", files.iter().map(show).collect::<Vec<_>>());
    assert_eq!(files.iter().filter(|f| is_tmpfile_in(f, "/var/tmp")).count(), 1, "{:?}", files.iter().map(show).collect::<Vec<_>>());
    assert_eq!(files.len(), 4);

    let json = rodiff_json(&c.name);
    assert_touched(&json, "/tmp", STICKY_WORLD, live_only());
    assert_touched(&json, "/var/tmp", STICKY_WORLD, live_only());
    assert_eq!(json.iter().filter(|v| json_path(v) == b"/tmp").count(), 1, "reported once");

    // JSON lines stream the layer's changes, then the evidence: the same objects.
    let out = rodiff(&["diff", &c.name, "--format", "jsonl"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let lines: BTreeSet<String> = out
        .stdout
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| serde_json::from_slice::<serde_json::Value>(l).unwrap().to_string())
        .collect();
    assert_eq!(lines, json.iter().map(|v| v.to_string()).collect::<BTreeSet<_>>());

    // The docker format leaves `T` out, as `docker diff` does (it shows nothing for /tmp).
    let out = rodiff(&["diff", &c.name]);
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains("/tmp"), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(!c.docker_changes().iter().any(|(_, p)| p.ends_with("/tmp")));
}

/// A file created, used and unlinked, whose name has a newline and ends in " (deleted)" itself:
/// the evidence keeps the name byte for byte, and since the unlink changed /tmp's mtime the layer
/// reports `/tmp` already, so the evidence adds nothing.
#[test]
fn an_unlinked_file_with_an_odd_name_is_read_byte_for_byte() {
    if !sandbox() {
        return;
    }
    let name = "odd\nname (deleted)";
    let c = Container::run("live-unlinked", &[], BUSYBOX, &["tmpfile-holder", "unlinked", "/tmp", name]);
    c.sh(&wait_held_script(1));
    let (_, files) = held(&c.name, &docker_options());
    assert_eq!(files, vec![format!("/tmp/{name}").into_bytes()]);

    let json = rodiff_json(&c.name);
    let tmp: Vec<_> = json.iter().filter(|v| json_path(v) == b"/tmp").collect();
    assert_eq!(tmp.len(), 1, "{json:#?}");
    assert_eq!(tmp[0]["kind"], "T", "{}", tmp[0]);
    assert!(tmp[0].get("evidence").is_none(), "the layer tells already (mtime): {}", tmp[0]);
}

/// memfds, files on a `--tmpfs` mount, on `/dev/shm` and on a volume are not on the root
/// filesystem: no evidence. A file held in /tmp by the same container is (the control).
#[test]
fn memfds_tmpfs_shm_and_volumes_are_not_evidence() {
    if !sandbox() {
        return;
    }
    let script = "tmpfile-holder memfd & tmpfile-holder hold /scratch 2 & tmpfile-holder hold /dev/shm & \
                  tmpfile-holder hold /vol & tmpfile-holder hold /tmp & wait";
    let c = Container::run("live-mounts", &["--tmpfs", "/scratch", "-v", "/vol"], BUSYBOX, &["sh", "-c", script]);
    c.sh(&wait_held_script(6));
    let (processes, files) = held(&c.name, &docker_options());
    assert!(processes.pids.len() >= 6, "the shell and five holders: {processes:?}");
    assert_eq!(files.len(), 1, "{:?}", files.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect::<Vec<_>>());
    assert!(is_tmpfile_in(&files[0], "/tmp"));

    let json = rodiff_json(&c.name);
    let evidence: Vec<String> =
        json.iter().filter(|v| v.get("evidence").is_some()).map(|v| String::from_utf8_lossy(&json_path(v)).into_owned()).collect();
    if live_only() {
        assert_eq!(evidence, vec!["/tmp".to_string()], "{json:#?}");
    } else {
        assert!(evidence.iter().all(|p| p == "/tmp"), "{json:#?}");
    }
    assert_touched(&json, "/tmp", STICKY_WORLD, live_only());
}

/// A stopped container has no processes: no evidence, and no error.
#[test]
fn a_stopped_container_has_no_evidence() {
    if !sandbox() {
        return;
    }
    let c = Container::run("live-stop", &[], BUSYBOX, &["tmpfile-holder", "hold", "/tmp", "2"]);
    c.sh(&wait_held_script(2));
    assert_touched(&rodiff_json(&c.name), "/tmp", STICKY_WORLD, live_only());

    docker(&["kill", &c.name]);
    docker(&["wait", &c.name]);
    let (processes, files) = held(&c.name, &docker_options());
    assert!(processes.init.is_none() && processes.pids.is_empty() && files.is_empty(), "{processes:?} {files:?}");
    let json = rodiff_json(&c.name);
    assert_no_evidence(&json);
    if live_only() {
        assert!(entry(&json, "/tmp").is_none(), "nothing is left to tell on btrfs: {json:#?}");
    }
}

/// `rodiff plan` gives /tmp a tmpfs with the image's owner and mode (1777); with exactly those
/// flags the program runs read-only, without the tmpfs it fails with EROFS; `rodiff verify`
/// passes with the plan and fails, naming /tmp, with the tmpfs taken out.
#[test]
fn the_plan_gives_tmp_a_tmpfs_and_the_program_runs_read_only() {
    if !sandbox() {
        return;
    }
    let c = Container::run("live-plan", &[], BUSYBOX, &["tmpfile-holder", "hold", "/tmp", "2"]);
    c.sh(&wait_held_script(2));

    let out = rodiff(&["plan", &c.name, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mounts = plan["mounts"].as_array().unwrap();
    assert_eq!(mounts.len(), 1, "{plan:#}");
    let m = &mounts[0];
    assert_eq!((m["path"].as_str(), m["kind"].as_str()), (Some("/tmp"), Some("tmpfs")), "{m}");
    assert_eq!((m["uid"].as_u64(), m["gid"].as_u64(), m["mode"].as_u64()), (Some(0), Some(0), Some(STICKY_WORLD as u64)), "{m}");
    let out = rodiff(&["plan", &c.name]);
    let flags = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert_eq!(flags, "--read-only --tmpfs /tmp:uid=0,gid=0,mode=1777");

    // By hand, with exactly the plan's flags: the program makes its O_TMPFILE file and exits 0.
    let script = format!("docker run --rm --network none {flags} {BUSYBOX} tmpfile-holder once /tmp 0");
    let out = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(out.status.success(), "{script}: {}", String::from_utf8_lossy(&out.stderr));
    // Without the tmpfs it fails: EROFS.
    let out = Command::new("docker")
        .args(["run", "--rm", "--network", "none", "--read-only", BUSYBOX, "tmpfile-holder", "once", "/tmp", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("\"/tmp\": Read-only file system"), "{}", String::from_utf8_lossy(&out.stderr));

    // rodiff verify re-runs the container's own command (hold /tmp 2) read-only with the plan.
    let out = rodiff(&["verify", &c.name, "--wait", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success() && stdout.contains("verified:"), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    // …and a plan without the tmpfs fails, naming /tmp.
    plan["mounts"] = serde_json::json!([]);
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), plan.to_string()).unwrap();
    let out = rodiff(&["verify", &c.name, "--plan", file.path().to_str().unwrap(), "--wait", "2"]);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("writes refused by the read-only root filesystem:\n  /tmp (during the run)\n"), "{stdout}");
}
