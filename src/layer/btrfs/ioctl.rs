//! The btrfs ioctls the engine needs, with the kernel's structure layouts (`linux/btrfs.h`,
//! `linux/btrfs_tree.h`; sizes and offsets checked against the headers).
//!
//! All unsafe code of the btrfs engine is here: each call passes a buffer of exactly the size the
//! ioctl number encodes, and parses what the kernel wrote with bounds-checked reads.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

const TREE_SEARCH_V2: libc::c_ulong = 0xc070_9411;
const INO_LOOKUP: libc::c_ulong = 0xd000_9412;
const GET_SUBVOL_INFO: libc::c_ulong = 0x81f8_943c;
const SNAP_CREATE_V2: libc::c_ulong = 0x5000_9417;
const SNAP_DESTROY: libc::c_ulong = 0x5000_940f;
const SUBVOL_RDONLY: u64 = 0x2;

/// `BTRFS_INODE_ITEM_KEY`.
pub const INODE_ITEM: u32 = 1;
/// `BTRFS_INODE_REF_KEY`.
pub const INODE_REF: u32 = 12;
/// `BTRFS_INODE_EXTREF_KEY`.
pub const INODE_EXTREF: u32 = 13;
/// Inode number of a subvolume's root directory (`BTRFS_FIRST_FREE_OBJECTID`).
pub const ROOT_DIR_INO: u64 = 256;

fn ioctl(fd: BorrowedFd<'_>, request: libc::c_ulong, arg: *mut u8) -> io::Result<()> {
    // SAFETY: every caller passes a buffer at least as large as the size encoded in `request`.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), request, arg) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().expect("8 bytes"))
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().expect("4 bytes"))
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().expect("2 bytes"))
}

/// A btree key: `(objectid, type, offset)`, ordered lexicographically as the kernel orders them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    /// Object id (inode number for fs-tree items).
    pub objectid: u64,
    /// Item type (`INODE_ITEM`, `INODE_REF`, …).
    pub item_type: u32,
    /// Type-specific offset (parent inode for `INODE_REF`).
    pub offset: u64,
}

impl Key {
    /// The smallest key after this one.
    fn next(self) -> Option<Key> {
        if self.offset < u64::MAX {
            return Some(Key { offset: self.offset + 1, ..self });
        }
        if self.item_type < u8::MAX as u32 {
            return Some(Key { item_type: self.item_type + 1, offset: 0, ..self });
        }
        self.objectid.checked_add(1).map(|objectid| Key { objectid, item_type: 0, offset: 0 })
    }
}

/// `struct btrfs_ioctl_search_key` (104 bytes) + `buf_size` (8): the header of
/// `struct btrfs_ioctl_search_args_v2`, before the result buffer.
const SEARCH_HEADER: usize = 104 + 8;

/// A `TREE_SEARCH_V2` argument buffer, reused across searches: allocating and zeroing one per
/// search would cost more than a small search itself.
pub struct TreeSearch {
    args: Vec<u8>,
}

impl TreeSearch {
    /// A search whose results arrive `buf_size` bytes at a time (one ioctl each).
    pub fn new(buf_size: usize) -> TreeSearch {
        TreeSearch { args: vec![0u8; SEARCH_HEADER + buf_size] }
    }

    /// Searches the tree of the subvolume `fd` is in for items with keys in `[min, max]` that
    /// live in leaves written at or after `min_transid`, calling `visit` with each item's key and
    /// data (in key order; the data is borrowed from the buffer, nothing is allocated per item).
    pub fn run(&mut self, fd: BorrowedFd<'_>, min: Key, max: Key, min_transid: u64, mut visit: impl FnMut(Key, &[u8])) -> io::Result<()> {
        let mut start = min;
        while let Some(next) = self.batch(fd, start, max, min_transid, u32::MAX, &mut visit)? {
            start = next;
        }
        Ok(())
    }

