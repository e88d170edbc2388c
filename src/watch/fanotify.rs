//! Listening to a container's writable layer with fanotify: the names a container makes, removes,
//! renames or changes the attributes of, as they happen, however short-lived.
//!
//! A [`Listener`] is one fanotify group (`FAN_CLASS_NOTIF | FAN_REPORT_DFID_NAME`) with one
//! `FAN_MARK_FILESYSTEM` mark on the filesystem that holds one layer: the filesystem of the
//! overlay upper directory (overlayfs itself cannot be marked without `index=on`, and its writes
//! reach the upper filesystem through the VFS, so they are seen there), or the btrfs filesystem of
//! the container's subvolume. A btrfs subvolume other than the top one reports an fsid of its own,
//! and the kernel (6.18 too) marks a filesystem only through an object with the filesystem's own
//! fsid (`EXDEV` otherwise; 6.8 allows the others for inode marks only): the mark is then made
//! through the closest directory above the subvolume that has it, on the same mount (Docker's
//! `btrfs/subvolumes/`, containerd's `active/` are plain directories of the top subvolume when the
//! filesystem is mounted whole). One group per layer keeps each group to one filesystem.
//!
//! A filesystem mark hears everything on the filesystem, the host's writes included. Each event
//! names a directory by its file handle and an entry in it by name. The listener resolves each
//! directory handle once — `open_by_handle_at(O_PATH)` against the layer's root directory, then
//! the path the kernel gives that descriptor in `/proc/self/fd` — and keeps the answer: the
//! directory's container path when it is the layer root or below it, otherwise "outside". A
//! directory is not moved in or out of a layer without a directory rename event, so any such
//! event (anywhere on the filesystem) drops the cache. Nothing is opened but by handle with
//! `O_PATH` (no symbolic link is followed, nothing is read or written), and a directory decoded
//! outside the layer is never used for anything but that comparison.
//!
//! What an event tells, and what rodiff makes of it:
//! - `FAN_CREATE`, `FAN_MOVED_TO`: a name was made in the directory (a new file, a rename's new
//!   name, an overlay copy-up or whiteout moved into place); `FAN_DELETE`, `FAN_MOVED_FROM`: a name
//!   was removed; `FAN_ATTRIB`: its mode, owner, timestamps, links or extended attributes changed.
//!   Each is a write at that path: [`Heard`] says where. (`FAN_MODIFY` is not asked for: writing
//!   to an existing file changes its mtime, which a diff sees, or copies it up; the mtime set back
//!   is a `FAN_ATTRIB`. It would only add events.)
//! - `FAN_ONDIR` says whether the entry is a directory. That is all an event says of its type: a
//!   non-directory is reported as [`FileType::File`] — a symlink, fifo or socket made and removed
//!   between two diffs shows as a file. A name of `.` is the directory itself.
//! - `FAN_Q_OVERFLOW`: the group's queue (16384 events) was full and the kernel dropped events;
//!   each is counted ([`Listener::overflows`]), as names may be missing.
//!
//! Names in a directory that is removed before its events are read cannot be placed (its handle
//! no longer opens); the directory itself is named by its parent's event.

use std::collections::HashMap;
use std::ffi::{CStr, OsStr};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::model::FileType;

/// The events a listener asks for (see the module documentation).
const MASK: u64 = libc::FAN_CREATE | libc::FAN_DELETE | libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO | libc::FAN_ATTRIB | libc::FAN_ONDIR;

/// Resolved directories kept before the cache starts afresh.
const CACHE_MAX: usize = 1 << 16;

/// `struct fanotify_event_metadata`: `event_len` u32, `vers` u8, reserved u8, `metadata_len` u16,
/// `mask` u64, `fd` i32, `pid` i32.
const METADATA_LEN: usize = 24;

/// `fsid` (2 × i32) after the info header, then `struct file_handle`.
const FID_HEADER: usize = 4 + 8;

