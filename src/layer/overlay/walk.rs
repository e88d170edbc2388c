//! The parallel walk over an overlay upper directory.
//!
//! Each directory is listed once with `getdents`; entries are typed from `d_type` and stat'ed only
//! when a comparison or the caller needs it. Lower layers are consulted by name, one `fstatat` per
//! entry of a directory the image has, and listed in full only below renamed or opaque directories.
//! Subdirectories are walked in parallel (rayon's work stealing); a directory's `C`/`T` verdict is
//! made after its subtree, which tells whether anything below changed (`docker diff`'s rule) or
//! was reported at all (an upper directory with nothing reported below is itself evidence of a
//! write: kind `T`).

use std::collections::{HashMap, HashSet};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::lower::{is_opaque, LowerView};
use super::redirect::{self, Redirect};
use super::OverlayLayer;
use crate::error::{Error, Result};
use crate::fs::{self, Stat};
use crate::layer::compare::{capabilities_differ, copied_up_dir_kind, dir_kind, entry_kind, is_dir, Below};
use crate::layer::{walk_all, ChangeSink, Reporter, ScanOptions, Walkers};
use crate::model::{join_path, Change, ChangeKind, FileType};

/// One overlay diff in progress.
pub(super) struct Walker<'a> {
    layer: &'a OverlayLayer,
    report: Reporter<'a>,
    lower_roots: Vec<OwnedFd>,
    opaque_attr: &'static CStr,
    metacopy_attr: &'static CStr,
    redirect_attr: &'static CStr,
}

/// What the container's merged directory shows from the lower layers.
enum Content {
    /// The same as the image: lower entries that the upper directory does not mention are
    /// unchanged, and never read.
    Image,
    /// Something else: nothing (an opaque directory) or a renamed directory's origin.
    Other(LowerView),
}

/// A directory to diff.
struct Dir {
    /// Path inside the container.
    path: PathBuf,
    /// The directory in the upper layer; `None` below a renamed directory, where content comes
    /// from the lower layers only.
    upper: Option<OwnedFd>,
    /// What the image has at this path.
    image: LowerView,
    /// What the container sees from the lower layers at this path.
    content: Content,
}

/// A subdirectory met while listing its parent, walked after the parent's own entries.
struct Pending {
    name: Box<CStr>,
    path: PathBuf,
    /// It is in the upper directory (otherwise it comes from a renamed directory's origin).
    in_upper: bool,
    /// Stat of the container's entry when already known (entries from the lower layers).
    own: Option<Stat>,
    /// Stat of the image's entry at the same path, if the image has one.
    image: Option<Stat>,
}

impl<'a> Walker<'a> {
    pub(super) fn new(layer: &'a OverlayLayer, options: &'a ScanOptions, sink: &'a dyn ChangeSink) -> Result<Self> {
        let lower_roots = layer
            .lowers
            .iter()
            .map(|p| fs::open_dir(p).map_err(|e| Error::io(p, e)))
            .collect::<Result<_>>()?;
        Ok(Walker {
            layer,
            report: Reporter { options, sink },
            lower_roots,
            opaque_attr: layer.xattr.opaque(),
            metacopy_attr: layer.xattr.metacopy(),
            redirect_attr: layer.xattr.redirect(),
        })
    }

    pub(super) fn run(self, walkers: &Walkers) -> Result<()> {
        let upper_path = &self.layer.upper;
        let upper = fs::open_dir(upper_path).map_err(|e| match e.raw_os_error() {
            Some(libc::ENOENT) => Error::LayerVanished { path: upper_path.clone() },
            _ => Error::io(upper_path, e),
        })?;
        let root = Dir {
            path: PathBuf::from("/"),
            upper: Some(upper.try_clone().map_err(|e| Error::io(upper_path, e))?),
            image: LowerView::root(&self.lower_roots, self.opaque_attr).map_err(|e| Error::io(&self.layer.lowers[0], e))?,
            content: Content::Image,
        };
        walkers.install(|| self.walk_dir(root))?;
        // A directory deleted while we held it open has no links left: the container (and with it
        // the layer) was removed during the scan, and what we reported is not its diff.
        match fs::stat_fd(upper.as_fd()) {
            Ok(st) if st.st_nlink > 0 => Ok(()),
            Ok(_) => Err(Error::LayerVanished { path: upper_path.clone() }),
            Err(e) => Err(Error::io(upper_path, e)),
        }
    }

