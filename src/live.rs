//! Live evidence: the files a running container's processes hold open after they lost their name.
//!
//! A file made with `O_TMPFILE`, or created, opened and unlinked, leaves no name in the layer (on
//! btrfs no trace at all), yet making it is a write that fails under `--read-only`. While the
//! process holds it, the host sees it in `/proc/<pid>/fd`: `3 -> /tmp/#6970 (deleted)` (an
//! `O_TMPFILE` file is named `#<inode>`), `4 -> /tmp/work.db-journal (deleted)`. The path is the
//! file's former path inside the container (read from another mount namespace, the kernel spells
//! it from the container's root), so its directory is where the container wrote.
//!
//! Which descriptors count, for each process:
//! - the link target is an absolute path that ends in ` (deleted)` (sockets, pipes and
//!   anonymous inodes are `socket:[…]`, `pipe:[…]`, `anon_inode:…`);
//! - the file is on the container's root filesystem: the `mnt_id:` of `/proc/<pid>/fdinfo/<fd>`
//!   is the mount at `/` in `/proc/<pid>/mountinfo` (read once per mount namespace). This leaves
//!   out memfds (`/memfd:x (deleted)`, on an internal mount), tmpfs mounts, `/dev/shm`, volumes
//!   and binds: writes there do not need the root filesystem;
//! - its inode really has no links: `st_nlink == 0` from `stat` of the magic link, which looks the
//!   inode up without opening the file (a name may itself end in ` (deleted)`);
//! - the target read again afterwards is the same (the descriptor was not closed and reused).
//!
//! The files are never opened and never read. Paths are bytes. A process that exits during the
//! read is skipped, as is one rodiff may not inspect (`EACCES`: `/proc/<pid>/fd` needs ptrace
//! access, i.e. root): the evidence is what the processes hold at this instant, a lower bound.
//! Processes in rodiff's own mount namespace are skipped too: they are not in a container, and
//! their paths would not be container paths.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// What the kernel appends to the path of a file that has no name any more.
const DELETED: &[u8] = b" (deleted)";

/// A file a process holds open that has no name any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenDeleted {
    /// Its former path inside the container (`/tmp/#6970` for an `O_TMPFILE` file): the parent
    /// is the directory that was written.
    pub path: PathBuf,
    /// The process holding it (host pid).
    pub pid: u32,
    /// The descriptor number.
    pub fd: u32,
}

/// The deleted files on their root filesystem that processes `pids` hold open, read from
/// `proc_root` (the host's `/proc`); see the module documentation for what counts.
pub fn open_deleted(proc_root: &Path, pids: &[u32]) -> Result<Vec<OpenDeleted>> {
    if pids.is_empty() {
        return Ok(Vec::new());
    }
    let own_namespace = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut reader = Reader { proc_root, own_namespace, root_mounts: HashMap::new() };
    let mut found = Vec::new();
    for &pid in pids {
        match reader.process(pid, &mut found) {
            Ok(()) => {}
            Err((_, e)) if skipped(&e) => {}
            Err((path, e)) => return Err(Error::io(path, e)),
        }
    }
    Ok(found)
}

/// Whether an error means "skip this process": it exited (its `/proc` entries are gone, or
/// `mountinfo` refuses a process without a mount namespace), or we may not inspect it.
fn skipped(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH | libc::EINVAL | libc::EACCES | libc::EPERM))
}

/// An error and the `/proc` path it is about.
type ProcError = (PathBuf, io::Error);

/// Reads processes, remembering the root mount of each mount namespace.
struct Reader<'a> {
    proc_root: &'a Path,
    own_namespace: Option<PathBuf>,
    /// Mount namespace (`mnt:[4026532177]`) → id of the mount at its `/`, if it has one.
    root_mounts: HashMap<OsString, Option<u64>>,
}

