//! Where a btrfs subvolume lives: containerd's btrfs snapshotter names a container's subvolume
//! only by its id (`subvolid=N` in the mount options), and its parent not at all. The snapshotter
//! keeps active snapshots in `<root>/active/<n>` and committed ones in `<root>/snapshots/<n>`;
//! this module finds which of those entries is subvolume `N`, and which one a snapshot was taken
//! from (a snapshot records its origin's UUID as its `parent_uuid`).
//!
//! Everything here only reads: `BTRFS_IOC_INO_LOOKUP` (the subvolume id of an open directory) and
//! `BTRFS_IOC_GET_SUBVOL_INFO` (its UUIDs), both allowed without privileges.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use crate::layer::btrfs::ioctl::{self, ROOT_DIR_INO};

/// Identity of a subvolume, as its root directory reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Subvolume {
    /// The subvolume (tree) id, as in `subvolid=`.
    pub id: u64,
    /// Its UUID.
    pub uuid: [u8; 16],
    /// The UUID of the subvolume it is a snapshot of (all zero if it is not a snapshot).
    pub parent_uuid: [u8; 16],
}

fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    Ok(rustix::fs::open(path, flags, Mode::empty())?)
}

/// Reads the identity of the subvolume whose root directory is `path`; `Ok(None)` when `path` is a
/// directory inside a subvolume rather than a subvolume's root.
pub fn subvolume(path: &Path) -> io::Result<Option<Subvolume>> {
    let fd = open_dir(path)?;
    let stat = rustix::fs::fstat(&fd)?;
    if stat.st_ino != ROOT_DIR_INO {
        return Ok(None);
    }
    match ioctl::subvol_info(fd.as_fd()) {
        Ok(info) => Ok(Some(Subvolume { id: info.id, uuid: info.uuid, parent_uuid: info.parent_uuid })),
        // Kernels before 4.18 lack GET_SUBVOL_INFO: the id alone still identifies the subvolume.
        Err(e) if e.raw_os_error() == Some(libc::ENOTTY) => {
            Ok(Some(Subvolume { id: ioctl::subvolume_id(fd.as_fd())?, uuid: [0; 16], parent_uuid: [0; 16] }))
        }
        Err(e) => Err(e),
    }
}

/// The entries of `dir` that are subvolume roots, with their identities. Entries that vanish
/// while we look (a snapshot being removed) are skipped.
fn subvolumes_in(dir: &Path) -> io::Result<Vec<(PathBuf, Subvolume)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !entry.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        let path = entry.path();
        match subvolume(&path) {
            Ok(Some(subvolume)) => found.push((path, subvolume)),
            Ok(None) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    Ok(found)
}

/// The entry of `dir` that is the root of subvolume `id`.
pub fn find_by_id(dir: &Path, id: u64) -> io::Result<Option<(PathBuf, Subvolume)>> {
    // Cheap first: containerd's numeric directory names grow with its snapshot ids, so the
    // subvolume is usually among the newest; but nothing guarantees an order, so look at all.
    Ok(subvolumes_in(dir)?.into_iter().find(|(_, s)| s.id == id))
}

/// The entry of `dir` whose UUID is `uuid` (the origin of a snapshot, given its `parent_uuid`).
pub fn find_by_uuid(dir: &Path, uuid: &[u8; 16]) -> io::Result<Option<PathBuf>> {
    if uuid == &[0; 16] {
        return Ok(None);
    }
    Ok(subvolumes_in(dir)?.into_iter().find(|(_, s)| &s.uuid == uuid).map(|(p, _)| p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_directory_is_not_a_subvolume_root() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        // On any filesystem the inode of a fresh subdirectory is not 256 (or, on btrfs, it is a
        // plain directory inside the subvolume): either way, not a subvolume root.
        let got = subvolume(&dir.path().join("sub")).unwrap_or(None);
        assert_eq!(got, None);
        assert!(find_by_uuid(dir.path(), &[0; 16]).unwrap().is_none());
    }
}
