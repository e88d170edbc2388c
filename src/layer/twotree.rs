//! Comparing two directory trees — the container's and the image's — entry by entry, with
//! `docker diff`'s rules, visiting only the directories a [`Scope`] oracle says may differ.
//!
//! With an oracle that always answers [`Scope::Everything`] this is the classic full two-tree walk;
//! the btrfs engine answers from the subvolume's b-tree, so the walk costs what changed, not what
//! the image holds (every entry compared counts once in [`ScanOptions::progress`], which is how a
//! test proves it). All access is fd-relative and never follows a symlink.
//!
//! The container's tree is frozen (a read-only snapshot): an entry that vanishes from it while it
//! is read means the snapshot itself was deleted, and the walk fails rather than return a
//! shorter list.

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs;
use crate::layer::compare::{capabilities_differ, counts_for_parent, dir_kind, entry_kind, is_dir};
use crate::layer::{walk_all, ChangeSink, Reporter, ScanOptions};
use crate::model::{join_path, Change, ChangeKind, FileType};

/// Which entries of a directory may differ between the two trees.
pub enum Scope<'a> {
    /// Any entry: list both directories and compare everything.
    Everything,
    /// Only these names; the others are identical in both trees.
    Only(&'a HashSet<Box<[u8]>>),
    /// Nothing below this directory differs.
    Nothing,
}

/// What the walk may skip.
pub trait Oracle: Sync {
    /// The scope of the directory with inode number `dir_ino` (the same in both trees). Asked
    /// only for directories that are the same inode in both trees.
    fn scope(&self, dir_ino: u64) -> Scope<'_>;
    /// Whether inode `ino`, present in both trees, may differ between them; `false` promises that
    /// its metadata is identical.
    fn inode_changed(&self, ino: u64) -> bool;
}

/// Compares `new` (the container's frozen tree, at host path `frozen`) with `old` (the image),
/// both open directories, reporting changes to `sink`; `host_root` names the container's layer in
/// messages.
pub fn diff(
    new: &OwnedFd,
    old: &OwnedFd,
    oracle: &dyn Oracle,
    options: &ScanOptions,
    sink: &dyn ChangeSink,
    host_root: &Path,
    frozen: &Path,
) -> Result<()> {
    let walker = Walker { oracle, report: Reporter { options, sink }, host_root, frozen };
    let io_err = |e| Error::io(host_root, e);
    let root = PathBuf::from("/");
    let scope = oracle.scope(fs::stat_fd(new.as_fd()).map_err(io_err)?.st_ino);
    walker.compare_dir(&root, new.try_clone().map_err(io_err)?, Some(old.try_clone().map_err(io_err)?), scope)?;
    Ok(())
}

struct Walker<'a> {
    oracle: &'a dyn Oracle,
    report: Reporter<'a>,
    host_root: &'a Path,
    frozen: &'a Path,
}

/// An entry as listed: type and inode number from `getdents`.
#[derive(Clone, Copy)]
struct Listed {
    file_type: Option<FileType>,
    ino: u64,
}

/// A subdirectory to compare after its parent's entries.
struct Pending {
    name: Box<CStr>,
    path: PathBuf,
    /// The image's directory of the same name, if it has one (otherwise the subtree is new).
    in_old: bool,
    /// The image had a non-directory here: the directory replaced it.
    replaced: bool,
    /// Compare everything below (the directory is a different inode than the image's).
    everything: bool,
}

