//! Adversarial probes (issue 8, live evidence): processes of the container that live in a nested
//! mount namespace whose `/` is not the container's root filesystem. `live.rs` takes "the mount at
//! `/` in the process's own mountinfo" for "the container's root filesystem", and the link target
//! of `/proc/<pid>/fd/N` for a container path; both are wrong once a process has pivot_root'ed
//! (bubblewrap, nested runc/buildkit, CI sandboxes, `unshare -m` + `pivot_root`).
//!
//! Run with `scripts/sandbox.sh run --images busybox -- cargo test --test break_issue8_live`
//! (overlay2, and `RODIFF_STORAGE_DRIVER=btrfs`).

mod common;

use common::docker::*;
use common::live::*;

/// Options a container needs to `unshare -m`, `mount` and `pivot_root` (`--privileged` cannot
/// apply its capabilities on this machine).
const NESTING: &[&str] = &["--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined"];

fn rodiff_json(name: &str) -> Vec<serde_json::Value> {
    let out = rodiff(&["diff", name, "--format", "json"]);
    assert!(out.status.success(), "rodiff diff --format json {name}: {}", String::from_utf8_lossy(&out.stderr));
    parse_json(&out.stdout)
}

/// A shell script for the container: builds a small root in `JAIL` (busybox and the holder), then
/// a process in a new mount namespace pivot_roots into it and holds an `O_TMPFILE` file in its own
/// `/tmp`. PID 1 stays in the container's namespace (so `docker exec` works) and waits.
fn nested_root_script(prepare_jail: &str) -> String {
    format!(
        "set -e; {prepare_jail}; \
         mkdir -p $JAIL/bin $JAIL/tmp $JAIL/old; cp /bin/busybox /bin/tmpfile-holder $JAIL/bin/; \
         ln -sf busybox $JAIL/bin/sh; \
         unshare -m sh -c \"mount --make-rprivate / && mount --bind $JAIL $JAIL && cd $JAIL && pivot_root . old && \
         exec /bin/tmpfile-holder hold /tmp\" & wait"
    )
}

/// The nested process's root is a tmpfs: its O_TMPFILE file is on that tmpfs, and the
/// container's root filesystem was never written at `/tmp`. rodiff must not report `/tmp`
/// (the module's own rule: tmpfs mounts are not evidence).
///
/// Actual: `{"path":"/tmp","kind":"T",...,"evidence":"open-deleted"}` — the mount at `/` in the
/// nested namespace is the tmpfs bind, so `mnt_id` matches and the tmpfs file counts.
#[test]
fn a_file_on_a_tmpfs_root_of_a_nested_namespace_is_not_evidence() {
    if !sandbox() {
        return;
    }
    let script = nested_root_script("JAIL=/jail; mkdir -p /jail; mount -t tmpfs none /jail");
    let c = Container::run("break-nested-tmpfs", NESTING, BUSYBOX, &["sh", "-c", &script]);
    c.sh(&wait_held_script(1));
    let json = rodiff_json(&c.name);
    let tmp = entry(&json, "/tmp");
    assert!(tmp.is_none(), "/tmp reported though only a tmpfs in a nested namespace was written: {tmp:?}\n{json:#?}");
}

/// The nested process's root is a bind of the image's `/var`: its `/tmp` is the container's
/// `/var/tmp`. The written directory is `/var/tmp`; `/tmp` was never written.
///
/// Actual: rodiff reports `T /tmp` (open-deleted) — the fd link is spelled from the bind's root,
/// not the container's — and on btrfs (no copy-up trace) `/var/tmp` is not reported at all, so
/// the plan mounts a tmpfs on the wrong directory and the program fails under `--read-only`.
#[test]
fn a_file_held_under_a_bind_mounted_root_names_the_right_directory() {
    if !sandbox() {
        return;
    }
    let script = nested_root_script("JAIL=/var");
    let c = Container::run("break-nested-bind", NESTING, BUSYBOX, &["sh", "-c", &script]);
    c.sh(&wait_held_script(1));
    let json = rodiff_json(&c.name);
    let tmp = entry(&json, "/tmp");
    let var_tmp = entry(&json, "/var/tmp");
    assert!(
        tmp.is_none() && var_tmp.is_some(),
        "the write was in /var/tmp (seen from the container); got /tmp = {tmp:?}, /var/tmp = {var_tmp:?}\n{json:#?}"
    );
}