/// A write heard at a path of the layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Heard {
    /// The container path (`/var/cache/x/f1`).
    pub path: PathBuf,
    /// [`FileType::Dir`] when the event said directory (`FAN_ONDIR`), else [`FileType::File`].
    pub file_type: FileType,
}

/// Why fanotify cannot listen to a layer: the call that failed, the path, the cause.
#[derive(Debug)]
pub struct Unavailable {
    /// The call that failed (`fanotify_init`, `fanotify_mark FAN_MARK_FILESYSTEM`, …).
    pub call: &'static str,
    /// The layer's root directory on the host.
    pub path: PathBuf,
    /// The error.
    pub error: io::Error,
}

impl std::fmt::Display for Unavailable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} for {}: {}", self.call, self.path.display(), self.error)
    }
}

impl std::error::Error for Unavailable {}

/// One fanotify group listening to the filesystem of one layer (see the module documentation).
#[derive(Debug)]
pub struct Listener {
    group: OwnedFd,
    /// The layer's root directory: the mount fd handles are decoded against.
    root: OwnedFd,
    /// The root's path as `/proc/self/fd` shows it, to tell what lies below it.
    root_path: Vec<u8>,
    /// Directory handle (type + bytes) → its container path, or `None`: not in the layer.
    dirs: HashMap<Box<[u8]>, Option<PathBuf>>,
    buf: Vec<u8>,
    events: u64,
    overflows: u64,
}

impl Listener {
    /// Starts listening to the filesystem that holds the layer rooted at `root` (an overlay upper
    /// directory, a btrfs subvolume). Needs `CAP_SYS_ADMIN` (the filesystem mark) and
    /// `CAP_DAC_READ_SEARCH` (decoding handles), both tried here.
    pub fn open(root: &Path) -> Result<Listener, Unavailable> {
        let fail = |call, error| Unavailable { call, path: root.to_path_buf(), error };
        let dir = crate::fs::open_dir(root).map_err(|e| fail("open", e))?;
        let flags = libc::FAN_CLASS_NOTIF | libc::FAN_CLOEXEC | libc::FAN_NONBLOCK | libc::FAN_REPORT_DFID_NAME;
        // SAFETY: plain syscall; the result is a new descriptor we own or -1.
        let group = unsafe { libc::fanotify_init(flags, (libc::O_RDONLY | libc::O_LARGEFILE | libc::O_CLOEXEC) as u32) };
        if group < 0 {
            return Err(fail("fanotify_init", io::Error::last_os_error()));
        }
        // SAFETY: `group` is a new descriptor nothing else owns.
        let group = unsafe { OwnedFd::from_raw_fd(group) };
        let (handle, mount) = name_to_handle(dir.as_raw_fd()).map_err(|e| fail("name_to_handle_at", e))?;
        // A btrfs subvolume other than the top one has an fsid of its own, which a filesystem
        // mark refuses (EXDEV): mark the same filesystem through the closest directory above
        // that has the filesystem's own fsid, never leaving the layer's mount.
        let mut at = root.to_path_buf();
        let mut marked = mark(&group, &dir);
        while matches!(&marked, Err(e) if e.raw_os_error() == Some(libc::EXDEV)) {
            let Some(parent) = at.parent() else { break };
            let Ok(up) = crate::fs::open_dir(parent) else { break };
            if name_to_handle(up.as_raw_fd()).map(|(_, m)| m).ok() != Some(mount) {
                break;
            }
            at = parent.to_path_buf();
            if mark(&group, &up).is_ok() {
                marked = Ok(());
            }
        }
        marked.map_err(|e| fail("fanotify_mark FAN_MARK_FILESYSTEM", e))?;
        let root_path = fd_path(dir.as_raw_fd()).map_err(|e| fail("readlink /proc/self/fd", e))?;
        let listener =
            Listener { group, root: dir, root_path, dirs: HashMap::new(), buf: vec![0; 64 * 1024], events: 0, overflows: 0 };
        // Decoding must work too: the root's own handle, decoded, is the root.
        match listener.decode(&handle) {
            Ok(Some(path)) if path == Path::new("/") => Ok(listener),
            Ok(_) => Err(fail("open_by_handle_at", io::Error::other("the layer's root decodes elsewhere"))),
            Err(e) => Err(fail("open_by_handle_at", e)),
        }
    }

