//! Changes as C sees them: a flat [`rodiff_change`] view over the core's [`Change`], an owned list,
//! and the sink that hands batches to a C callback.

use std::ffi::{c_char, c_void, CString};
use std::os::unix::ffi::OsStrExt;
use std::sync::Mutex;

use core_lib::{Change, ChangeKind, ChangeSink, FileType, Flow};

/// The type of a filesystem entry.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rodiff_file_type {
    /// A regular file.
    RODIFF_FILE = 0,
    /// A directory.
    RODIFF_DIR = 1,
    /// A symbolic link.
    RODIFF_SYMLINK = 2,
    /// A named pipe.
    RODIFF_FIFO = 3,
    /// A unix socket.
    RODIFF_SOCKET = 4,
    /// A character device.
    RODIFF_CHAR_DEVICE = 5,
    /// A block device.
    RODIFF_BLOCK_DEVICE = 6,
}

/// One change to a container's root filesystem. Everything it points to belongs to the list (or
/// the callback call) it came from.
#[repr(C)]
pub struct rodiff_change {
    /// The absolute path inside the container, as bytes (not NUL-terminated; file names need not
    /// be UTF-8).
    pub path: *const u8,
    /// Length of `path` in bytes.
    pub path_len: usize,
    /// What happened: 'A' added, 'C' changed, 'D' deleted, 'T' touched (written, identical now).
    pub kind: c_char,
    /// The entry's type (for a deletion, the type it had in the image).
    pub file_type: rodiff_file_type,
    /// Whether mode, uid, gid, size and mtime are set.
    pub has_metadata: bool,
    /// Permission bits with set-id and sticky bits.
    pub mode: u32,
    /// Owner user id, as stored in the layer.
    pub uid: u32,
    /// Owner group id, as stored in the layer.
    pub gid: u32,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime_sec: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
    /// The entry exists only because the runtime made a mount point there.
    pub mountpoint: bool,
    /// The container the change belongs to when the call covered a pod, else NULL.
    pub container: *const c_char,
}

/// Changes with the C views of them; the views point into `changes` and `containers`, which are
/// never modified while the views exist.
struct Views {
    /// Owned for the views (read through their pointers only).
    _changes: Vec<Change>,
    /// Owned for the views: one NUL-terminated copy of each container name.
    _containers: Vec<CString>,
    views: Vec<rodiff_change>,
}

impl Views {
    fn new(changes: Vec<Change>) -> Views {
        let mut containers: Vec<CString> = Vec::new();
        let mut names: Vec<Option<usize>> = Vec::with_capacity(changes.len());
        for c in &changes {
            names.push(c.container.as_ref().map(|name| {
                // Pods have few containers: a linear search keeps one string per name.
                let bytes = name.as_bytes();
                containers.iter().position(|s| s.as_bytes() == bytes).unwrap_or_else(|| {
                    containers.push(CString::new(name.replace('\0', "")).unwrap_or_default());
                    containers.len() - 1
                })
            }));
        }
        let views = changes
            .iter()
            .zip(&names)
            .map(|(c, name)| view(c, name.map_or(std::ptr::null(), |i| containers[i].as_ptr())))
            .collect();
        Views { _changes: changes, _containers: containers, views }
    }
}

fn view(c: &Change, container: *const c_char) -> rodiff_change {
    let path = c.path.as_os_str().as_bytes();
    let m = c.metadata.unwrap_or_default();
    rodiff_change {
        path: path.as_ptr(),
        path_len: path.len(),
        kind: match c.kind {
            ChangeKind::Added => b'A',
            ChangeKind::Changed => b'C',
            ChangeKind::Deleted => b'D',
            ChangeKind::Touched => b'T',
        } as c_char,
        file_type: match c.file_type {
            FileType::File => rodiff_file_type::RODIFF_FILE,
            FileType::Dir => rodiff_file_type::RODIFF_DIR,
            FileType::Symlink => rodiff_file_type::RODIFF_SYMLINK,
            FileType::Fifo => rodiff_file_type::RODIFF_FIFO,
            FileType::Socket => rodiff_file_type::RODIFF_SOCKET,
            FileType::Char => rodiff_file_type::RODIFF_CHAR_DEVICE,
            FileType::Block => rodiff_file_type::RODIFF_BLOCK_DEVICE,
        },
        has_metadata: c.metadata.is_some(),
        mode: m.mode,
        uid: m.uid,
        gid: m.gid,
        size: m.size,
        mtime_sec: m.mtime_sec,
        mtime_nsec: m.mtime_nsec,
        mountpoint: c.mountpoint,
        container,
    }
}

