//! `/proc/<pid>/mountinfo`, parsed: the mounts a process sees.
//!
//! One line per mount (`proc(5)`):
//!
//! ```text
//! 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//! (1)(2) (3)  (4)   (5)    (6)        (7)    (8) (9)    (10)        (11)
//! ```
//!
//! mount id, parent id, `major:minor` of the filesystem (`st_dev` of its superblock: every mount
//! of one filesystem has the same, on btrfs whichever subvolume is mounted), root (the directory of
//! the filesystem mounted here, as a path inside the filesystem: `/` for a whole filesystem, the
//! bound directory for a bind mount, the subvolume for btrfs' `subvol=`), mount point (relative
//! to the reading process's root), per-mount options, optional fields (`shared:N`, `master:N`, …)
//! ended by `-`, filesystem type, source, superblock options.
//!
//! The kernel escapes space, tab, newline and backslash in root, mount point, source and type as
//! `\ooo` (octal); [`parse`] undoes that, so paths are the raw bytes. Two things the text shows
//! that a reader must know:
//! - mount points are spelled from the reading process's root: a chrooted process sees only the
//!   mounts below its root, spelled from there (a mount whose root is above it is not listed);
//! - a root whose directory was deleted ends in `//deleted` ([`Mount::root_is_deleted`]).
//!
//! The module only parses; it never decides what a mount means to a caller.

use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

/// The device of a mounted filesystem: `major:minor` of its superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Device {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

/// One line of a `mountinfo` file, unescaped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    /// The mount's id (unique on the system while it is mounted; what `mnt_id:` in
    /// `/proc/<pid>/fdinfo/<fd>` names).
    pub id: u64,
    /// The id of the mount it is mounted on (for a mount at the top of what the reader sees, a
    /// mount the reader may not see).
    pub parent: u64,
    /// The filesystem's device.
    pub device: Device,
    /// The directory of the filesystem mounted here, as a path inside the filesystem (`/` unless a
    /// subdirectory is mounted: bind mounts, btrfs subvolumes). May end in `//deleted`.
    pub root: PathBuf,
    /// Where it is mounted, spelled from the reading process's root.
    pub mount_point: PathBuf,
    /// Per-mount options (`rw,nosuid,relatime`).
    pub options: String,
    /// Filesystem type (`overlay`, `btrfs`, `tmpfs`, `fuse.sshfs`).
    pub fs_type: String,
    /// Source (`/dev/sda1`, `overlay`, `none`; may be empty).
    pub source: OsString,
    /// Superblock options (`rw,lowerdir=…`, `rw,subvolid=256,subvol=/@`).
    pub super_options: OsString,
}

impl Mount {
    /// Whether the directory mounted here was deleted after it was mounted (the kernel then shows
    /// the root as `<path>//deleted`; no live path ever contains `//`).
    pub fn root_is_deleted(&self) -> bool {
        self.root.as_os_str().as_bytes().ends_with(b"//deleted")
    }
}

/// Every well-formed line of a `mountinfo` text, in order; lines that are not (none, from a
/// kernel) are left out.
pub fn parse(text: &[u8]) -> Vec<Mount> {
    text.split(|&b| b == b'\n').filter_map(parse_line).collect()
}

/// Reads and parses a `mountinfo` file (`/proc/<pid>/mountinfo`).
pub fn read(path: &Path) -> io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read(path)?))
}

/// One line: see the module documentation.
fn parse_line(line: &[u8]) -> Option<Mount> {
    let mut fields = line.split(|&b| b == b' ');
    let id = number(fields.next()?)?;
    let parent = number(fields.next()?)?;
    let (major, minor) = split_once(fields.next()?, b':')?;
    let device = Device { major: number(major)?, minor: number(minor)? };
    let root = path(fields.next()?);
    let mount_point = path(fields.next()?);
    let options = text(fields.next()?);
    // Optional fields, as many as there are, up to the separator.
    fields.by_ref().find(|f| *f == b"-")?;
    let fs_type = text(fields.next()?);
    let source = OsString::from_vec(unescape(fields.next()?));
    let super_options = OsString::from_vec(unescape(fields.next().unwrap_or_default()));
    Some(Mount { id, parent, device, root, mount_point, options, fs_type, source, super_options })
}

/// Undoes the kernel's escaping: `\ooo` (three octal digits) is the byte `0ooo`; anything else,
/// a lone backslash included, is kept as it is.
pub fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        match escaped(&field[i..]) {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

/// The byte `\ooo` at the start of `s` stands for, if it starts with one (at most `\377`).
fn escaped(s: &[u8]) -> Option<u8> {
    match s {
        [b'\\', a @ b'0'..=b'3', b @ b'0'..=b'7', c @ b'0'..=b'7', ..] => Some((a - b'0') * 64 + (b - b'0') * 8 + (c - b'0')),
        _ => None,
    }
}

fn path(field: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(&unescape(field)))
}