    /// Host path of a container path in the upper directory, for error messages.
    fn host_path(&self, path: &Path) -> PathBuf {
        fs::host_path(&self.layer.upper, path)
    }

    /// Diffs one directory's entries and its subtree; returns what was found below it.
    fn walk_dir(&self, dir: Dir) -> Result<Below> {
        let io_err = |e| Error::io(self.host_path(&dir.path), e);
        let mut batch = Vec::new();
        let mut pending = Vec::new();
        let mut changed = Below::default();
        let mut in_upper: HashSet<Box<CStr>> = HashSet::new();

        if let Some(upper) = &dir.upper {
            let track_names = matches!(dir.content, Content::Other(_));
            let listed = fs::for_each_entry(upper.as_fd(), |name, file_type, _ino| {
                changed |= self.upper_entry(&dir, upper.as_fd(), name, file_type, &mut batch, &mut pending)?;
                if track_names {
                    in_upper.insert(name.into());
                }
                Ok(())
            });
            match listed {
                Ok(count) => self.report.options.progress.add(count),
                Err(e) if fs::is_vanished(&e) => {}
                Err(e) => return Err(io_err(e)),
            }
        }
        if let Content::Other(content) = &dir.content {
            changed |= self
                .lower_entries(&dir, content, &in_upper, &mut batch, &mut pending)
                .map_err(io_err)?;
        }
        self.report.emit(batch)?;

        let below = walk_all(pending, |p| self.walk_subdir(&dir, p))?;
        Ok(changed | below)
    }

    /// Handles one entry of an upper directory. Subdirectories are queued in `pending`.
    fn upper_entry(
        &self,
        dir: &Dir,
        upper: BorrowedFd<'_>,
        name: &CStr,
        listed_type: Option<FileType>,
        batch: &mut Vec<Change>,
        pending: &mut Vec<Pending>,
    ) -> io::Result<Below> {
        let path = join_path(&dir.path, name.to_bytes());
        let mut own = None;
        let file_type = match listed_type {
            Some(t) if t != FileType::Char => t,
            // Character devices may be whiteouts; DT_UNKNOWN needs a stat to learn the type.
            _ => match fs::stat_at_if_present(upper, name)? {
                Some(st) => {
                    own = Some(st);
                    fs::file_type(&st)
                }
                None => return Ok(Below::default()),
            },
        };
        if own.as_ref().is_some_and(fs::is_whiteout) {
            return Ok(self.whiteout_change(path, dir.image.lookup(name)?.as_ref(), batch));
        }
        let image = if dir.image.is_empty() { None } else { dir.image.lookup(name)? };
        if file_type == FileType::Dir {
            pending.push(Pending { name: name.into(), path, in_upper: true, own: None, image });
            return Ok(Below::default());
        }
        if own.is_none() && (image.is_some() || self.report.options.metadata) {
            own = match fs::stat_at_if_present(upper, name)? {
                Some(st) => Some(st),
                None => return Ok(Below::default()),
            };
        }
        let caps_differ = || Ok(self.caps_differ(dir, name, true)? || (file_type == FileType::File && self.upper_bytes_differ(dir, upper, name)?));
        self.file_change(path, file_type, own.as_ref(), image.as_ref(), true, caps_differ, batch)
    }

    /// Entries the container sees from the lower layers that differ from the image's: only
    /// below opaque and renamed directories, whose lower content is not the image's.
    fn lower_entries(
        &self,
        dir: &Dir,
        content: &LowerView,
        in_upper: &HashSet<Box<CStr>>,
        batch: &mut Vec<Change>,
        pending: &mut Vec<Pending>,
    ) -> io::Result<Below> {
        let mut changed = Below::default();
        let mut content_entries: HashMap<Box<CStr>, Stat> = content.entries()?.into_iter().collect();
        for (name, image) in dir.image.entries()? {
            let theirs = content_entries.remove(&name);
            if in_upper.contains(&name) {
                continue;
            }
            let path = join_path(&dir.path, name.to_bytes());
            match theirs {
                Some(own) if is_dir(&own) => {
                    pending.push(Pending { name, path, in_upper: false, own: Some(own), image: Some(image) })
                }
                Some(own) => {
                    let caps_differ = || self.caps_differ(dir, &name, false);
                    changed |= self.file_change(path, fs::file_type(&own), Some(&own), Some(&image), false, caps_differ, batch)?
                }
                None => changed |= self.whiteout_change(path, Some(&image), batch),
            }
        }
        // What is left exists only in the container's lower content: new at this path.
        for (name, own) in content_entries {
            if in_upper.contains(&name) {
                continue;
            }
            let path = join_path(&dir.path, name.to_bytes());
            if is_dir(&own) {
                pending.push(Pending { name, path, in_upper: false, own: Some(own), image: None });
            } else {
                changed |= self.file_change(path, fs::file_type(&own), Some(&own), None, false, || Ok(false), batch)?;
            }
        }
        Ok(changed)
    }

