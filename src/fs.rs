//! Filesystem primitives for walking a directory tree that a container controls.
//!
//! Every operation is relative to an open directory file descriptor and never follows a symbolic
//! link: a container that swaps a directory for a symlink mid-scan gets an `ELOOP`/`ENOTDIR` from
//! us, never a look outside its layer. Directories are opened with `O_NOATIME` when allowed, so a
//! scan does not change access times.

use std::ffi::CStr;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;

use rustix::fs::{AtFlags, Mode, OFlags, RawDir};

use crate::model::{FileType, Metadata};

pub use rustix::fs::Stat;

/// Opens `name` below `dir` as a directory, refusing symlinks.
pub fn open_dir_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    match rustix::fs::openat(dir, name, flags | OFlags::NOATIME, Mode::empty()) {
        // O_NOATIME needs ownership or CAP_FOWNER; without it, open normally.
        Err(rustix::io::Errno::PERM) => Ok(rustix::fs::openat(dir, name, flags, Mode::empty())?),
        other => Ok(other?),
    }
}

/// Opens a directory by host path (the layer root, which the runtime controls, not the container),
/// without updating its access time when it is read, where the kernel allows.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    match rustix::fs::open(path, flags | OFlags::NOATIME, Mode::empty()) {
        // O_NOATIME needs ownership or CAP_FOWNER; without it, open normally.
        Err(rustix::io::Errno::PERM) => Ok(rustix::fs::open(path, flags, Mode::empty())?),
        other => Ok(other?),
    }
}

/// Opens entry `name` of `dir` for reading only if it is a regular file: located with `O_PATH`
/// (which opens nothing: a fifo or device node swapped in has no effect), checked, then reopened
/// as that same inode, without updating its access time where the kernel allows.
/// [`io::ErrorKind::InvalidInput`] for anything but a regular file.
pub fn open_regular_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<OwnedFd> {
    let handle = rustix::fs::openat(dir, name, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())?;
    reopen_regular(handle)
}

/// The regular file `handle` (an `O_PATH` descriptor) opened for reading (see [`open_regular_at`]).
pub fn reopen_regular(handle: OwnedFd) -> io::Result<OwnedFd> {
    if file_type(&stat_fd(std::os::fd::AsFd::as_fd(&handle))?) != FileType::File {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "not a regular file"));
    }
    let again = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&handle));
    let flags = OFlags::RDONLY | OFlags::NONBLOCK | OFlags::CLOEXEC | OFlags::NOCTTY;
    match rustix::fs::open(&again, flags | OFlags::NOATIME, Mode::empty()) {
        // O_NOATIME is for the file's owner (or CAP_FOWNER) only.
        Err(rustix::io::Errno::PERM) => Ok(rustix::fs::open(&again, flags, Mode::empty())?),
        other => Ok(other?),
    }
}

/// Whether two open files have different bytes, read side by side until the first difference.
pub fn contents_differ(a: BorrowedFd<'_>, b: BorrowedFd<'_>) -> io::Result<bool> {
    const CHUNK: usize = 64 * 1024;
    let (mut x, mut y) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    loop {
        let n = read_full(a, &mut x)?;
        let m = read_full(b, &mut y)?;
        if n != m || x[..n] != y[..m] {
            return Ok(true);
        }
        if n < CHUNK {
            return Ok(false);
        }
    }
}

/// Reads until `buf` is full or the file ends; the bytes read.
fn read_full(fd: BorrowedFd<'_>, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match rustix::io::read(fd, &mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(rustix::io::Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(filled)
}

/// `lstat` of `name` below `dir`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Stat> {
    Ok(rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?)
}