impl Reader<'_> {
    /// Adds the deleted files process `pid` holds open on its root filesystem.
    fn process(&mut self, pid: u32, found: &mut Vec<OpenDeleted>) -> std::result::Result<(), ProcError> {
        let dir = self.proc_root.join(pid.to_string());
        let fd_dir = dir.join("fd");
        let mut candidates = Vec::new();
        for entry in std::fs::read_dir(&fd_dir).map_err(|e| (fd_dir.clone(), e))? {
            let entry = entry.map_err(|e| (fd_dir.clone(), e))?;
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            // A descriptor closed since the listing is simply not there any more.
            let Some(target) = link(&entry.path()).map_err(|e| (entry.path(), e))? else { continue };
            let bytes = target.as_os_str().as_bytes();
            if bytes.starts_with(b"/") && bytes.ends_with(DELETED) {
                candidates.push((fd, target));
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        let ns_link = dir.join("ns/mnt");
        let namespace = std::fs::read_link(&ns_link).map_err(|e| (ns_link, e))?;
        if self.own_namespace.as_deref() == Some(namespace.as_path()) {
            return Ok(());
        }
        let Some(root_mount) = self.root_mount(&dir, namespace.into_os_string())? else { return Ok(()) };

        for (fd, target) in candidates {
            let fdinfo = dir.join(format!("fdinfo/{fd}"));
            let Some(mount) = present(fdinfo_mount_id(&fdinfo)).map_err(|e| (fdinfo, e))? else { continue };
            if mount != Some(root_mount) {
                continue;
            }
            let magic = fd_dir.join(fd.to_string());
            // `metadata` follows the magic link to the inode: a stat, not an open.
            let Some(st) = present(std::fs::metadata(&magic)).map_err(|e| (magic.clone(), e))? else { continue };
            if st.nlink() != 0 {
                continue;
            }
            if link(&magic).map_err(|e| (magic.clone(), e))?.as_ref() != Some(&target) {
                continue;
            }
            let bytes = target.as_os_str().as_bytes();
            let path = PathBuf::from(OsStr::from_bytes(&bytes[..bytes.len() - DELETED.len()]));
            found.push(OpenDeleted { path, pid, fd });
        }
        Ok(())
    }

    /// The id of the mount at `/` in the mount namespace `namespace` of the process at `dir`.
    fn root_mount(&mut self, dir: &Path, namespace: OsString) -> std::result::Result<Option<u64>, ProcError> {
        if let Some(known) = self.root_mounts.get(&namespace) {
            return Ok(*known);
        }
        let path = dir.join("mountinfo");
        let text = std::fs::read(&path).map_err(|e| (path, e))?;
        let id = root_mount_id(&text);
        self.root_mounts.insert(namespace, id);
        Ok(id)
    }
}

/// The target of a symlink; `None` when it is gone.
fn link(path: &Path) -> io::Result<Option<PathBuf>> {
    present(std::fs::read_link(path))
}

/// `None` for "not found" (a descriptor closed meanwhile), the value otherwise.
fn present<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `mnt_id:` field of an fdinfo file (`None` if it has none).
fn fdinfo_mount_id(path: &Path) -> io::Result<Option<u64>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse().ok()))
}

/// The id of the mount at `/` in a `mountinfo` text (the last one, if mounts are stacked there).
/// Fields: mount id, parent id, major:minor, root, mount point, …; the mount point `/` needs no
/// unescaping.
fn root_mount_id(mountinfo: &[u8]) -> Option<u64> {
    mountinfo.split(|&b| b == b'\n').rev().find_map(|line| {
        let mut fields = line.split(|&b| b == b' ');
        let id = fields.next()?;
        let mount_point = fields.nth(3)?;
        (mount_point == b"/").then(|| std::str::from_utf8(id).ok()?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mount_at_the_root() {
        let text = b"74 49 0:41 / / rw,relatime master:2 - overlay overlay rw,lowerdir=/a\n\
            75 74 0:44 / /proc rw,nosuid - proc proc rw\n\
            91 74 0:50 / /scratch rw - tmpfs tmpfs rw\n";
        assert_eq!(root_mount_id(text), Some(74));
        assert_eq!(root_mount_id(b"1 0 0:1 / / rw - x x rw\n2 1 0:2 / / rw - y y rw\n"), Some(2), "stacked: the top one");
        assert_eq!(root_mount_id(b"5 1 0:2 / /elsewhere rw - y y rw\n"), None);
    }

    #[test]
    fn fdinfo_mount_id_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("3");
        std::fs::write(&path, "pos:\t26\nflags:\t020300002\nmnt_id:\t74\nino:\t10011378\n").unwrap();
        assert_eq!(fdinfo_mount_id(&path).unwrap(), Some(74));
        std::fs::write(&path, "pos:\t0\n").unwrap();
        assert_eq!(fdinfo_mount_id(&path).unwrap(), None);
    }

    /// Our own processes are in our mount namespace: never evidence, even when they hold deleted
    /// files; and processes that do not exist are skipped.
    #[test]
    fn own_namespace_and_missing_processes_give_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        let file = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let me = std::process::id();
        assert_eq!(open_deleted(Path::new("/proc"), &[me, u32::MAX]).unwrap(), Vec::new());
        drop(file);
    }
}
