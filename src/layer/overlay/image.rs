//! The image of an overlay layer by path: the union of the lower directories, looked up through
//! `LowerView` (whiteouts and opaque directories honoured, symlinks never followed).

use std::ffi::CStr;
use std::os::unix::ffi::OsStrExt;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use super::lower::LowerView;
use super::OverlayLayer;
use crate::error::{Error, Result};
use crate::fs;
use crate::layer::image::{components, not_a_file, read_up_to, ImageView};
use crate::model::{FileType, Metadata};

/// The lower stack of an overlay layer, seen as one image.
#[derive(Debug)]
pub struct OverlayImage {
    roots: Vec<OwnedFd>,
    top: PathBuf,
    opaque_attr: &'static CStr,
}

impl OverlayImage {
    /// Opens every lower directory of `layer`.
    pub fn open(layer: &OverlayLayer) -> Result<OverlayImage> {
        let roots = layer.lowers.iter().map(|p| fs::open_dir(p).map_err(|e| Error::io(p, e))).collect::<Result<_>>()?;
        let top = layer.lowers.first().cloned().unwrap_or_default();
        Ok(OverlayImage { roots, top, opaque_attr: layer.xattr.opaque() })
    }

    /// The view of the image's directory at `names` (empty when the image has none there).
    fn view(&self, names: &[std::ffi::CString], path: &Path) -> Result<LowerView> {
        let root = LowerView::root(&self.roots, self.opaque_attr).map_err(|e| self.error(path, e))?;
        root.descend(names.iter().map(|n| n.as_c_str()), self.opaque_attr).map_err(|e| self.error(path, e))
    }

    fn error(&self, path: &Path, e: std::io::Error) -> Error {
        Error::io(self.top.join(path.strip_prefix("/").unwrap_or(path)), e)
    }
}

impl ImageView for OverlayImage {
    fn stat(&self, path: &Path) -> Result<Option<(FileType, Metadata)>> {
        let names = components(path)?;
        let found = match names.split_last() {
            None => match self.roots.first() {
                Some(root) => Some(fs::stat_fd(std::os::fd::AsFd::as_fd(root)).map_err(|e| self.error(path, e))?),
                None => None,
            },
            Some((last, parents)) => {
                let view = self.view(parents, path)?;
                view.lookup(last).map_err(|e| self.error(path, e))?
            }
        };
        Ok(found.map(|st| (fs::file_type(&st), fs::metadata(&st))))
    }

    fn has_entries(&self, dir: &Path) -> Result<bool> {
        let view = self.view(&components(dir)?, dir)?;
        if view.is_empty() {
            return Ok(false);
        }
        Ok(!view.entries().map_err(|e| self.error(dir, e))?.is_empty())
    }

    fn subdirs(&self, dir: &Path) -> Result<Vec<(PathBuf, Metadata)>> {
        let view = self.view(&components(dir)?, dir)?;
        if view.is_empty() {
            return Ok(Vec::new());
        }
        let entries = view.entries().map_err(|e| self.error(dir, e))?;
        Ok(entries
            .into_iter()
            .filter(|(_, st)| fs::file_type(st) == FileType::Dir)
            .map(|(name, st)| (dir.join(std::ffi::OsStr::from_bytes(name.to_bytes())), fs::metadata(&st)))
            .collect())
    }

    fn read_file(&self, path: &Path, max: usize) -> Result<Option<Vec<u8>>> {
        let names = components(path)?;
        let Some((last, parents)) = names.split_last() else { return Ok(None) };
        let view = self.view(parents, path)?;
        let Some(holder) = view.holder(last).map_err(|e| self.error(path, e))? else { return Ok(None) };
        let file = match fs::open_regular_at(holder, last) {
            Ok(fd) => fd,
            Err(e) if not_a_file(&e) => return Ok(None),
            Err(e) => return Err(self.error(path, e)),
        };
        read_up_to(std::os::fd::AsFd::as_fd(&file), max).map(Some).map_err(|e| self.error(path, e))
    }
}
