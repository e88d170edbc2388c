//! Live evidence from processes of a container that moved to another root or mount namespace
//! (run by `make test` on an overlay2 and on a btrfs dockerd): bubblewrap, nested runc or
//! buildkit and CI sandboxes do `unshare -m` and `pivot_root`, others `chroot`, util-linux
//! `unshare --mount --root` and schroot both. Such a process sees a tmpfs at `/`, or one of the
//! container's directories; the kernel spells its descriptors' paths from the root of the mount
//! namespace their mount is in, not from the container's root. Live evidence must place each file
//! on the container's root filesystem (identified from the container's init) through its mount,
//! or leave it out (see `src/live.rs`).
//!
//! Regression tests for adversarial reviews (issue 8): rodiff used to take "the mount at `/` of
//! the process" for the container's root filesystem and the link target for a container path, and
//! reported `T /tmp` for both nested roots below (on btrfs missing `/var/tmp`, so the plan was
//! wrong); then it looked mounts up only in what the holder's namespace showed through its
//! processes' views, and missed a holder alone in its namespace and chrooted, and a descriptor
//! inherited across `unshare -m` (on btrfs, where the layer keeps no trace, nothing was reported).
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

/// Runs a container with `script`, waits until one file is held, and returns it with the held
/// files rodiff's live evidence finds and its JSON diff.
fn run_held(name: &str, options: &[&str], script: &str) -> (Container, Vec<Vec<u8>>, Vec<serde_json::Value>) {
    let c = Container::run(name, options, BUSYBOX, &["sh", "-c", script]);
    c.sh(&wait_held_script(1));
    observe(c)
}

/// The held files rodiff's live evidence finds in the running container `c` (its init is
/// `State.Pid`, with at least one other process) and its JSON diff.
fn observe(c: Container) -> (Container, Vec<Vec<u8>>, Vec<serde_json::Value>) {
    let (processes, files) = held(&c.name, &common::client_options(rodiff::Runtime::Docker));
    let state_pid: u32 = docker(&["inspect", "-f", "{{.State.Pid}}", &c.name]).parse().unwrap();
    assert_eq!(processes.init, Some(state_pid), "{processes:?}");
    assert!(processes.pids.len() >= 2, "PID 1 and the holder: {processes:?}");
    let json = rodiff_json(&c.name);
    (c, files, json)
}

