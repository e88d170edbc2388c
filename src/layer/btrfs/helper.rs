//! Helper snapshots: a read-only snapshot freezes a running container's subvolume for the scan.
//!
//! They live in `<mount point of the filesystem>/.rodiff-snapshots/` — on the same filesystem (a
//! snapshot cannot cross filesystems) but outside Docker's and containerd's directories — and are
//! named `rodiff-<pid>-<process start time>-<n>` (for people; ownership is not read from names).
//! Every path deletes them: `Drop` on success, error and cancellation (the CLI turns a signal into
//! a cancel, so that the scan unwinds), and a sweep of those left by a crash or `kill -9` at a
//! later freeze.
//!
//! Ownership is a lock, not a pid: a pid check cannot see across PID namespaces (a node agent runs
//! in its own), and deleting a snapshot that another rodiff is reading makes its scan fail. Every
//! process that holds a helper snapshot holds a shared `flock` on the helper directory for as long
//! as the snapshot exists; a freeze sweeps only when it gets the lock exclusively, that is when no
//! other process holds a helper snapshot, so everything left there is stale.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::ioctl;
use crate::fs;
use crate::mountinfo::{self, Mount};

/// Name of the directory helper snapshots live in, at the top of the filesystem's mount.
pub const HELPER_DIR: &str = ".rodiff-snapshots";
const PREFIX: &str = "rodiff-";

/// A read-only snapshot of a subvolume, deleted on drop.
pub struct Frozen {
    /// The snapshot's root directory (closed before the snapshot is deleted: fields drop in order).
    pub root: OwnedFd,
    guard: Guard,
}

impl Frozen {
    /// Host path of the snapshot.
    pub fn path(&self) -> PathBuf {
        self.guard.dir_path.join(self.guard.name.to_string_lossy().as_ref())
    }

    /// Whether the snapshot still exists under its name: a scan that read it is complete only if
    /// no one deleted it meanwhile (a subvolume being deleted may still answer some reads).
    pub fn intact(&self) -> io::Result<bool> {
        let ours = fs::stat_fd(self.root.as_fd())?;
        Ok(match fs::stat_at_if_present(self.guard.dir.as_fd(), &self.guard.name)? {
            Some(st) => st.st_dev == ours.st_dev && st.st_ino == ours.st_ino,
            None => false,
        })
    }
}

/// Deletes a helper snapshot (if it was made).
struct Guard {
    /// The helper directory, with our shared lock on it (released when it closes, after the
    /// snapshot is deleted).
    dir: OwnedFd,
    dir_path: PathBuf,
    name: CString,
    /// The snapshot was made: only then is the name ours to delete.
    made: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.made {
            let _ = ioctl::delete_subvolume(self.dir.as_fd(), &self.name);
        }
    }
}

/// Freezes the subvolume open as `subvolume` (host path `path`).
pub fn freeze(subvolume: &OwnedFd, path: &Path) -> io::Result<Frozen> {
    let dir_path = helper_dir(path)?;
    match std::fs::create_dir(&dir_path) {
        Ok(()) => std::fs::set_permissions(&dir_path, std::os::unix::fs::PermissionsExt::from_mode(0o700))?,
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    let dir = fs::open_dir(&dir_path)?;
    // Sweep when no one else holds a helper snapshot, then hold ours under a shared lock.
    if rustix::fs::flock(&dir, rustix::fs::FlockOperation::NonBlockingLockExclusive).is_ok() {
        sweep(&dir)?;
    }
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockShared)?;

    let mut guard = Guard { dir, dir_path, name: unique_name(), made: false };
    ioctl::snapshot_readonly(subvolume.as_fd(), guard.dir.as_fd(), &guard.name)?;
    guard.made = true;
    let root = fs::open_dir_at(guard.dir.as_fd(), &guard.name)?;
    Ok(Frozen { root, guard })
}

/// A helper snapshot name no other process can compute: `rodiff-<pid>-<start time>-<n>-<random>`.
/// Pid and start time tell people whose it was; they repeat across PID namespaces (and two
/// processes can start in the same clock tick), so 64 random bits make it unique.
fn unique_name() -> CString {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let me = std::process::id();
    let mut random = [0u8; 8];
    // The kernel's random pool; should it fail, the clock still tells runs apart.
    if rustix::rand::getrandom(&mut random, rustix::rand::GetRandomFlags::empty()).is_err() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
        random = (now.as_nanos() as u64).to_le_bytes();
    }
    let name = format!(
        "{PREFIX}{me}-{}-{}-{:016x}",
        start_time(me).unwrap_or(0),
        SEQ.fetch_add(1, Ordering::Relaxed),
        u64::from_le_bytes(random)
    );
    CString::new(name).expect("no NUL")
}

/// `<outermost mount point of the filesystem holding path>/.rodiff-snapshots`.
///
/// Outermost, because runtimes bind-mount their own directories onto themselves (dockerd makes its
/// data root a private mount): the deepest mount of the filesystem is often the runtime's.
fn helper_dir(path: &Path) -> io::Result<PathBuf> {
    let path = std::fs::canonicalize(path)?;
    // Every btrfs mount that contains `path`.
    let mounts: Vec<Mount> = mountinfo::read(Path::new("/proc/self/mountinfo"))?
        .into_iter()
        .filter(|m| m.fs_type == "btrfs" && path.starts_with(&m.mount_point))
        .collect();
    let not_btrfs = || io::Error::new(io::ErrorKind::NotFound, format!("{} is not on a mounted btrfs filesystem", path.display()));
    let deepest = mounts.iter().max_by_key(|m| m.mount_point.as_os_str().len()).ok_or_else(not_btrfs)?;
    let outermost = mounts
        .iter()
        .filter(|m| m.device == deepest.device)
        .min_by_key(|m| m.mount_point.as_os_str().len())
        .ok_or_else(not_btrfs)?;
    Ok(outermost.mount_point.join(HELPER_DIR))
}

/// Deletes every helper snapshot in the directory. Call only with the exclusive lock held: then
/// no process holds one, and all are left over from runs that ended without cleaning up.
fn sweep(dir: &OwnedFd) -> io::Result<()> {
    let listing = fs::open_dir_at(dir.as_fd(), c".")?;
    for name in fs::read_dir(listing.as_fd())? {
        if is_helper(&name) {
            let _ = ioctl::delete_subvolume(dir.as_fd(), &name);
        }
    }
    Ok(())
}

/// Whether a name is one rodiff gives its helper snapshots.
fn is_helper(name: &CStr) -> bool {
    name.to_bytes().starts_with(PREFIX.as_bytes())
}

/// A process's start time (field 22 of `/proc/<pid>/stat`), to tell a reused pid apart.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    stat.rsplit_once(')')?.1.split_whitespace().nth(19)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_rodiff_names_are_swept() {
        assert!(is_helper(c"rodiff-4194304999-5-0"));
        assert!(!is_helper(c"not-ours"));
    }
}