fn text(field: &[u8]) -> String {
    String::from_utf8_lossy(&unescape(field)).into_owned()
}

fn number<T: std::str::FromStr>(field: &[u8]) -> Option<T> {
    std::str::from_utf8(field).ok()?.parse().ok()
}

fn split_once(field: &[u8], separator: u8) -> Option<(&[u8], &[u8])> {
    let at = field.iter().position(|&b| b == separator)?;
    Some((&field[..at], &field[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    const OVERLAY: &[u8] = b"142 69 0:65 / / rw,relatime master:3 - overlay overlay rw,lowerdir=/l/A:/l/B,upperdir=/c/diff,workdir=/c/work\n";

    #[test]
    fn every_field_of_a_line() {
        let mounts = parse(OVERLAY);
        assert_eq!(
            mounts,
            vec![Mount {
                id: 142,
                parent: 69,
                device: Device { major: 0, minor: 65 },
                root: "/".into(),
                mount_point: "/".into(),
                options: "rw,relatime".into(),
                fs_type: "overlay".into(),
                source: "overlay".into(),
                super_options: "rw,lowerdir=/l/A:/l/B,upperdir=/c/diff,workdir=/c/work".into(),
            }]
        );
    }

    #[test]
    fn optional_fields_none_or_several() {
        let text = b"1 0 8:1 / / rw - ext4 /dev/sda1 rw\n\
            2 1 8:1 /srv /mnt rw shared:5 master:2 propagate_from:1 - ext4 /dev/sda1 rw\n";
        let mounts = parse(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!((mounts[1].id, mounts[1].parent, mounts[1].root.as_path()), (2, 1, Path::new("/srv")));
        assert_eq!((mounts[1].mount_point.as_path(), mounts[1].fs_type.as_str()), (Path::new("/mnt"), "ext4"));
    }

    #[test]
    fn btrfs_subvolume_root_and_empty_source() {
        let text = b"80 30 0:46 /btrfs/subvolumes/abc /var/lib/x rw,relatime - btrfs /dev/loop3 rw,space_cache=v2,subvolid=258,subvol=/btrfs/subvolumes/abc\n\
            81 30 0:47 / /run/none rw - tmpfs  rw\n";
        let mounts = parse(text);
        assert_eq!(mounts[0].device, Device { major: 0, minor: 46 });
        assert_eq!(mounts[0].root, Path::new("/btrfs/subvolumes/abc"));
        assert_eq!(mounts[0].super_options, OsStr::new("rw,space_cache=v2,subvolid=258,subvol=/btrfs/subvolumes/abc"));
        assert_eq!((mounts[1].source.as_os_str(), mounts[1].super_options.as_os_str()), (OsStr::new(""), OsStr::new("rw")));
    }

    /// Space, tab, newline and backslash come escaped; a backslash that does not start an escape
    /// stays, and so do escapes out of a byte's range.
    #[test]
    fn escaped_fields_are_raw_bytes() {
        let text = b"90 142 0:65 /a\\040b\\011c /mnt/new\\012line\\134x rw - fuse.my\\040fs src\\040dir rw\n";
        let m = &parse(text)[0];
        assert_eq!(m.root.as_os_str().as_bytes(), b"/a b\tc");
        assert_eq!(m.mount_point.as_os_str().as_bytes(), b"/mnt/new\nline\\x");
        assert_eq!((m.fs_type.as_str(), m.source.as_os_str()), ("fuse.my fs", OsStr::new("src dir")));
        assert_eq!(unescape(b"\\\\040"), b"\\ ".to_vec(), "a backslash that starts no escape stays; the next one may");
        assert_eq!(unescape(b"/x\\"), b"/x\\".to_vec());
        assert_eq!(unescape(b"/x\\04"), b"/x\\04".to_vec(), "too short");
        assert_eq!(unescape(b"\\477\\08"), b"\\477\\08".to_vec(), "not a byte; not octal");
        assert_eq!(unescape(b"\\303\\251"), "é".as_bytes().to_vec());
    }

    #[test]
    fn deleted_roots_and_malformed_lines() {
        let text = b"91 142 0:65 /gone//deleted /mnt rw - overlay overlay rw\n\
            garbage\n\
            92 142 0:65 / /mnt rw no-separator overlay\n\
            \n\
            93 x 0:65 / / rw - overlay overlay rw\n";
        let mounts = parse(text);
        assert_eq!(mounts.len(), 1, "{mounts:?}");
        assert!(mounts[0].root_is_deleted());
        assert!(!parse(OVERLAY)[0].root_is_deleted());
    }

    #[test]
    fn our_own_mountinfo_parses() {
        let mounts = read(Path::new("/proc/self/mountinfo")).unwrap();
        let text = std::fs::read("/proc/self/mountinfo").unwrap();
        assert_eq!(mounts.len(), text.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count());
        assert!(mounts.iter().any(|m| m.mount_point == Path::new("/")));
    }
}