/// `lstat` of `name` below `dir`; `None` when it is gone (vanished, or its directory was replaced).
pub fn stat_at_if_present(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Stat>> {
    match stat_at(dir, name) {
        Ok(st) => Ok(Some(st)),
        Err(e) if is_vanished(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The host path of container path `path` (`/a/b`) in a tree rooted at `root`, for messages.
pub fn host_path(root: &Path, path: &Path) -> std::path::PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

/// `fstat` of an open file.
pub fn stat_fd(fd: BorrowedFd<'_>) -> io::Result<Stat> {
    Ok(rustix::fs::fstat(fd)?)
}

/// Reads an extended attribute of an open file; `None` when it is not set.
pub fn get_xattr(fd: BorrowedFd<'_>, name: &CStr) -> io::Result<Option<Vec<u8>>> {
    read_xattr(|buf| rustix::fs::fgetxattr(fd, name, buf))
}

/// Reads extended attribute `attr` of entry `name` of directory `dir` without opening the entry
/// (a fifo or a device is never opened) and without following a symlink: `lgetxattr` of
/// `/proc/self/fd/<dir>/<name>`, where the magic link stands for the open directory itself, so
/// the path stays short at any depth, and only `name`, never followed, is looked up in it.
/// `None` when the attribute is not set, or the entry is gone.
pub fn get_xattr_at(dir: BorrowedFd<'_>, name: &CStr, attr: &CStr) -> io::Result<Option<Vec<u8>>> {
    let mut path = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    path.extend_from_slice(name.to_bytes());
    let path = std::ffi::CString::new(path).expect("a name has no NUL");
    match read_xattr(|buf| rustix::fs::lgetxattr(path.as_c_str(), attr, buf)) {
        Err(e) if is_vanished(&e) => Ok(None),
        other => other,
    }
}

/// Runs an xattr read with a growing buffer; `None` when the attribute is not set (or the
/// filesystem has none).
fn read_xattr(mut get: impl FnMut(&mut [u8]) -> rustix::io::Result<usize>) -> io::Result<Option<Vec<u8>>> {
    let mut buf = vec![0u8; 256];
    loop {
        match get(&mut buf[..]) {
            Ok(len) => {
                buf.truncate(len);
                return Ok(Some(buf));
            }
            Err(rustix::io::Errno::NODATA) => return Ok(None),
            Err(rustix::io::Errno::NOTSUP) => return Ok(None),
            Err(rustix::io::Errno::RANGE) if buf.len() < 1 << 16 => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Calls `visit` with the name, `d_type` and `d_ino` of every entry of a directory except `.` and `..`,
/// straight from the `getdents64` buffer (no allocation per entry). Returns the number of entries.
/// Reads from the descriptor's current offset: pass a freshly opened directory, and list it once.
pub fn for_each_entry(
    dir: BorrowedFd<'_>,
    mut visit: impl FnMut(&CStr, Option<FileType>, u64) -> io::Result<()>,
) -> io::Result<u64> {
    let mut buf = [MaybeUninit::<u8>::uninit(); 32 * 1024];
    let mut iter = RawDir::new(dir, &mut buf);
    let mut count = 0;
    while let Some(entry) = iter.next() {
        let entry = entry?;
        let name = entry.file_name();
        if name == c"." || name == c".." {
            continue;
        }
        count += 1;
        visit(name, file_type_of_dirent(entry.file_type()), entry.ino())?;
    }
    Ok(count)
}

/// The names in a directory, NUL-terminated for `*at` calls (see [`for_each_entry`] for the
/// offset rule).
pub fn read_dir(dir: BorrowedFd<'_>) -> io::Result<Vec<Box<CStr>>> {
    let mut entries = Vec::new();
    for_each_entry(dir, |name, _, _| {
        entries.push(name.into());
        Ok(())
    })?;
    Ok(entries)
}

fn file_type_of_dirent(t: rustix::fs::FileType) -> Option<FileType> {
    use rustix::fs::FileType as R;
    Some(match t {
        R::RegularFile => FileType::File,
        R::Directory => FileType::Dir,
        R::Symlink => FileType::Symlink,
        R::Fifo => FileType::Fifo,
        R::Socket => FileType::Socket,
        R::CharacterDevice => FileType::Char,
        R::BlockDevice => FileType::Block,
        R::Unknown => return None,
    })
}

/// The file type of a stat result.
pub fn file_type(st: &Stat) -> FileType {
    // Every S_IFMT value Linux produces is one of the seven; default defensively to a file.
    FileType::from_mode(st.st_mode).unwrap_or(FileType::File)
}

/// The metadata rodiff reports, from a stat result.
pub fn metadata(st: &Stat) -> Metadata {
    Metadata {
        mode: st.st_mode & 0o7777,
        uid: st.st_uid,
        gid: st.st_gid,
        size: st.st_size as u64,
        mtime_sec: st.st_mtime,
        mtime_nsec: st.st_mtime_nsec as u32,
    }
}

/// Whether a stat result is an overlayfs whiteout: a character device with device number 0/0.
pub fn is_whiteout(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == 0
}

/// Whether an error means "the entry is gone or is no longer a directory": normal while a running
/// container changes its files under the scan.
pub fn is_vanished(err: &io::Error) -> bool {
    matches!(err.raw_os_error(), Some(libc::ENOENT) | Some(libc::ENOTDIR) | Some(libc::ELOOP))
}

/// Raises the soft open-file limit to the hard limit: a deep tree keeps one descriptor per level
/// open, per worker thread, and a container can make its tree as deep as it likes.
///
/// A process-wide setting, so the library never calls it: the CLI does at start, and a program
/// that embeds rodiff and diffs layers it does not control should too (or raise `RLIMIT_NOFILE`
/// its own way). Without it, a tree deeper than the soft limit fails the diff with "Too many open
/// files" naming the directory — an error, never a shorter list.
pub fn raise_fd_limit() {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn xattrs_at_a_name_never_follow_or_open_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        std::fs::write(dir.join("target"), "").unwrap();
        std::os::unix::fs::symlink("target", dir.join("link")).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, dir.join("fifo"), rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
        let supported = rustix::fs::setxattr(dir.join("target"), "user.rodiff", b"v", rustix::fs::XattrFlags::empty()).is_ok();
        let fd = open_dir(dir).unwrap();
        let read = |name: &CStr| get_xattr_at(fd.as_fd(), name, c"user.rodiff").unwrap();
        if supported {
            assert_eq!(read(c"target").as_deref(), Some(&b"v"[..]));
        }
        assert_eq!(read(c"link"), None, "followed the symlink");
        assert_eq!(read(c"fifo"), None, "a fifo is read without being opened (opening it would block)");
        assert_eq!(read(c"gone"), None);
    }
}