    /// One ioctl of [`TreeSearch::run`]: at most `max_items` items (and what fits in the buffer),
    /// from `min` on. Returns where the search would go on (`None`: nothing left up to `max`).
    pub fn batch(
        &mut self,
        fd: BorrowedFd<'_>,
        min: Key,
        max: Key,
        min_transid: u64,
        max_items: u32,
        mut visit: impl FnMut(Key, &[u8]),
    ) -> io::Result<Option<Key>> {
        const KEY_SIZE: usize = 104;
        let buf_size = self.args.len() - SEARCH_HEADER;
        let args = &mut self.args;
        args[..SEARCH_HEADER].fill(0);
        let mut put = |off: usize, v: u64| args[off..off + 8].copy_from_slice(&v.to_le_bytes());
        put(0, 0); // tree_id 0: the subvolume of fd
        put(8, min.objectid);
        put(16, max.objectid);
        put(24, min.offset);
        put(32, max.offset);
        put(40, min_transid);
        put(48, u64::MAX);
        args[56..60].copy_from_slice(&min.item_type.to_le_bytes());
        args[60..64].copy_from_slice(&max.item_type.to_le_bytes());
        args[64..68].copy_from_slice(&max_items.to_le_bytes()); // nr_items
        args[KEY_SIZE..KEY_SIZE + 8].copy_from_slice(&(buf_size as u64).to_le_bytes());
        ioctl(fd, TREE_SEARCH_V2, args.as_mut_ptr())?;
        let count = u32_at(args, 64) as usize;
        if count == 0 {
            return Ok(None);
        }
        let last = walk_items(&args[SEARCH_HEADER..], count, &mut visit)?;
        Ok(last.and_then(Key::next).filter(|next| *next <= max))
    }
}

/// Calls `visit` with the key and data of each of the `count` items a `TREE_SEARCH_V2` result
/// buffer holds (`struct btrfs_ioctl_search_header` (32 bytes), then the item's data), and returns
/// the last key (`None` when `count` is 0). A buffer too short for what its headers announce is an
/// error (`InvalidData`), never read past.
pub(crate) fn walk_items(buf: &[u8], count: usize, mut visit: impl FnMut(Key, &[u8])) -> io::Result<Option<Key>> {
    const HEADER: usize = 32;
    let mut pos = 0;
    let mut last = None;
    for _ in 0..count {
        let short = || io::Error::new(io::ErrorKind::InvalidData, format!("TREE_SEARCH_V2: {count} items announced, buffer of {} bytes", buf.len()));
        let header = buf.get(pos..pos + HEADER).ok_or_else(short)?;
        let key = Key { objectid: u64_at(header, 8), item_type: u32_at(header, 24), offset: u64_at(header, 16) };
        let len = u32_at(header, 28) as usize;
        let data = buf.get(pos + HEADER..pos + HEADER + len).ok_or_else(short)?;
        pos += HEADER + len;
        last = Some(key);
        visit(key, data);
    }
    Ok(last)
}

/// `struct btrfs_inode_item` (160 bytes), without the access time.
///
/// The access time is left out on purpose: with `relatime`, reading a file or listing a directory
/// rewrites its inode item (a newer `transid`) without changing anything a diff reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InodeItem {
    /// Transaction that created the inode: tells a reused inode number apart.
    pub generation: u64,
    /// Transaction that last changed the inode (including an access-time update).
    pub transid: u64,
    /// `st_size`.
    pub size: u64,
    /// Bytes allocated to the inode's data.
    pub nbytes: u64,
    /// `st_nlink` (always 1 for a btrfs directory).
    pub nlink: u32,
    /// `st_uid`.
    pub uid: u32,
    /// `st_gid`.
    pub gid: u32,
    /// `st_mode`.
    pub mode: u32,
    /// `st_rdev`.
    pub rdev: u64,
    /// Inode flags (`chattr`: immutable, append-only, nodatacow …).
    pub flags: u64,
    /// Change time (seconds, nanoseconds): any change but an access moves it.
    pub ctime: (u64, u32),
    /// Modification time.
    pub mtime: (u64, u32),
    /// Creation time.
    pub otime: (u64, u32),
}