    /// The change for a non-directory: `A` when the image lacks it, `C` when it differs, `T` when
    /// it is a copy-up identical to the image's entry (`can_touch`: it is in the upper layer).
    /// `caps_differ` compares capabilities, asked only when the stat is identical.
    #[allow(clippy::too_many_arguments)]
    fn file_change(
        &self,
        path: PathBuf,
        file_type: FileType,
        own: Option<&Stat>,
        image: Option<&Stat>,
        can_touch: bool,
        caps_differ: impl FnOnce() -> io::Result<bool>,
        batch: &mut Vec<Change>,
    ) -> io::Result<Below> {
        let kind = entry_kind(own, image, can_touch, caps_differ)?;
        if let Some(kind) = kind {
            batch.push(self.report.change(path, kind, file_type, own));
        }
        Ok(Below::of(kind))
    }

    /// Whether entry `name` of `dir` has other capabilities in the container than in the image;
    /// `in_upper`: the container's entry is in the upper directory, else in the lower content.
    fn caps_differ(&self, dir: &Dir, name: &CStr, in_upper: bool) -> io::Result<bool> {
        let own = match (&dir.upper, &dir.content) {
            (Some(upper), _) if in_upper => Some(upper.as_fd()),
            (_, Content::Other(view)) => view.holder(name)?,
            (_, Content::Image) => dir.image.holder(name)?,
        };
        capabilities_differ(own, dir.image.holder(name)?, name)
    }

    /// Whether the regular file `name` of the upper directory `upper` (of `dir`), whose metadata
    /// equals the image's, has other bytes than the image's file: a copy-up is a write, but not
    /// necessarily a change (`T`), unless its content differs. A metacopy-only copy-up has the
    /// image's data by construction and is not read.
    fn upper_bytes_differ(&self, dir: &Dir, upper: BorrowedFd<'_>, name: &CStr) -> io::Result<bool> {
        if fs::get_xattr_at(upper, name, self.metacopy_attr)?.is_some() {
            return Ok(false);
        }
        match dir.image.holder(name)? {
            Some(image) => crate::layer::compare::contents_differ(upper, image, name),
            None => Ok(true),
        }
    }

    /// The change for a deleted name: `D` of the image's entry, nothing when the image has none.
    fn whiteout_change(&self, path: PathBuf, image: Option<&Stat>, batch: &mut Vec<Change>) -> Below {
        let Some(image) = image else { return Below::default() };
        batch.push(self.change(path, ChangeKind::Deleted, image));
        Below::of(Some(ChangeKind::Deleted))
    }

    /// A change described by `st`.
    fn change(&self, path: PathBuf, kind: ChangeKind, st: &Stat) -> Change {
        self.report.change(path, kind, fs::file_type(st), Some(st))
    }