/// A list of changes, sorted by path (see rodiff_diff).
pub struct rodiff_changes(Views);

// SAFETY: the raw pointers in the views point into data the list owns and never changes.
unsafe impl Send for rodiff_changes {}
unsafe impl Sync for rodiff_changes {}

impl rodiff_changes {
    pub(crate) fn new(changes: Vec<Change>) -> rodiff_changes {
        rodiff_changes(Views::new(changes))
    }
}

/// How many changes the list holds (0 for NULL).
///
/// # Safety
/// `list` is NULL or a list from rodiff_diff, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rodiff_changes_len(list: *const rodiff_changes) -> usize {
    list.as_ref().map_or(0, |l| l.0.views.len())
}

/// The change at `index`, valid until the list is freed; NULL when `index` is out of range or
/// `list` is NULL.
///
/// # Safety
/// `list` is NULL or a list from rodiff_diff, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rodiff_changes_get(list: *const rodiff_changes, index: usize) -> *const rodiff_change {
    list.as_ref().and_then(|l| l.0.views.get(index)).map_or(std::ptr::null(), |c| c as *const rodiff_change)
}

/// Frees a change list (NULL is fine).
///
/// # Safety
/// `list` is NULL or a list from rodiff_diff, not freed before; no change of it is used after.
#[no_mangle]
pub unsafe extern "C" fn rodiff_changes_free(list: *mut rodiff_changes) {
    if !list.is_null() {
        drop(Box::from_raw(list));
    }
}

/// Receives a batch of changes during rodiff_diff_stream: `changes[0..len]`, valid only during
/// the call. Return 0 to go on, anything else to stop the scan.
pub type rodiff_change_callback = Option<unsafe extern "C" fn(userdata: *mut c_void, changes: *const rodiff_change, len: usize) -> i32>;

/// A sink that calls a C callback, one call at a time, and never again once it asked to stop.
pub(crate) struct CallbackSink {
    callback: unsafe extern "C" fn(*mut c_void, *const rodiff_change, usize) -> i32,
    /// The userdata, and whether the callback asked to stop; the lock makes calls one at a time.
    state: Mutex<(Userdata, bool)>,
}

/// C's userdata pointer, passed back untouched.
struct Userdata(*mut c_void);

// SAFETY: rodiff never dereferences it; calls that pass it are serialized by the sink's lock, and
// the C caller chose to hand it to a function documented to be called from rodiff's threads.
unsafe impl Send for Userdata {}

impl CallbackSink {
    pub(crate) fn new(callback: unsafe extern "C" fn(*mut c_void, *const rodiff_change, usize) -> i32, userdata: *mut c_void) -> CallbackSink {
        CallbackSink { callback, state: Mutex::new((Userdata(userdata), false)) }
    }
}

impl ChangeSink for CallbackSink {
    fn emit(&self, batch: Vec<Change>) -> std::io::Result<Flow> {
        let views = Views::new(batch);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.1 {
            return Ok(Flow::Break(()));
        }
        // SAFETY: the callback is a valid function (checked non-NULL by the caller); the views
        // and what they point to live until it returns.
        let answer = unsafe { (self.callback)(state.0 .0, views.views.as_ptr(), views.views.len()) };
        if answer != 0 {
            state.1 = true;
            return Ok(Flow::Break(()));
        }
        Ok(Flow::Continue(()))
    }
}
