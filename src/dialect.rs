//! Whose diff the `docker` format speaks: `docker diff` and `podman diff` print the same overlay
//! layer differently, and `rodiff diff --format docker` prints what the container's own runtime
//! prints.
//!
//! rodiff's changes follow Docker (moby compares the container's tree with the image's: a
//! directory is `C` when anything below it changed; a copy-up that changed nothing is no change,
//! rodiff's `T`). Podman 4 (containers/storage's native overlay diff) reads the upper directory
//! alone, entry by entry:
//!
//! - a whiteout is `D`; an *opaque* directory (deleted and made again, or a file replaced by a
//!   directory) is `D` itself, and nothing is said of the lower entries it hides;
//! - any other entry the image has is `C` — a copy-up that changed nothing too; a directory
//!   only when its size, mode or modification time differs from the image's (a directory is
//!   never `C` just because of what is below it); an entry the image lacks is `A`;
//! - every directory above an entry reported `A` or `D` is `C` (once, never `/`) — a directory
//!   whose time was put back (`tar -x`, `cp -a`) included;
//! - the paths Podman makes for itself ([`crate::resolve::podman::OWN_ENTRIES`]) are left out.
//!
//! [`podman_view`] turns rodiff's changes (with metadata) into that, reading only the opaque
//! markers of the directories rodiff reports and the image's metadata of those directories.

use std::collections::HashSet;
use std::ffi::CString;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::{Layer, OverlayLayer};
use crate::model::{path_order, Change, ChangeKind, FileType, Metadata};

/// Which runtime's diff a container's `docker`-format diff follows, and whose `run` flags its plan
/// is rendered in ([`crate::plan::render`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// `docker diff` (Docker; containerd's containers are compared with it too).
    #[default]
    Docker,
    /// `podman diff` (Podman's Docker-compatible service): see the module documentation.
    Podman,
}

impl Dialect {
    /// Whether this is [`Dialect::Docker`] (the default, left out of a plan's JSON).
    pub fn is_docker(&self) -> bool {
        *self == Dialect::Docker
    }

    /// The paths the runtime makes in every container's writable layer for itself and leaves out
    /// of its own diff: Podman's [`crate::resolve::podman::OWN_ENTRIES`]; none for Docker (its
    /// equivalents live in the `-init` layer).
    pub fn own_entries(self) -> Vec<PathBuf> {
        match self {
            Dialect::Docker => Vec::new(),
            Dialect::Podman => crate::resolve::podman::own_entries(),
        }
    }
}

/// What `podman diff` reports for `changes` (rodiff's, with metadata, sorted by path) of `layer`;
/// see the module documentation. Changes only live evidence found (not in the layer) are left
/// out. A btrfs layer is returned as it is (Podman's overlay driver only).
pub fn podman_view(changes: Vec<Change>, layer: &Layer) -> Result<Vec<Change>> {
    let Layer::Overlay(overlay) = layer else { return Ok(changes) };
    let image = layer.image()?;
    let upper = Upper::open(overlay)?;
    let own: HashSet<PathBuf> = Dialect::Podman.own_entries().into_iter().collect();
    let mut opaque: HashSet<PathBuf> = HashSet::new();
    let mut view = PodmanView { own: &own, changes: Vec::new(), dirs: HashSet::new() };
    for mut change in changes {
        if own.contains(&change.path) || change.evidence.is_some() {
            continue;
        }
        if change.kind == ChangeKind::Deleted {
            // Below an opaque directory: its own `D` speaks for what it hides.
            if !change.path.ancestors().skip(1).any(|a| opaque.contains(a)) {
                view.push(change);
            }
            continue;
        }
        if change.file_type == FileType::Dir && matches!(change.kind, ChangeKind::Changed | ChangeKind::Touched) {
            if upper.is_opaque(&change.path)? {
                opaque.insert(change.path.clone());
                change.kind = ChangeKind::Deleted;
                view.push(change);
                continue;
            }
            let was = image.stat(&change.path)?;
            let differs = match (change.metadata, was) {
                (Some(own), Some((FileType::Dir, was))) => !same_dir(&own, &was),
                (_, Some(_)) => true,
                (_, None) => {
                    change.kind = ChangeKind::Added;
                    true
                }
            };
            if differs {
                if change.kind != ChangeKind::Added {
                    change.kind = ChangeKind::Changed;
                }
                view.push(change);
            }
            continue;
        }
        // A copy-up of anything but a directory is a change, whatever it changed.
        if change.kind == ChangeKind::Touched {
            change.kind = ChangeKind::Changed;
        }
        view.push(change);
    }
    Ok(view.finish())
}