/// `held` from a thread without `CAP_SYS_ADMIN` (as an agent given only `CAP_SYS_PTRACE` runs):
/// rodiff may not join the container's mount namespaces, and falls back to the processes' own
/// views.
fn held_without_sys_admin(container: &str) -> Vec<Vec<u8>> {
    let container = container.to_string();
    std::thread::spawn(move || {
        let mut caps = rustix::thread::capabilities(None).unwrap();
        caps.effective.remove(rustix::thread::CapabilitySet::SYS_ADMIN);
        rustix::thread::set_capabilities(None, caps).unwrap();
        held(&container, &common::client_options(rodiff::Runtime::Docker)).1
    })
    .join()
    .unwrap()
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

/// `unshare -m` then `chroot /var` (util-linux `unshare --mount --root`, schroot): the holder is
/// alone in its namespace, and its chrooted `mountinfo` lists no mount at all (the root mount is
/// above its root). Its namespace's table, read from the namespace's root, places the file in
/// `/var/tmp` (on btrfs it was not reported at all).
#[test]
fn a_file_held_by_a_process_alone_in_its_namespace_and_chrooted_names_the_right_directory() {
    if !sandbox() {
        return;
    }
    let script = "set -e; mkdir -p /var/bin; cp /bin/busybox /bin/tmpfile-holder /var/bin/; \
                  unshare -m chroot /var /bin/tmpfile-holder hold /tmp & wait";
    let (_c, files, json) = run_held("nested-unshare-chroot", NESTING, script);
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/var/tmp"), "{:?}", shown(&files));
    assert_touched(&json, "/var/tmp", STICKY_WORLD, live_only());
    assert!(entry(&json, "/tmp").is_none(), "/tmp was never written: {json:#?}");
}

/// A container script: an `O_TMPFILE` in `/tmp` is re-opened through `/proc` by a subshell,
/// whose holder is then killed; the subshell `exec`s `WRAP sleep 1000` with that descriptor.
const INHERIT: &str = "tmpfile-holder hold /tmp & h=$!; \
    until ls -l /proc/$h/fd 2>/dev/null | grep -q deleted; do sleep 0.05; done; \
    (exec 3</proc/$h/fd/3; kill $h; exec WRAP sleep 1000) & wait";

/// A descriptor opened before `unshare -m` and inherited into the new namespace: its mount is the
/// container namespace's root mount, which the holder's new namespace does not have (it has a
/// copy, with another id), and the link is spelled from the container namespace's root. It is
/// found in the table of the namespace of the container's other processes (on btrfs it was not
/// reported at all).
#[test]
fn a_descriptor_inherited_across_unshare_is_placed_through_the_namespace_it_was_opened_in() {
    if !sandbox() {
        return;
    }
    let (_c, files, json) = run_held("nested-inherit", NESTING, &INHERIT.replace("WRAP", "unshare -m"));
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/tmp"), "{:?}", shown(&files));
    assert_touched(&json, "/tmp", STICKY_WORLD, live_only());
}

/// The control of the test above: the same inherited descriptor without the `unshare`.
#[test]
fn a_descriptor_inherited_in_the_same_namespace_is_found() {
    if !sandbox() {
        return;
    }
    let (_c, files, json) = run_held("nested-inherit-control", NESTING, &INHERIT.replace("WRAP", ""));
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/tmp"), "{:?}", shown(&files));
    assert_touched(&json, "/tmp", STICKY_WORLD, live_only());
}

/// A bind of the container's own `/var` at `/srv/v`: a file held in `/srv/v/tmp` names the
/// written directory, `/var/tmp` (the mount's root), not `/srv/v/tmp`.
#[test]
fn a_file_held_through_a_bind_of_a_container_directory_names_that_directory() {
    if !sandbox() {
        return;
    }
    let script = "set -e; mkdir -p /srv/v; mount --bind /var /srv/v; tmpfile-holder hold /srv/v/tmp & wait";
    let (_c, files, json) = run_held("nested-bind-own", NESTING, script);
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/var/tmp"), "{:?}", shown(&files));
    assert_touched(&json, "/var/tmp", STICKY_WORLD, live_only());
    assert!(entry(&json, "/srv/v/tmp").is_none() && entry(&json, "/srv").map_or(true, |v| v["kind"] != "T"), "{json:#?}");
}

/// A directory whose name itself ends in ` (deleted)`, and a tmpfs on `/tmp` next to `/tmpx`:
/// only the kernel's suffix is taken off the link (the directory's name is kept byte for byte),
/// and the file on the tmpfs is no evidence (`/tmp` is not a prefix of `/tmpx`).
#[test]
fn names_ending_in_deleted_and_mount_points_that_prefix_a_name() {
    if !sandbox() {
        return;
    }
    let script = "set -e; mkdir -p '/tmpx/a (deleted)' /tmp; mount -t tmpfs none /tmp; \
                  tmpfile-holder hold '/tmpx/a (deleted)' & tmpfile-holder hold /tmp & wait";
    let c = Container::run("nested-names", NESTING, BUSYBOX, &["sh", "-c", script]);
    c.sh(&wait_held_script(2));
    let (_c, files, json) = observe(c);
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/tmpx/a (deleted)"), "{:?}", shown(&files));
    assert!(entry(&json, "/tmp").is_none(), "only a tmpfs was written at /tmp: {json:#?}");
}

/// A tmpfs mounted over `/` in the container's namespace after the holder opened its file in
/// `/tmp`: a thread joining the namespace starts at the top of that stack and does not see the
/// container's root mount; the holder's own view (its root stays below) places the file.
#[test]
fn a_file_held_below_a_mount_stacked_on_the_root_is_found() {
    if !sandbox() {
        return;
    }
    let script = "tmpfile-holder hold /tmp & h=$!; \
                  until ls -l /proc/$h/fd 2>/dev/null | grep -q deleted; do sleep 0.05; done; \
                  mount -t tmpfs none / && echo stacked; wait";
    // `docker exec` would join the namespace on the tmpfs: wait for the script's word instead.
    let c = Container::run("nested-stacked", NESTING, BUSYBOX, &["sh", "-c", script]);
    let logs = (0..400)
        .map(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            docker(&["logs", &c.name])
        })
        .find(|logs| logs.contains("stacked"));
    assert!(logs.is_some(), "the tmpfs was not mounted over /: {}", docker(&["logs", &c.name]));
    let (_c, files, json) = observe(c);
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/tmp"), "{:?}", shown(&files));
    assert_touched(&json, "/tmp", STICKY_WORLD, live_only());
}

/// Without `CAP_SYS_ADMIN` rodiff cannot join the namespaces and falls back to the processes' own
/// views, spelled from the namespace's root through each process's root: a process chrooted in
/// the container's namespace is still placed (through the init's view), one alone in its
/// namespace and chrooted is not (its view lists nothing): the evidence is a lower bound. With the
/// capability both are found.
#[test]
fn without_cap_sys_admin_the_processes_own_views_place_what_they_show() {
    if !sandbox() {
        return;
    }
    let script = "set -e; mkdir -p /var/bin; cp /bin/busybox /bin/tmpfile-holder /var/bin/; \
                  chroot /var /bin/tmpfile-holder hold /tmp & unshare -m chroot /var /bin/tmpfile-holder hold /tmp & wait";
    let c = Container::run("nested-no-sys-admin", NESTING, BUSYBOX, &["sh", "-c", script]);
    c.sh(&wait_held_script(2));
    let (_c, files, _json) = observe(c);
    assert!(files.len() == 2 && files.iter().all(|f| is_tmpfile_in(f, "/var/tmp")), "{:?}", shown(&files));
    let files = held_without_sys_admin(&_c.name);
    assert!(files.len() == 1 && is_tmpfile_in(&files[0], "/var/tmp"), "{:?}", shown(&files));
}