impl InodeItem {
    /// Parses an inode item (160 bytes).
    pub fn parse(data: &[u8]) -> Option<InodeItem> {
        let time = |off: usize| (u64_at(data, off), u32_at(data, off + 8));
        (data.len() >= 160).then(|| InodeItem {
            generation: u64_at(data, 0),
            transid: u64_at(data, 8),
            size: u64_at(data, 16),
            nbytes: u64_at(data, 24),
            nlink: u32_at(data, 40),
            uid: u32_at(data, 44),
            gid: u32_at(data, 48),
            mode: u32_at(data, 52),
            rdev: u64_at(data, 56),
            flags: u64_at(data, 64),
            // atime at 112 is not read.
            ctime: time(124),
            mtime: time(136),
            otime: time(148),
        })
    }

    /// Whether the inode is a directory.
    pub fn is_dir(&self) -> bool {
        self.mode & libc::S_IFMT == libc::S_IFDIR
    }

    /// Whether `self` and `other` (the same inode in two subvolumes) differ in anything but the
    /// access time and the transaction that last wrote the item.
    pub fn differs_from(&self, other: &InodeItem) -> bool {
        InodeItem { transid: 0, ..*self } != InodeItem { transid: 0, ..*other }
    }
}

/// The `(parent directory inode, name)` links of an `INODE_REF` or `INODE_EXTREF` item.
pub fn parse_refs(key: Key, data: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut pos = 0;
    match key.item_type {
        // struct btrfs_inode_ref { u64 index; u16 name_len; } + name; parent = key.offset
        INODE_REF => {
            while pos + 10 <= data.len() {
                let len = u16_at(data, pos + 8) as usize;
                let Some(name) = data.get(pos + 10..pos + 10 + len) else { break };
                out.push((key.offset, name.to_vec()));
                pos += 10 + len;
            }
        }
        // struct btrfs_inode_extref { u64 parent; u64 index; u16 name_len; } + name
        INODE_EXTREF => {
            while pos + 18 <= data.len() {
                let parent = u64_at(data, pos);
                let len = u16_at(data, pos + 16) as usize;
                let Some(name) = data.get(pos + 18..pos + 18 + len) else { break };
                out.push((parent, name.to_vec()));
                pos += 18 + len;
            }
        }
        _ => {}
    }
    out
}

/// What `BTRFS_IOC_GET_SUBVOL_INFO` says about the subvolume an open file is in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubvolInfo {
    /// The subvolume (tree) id, as in `subvolid=`.
    pub id: u64,
    /// Its UUID.
    pub uuid: [u8; 16],
    /// The UUID of the subvolume it is a snapshot of (all zero if none).
    pub parent_uuid: [u8; 16],
    /// The generation at which it was created: for a snapshot, every leaf written after it holds
    /// a change relative to its source.
    pub otransid: u64,
}

/// `BTRFS_IOC_GET_SUBVOL_INFO` (kernel 4.18+, no privileges needed).
pub fn subvol_info(fd: BorrowedFd<'_>) -> io::Result<SubvolInfo> {
    // struct btrfs_ioctl_get_subvol_info_args: treeid @0, uuid @296, parent_uuid @312,
    // otransid @352; 504 bytes.
    let mut args = vec![0u8; 504];
    ioctl(fd, GET_SUBVOL_INFO, args.as_mut_ptr())?;
    let uuid_at = |off: usize| -> [u8; 16] { args[off..off + 16].try_into().expect("16 bytes") };
    Ok(SubvolInfo { id: u64_at(&args, 0), uuid: uuid_at(296), parent_uuid: uuid_at(312), otransid: u64_at(&args, 352) })
}

/// The id of the subvolume an open directory is in (`BTRFS_IOC_INO_LOOKUP` with tree id 0: the
/// kernel fills in the containing tree).
pub fn subvolume_id(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut args = vec![0u8; 4096];
    args[8..16].copy_from_slice(&ROOT_DIR_INO.to_le_bytes());
    ioctl(fd, INO_LOOKUP, args.as_mut_ptr())?;
    Ok(u64_at(&args, 0))
}

