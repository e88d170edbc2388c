//! Break probes (adversarial review of the live-evidence fix): descriptors whose mount is not in
//! the holder's current view of its namespace.

mod common;

use common::docker::*;
use common::live::*;

const NESTING: &[&str] = &["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"];

fn run_held(name: &str, options: &[&str], script: &str) -> (Container, Vec<String>, Vec<serde_json::Value>) {
    let c = Container::run(name, options, BUSYBOX, &["sh", "-c", script]);
    c.sh(&wait_held_script(1));
    let (_processes, files) = held(&c.name, &rodiff::RuntimeOptions::default());
    let json = rodiff_json(&c.name);
    (c, files.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect(), json)
}

/// `unshare -m` + chroot (util-linux `unshare --mount --root`, schroot-like sandboxes): the holder
/// is alone in its namespace and its chrooted view lists no mount holding the file.
#[test]
fn break_unshare_then_chroot_holder_is_missed() {
    if !sandbox() {
        return;
    }
    let script = "set -e; mkdir -p /var/bin; cp /bin/busybox /bin/tmpfile-holder /var/bin/; \
                  unshare -m chroot /var /bin/tmpfile-holder hold /tmp & wait";
    let (_c, files, json) = run_held("break-unshare-chroot", NESTING, script);
    assert!(files.len() == 1 && is_tmpfile_in(files[0].as_bytes(), "/var/tmp"), "held files: {files:?}");
    assert_touched(&json, "/var/tmp", STICKY_WORLD, live_only());
}

/// An O_TMPFILE in /tmp (leaves no trace on btrfs) re-opened through /proc by a shell, whose
/// holder then exits; the shell's descriptor is inherited by `WRAP sleep`.
const INHERIT: &str = "tmpfile-holder hold /tmp & h=$!; \
    until ls -l /proc/$h/fd 2>/dev/null | grep -q deleted; do sleep 0.05; done; \
    (exec 3</proc/$h/fd/3; kill $h; exec WRAP sleep 1000) & wait";

/// A descriptor opened before `unshare -m` (inherited by the new namespace): its mount is the
/// container namespace's root mount, which the holder's new namespace does not list.
#[test]
fn break_fd_inherited_across_unshare_is_missed() {
    if !sandbox() {
        return;
    }
    let script = INHERIT.replace("WRAP", "unshare -m");
    let (_c, files, json) = run_held("break-unshare-inherit", NESTING, &script);
    assert!(files.len() == 1 && is_tmpfile_in(files[0].as_bytes(), "/tmp"), "held files: {files:?}");
    assert_touched(&json, "/tmp", STICKY_WORLD, live_only());
}

/// Control: the same inherited descriptor without the unshare is found.
#[test]
fn break_control_fd_inherited_without_unshare() {
    if !sandbox() {
        return;
    }
    let script = INHERIT.replace("WRAP", "");
    let (_c, files, json) = run_held("break-inherit-control", NESTING, &script);
    assert!(files.len() == 1 && is_tmpfile_in(files[0].as_bytes(), "/tmp"), "held files: {files:?}");
    assert_touched(&json, "/tmp", STICKY_WORLD, live_only());
}

/// A bind of the container's own /var elsewhere: the held file names /var/tmp, not /srv/v/tmp.
#[test]
fn break_bind_of_own_directory() {
    if !sandbox() {
        return;
    }
    let script = "set -e; mkdir -p /srv/v; mount --bind /var /srv/v; tmpfile-holder hold /srv/v/tmp & wait";
    let (_c, files, json) = run_held("break-bind", NESTING, script);
    assert!(files.len() == 1 && is_tmpfile_in(files[0].as_bytes(), "/var/tmp"), "held files: {files:?}");
    assert_touched(&json, "/var/tmp", STICKY_WORLD, live_only());
    assert!(entry(&json, "/srv/v/tmp").is_none() && entry(&json, "/srv").map_or(true, |v| v["kind"] != "T"), "{json:#?}");
}

/// Directory names that end in " (deleted)", and a mount point that is a prefix of another
/// (`/tmpx` vs `/tmp`, a tmpfs on `/tmp`).
#[test]
fn break_deleted_suffix_names_and_prefix_mounts() {
    if !sandbox() {
        return;
    }
    let script = "set -e; mkdir -p '/tmpx/a (deleted)' /tmp; mount -t tmpfs none /tmp; \
                  tmpfile-holder hold '/tmpx/a (deleted)' & tmpfile-holder hold /tmp & wait";
    let c = Container::run("break-names", NESTING, BUSYBOX, &["sh", "-c", script]);
    c.sh(&wait_held_script(2));
    let (_p, files) = held(&c.name, &rodiff::RuntimeOptions::default());
    let files: Vec<String> = files.iter().map(|f| String::from_utf8_lossy(f).into_owned()).collect();
    assert!(files.len() == 1 && is_tmpfile_in(files[0].as_bytes(), "/tmpx/a (deleted)"), "held files: {files:?}");
}
