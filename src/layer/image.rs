//! The image side of a layer, by path: the facts a read-only plan needs about what the image ships
//! (does it have this path, with which owner and mode, does this directory have entries).
//!
//! [`ImageView`] is the planner's only window on filesystems. Each engine implements it for its
//! own image representation (the overlay lower stack in `overlay/image.rs`); [`DirImage`] serves
//! every image that is a plain directory tree, such as a btrfs parent subvolume.
//!
//! Look-ups are fd-relative and never follow a symlink: a path whose directory component is a
//! symlink in the image is not "in the image" at that spelling (the diff reports real paths).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};
use crate::fs;
use crate::model::{FileType, Metadata};

/// What the image has at a path, for the planner.
pub trait ImageView {
    /// The image's entry at `path` (absolute, inside the container), without following symlinks;
    /// `None` when the image has nothing there.
    fn stat(&self, path: &Path) -> Result<Option<(FileType, Metadata)>>;

    /// Whether the image's directory at `dir` has any entries; `false` when the image has no
    /// directory there.
    fn has_entries(&self, dir: &Path) -> Result<bool>;

    /// The image's directories directly in `dir`, with their metadata, in no particular order
    /// (whiteouts applied; a symlink is not a directory); empty when the image has no directory
    /// there. The planner lists a few places this way for directories the container's user owns
    /// ([`crate::plan`]). The default finds none: such a view anticipates nothing.
    fn subdirs(&self, dir: &Path) -> Result<Vec<(PathBuf, Metadata)>> {
        let _ = dir;
        Ok(Vec::new())
    }

    /// Up to `max` bytes from the start of the regular file the image ships at `path` (opened
    /// without following a symlink); `None` when the image has no regular file there. Read for
    /// `/etc/passwd` and `/etc/group`. The default has no files.
    fn read_file(&self, path: &Path, max: usize) -> Result<Option<Vec<u8>>> {
        let _ = (path, max);
        Ok(None)
    }
}