/// Creates a read-only snapshot of the subvolume `source` as `name` in directory `dest`.
pub fn snapshot_readonly(source: BorrowedFd<'_>, dest: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // struct btrfs_ioctl_vol_args_v2 { s64 fd; u64 transid; u64 flags; u64 unused[4]; char name[4040]; }
    let mut args = vec![0u8; 4096];
    args[0..8].copy_from_slice(&(source.as_raw_fd() as i64).to_le_bytes());
    args[16..24].copy_from_slice(&SUBVOL_RDONLY.to_le_bytes());
    copy_name(&mut args[56..], name)?;
    ioctl(dest, SNAP_CREATE_V2, args.as_mut_ptr())
}

/// Deletes the subvolume `name` in directory `dir`.
pub fn delete_subvolume(dir: BorrowedFd<'_>, name: &CStr) -> io::Result<()> {
    // struct btrfs_ioctl_vol_args { s64 fd; char name[4088]; }
    let mut args = vec![0u8; 4096];
    copy_name(&mut args[8..], name)?;
    ioctl(dir, SNAP_DESTROY, args.as_mut_ptr())
}

fn copy_name(field: &mut [u8], name: &CStr) -> io::Result<()> {
    let bytes = name.to_bytes();
    if bytes.len() >= field.len() {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "subvolume name too long"));
    }
    field[..bytes.len()].copy_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_advance_through_offset_type_and_objectid() {
        let k = Key { objectid: 5, item_type: 1, offset: 7 };
        assert_eq!(k.next(), Some(Key { objectid: 5, item_type: 1, offset: 8 }));
        let k = Key { objectid: 5, item_type: 1, offset: u64::MAX };
        assert_eq!(k.next(), Some(Key { objectid: 5, item_type: 2, offset: 0 }));
        let k = Key { objectid: 5, item_type: 255, offset: u64::MAX };
        assert_eq!(k.next(), Some(Key { objectid: 6, item_type: 0, offset: 0 }));
    }

    /// A search buffer shorter than its headers announce (a header cut short, or an item length
    /// past the end) is an error, not a panic (as it was before the `btrfs_items` fuzz target).
    #[test]
    fn search_buffers_are_walked_within_bounds() {
        let mut buf = Vec::new();
        for (objectid, data) in [(300u64, &b"abc"[..]), (301, b"")] {
            buf.extend_from_slice(&7u64.to_le_bytes()); // transid
            buf.extend_from_slice(&objectid.to_le_bytes());
            buf.extend_from_slice(&256u64.to_le_bytes()); // offset
            buf.extend_from_slice(&INODE_REF.to_le_bytes());
            buf.extend_from_slice(&(data.len() as u32).to_le_bytes());
            buf.extend_from_slice(data);
        }
        let mut seen = Vec::new();
        let last = walk_items(&buf, 2, |key, data| seen.push((key.objectid, data.to_vec()))).unwrap();
        assert_eq!(seen, [(300, b"abc".to_vec()), (301, Vec::new())]);
        assert_eq!(last, Some(Key { objectid: 301, item_type: INODE_REF, offset: 256 }));
        assert_eq!(walk_items(&buf, 0, |_, _| panic!()).unwrap(), None);
        // Three items announced, two present; a header cut short; a length past the end.
        assert_eq!(walk_items(&buf, 3, |_, _| {}).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(walk_items(&buf[..20], 1, |_, _| {}).unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(walk_items(&buf[..33], 1, |_, _| {}).unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn parses_inode_refs_and_extrefs() {
        let mut data = Vec::new();
        for name in [&b"a"[..], b"bb"] {
            data.extend_from_slice(&9u64.to_le_bytes());
            data.extend_from_slice(&(name.len() as u16).to_le_bytes());
            data.extend_from_slice(name);
        }
        let key = Key { objectid: 300, item_type: INODE_REF, offset: 256 };
        assert_eq!(parse_refs(key, &data), vec![(256, b"a".to_vec()), (256, b"bb".to_vec())]);

        let mut data = Vec::new();
        data.extend_from_slice(&777u64.to_le_bytes());
        data.extend_from_slice(&1u64.to_le_bytes());
        data.extend_from_slice(&3u16.to_le_bytes());
        data.extend_from_slice(b"xyz");
        let key = Key { objectid: 300, item_type: INODE_EXTREF, offset: 12345 };
        assert_eq!(parse_refs(key, &data), vec![(777, b"xyz".to_vec())]);
    }
}