    /// The fanotify descriptor, to poll for readability.
    pub fn fd(&self) -> BorrowedFd<'_> {
        use std::os::fd::AsFd;
        self.group.as_fd()
    }

    /// Events read that named an entry of the layer.
    pub fn events(&self) -> u64 {
        self.events
    }

    /// How often the queue overflowed (`FAN_Q_OVERFLOW`): each time, events were lost.
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Reads what is queued now, one buffer at most, and appends the layer's writes to `out`.
    /// Returns `false` when nothing was queued.
    pub fn read(&mut self, out: &mut Vec<Heard>) -> io::Result<bool> {
        let n = match rustix::io::read(&self.group, &mut self.buf) {
            Ok(n) => n,
            Err(rustix::io::Errno::AGAIN) => return Ok(false),
            Err(rustix::io::Errno::INTR) => return Ok(true),
            Err(e) => return Err(e.into()),
        };
        let buf = std::mem::take(&mut self.buf);
        let result = self.parse(&buf[..n], out);
        self.buf = buf;
        result.map(|()| n > 0)
    }

    /// Reads until nothing is queued.
    pub fn drain(&mut self, out: &mut Vec<Heard>) -> io::Result<()> {
        while self.read(out)? {}
        Ok(())
    }

    /// The events in `buf` (whole events, as `read` returns them).
    fn parse(&mut self, buf: &[u8], out: &mut Vec<Heard>) -> io::Result<()> {
        walk_events(buf, |mask, fd, info| {
            if fd >= 0 {
                // Not in FID mode; never leak one.
                // SAFETY: the kernel gave us this descriptor in the event.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            if mask & libc::FAN_Q_OVERFLOW != 0 {
                self.overflows += 1;
            } else {
                self.event(mask, info, out);
            }
        })
    }

    /// One event's info records.
    fn event(&mut self, mask: u64, info: &[u8], out: &mut Vec<Heard>) {
        walk_records(info, |handle, name| {
            let Some(dir) = self.resolve(handle) else { return };
            let path = match name {
                b"." | b"" => dir.clone(),
                name => dir.join(OsStr::from_bytes(name)),
            };
            self.events += 1;
            if path != Path::new("/") {
                let file_type = if mask & libc::FAN_ONDIR != 0 { FileType::Dir } else { FileType::File };
                out.push(Heard { path, file_type });
            }
        });
        if mask & libc::FAN_ONDIR != 0 && mask & (libc::FAN_MOVED_FROM | libc::FAN_MOVED_TO) != 0 {
            // A directory moved: what lies below it moved too.
            self.dirs.clear();
        }
    }

    /// The container path of the directory whose handle (`handle_type` then the bytes) this is,
    /// `None` when it is not in the layer (or no longer opens), remembered either way.
    fn resolve(&mut self, handle: &[u8]) -> Option<&PathBuf> {
        if !self.dirs.contains_key(handle) {
            if self.dirs.len() >= CACHE_MAX {
                self.dirs.clear();
            }
            let path = match self.decode(handle) {
                Ok(path) => path,
                // Gone: it will not come back (a handle names one inode of one generation).
                Err(e) if matches!(e.raw_os_error(), Some(libc::ESTALE | libc::ENOENT)) => None,
                // Not known for sure: not remembered.
                Err(_) => return None,
            };
            self.dirs.insert(handle.into(), path);
        }
        self.dirs.get(handle).and_then(Option::as_ref)
    }

    /// Opens the directory `handle` names (`O_PATH`) and places it: its container path when it is
    /// the layer root or below it.
    fn decode(&self, handle: &[u8]) -> io::Result<Option<PathBuf>> {
        // struct file_handle: handle_bytes u32, handle_type i32, f_handle; 8-byte aligned buffer.
        let mut raw = vec![0u64; (8 + handle.len()).div_ceil(8)];
        // SAFETY: `raw` is at least 8 + handle.len() bytes; viewing u64s as bytes is sound.
        let bytes = unsafe { std::slice::from_raw_parts_mut(raw.as_mut_ptr().cast::<u8>(), raw.len() * 8) };
        bytes[..4].copy_from_slice(&((handle.len() - 4) as u32).to_ne_bytes());
        bytes[4..4 + handle.len()].copy_from_slice(handle);
        // SAFETY: `raw` holds a well-formed struct file_handle; the result is a new fd or -1.
        let fd = unsafe { libc::open_by_handle_at(self.root.as_raw_fd(), raw.as_mut_ptr().cast(), libc::O_PATH | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut path = fd_path(fd.as_raw_fd())?;
        if crate::fs::stat_fd(std::os::fd::AsFd::as_fd(&fd))?.st_nlink == 0 {
            // Removed: the kernel appends " (deleted)" to its last path.
            if let Some(kept) = path.strip_suffix(b" (deleted)") {
                path.truncate(kept.len());
            }
        }
        Ok(below(&self.root_path, &path))
    }
}

/// Calls `event` with the mask, the descriptor (`-1` in FID mode) and the info records of each
/// event in `buf` (whole events, as `read` returns them); an event whose metadata does not hold
/// together is an error (`InvalidData`), and nothing after it is read.
pub(crate) fn walk_events(mut buf: &[u8], mut event: impl FnMut(u64, i32, &[u8])) -> io::Result<()> {
    while buf.len() >= METADATA_LEN {
        let event_len = u32_at(buf, 0) as usize;
        let (vers, metadata_len) = (buf[4], u16_at(buf, 6) as usize);
        if vers != libc::FANOTIFY_METADATA_VERSION || event_len < metadata_len || event_len > buf.len() || metadata_len < METADATA_LEN {
            return Err(io::Error::new(io::ErrorKind::InvalidData, format!("unexpected fanotify event (version {vers}, {event_len} bytes)")));
        }
        let mask = u64::from_ne_bytes(buf[8..16].try_into().unwrap());
        let fd = i32::from_ne_bytes(buf[16..20].try_into().unwrap());
        let (this, rest) = buf.split_at(event_len);
        buf = rest;
        event(mask, fd, &this[metadata_len..]);
    }
    Ok(())
}

/// Calls `record` with the directory handle (`handle_type` then the bytes: at least 4 bytes) and
/// the name (`.` for a record without one) of each `DFID_NAME` and `DFID` info record of an
/// event; other records, and records too short for what they announce, are skipped.
pub(crate) fn walk_records(mut info: &[u8], mut record: impl FnMut(&[u8], &[u8])) {
    while info.len() >= FID_HEADER + 8 {
        let (kind, len) = (info[0], u16_at(info, 2) as usize);
        if len < 4 || len > info.len() {
            return;
        }
        let (this, rest) = info.split_at(len);
        info = rest;
        if kind != libc::FAN_EVENT_INFO_TYPE_DFID_NAME && kind != libc::FAN_EVENT_INFO_TYPE_DFID {
            continue;
        }
        let Some(handle_bytes) = this.get(FID_HEADER..FID_HEADER + 4) else { continue };
        let handle_bytes = u32_at(handle_bytes, 0) as usize;
        let Some(handle) = this.get(FID_HEADER + 4..FID_HEADER + 8 + handle_bytes) else { continue };
        let name = match kind {
            libc::FAN_EVENT_INFO_TYPE_DFID_NAME => {
                let name = &this[FID_HEADER + 8 + handle_bytes..];
                CStr::from_bytes_until_nul(name).map(CStr::to_bytes).unwrap_or(name)
            }
            _ => b".",
        };
        record(handle, name);
    }
}

/// The container path of host path `path` when it is `root` or below it.
fn below(root: &[u8], path: &[u8]) -> Option<PathBuf> {
    let rest = path.strip_prefix(root)?;
    match rest {
        [] => Some(PathBuf::from("/")),
        [b'/', ..] if root != b"/" => Some(PathBuf::from(OsStr::from_bytes(rest))),
        _ if root == b"/" => Some(PathBuf::from(OsStr::from_bytes(path))),
        _ => None,
    }
}

/// The path the kernel shows for an open descriptor of ours.
fn fd_path(fd: i32) -> io::Result<Vec<u8>> {
    Ok(std::fs::read_link(format!("/proc/self/fd/{fd}"))?.into_os_string().into_encoded_bytes())
}

/// Adds the filesystem mark, through directory `dir`.
fn mark(group: &OwnedFd, dir: &OwnedFd) -> io::Result<()> {
    // SAFETY: both descriptors are open; a null path marks the object `dir` is.
    let marked = unsafe {
        libc::fanotify_mark(group.as_raw_fd(), libc::FAN_MARK_ADD | libc::FAN_MARK_FILESYSTEM, MASK, dir.as_raw_fd(), std::ptr::null())
    };
    match marked {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// `name_to_handle_at(fd, "", AT_EMPTY_PATH)`: the handle (type + bytes) of an open directory,
/// and the id of its mount.
fn name_to_handle(fd: i32) -> io::Result<(Vec<u8>, i32)> {
    const MAX: usize = 128; // MAX_HANDLE_SZ
    // struct file_handle: handle_bytes u32 (room on input), handle_type i32, f_handle; aligned.
    let mut raw = [0u64; (8 + MAX) / 8];
    // SAFETY: viewing the u64 buffer as bytes.
    let bytes = unsafe { std::slice::from_raw_parts_mut(raw.as_mut_ptr().cast::<u8>(), raw.len() * 8) };
    bytes[..4].copy_from_slice(&(MAX as u32).to_ne_bytes());
    let mut mount_id = 0;
    // SAFETY: the buffer is a struct file_handle with room for MAX_HANDLE_SZ bytes.
    let r = unsafe { libc::name_to_handle_at(fd, c"".as_ptr(), raw.as_mut_ptr().cast(), &mut mount_id, libc::AT_EMPTY_PATH) };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let bytes = unsafe { std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len() * 8) };
    let len = u32::from_ne_bytes(bytes[..4].try_into().unwrap()) as usize;
    Ok((bytes[4..8 + len].to_vec(), mount_id))
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(buf[at..at + 4].try_into().unwrap())
}

fn u16_at(buf: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(buf[at..at + 2].try_into().unwrap())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn below_places_paths_under_the_root_only() {
        assert_eq!(below(b"/l/diff", b"/l/diff"), Some(PathBuf::from("/")));
        assert_eq!(below(b"/l/diff", b"/l/diff/var/x"), Some(PathBuf::from("/var/x")));
        assert_eq!(below(b"/l/diff", b"/l/diffx/var"), None);
        assert_eq!(below(b"/l/diff", b"/l/work"), None);
        assert_eq!(below(b"/", b"/var"), Some(PathBuf::from("/var")));
    }

    /// An event as the kernel lays it out: metadata, then one DFID_NAME record.
    fn event(mask: u64, handle: &[u8], name: &[u8]) -> Vec<u8> {
        let mut record = vec![libc::FAN_EVENT_INFO_TYPE_DFID_NAME, 0, 0, 0];
        record.extend_from_slice(&[7u8; 8]); // fsid
        record.extend_from_slice(&((handle.len() - 4) as u32).to_ne_bytes());
        record.extend_from_slice(handle);
        record.extend_from_slice(name);
        record.push(0);
        while record.len() % 4 != 0 {
            record.push(0);
        }
        let len = (record.len() as u16).to_ne_bytes();
        record[2..4].copy_from_slice(&len);
        let mut ev = Vec::new();
        ev.extend_from_slice(&((METADATA_LEN + record.len()) as u32).to_ne_bytes());
        ev.extend_from_slice(&[libc::FANOTIFY_METADATA_VERSION, 0]);
        ev.extend_from_slice(&(METADATA_LEN as u16).to_ne_bytes());
        ev.extend_from_slice(&mask.to_ne_bytes());
        ev.extend_from_slice(&(-1i32).to_ne_bytes());
        ev.extend_from_slice(&0i32.to_ne_bytes());
        ev.extend_from_slice(&record);
        ev
    }

    /// A `DFID` record too short for its handle length field is skipped (a panic before the
    /// `fanotify_events` fuzz target), and the records after it are still read.
    #[test]
    fn records_too_short_for_a_handle_are_skipped() {
        let handle = [1u8, 0, 0, 0, 9, 9];
        let whole = &event(libc::FAN_CREATE, &handle, b"n")[METADATA_LEN..];
        let mut info = vec![libc::FAN_EVENT_INFO_TYPE_DFID, 0, 4, 0];
        info.extend_from_slice(whole);
        let mut seen = Vec::new();
        walk_records(&info, |h, name| seen.push((h.to_vec(), name.to_vec())));
        assert_eq!(seen, [(handle.to_vec(), b"n".to_vec())]);
        let mut events = 0;
        walk_events(&event(libc::FAN_CREATE, &handle, b"n"), |mask, fd, rest| {
            assert_eq!((mask, fd, rest), (libc::FAN_CREATE, -1, whole));
            events += 1;
        })
        .unwrap();
        assert_eq!(events, 1);
    }

    #[test]
    fn events_are_parsed_placed_and_overflows_counted() {
        if !rustix::process::geteuid().is_root() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let Ok(mut listener) = Listener::open(dir.path()) else { return };
        let sub = std::fs::File::open(dir.path().join("sub")).unwrap();
        let sub = name_to_handle(sub.as_raw_fd()).unwrap().0;
        let outside = std::fs::File::open(dir.path().parent().unwrap()).unwrap();
        let outside = name_to_handle(outside.as_raw_fd()).unwrap().0;
        let mut buf = event(libc::FAN_CREATE, &sub, b"f1");
        buf.extend(event(libc::FAN_CREATE | libc::FAN_ONDIR, &sub, b"d"));
        buf.extend(event(libc::FAN_DELETE, &outside, b"elsewhere"));
        let mut overflow = event(0, &sub, b"x");
        overflow.truncate(METADATA_LEN);
        overflow[..4].copy_from_slice(&(METADATA_LEN as u32).to_ne_bytes());
        overflow[8..16].copy_from_slice(&libc::FAN_Q_OVERFLOW.to_ne_bytes());
        buf.extend(&overflow);
        buf.extend(&overflow);
        let mut out = Vec::new();
        listener.parse(&buf, &mut out).unwrap();
        assert_eq!(
            out,
            [
                Heard { path: "/sub/f1".into(), file_type: FileType::File },
                Heard { path: "/sub/d".into(), file_type: FileType::Dir }
            ]
        );
        assert_eq!((listener.events(), listener.overflows()), (2, 2));

        // And from the kernel: a file made and removed is heard by name (the kernel merges the two
        // events into one with both bits).
        out.clear();
        listener.drain(&mut out).unwrap();
        std::fs::write(dir.path().join("sub/g"), b"x").unwrap();
        std::fs::remove_file(dir.path().join("sub/g")).unwrap();
        listener.drain(&mut out).unwrap();
        assert!(out.iter().any(|h| h.path == Path::new("/sub/g") && h.file_type == FileType::File), "{out:?}");
        assert!(out.iter().all(|h| h.path.starts_with("/sub")), "{out:?}");
    }
}