    /// Diffs a subdirectory and decides its own kind; returns what it and its subtree report.
    fn walk_subdir(&self, parent: &Dir, p: Pending) -> Result<Below> {
        let io_err = |e| Error::io(self.host_path(&p.path), e);
        let (upper, own) = if p.in_upper {
            let parent_upper = parent.upper.as_ref().expect("upper entries come from an upper directory");
            match fs::open_dir_at(parent_upper.as_fd(), &p.name) {
                Ok(fd) => {
                    let st = fs::stat_fd(fd.as_fd()).map_err(io_err)?;
                    (Some(fd), st)
                }
                Err(e) if fs::is_vanished(&e) => return self.replaced_subdir(parent, parent_upper.as_fd(), p),
                Err(e) => return Err(io_err(e)),
            }
        } else {
            (None, p.own.expect("lower entries carry their stat"))
        };

        let image = match &p.image {
            Some(st) if is_dir(st) => parent.image.child(&p.name, self.opaque_attr).map_err(io_err)?,
            _ => LowerView::default(),
        };
        let content = self.content_of(parent, &p, upper.as_ref(), &image)?;

        // A new directory, or one replacing a non-directory, is known before its subtree.
        let known = match &p.image {
            None => Some(ChangeKind::Added),
            Some(st) if !is_dir(st) => Some(ChangeKind::Changed),
            Some(_) => None,
        };
        if let Some(kind) = known {
            self.report.emit(vec![self.change(p.path.clone(), kind, &own)])?;
        }
        let below = self.walk_dir(Dir { path: p.path.clone(), upper, image, content })?;
        if known.is_some() {
            return Ok(below | Below::of(known));
        }
        let image = p.image.expect("checked above");
        let caps_differ = || self.caps_differ(parent, &p.name, p.in_upper);
        let kind = if p.in_upper {
            copied_up_dir_kind(&own, &image, below, caps_differ)
        } else {
            dir_kind(&own, &image, below.changed, false, caps_differ)
        };
        let kind = kind.map_err(|e| Error::io(self.host_path(&p.path), e))?;
        if let Some(kind) = kind {
            self.report.emit(vec![self.change(p.path, kind, &own)])?;
        }
        Ok(below | Below::of(kind))
    }

    /// An upper subdirectory that is no longer a directory when its turn comes (the container
    /// replaced it after its parent was listed): reported as what is there now, never followed —
    /// a whiteout as the deletion of the image's entry, a symlink or file as any other entry.
    fn replaced_subdir(&self, parent: &Dir, parent_upper: BorrowedFd<'_>, p: Pending) -> Result<Below> {
        let host_path = self.host_path(&p.path);
        let io_err = |e| Error::io(&host_path, e);
        let st = fs::stat_at_if_present(parent_upper, &p.name).map_err(io_err)?;
        let mut batch = Vec::new();
        let changed = match st {
            Some(st) if fs::is_whiteout(&st) => self.whiteout_change(p.path, p.image.as_ref(), &mut batch),
            Some(st) if !is_dir(&st) => {
                let regular = fs::file_type(&st) == FileType::File;
                let caps_differ = || Ok(self.caps_differ(parent, &p.name, true)? || (regular && self.upper_bytes_differ(parent, parent_upper, &p.name)?));
                self.file_change(p.path, fs::file_type(&st), Some(&st), p.image.as_ref(), true, caps_differ, &mut batch).map_err(io_err)?
            }
            _ => Below::default(),
        };
        self.report.emit(batch)?;
        Ok(changed)
    }

    /// What the container sees from the lower layers in subdirectory `p` of `parent`. Like the
    /// kernel, an opaque directory's redirect is never read.
    fn content_of(&self, parent: &Dir, p: &Pending, upper: Option<&OwnedFd>, image: &LowerView) -> Result<Content> {
        let io_err = |e| Error::io(self.host_path(&p.path), e);
        if let Some(fd) = upper {
            if is_opaque(fd, self.opaque_attr).map_err(io_err)? {
                // An opaque directory where the image has none hides nothing.
                return Ok(if image.is_empty() { Content::Image } else { Content::Other(LowerView::default()) });
            }
            if let Some(value) = fs::get_xattr(fd.as_fd(), self.redirect_attr).map_err(io_err)? {
                let redirect = redirect::parse(&value).map_err(|why| Error::HostileLayer {
                    path: self.host_path(&p.path),
                    detail: format!("{} = \"{}\": {why}", self.redirect_attr.to_string_lossy(), value.escape_ascii()),
                })?;
                return self.resolve_redirect(parent, &redirect).map(Content::Other).map_err(io_err);
            }
        }
        Ok(match &parent.content {
            Content::Image => Content::Image,
            Content::Other(view) => Content::Other(view.child(&p.name, self.opaque_attr).map_err(io_err)?),
        })
    }

    /// The lower directory a renamed directory's (valid) redirect names: absolute from the layer
    /// roots, or relative to the parent's lower content.
    fn resolve_redirect(&self, parent: &Dir, redirect: &Redirect) -> io::Result<LowerView> {
        let names = redirect.components.iter().map(|c| c.as_c_str());
        if redirect.absolute {
            LowerView::root(&self.lower_roots, self.opaque_attr)?.descend(names, self.opaque_attr)
        } else {
            let base = match &parent.content {
                Content::Image => &parent.image,
                Content::Other(view) => view,
            };
            base.descend(names, self.opaque_attr)
        }
    }
}
