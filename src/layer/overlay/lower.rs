//! The image side of an overlay: a union of same-named directories in the lower layers.
//!
//! A [`LowerView`] of a directory holds one open descriptor per lower layer that contributes to
//! it, topmost first, following overlayfs' lookup rules: a whiteout (character device 0/0) or a
//! non-directory in a layer hides the name in the layers below; an opaque directory hides the
//! layers below it.

use std::collections::HashSet;
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use crate::fs::{self, Stat};

/// The lower layers' directories that make up one directory of the image, topmost first.
#[derive(Debug, Default)]
pub struct LowerView {
    dirs: Vec<OwnedFd>,
}

impl LowerView {
    /// The root of the image: every layer's root directory, topmost first.
    pub fn root(roots: &[OwnedFd], opaque_attr: &CStr) -> io::Result<LowerView> {
        let mut dirs = Vec::with_capacity(roots.len());
        for root in roots {
            let fd = root.try_clone()?;
            let opaque = is_opaque(&fd, opaque_attr)?;
            dirs.push(fd);
            if opaque {
                break;
            }
        }
        Ok(LowerView { dirs })
    }

    /// Whether the image has no directory here.
    pub fn is_empty(&self) -> bool {
        self.dirs.is_empty()
    }

    /// The image's entry `name` in this directory, or `None` if the image does not have it.
    pub fn lookup(&self, name: &CStr) -> io::Result<Option<Stat>> {
        Ok(self.find(name)?.map(|(_, st)| st))
    }

    /// The layer directory that holds the image's entry `name`, or `None` if the image does not
    /// have it.
    pub fn holder(&self, name: &CStr) -> io::Result<Option<BorrowedFd<'_>>> {
        Ok(self.find(name)?.map(|(dir, _)| dir))
    }

    /// The image's entry `name` and the layer directory that holds it (the topmost that has the
    /// name, unless a whiteout there deletes it).
    fn find(&self, name: &CStr) -> io::Result<Option<(BorrowedFd<'_>, Stat)>> {
        for dir in &self.dirs {
            match fs::stat_at(dir.as_fd(), name) {
                Ok(st) if fs::is_whiteout(&st) => return Ok(None),
                Ok(st) => return Ok(Some((dir.as_fd(), st))),
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// The view of subdirectory `name`; empty when the image has no directory by that name.
    pub fn child(&self, name: &CStr, opaque_attr: &CStr) -> io::Result<LowerView> {
        let mut dirs = Vec::new();
        for dir in &self.dirs {
            match fs::open_dir_at(dir.as_fd(), name) {
                Ok(fd) => {
                    let opaque = is_opaque(&fd, opaque_attr)?;
                    dirs.push(fd);
                    if opaque {
                        break;
                    }
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                // A whiteout, file or symlink in this layer hides the name in the layers below.
                Err(e) if fs::is_vanished(&e) => break,
                Err(e) => return Err(e),
            }
        }
        Ok(LowerView { dirs })
    }

    /// The view reached by following `components` from this one (for redirects).
    pub fn descend<'a>(
        &self,
        components: impl IntoIterator<Item = &'a CStr>,
        opaque_attr: &CStr,
    ) -> io::Result<LowerView> {
        let mut view = LowerView { dirs: self.dirs.iter().map(|d| d.try_clone()).collect::<io::Result<_>>()? };
        for component in components {
            if view.is_empty() {
                break;
            }
            view = view.child(component, opaque_attr)?;
        }
        Ok(view)
    }

    /// Every entry the image has in this directory, with its stat, whiteouts applied.
    /// Reads whole directories: used only where the container replaced or renamed a directory.
    pub fn entries(&self) -> io::Result<Vec<(Box<CStr>, Stat)>> {
        let mut seen: HashSet<Box<CStr>> = HashSet::new();
        let mut out = Vec::new();
        for dir in &self.dirs {
            // Listing needs a fresh offset; the view's descriptors are also used for look-ups.
            let listing = fs::open_dir_at(dir.as_fd(), c".")?;
            for name in fs::read_dir(listing.as_fd())? {
                if seen.contains(&name) {
                    continue;
                }
                let st = match fs::stat_at(dir.as_fd(), &name) {
                    Ok(st) => st,
                    Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                    Err(e) => return Err(e),
                };
                seen.insert(name.clone());
                if !fs::is_whiteout(&st) {
                    out.push((name, st));
                }
            }
        }
        Ok(out)
    }
}

/// Whether a directory carries the overlay opaque marker (`<ns>.overlay.opaque` = `y`).
pub fn is_opaque(dir: &OwnedFd, opaque_attr: &CStr) -> io::Result<bool> {
    Ok(fs::get_xattr(dir.as_fd(), opaque_attr)?.as_deref() == Some(b"y"))
}