/// `podman diff`'s list as it is made: parents come before what is below them.
struct PodmanView<'a> {
    /// Podman's own entries, never reported.
    own: &'a HashSet<PathBuf>,
    changes: Vec<Change>,
    /// The directories reported so far.
    dirs: HashSet<PathBuf>,
}

impl PodmanView<'_> {
    /// Adds `change`, after its ancestors as `C` when it is `A` or `D`: containers/storage
    /// reports every directory above an added or deleted entry (but `/`) whatever its size, mode
    /// and time, once; Podman's own entries are left out all the same.
    fn push(&mut self, change: Change) {
        if matches!(change.kind, ChangeKind::Added | ChangeKind::Deleted) {
            let unreported: Vec<PathBuf> = change
                .path
                .ancestors()
                .skip(1)
                .filter(|a| *a != Path::new("/") && !self.dirs.contains(*a) && !self.own.contains(*a))
                .map(Path::to_path_buf)
                .collect();
            for dir in unreported.into_iter().rev() {
                self.dirs.insert(dir.clone());
                self.changes.push(Change {
                    path: dir,
                    kind: ChangeKind::Changed,
                    file_type: FileType::Dir,
                    metadata: None,
                    mountpoint: false,
                    container: change.container.clone(),
                    evidence: None,
                });
            }
        }
        if change.file_type == FileType::Dir {
            self.dirs.insert(change.path.clone());
        }
        self.changes.push(change);
    }

    /// The list, in path order (an ancestor reported late comes before what is below it).
    fn finish(mut self) -> Vec<Change> {
        self.changes.sort_by(|a, b| path_order(a.path.as_os_str().as_bytes(), b.path.as_os_str().as_bytes()));
        self.changes
    }
}

/// containers/storage's test for a directory the upper and lower layers both have: the same
/// size, mode and modification time (equal, or the same second where one side has no
/// nanoseconds) is no change.
fn same_dir(own: &Metadata, was: &Metadata) -> bool {
    let same_time = own.mtime_sec == was.mtime_sec && (own.mtime_nsec == was.mtime_nsec || own.mtime_nsec == 0 || was.mtime_nsec == 0);
    own.size == was.size && own.mode == was.mode && same_time
}

/// The upper directory, for reading the opaque marker of a directory in it.
struct Upper<'a> {
    layer: &'a OverlayLayer,
    root: std::os::fd::OwnedFd,
}

impl<'a> Upper<'a> {
    fn open(layer: &'a OverlayLayer) -> Result<Upper<'a>> {
        let root = crate::fs::open_dir(&layer.upper).map_err(|e| Error::io(&layer.upper, e))?;
        Ok(Upper { layer, root })
    }

    /// Whether the directory at `path` (inside the container) is opaque in the upper directory:
    /// reached component by component without following a symlink; `false` when it is gone (the
    /// container is running).
    fn is_opaque(&self, path: &Path) -> Result<bool> {
        let fail = |e: std::io::Error| Error::io(crate::fs::host_path(&self.layer.upper, path), e);
        let names: Vec<CString> = crate::layer::image::components(path)?;
        let mut dir = None::<std::os::fd::OwnedFd>;
        for name in &names {
            let parent = dir.as_ref().map_or(self.root.as_fd(), |d| d.as_fd());
            match crate::fs::open_dir_at(parent, name) {
                Ok(fd) => dir = Some(fd),
                Err(e) if crate::fs::is_vanished(&e) => return Ok(false),
                Err(e) => return Err(fail(e)),
            }
        }
        let Some(dir) = dir else { return Ok(false) };
        let marker = crate::fs::get_xattr(dir.as_fd(), self.layer.xattr.opaque()).map_err(fail)?;
        Ok(marker.as_deref() == Some(b"y"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(size: u64, mode: u32, sec: i64, nsec: u32) -> Metadata {
        Metadata { mode, uid: 0, gid: 0, size, mtime_sec: sec, mtime_nsec: nsec }
    }

    #[test]
    fn directories_compare_as_containers_storage_does() {
        assert!(same_dir(&md(4096, 0o755, 10, 5), &md(4096, 0o755, 10, 5)));
        assert!(same_dir(&md(4096, 0o755, 10, 0), &md(4096, 0o755, 10, 5)), "one side without nanoseconds");
        assert!(!same_dir(&md(4096, 0o755, 11, 5), &md(4096, 0o755, 10, 5)));
        assert!(!same_dir(&md(4096, 0o700, 10, 5), &md(4096, 0o755, 10, 5)));
        assert!(!same_dir(&md(8192, 0o755, 10, 5), &md(4096, 0o755, 10, 5)));
        let mut chowned = md(4096, 0o755, 10, 5);
        chowned.uid = 1000;
        assert!(same_dir(&chowned, &md(4096, 0o755, 10, 5)), "the owner is not compared");
    }
}