/// Up to `max` bytes of an open regular file, from its start.
pub(crate) fn read_up_to(fd: std::os::fd::BorrowedFd<'_>, max: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; max];
    let mut filled = 0;
    while filled < max {
        match rustix::io::pread(fd, &mut buf[filled..], filled as u64)? {
            0 => break,
            n => filled += n,
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// Whether an error opening an image's file means "no regular file there".
pub(crate) fn not_a_file(e: &io::Error) -> bool {
    fs::is_vanished(e) || e.kind() == io::ErrorKind::InvalidInput || e.raw_os_error() == Some(libc::ELOOP)
}

/// The components of an absolute container path as NUL-terminated names, for `*at` calls.
///
/// `/` has none. `.` components are skipped; `..` and NUL bytes are refused (the diff never
/// produces them).
pub fn components(path: &Path) -> Result<Vec<CString>> {
    let invalid = |why: &str| Error::io(path, io::Error::new(io::ErrorKind::InvalidInput, why.to_string()));
    if !path.has_root() {
        return Err(invalid("not an absolute container path"));
    }
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(name) => {
                names.push(CString::new(name.as_bytes()).map_err(|_| invalid("NUL byte in path"))?);
            }
            Component::ParentDir | Component::Prefix(_) => return Err(invalid("`..` in a container path")),
        }
    }
    Ok(names)
}

/// An image that is a plain directory tree on the host (a btrfs parent subvolume, an unpacked
/// root filesystem).
#[derive(Debug)]
pub struct DirImage {
    root: OwnedFd,
    path: PathBuf,
}

impl DirImage {
    /// Opens the image's root directory.
    pub fn open(root: &Path) -> Result<DirImage> {
        let fd = fs::open_dir(root).map_err(|e| Error::io(root, e))?;
        Ok(DirImage { root: fd, path: root.to_path_buf() })
    }

    /// Opens the directory at `names` below the root; `None` when a component is missing or is
    /// not a directory (a symlink included).
    fn open_dir(&self, names: &[CString], path: &Path) -> Result<Option<OwnedFd>> {
        let mut dir = self.root.try_clone().map_err(|e| Error::io(&self.path, e))?;
        for name in names {
            dir = match fs::open_dir_at(dir.as_fd(), name) {
                Ok(fd) => fd,
                Err(e) if fs::is_vanished(&e) => return Ok(None),
                Err(e) => return Err(Error::io(self.host_path(path), e)),
            };
        }
        Ok(Some(dir))
    }

    fn host_path(&self, path: &Path) -> PathBuf {
        fs::host_path(&self.path, path)
    }
}

impl ImageView for DirImage {
    fn stat(&self, path: &Path) -> Result<Option<(FileType, Metadata)>> {
        let names = components(path)?;
        let Some((last, parents)) = names.split_last() else {
            let st = fs::stat_fd(self.root.as_fd()).map_err(|e| Error::io(&self.path, e))?;
            return Ok(Some((fs::file_type(&st), fs::metadata(&st))));
        };
        let Some(dir) = self.open_dir(parents, path)? else { return Ok(None) };
        match fs::stat_at(dir.as_fd(), last) {
            Ok(st) => Ok(Some((fs::file_type(&st), fs::metadata(&st)))),
            Err(e) if fs::is_vanished(&e) => Ok(None),
            Err(e) => Err(Error::io(self.host_path(path), e)),
        }
    }

    fn has_entries(&self, dir: &Path) -> Result<bool> {
        let names = components(dir)?;
        let Some(fd) = self.open_dir(&names, dir)? else { return Ok(false) };
        // `open_dir_at` gave a fresh descriptor: its offset is at the start.
        let count = fs::for_each_entry(fd.as_fd(), |_, _, _| Ok(())).map_err(|e| Error::io(self.host_path(dir), e))?;
        Ok(count > 0)
    }

    fn subdirs(&self, dir: &Path) -> Result<Vec<(PathBuf, Metadata)>> {
        let names = components(dir)?;
        let Some(fd) = self.open_dir(&names, dir)? else { return Ok(Vec::new()) };
        let listing = fs::open_dir_at(fd.as_fd(), c".").map_err(|e| Error::io(self.host_path(dir), e))?;
        let mut candidates = Vec::new();
        fs::for_each_entry(listing.as_fd(), |name, t, _| {
            if matches!(t, None | Some(FileType::Dir)) {
                candidates.push(CString::from(name));
            }
            Ok(())
        })
        .map_err(|e| Error::io(self.host_path(dir), e))?;
        let mut out = Vec::new();
        for name in candidates {
            let path = dir.join(std::ffi::OsStr::from_bytes(name.as_bytes()));
            match fs::stat_at(fd.as_fd(), &name) {
                Ok(st) if fs::file_type(&st) == FileType::Dir => out.push((path, fs::metadata(&st))),
                Ok(_) => {}
                Err(e) if fs::is_vanished(&e) => {}
                Err(e) => return Err(Error::io(self.host_path(&path), e)),
            }
        }
        Ok(out)
    }

    fn read_file(&self, path: &Path, max: usize) -> Result<Option<Vec<u8>>> {
        let names = components(path)?;
        let Some((last, parents)) = names.split_last() else { return Ok(None) };
        let Some(dir) = self.open_dir(parents, path)? else { return Ok(None) };
        let file = match fs::open_regular_at(dir.as_fd(), last) {
            Ok(fd) => fd,
            Err(e) if not_a_file(&e) => return Ok(None),
            Err(e) => return Err(Error::io(self.host_path(path), e)),
        };
        read_up_to(file.as_fd(), max).map(Some).map_err(|e| Error::io(self.host_path(path), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_directory_image() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        std::fs::create_dir_all(root.join("var/lib/empty")).unwrap();
        std::fs::create_dir_all(root.join("run/lock")).unwrap();
        std::fs::write(root.join("etc.conf"), "x").unwrap();
        std::os::unix::fs::symlink("/run", root.join("varrun")).unwrap();
        let image = DirImage::open(root).unwrap();

        let (t, _) = image.stat(Path::new("/var/lib/empty")).unwrap().unwrap();
        assert_eq!(t, FileType::Dir);
        assert_eq!(image.stat(Path::new("/etc.conf")).unwrap().unwrap().0, FileType::File);
        assert_eq!(image.stat(Path::new("/varrun")).unwrap().unwrap().0, FileType::Symlink);
        assert!(image.stat(Path::new("/varrun/lock")).unwrap().is_none(), "never through a symlink");
        assert!(image.stat(Path::new("/nope/x")).unwrap().is_none());
        assert!(image.stat(Path::new("/etc.conf/x")).unwrap().is_none());
        assert_eq!(image.stat(Path::new("/")).unwrap().unwrap().0, FileType::Dir);

        assert!(image.has_entries(Path::new("/run")).unwrap());
        assert!(!image.has_entries(Path::new("/var/lib/empty")).unwrap());
        assert!(!image.has_entries(Path::new("/varrun")).unwrap());
        assert!(!image.has_entries(Path::new("/absent")).unwrap());
        assert!(image.stat(Path::new("relative")).is_err());

        std::fs::create_dir_all(root.join("var/lib/sub")).unwrap();
        std::os::unix::fs::symlink("/run", root.join("var/lib/link")).unwrap();
        std::fs::write(root.join("var/lib/file"), "x").unwrap();
        let mut subdirs: Vec<PathBuf> = image.subdirs(Path::new("/var/lib")).unwrap().into_iter().map(|(p, _)| p).collect();
        subdirs.sort();
        assert_eq!(subdirs, [PathBuf::from("/var/lib/empty"), PathBuf::from("/var/lib/sub")]);
        assert!(image.subdirs(Path::new("/absent")).unwrap().is_empty());
        assert!(image.subdirs(Path::new("/varrun")).unwrap().is_empty());
        assert_eq!(image.read_file(Path::new("/etc.conf"), 100).unwrap().as_deref(), Some(&b"x"[..]));
        assert_eq!(image.read_file(Path::new("/etc.conf"), 0).unwrap().as_deref(), Some(&b""[..]));
        assert!(image.read_file(Path::new("/run"), 100).unwrap().is_none());
        assert!(image.read_file(Path::new("/varrun/x"), 100).unwrap().is_none());
        assert!(image.read_file(Path::new("/absent"), 100).unwrap().is_none());
    }
}
