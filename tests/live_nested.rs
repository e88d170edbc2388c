//! Live evidence from processes of a container that moved to another root (run by `make test` on
//! an overlay2 and on a btrfs dockerd): bubblewrap, nested runc or buildkit and CI sandboxes do
//! `unshare -m` and `pivot_root`, others `chroot`. Such a process sees a tmpfs at `/`, or one of the
//! container's directories; the kernel spells its descriptors' paths from the root of its mount
//! namespace, not from the container's root. Live evidence must place each file on the
//! container's root filesystem (identified from the container's init) through the process's own
//! mounts, or leave it out (see `src/live.rs`).
//!
//! Regression tests for an adversarial review (issue 8): rodiff used to take "the mount at `/` of
//! the process" for the container's root filesystem and the link target for a container path, and
//! reported `T /tmp` for both nested roots below (on btrfs missing `/var/tmp`, so the plan was
//! wrong).
//!
//! Each container builds a small root (busybox and `/bin/tmpfile-holder`), and a process moves
//! into it and holds an `O_TMPFILE` file; PID 1 stays in the container's namespace and waits.

mod common;

use std::path::Path;

use common::docker::*;
use common::live::*;

/// Options a container needs to `unshare -m`, `mount` and `pivot_root` (`--privileged` cannot
/// apply its capabilities on this machine).
const NESTING: &[&str] = &["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"];

/// A shell script for the container: `prepare_jail` sets `JAIL` (and mounts it if it likes), the
/// script puts busybox and the holder in it, then a process in a new mount namespace pivot_roots
/// into it (the container's root stays mounted at `/old`) and holds an `O_TMPFILE` file in `dir`.
fn nested_root_script(prepare_jail: &str, dir: &str) -> String {
    format!(
        "set -e; {prepare_jail}; \
         mkdir -p $JAIL/bin $JAIL/tmp $JAIL/old; cp /bin/busybox /bin/tmpfile-holder $JAIL/bin/; \
         ln -sf busybox $JAIL/bin/sh; \
         unshare -m sh -c \"mount --make-rprivate / && mount --bind $JAIL $JAIL && cd $JAIL && pivot_root . old && \
         exec /bin/tmpfile-holder hold {dir}\" & wait"
    )
}

/// Runs a container with `script`, waits until one file is held, and returns it with the one held
/// file rodiff's live evidence finds (if any) and its JSON diff.
fn run_held(name: &str, options: &[&str], script: &str) -> (Container, Vec<Vec<u8>>, Vec<serde_json::Value>) {
    let c = Container::run(name, options, BUSYBOX, &["sh", "-c", script]);
    c.sh(&wait_held_script(1));
    let (processes, files) = held(&c.name, &rodiff::RuntimeOptions::default());
    let state_pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &c.name]).parse().unwrap();
    assert_eq!(processes.init, Some(state_pid), "{processes:?}");
    assert!(processes.pids.len() >= 2, "PID 1 and the holder: {processes:?}");
    let json = rodiff_json(&c.name);
    (c, files, json)
}

fn shown(files: &[Vec<u8>]) -> Vec<String> {
    files.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect()
}

/// The nested root is a tmpfs: the file in its `/tmp` is on that tmpfs, and the container's root
/// filesystem was never written at `/tmp`: no evidence at all (it was `T /tmp`).
#[test]
fn a_file_on_a_tmpfs_root_of_a_nested_namespace_is_not_evidence() {
    if !sandbox() {
        return;
    }
    let script = nested_root_script("JAIL=/jail; mkdir -p /jail; mount -t tmpfs none /jail", "/tmp");
    let (_c, files, json) = run_held("nested-tmpfs", NESTING, &script);
    assert!(files.is_empty(), "{:?}", shown(&files));
    assert_no_evidence(&json);
    assert!(entry(&json, "/tmp").is_none(), "/tmp was never written: {json:#?}");
}

/// The nested root is a tmpfs, but the process writes through the container's old root, still
/// mounted at `/old` in its namespace: `/old/var/tmp` is the container's `/var/tmp` (the mount
/// point is taken off the path).
#[test]
fn a_file_held_through_the_old_root_of_a_nested_namespace_names_its_container_directory() {
    if !sandbox() {
        return;
    }
    let script = nested_root_script("JAIL=/jail; mkdir -p /jail; mount -t tmpfs none /jail", "/old/var/tmp");
    let (_c, files, json) = run_held("nested-old-root", NESTING, &script);
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/var/tmp"), "{:?}", shown(&files));
    assert_touched(&json, "/var/tmp", STICKY_WORLD, live_only());
    assert!(entry(&json, "/tmp").is_none() && entry(&json, "/old").is_none(), "{json:#?}");
}

/// The nested root is a bind of the image's `/var`: its `/tmp` is the container's `/var/tmp`. The
/// written directory is `/var/tmp` on both drivers (it was `T /tmp`, and on btrfs `/var/tmp` was
/// missing), and the plan covers it.
#[test]
fn a_file_held_under_a_bind_mounted_root_names_the_right_directory() {
    if !sandbox() {
        return;
    }
    let script = nested_root_script("JAIL=/var", "/tmp");
    let (c, files, json) = run_held("nested-bind", NESTING, &script);
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/var/tmp"), "{:?}", shown(&files));
    assert_touched(&json, "/var/tmp", STICKY_WORLD, live_only());
    assert!(entry(&json, "/tmp").is_none(), "/tmp was never written: {json:#?}");

    let out = rodiff(&["plan", &c.name, "--format", "json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mounts: Vec<&str> = plan["mounts"].as_array().unwrap().iter().filter_map(|m| m["path"].as_str()).collect();
    assert!(mounts.iter().any(|m| Path::new("/var/tmp").starts_with(m)), "/var/tmp is not covered: {plan:#}");
    assert!(!mounts.contains(&"/tmp"), "{plan:#}");
}

/// `chroot /var` in the container's own namespace: the kernel spells the file's path from the
/// namespace's root (`/var/tmp/#N`), and the chrooted process's `mountinfo` lists no mount at
/// all (the container's root mount is above its root); the namespace's other processes place it.
#[test]
fn a_file_held_by_a_chrooted_process_names_the_right_directory() {
    if !sandbox() {
        return;
    }
    let script = "set -e; mkdir -p /var/bin; cp /bin/busybox /bin/tmpfile-holder /var/bin/; \
                  chroot /var /bin/tmpfile-holder hold /tmp & wait";
    let (_c, files, json) = run_held("nested-chroot", &[], script);
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/var/tmp"), "{:?}", shown(&files));
    assert_touched(&json, "/var/tmp", STICKY_WORLD, live_only());
    assert!(entry(&json, "/tmp").is_none(), "/tmp was never written: {json:#?}");
}
