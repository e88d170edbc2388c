//! From changes to writes: for every change, the directory that must be writable for it to happen
//! again under a read-only root filesystem.
//!
//! - `A` at the root of an added tree: its parent directory; for an added directory, a mount point
//!   at the directory itself also serves (the runtime makes it, the application finds it made);
//! - `D`, and `C`/`T` of anything but a directory: the parent directory (a file cannot be mounted
//!   over in place of its directory; a deletion is a write to the directory);
//! - `T` of a directory: the directory (a file was made and removed in it);
//! - `C` of a directory: the directory when its own mode or owner changed, or when its mtime did
//!   while no entry was added or deleted in it (a transient file); otherwise it is `C` only because
//!   of what changed below it, and those changes speak for themselves.
//!
//! Runtime-managed files (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf` …), mount points and
//! anything below the container's own mounts need no mount.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use super::Ignored;
use crate::error::Result;
use crate::layer::image::ImageView;
use crate::model::{runtime_managed, Change, ChangeKind, FileType};

/// One write to cover.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Write {
    /// The directory that must be writable; with `premade`, the added directory itself.
    pub target: PathBuf,
    /// `target` is a directory the container added: a mount point there stands in for making it.
    pub premade: bool,
    /// Index of the change that shows the write.
    pub change: usize,
}

/// The writes of a diff, and the changes left out.
#[derive(Debug, Default)]
pub(super) struct Found {
    pub writes: Vec<Write>,
    pub ignored: Vec<Ignored>,
}

/// Finds the writes among `changes` (with metadata), leaving out what the runtime does.
pub(super) fn writes(changes: &[Change], image: &dyn ImageView, mounts: &[PathBuf]) -> Result<Found> {
    let mut found = Found::default();
    let mut skip: HashSet<&Path> = HashSet::new();
    for change in changes {
        if let Some(reason) = ignore_reason(change, mounts) {
            skip.insert(&change.path);
            if !(change.kind == ChangeKind::Changed && change.file_type == FileType::Dir) {
                found.ignored.push(Ignored { path: change.path.clone(), reason });
            }
        }
    }
    let added: HashSet<&Path> =
        changes.iter().filter(|c| c.kind == ChangeKind::Added && !skip.contains(c.path.as_path())).map(|c| c.path.as_path()).collect();
    // Directories in which an entry was made or removed (mount points included): their mtime
    // changed for that reason.
    let entries_changed: HashSet<&Path> =
        changes.iter().filter(|c| matches!(c.kind, ChangeKind::Added | ChangeKind::Deleted)).filter_map(|c| c.path.parent()).collect();

    for (i, change) in changes.iter().enumerate() {
        if skip.contains(change.path.as_path()) {
            continue;
        }
        let parent = || change.path.parent().unwrap_or(Path::new("/")).to_path_buf();
        let dir = change.file_type == FileType::Dir;
        let write = match change.kind {
            ChangeKind::Added if change.path.parent().is_some_and(|p| added.contains(p)) => None,
            ChangeKind::Added if dir => Some((change.path.clone(), true)),
            ChangeKind::Added | ChangeKind::Deleted => Some((parent(), false)),
            ChangeKind::Changed | ChangeKind::Touched if !dir => Some((parent(), false)),
            ChangeKind::Touched => Some((change.path.clone(), false)),
            ChangeKind::Changed => dir_written(change, image, &entries_changed)?.then(|| (change.path.clone(), false)),
        };
        if let Some((target, premade)) = write {
            found.writes.push(Write { target, premade, change: i });
        }
    }
    Ok(found)
}

/// Why a change needs no mount, if it needs none.
fn ignore_reason(change: &Change, mounts: &[PathBuf]) -> Option<String> {
    let path = change.path.as_path();
    if change.mountpoint {
        return Some("a mount point the runtime made".into());
    }
    if let Some(m) = mounts.iter().find(|m| path.starts_with(m)) {
        return Some(format!("below the container's own mount {}", m.display()));
    }
    if runtime_managed(path) {
        return Some("managed by the runtime".into());
    }
    None
}

/// Whether a changed directory was itself written to (see the module documentation).
fn dir_written(change: &Change, image: &dyn ImageView, entries_changed: &HashSet<&Path>) -> Result<bool> {
    let Some(own) = change.metadata else { return Ok(false) };
    let Some((_, was)) = image.stat(&change.path)? else { return Ok(false) };
    if (own.mode, own.uid, own.gid) != (was.mode, was.uid, was.gid) {
        return Ok(true);
    }
    let mtime_changed = (own.mtime_sec, own.mtime_nsec) != (was.mtime_sec, was.mtime_nsec);
    Ok(mtime_changed && !entries_changed.contains(change.path.as_path()))
}