impl Walker<'_> {
    fn host_path(&self, path: &Path) -> PathBuf {
        fs::host_path(self.host_root, path)
    }

    /// The error for an I/O failure at container path `path`: an entry gone from the frozen tree
    /// means the snapshot was deleted under the scan.
    fn error(&self, path: &Path, e: io::Error) -> Error {
        if fs::is_vanished(&e) {
            Error::SnapshotVanished { path: self.frozen.to_path_buf() }
        } else {
            Error::io(self.host_path(path), e)
        }
    }

    /// Compares one directory; returns whether anything below counts as a change for it.
    fn compare_dir(&self, path: &Path, new: OwnedFd, old: Option<OwnedFd>, scope: Scope<'_>) -> Result<bool> {
        let io_err = |e| self.error(path, e);
        let mut batch = Vec::new();
        let mut pending = Vec::new();
        let mut changed = false;
        let mut refused = None;
        let new_fd = new.as_fd();
        match (&old, scope) {
            (_, Scope::Nothing) => return Ok(false),
            (None, _) => {
                let listed = fs::for_each_entry(new_fd, |name, file_type, ino| {
                    changed |= self.entry(path, new_fd, None, name, Some(Listed { file_type, ino }), None, &mut batch, &mut pending)?;
                    self.report.flush_full(&mut batch, &mut refused)
                });
                stopped(&mut refused)?;
                self.report.options.progress.add(listed.map_err(io_err)?);
            }
            (Some(old), Scope::Everything) => {
                let old_entries = list(old.as_fd()).map_err(io_err)?;
                let mut seen = HashSet::with_capacity(old_entries.len());
                let listed = fs::for_each_entry(new_fd, |name, file_type, ino| {
                    let theirs = old_entries.get(name.to_bytes()).copied();
                    if theirs.is_some() {
                        seen.insert(name.to_bytes().to_vec());
                    }
                    let ours = Some(Listed { file_type, ino });
                    changed |= self.entry(path, new_fd, Some(old.as_fd()), name, ours, Some(theirs), &mut batch, &mut pending)?;
                    self.report.flush_full(&mut batch, &mut refused)
                });
                stopped(&mut refused)?;
                self.report.options.progress.add(listed.map_err(io_err)?);
                for (name, _) in old_entries.iter().filter(|(n, _)| !seen.contains(&n[..])) {
                    let name = std::ffi::CString::new(name.to_vec()).expect("names have no NUL");
                    if let Some(st) = fs::stat_at_if_present(old.as_fd(), &name).map_err(io_err)? {
                        batch.push(self.report.change(join_path(path, name.to_bytes()), ChangeKind::Deleted, fs::file_type(&st), Some(&st)));
                        changed = true;
                    }
                }
            }
            (Some(old), Scope::Only(names)) => {
                self.report.options.progress.add(names.len() as u64);
                for name in names {
                    let name = std::ffi::CString::new(name.to_vec()).expect("names have no NUL");
                    changed |= self
                        .entry(path, new_fd, Some(old.as_fd()), &name, None, None, &mut batch, &mut pending)
                        .map_err(io_err)?;
                    if self.report.flush_full(&mut batch, &mut refused).is_err() {
                        stopped(&mut refused)?;
                    }
                }
            }
        }
        self.report.emit(batch)?;
        let below = walk_all(pending, |p| self.compare_subdir(&new, old.as_ref(), p))?;
        Ok(changed | below)
    }

    /// Handles one name of a directory. `ours`/`theirs` carry what a listing already told (with
    /// `theirs = Some(None)` meaning "listed, absent from the image"); unknown sides are looked up.
    #[allow(clippy::too_many_arguments)]
    fn entry(
        &self,
        dir: &Path,
        new: BorrowedFd<'_>,
        old: Option<BorrowedFd<'_>>,
        name: &CStr,
        ours: Option<Listed>,
        theirs: Option<Option<Listed>>,
        batch: &mut Vec<Change>,
        pending: &mut Vec<Pending>,
    ) -> io::Result<bool> {
        let path = join_path(dir, name.to_bytes());
        // What the container has (every name asked for is in its frozen tree).
        let (ours, mut own_stat) = match ours {
            Some(l) if l.file_type.is_some() => (l, None),
            _ => {
                let st = fs::stat_at(new, name)?;
                (Listed { file_type: Some(fs::file_type(&st)), ino: st.st_ino }, Some(st))
            }
        };
        let file_type = ours.file_type.expect("typed above");
        // Listed in both trees as the same inode, untouched since the snapshot, with nothing to
        // look at below it: identical, and no stat needed to say so.
        if let Some(Some(theirs)) = theirs {
            let untouched = theirs.ino == ours.ino && theirs.file_type == ours.file_type && !self.oracle.inode_changed(ours.ino);
            if untouched && (file_type != FileType::Dir || matches!(self.oracle.scope(ours.ino), Scope::Nothing)) {
                return Ok(false);
            }
        }
        // What the image has.
        let old_stat = match (old, theirs) {
            (None, _) | (_, Some(None)) => None,
            (Some(o), _) => fs::stat_at_if_present(o, name)?,
        };
        let Some(old_stat) = old_stat else {
            if file_type == FileType::Dir {
                pending.push(Pending { name: name.into(), path, in_old: false, replaced: false, everything: true });
            } else {
                if own_stat.is_none() && self.report.options.metadata {
                    own_stat = Some(fs::stat_at(new, name)?);
                }
                batch.push(self.report.change(path, ChangeKind::Added, file_type, own_stat.as_ref()));
            }
            return Ok(true);
        };
        let same_inode = ours.ino == old_stat.st_ino && !self.oracle.inode_changed(ours.ino);
        if file_type == FileType::Dir {
            let replaced = !is_dir(&old_stat);
            pending.push(Pending { name: name.into(), path, in_old: !replaced, replaced, everything: ours.ino != old_stat.st_ino });
            return Ok(false);
        }
        if same_inode {
            return Ok(false);
        }
        let own_stat = match own_stat {
            Some(st) => st,
            None => fs::stat_at(new, name)?,
        };
        // No copy-up exists outside overlayfs: an identical entry was not written, unless its
        // capabilities differ — or, for a regular file whose inode changed in more than its access
        // time with its metadata put back (a same-size rewrite, mtime restored), its bytes.
        let caps_differ = || {
            Ok(capabilities_differ(Some(new), old, name)?
                || (file_type == FileType::File && old.map_or(Ok(true), |old| crate::layer::compare::contents_differ(new, old, name))?))
        };
        let Some(kind) = entry_kind(Some(&own_stat), Some(&old_stat), false, caps_differ)? else { return Ok(false) };
        batch.push(self.report.change(path, kind, file_type, Some(&own_stat)));
        Ok(counts_for_parent(kind))
    }

    fn compare_subdir(&self, new_parent: &OwnedFd, old_parent: Option<&OwnedFd>, p: Pending) -> Result<bool> {
        let io_err = |e| self.error(&p.path, e);
        let new = fs::open_dir_at(new_parent.as_fd(), &p.name).map_err(io_err)?;
        let own = fs::stat_fd(new.as_fd()).map_err(io_err)?;
        let old = match (p.in_old, old_parent) {
            (true, Some(parent)) => match fs::open_dir_at(parent.as_fd(), &p.name) {
                Ok(fd) => Some(fd),
                Err(e) if fs::is_vanished(&e) => None,
                Err(e) => return Err(Error::io(self.host_path(&p.path), e)),
            },
            _ => None,
        };
        let Some(old) = old else {
            // New here (or replacing a non-directory): the whole subtree is added.
            let kind = if p.replaced { ChangeKind::Changed } else { ChangeKind::Added };
            self.report.emit(vec![self.report.change(p.path.clone(), kind, FileType::Dir, Some(&own))])?;
            self.compare_dir(&p.path, new, None, Scope::Everything)?;
            return Ok(true);
        };
        let old_stat = fs::stat_fd(old.as_fd()).map_err(io_err)?;
        let scope = if p.everything { Scope::Everything } else { self.oracle.scope(own.st_ino) };
        let below = self.compare_dir(&p.path, new, Some(old), scope)?;
        let written = own.st_ino != old_stat.st_ino || self.oracle.inode_changed(own.st_ino);
        let caps_differ = || Ok(written && capabilities_differ(Some(new_parent.as_fd()), old_parent.map(|o| o.as_fd()), &p.name)?);
        let Some(kind) = dir_kind(&own, &old_stat, below, written, caps_differ).map_err(io_err)? else { return Ok(false) };
        self.report.emit(vec![self.report.change(p.path, kind, FileType::Dir, Some(&own))])?;
        Ok(counts_for_parent(kind))
    }
}

/// A directory listing by name.
/// The error a [`Reporter::flush_full`] left, if the sink refused a batch or the scan was
/// cancelled.
fn stopped(refused: &mut Option<Error>) -> Result<()> {
    refused.take().map_or(Ok(()), Err)
}

fn list(dir: BorrowedFd<'_>) -> io::Result<HashMap<Box<[u8]>, Listed>> {
    let mut out = HashMap::new();
    let listed = fs::for_each_entry(dir, |name, file_type, ino| {
        out.insert(name.to_bytes().into(), Listed { file_type, ino });
        Ok(())
    });
    listed?;
    Ok(out)
}
