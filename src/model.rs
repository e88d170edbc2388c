//! The change model: what a diff engine reports about one path of a container's root filesystem.
//!
//! Paths are bytes (Linux file names are not UTF-8 in general); everything a renderer needs is
//! here, and nothing here knows about runtimes or filesystems.
//!
//! [`Change`] and its parts implement `serde::Serialize` in the form of `rodiff diff --format
//! json`: paths as `path_json` encodes them (a string when UTF-8, else an array of byte values),
//! kinds as their letters, types and evidence as their names, `mtime` as seconds with nanoseconds.

pub(crate) mod path_json;

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::ser::{Error as _, SerializeStruct};
use serde::{Serialize, Serializer};

/// How a path differs between the image and the container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ChangeKind {
    /// `A`: the path is new; the image does not have it.
    Added,
    /// `C`: the path exists in the image and differs (content, type, mode, owner, or, for a
    /// directory, anything below it — `docker diff`'s rule).
    Changed,
    /// `D`: the image has the path and the container deleted it.
    Deleted,
    /// `T`: the container wrote here but nothing differs now: a directory whose only change is its
    /// mtime (a file was created and removed in it), or a copy-up identical to the image's file.
    /// `docker diff` cannot see these; under `--read-only` they are writes that fail.
    Touched,
}

impl ChangeKind {
    /// The one-letter code used by `docker diff` (`A`, `C`, `D`) and rodiff (`T`).
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
            ChangeKind::Touched => 'T',
        }
    }

    /// The kind a letter names ([`Self::letter`]).
    pub fn from_letter(letter: char) -> Option<ChangeKind> {
        [ChangeKind::Added, ChangeKind::Changed, ChangeKind::Deleted, ChangeKind::Touched].into_iter().find(|k| k.letter() == letter)
    }

    /// Whether `docker diff` reports this kind (everything but [`ChangeKind::Touched`]).
    pub fn visible_to_docker(self) -> bool {
        self != ChangeKind::Touched
    }
}

impl fmt::Display for ChangeKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.letter())
    }
}

/// Serializes as the letter (`"A"`, `"C"`, `"D"`, `"T"`).
impl Serialize for ChangeKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let letter = self.letter();
        s.serialize_str(letter.encode_utf8(&mut [0; 4]))
    }
}

/// The type of a filesystem entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileType {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Symlink,
    /// A named pipe.
    Fifo,
    /// A unix domain socket.
    Socket,
    /// A character device.
    Char,
    /// A block device.
    Block,
}

impl FileType {
    /// The lower-case name used in JSON output (`file`, `dir`, `symlink`, …).
    pub fn name(self) -> &'static str {
        match self {
            FileType::File => "file",
            FileType::Dir => "dir",
            FileType::Symlink => "symlink",
            FileType::Fifo => "fifo",
            FileType::Socket => "socket",
            FileType::Char => "char",
            FileType::Block => "block",
        }
    }

    /// The type a name names ([`Self::name`]).
    pub fn from_name(name: &str) -> Option<FileType> {
        use FileType::*;
        [File, Dir, Symlink, Fifo, Socket, Char, Block].into_iter().find(|t| t.name() == name)
    }

    /// The type encoded in the `S_IFMT` bits of a `st_mode`, if it is one we know.
    pub fn from_mode(mode: u32) -> Option<FileType> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => FileType::File,
            libc::S_IFDIR => FileType::Dir,
            libc::S_IFLNK => FileType::Symlink,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFSOCK => FileType::Socket,
            libc::S_IFCHR => FileType::Char,
            libc::S_IFBLK => FileType::Block,
            _ => return None,
        })
    }
}

impl fmt::Display for FileType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Serializes as the name (`"file"`, `"dir"`, …).
impl Serialize for FileType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// Inode metadata of the entry a change describes (the container's entry; the image's for a
/// deletion).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Metadata {
    /// Permission bits including set-id and sticky bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id, as stored in the layer (not mapped through user namespaces).
    pub uid: u32,
    /// Owner group id, as stored in the layer.
    pub gid: u32,
    /// Size in bytes (`st_size`).
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime_sec: i64,
    /// Nanoseconds part of the modification time.
    pub mtime_nsec: u32,
}

impl Metadata {
    fn serialize_fields<S: SerializeStruct>(&self, st: &mut S) -> Result<(), S::Error> {
        st.serialize_field("mode", &self.mode)?;
        st.serialize_field("uid", &self.uid)?;
        st.serialize_field("gid", &self.gid)?;
        st.serialize_field("size", &self.size)?;
        st.serialize_field("mtime", &Mtime(self.mtime_sec, self.mtime_nsec))
    }
}

/// Serializes as `{"mode", "uid", "gid", "size", "mtime"}`, `mtime` as [`Change`]'s.
impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut st = s.serialize_struct("Metadata", 5)?;
        self.serialize_fields(&mut st)?;
        st.end()
    }
}

/// A modification time as a JSON number of seconds with all nine digits of nanoseconds
/// (`1700000000.123456789`), exact: an `f64` would round it to about a microsecond.
///
/// It goes through `serde_json`'s raw value: other serializers see its wrapper, not a number.
struct Mtime(i64, u32);

impl Serialize for Mtime {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let raw = serde_json::value::RawValue::from_string(format!("{}.{:09}", self.0, self.1)).map_err(S::Error::custom)?;
        raw.serialize(s)
    }
}

/// One change to a container's root filesystem relative to its image.
///
/// Serializes as one change object of `rodiff diff --format json`, fields in this order: `path`
/// (a string when UTF-8, else an array of byte values), `kind`, `type`, then, with metadata, `mode`, `uid`, `gid`, `size`, `mtime`,
/// then `"mountpoint": true` only for a mount point, `container` and `evidence` only when set.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Change {
    /// Absolute path inside the container (`/etc/passwd`), as raw bytes.
    pub path: PathBuf,
    /// What happened to the path.
    pub kind: ChangeKind,
    /// Type of the entry (for a deletion, the type it had in the image).
    pub file_type: FileType,
    /// Metadata, when the scan was asked to collect it (see `ScanOptions::metadata`).
    pub metadata: Option<Metadata>,
    /// The entry exists only because the runtime created a mount point there (a volume, bind or
    /// tmpfs destination, or a directory leading to one).
    pub mountpoint: bool,
    /// The container this change belongs to, when a scan covers several (e.g. a pod).
    pub container: Option<String>,
    /// Why the change is reported when the layer alone does not show it (see [`Evidence`]);
    /// `None` for what the diff engines found in the layer.
    pub evidence: Option<Evidence>,
}

/// Evidence of a write that left no trace in the layer, besides the layer itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Evidence {
    /// A process of the running container holds a file open in this directory that has no name
    /// any more (an `O_TMPFILE` file, or one it created and unlinked): see [`crate::live`].
    OpenDeleted,
    /// Written while the container was watched ([`crate::watch`]) and gone by the end of the
    /// watch: a temporary file made and removed, a change undone. Its directory was written.
    Transient,
}

impl Evidence {
    /// The name used in JSON output (`open-deleted`).
    pub fn name(self) -> &'static str {
        match self {
            Evidence::OpenDeleted => "open-deleted",
            Evidence::Transient => "transient",
        }
    }
}

impl Evidence {
    /// The evidence a name names ([`Self::name`]).
    pub fn from_name(name: &str) -> Option<Evidence> {
        [Evidence::OpenDeleted, Evidence::Transient].into_iter().find(|e| e.name() == name)
    }
}

/// Serializes as the name (`"open-deleted"`).
impl Serialize for Evidence {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl Serialize for Change {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let len = 3
            + if self.metadata.is_some() { 5 } else { 0 }
            + usize::from(self.mountpoint)
            + usize::from(self.container.is_some())
            + usize::from(self.evidence.is_some());
        let mut st = s.serialize_struct("Change", len)?;
        st.serialize_field("path", &path_json::Bytes(self.path_bytes()))?;
        st.serialize_field("kind", &self.kind)?;
        st.serialize_field("type", &self.file_type)?;
        if let Some(m) = &self.metadata {
            m.serialize_fields(&mut st)?;
        }
        if self.mountpoint {
            st.serialize_field("mountpoint", &true)?;
        }
        if let Some(container) = &self.container {
            st.serialize_field("container", container)?;
        }
        if let Some(evidence) = &self.evidence {
            st.serialize_field("evidence", evidence)?;
        }
        st.end()
    }
}

impl Change {
    /// A change with no metadata, not a mount point, not tagged with a container, found in the
    /// layer.
    pub fn new(path: PathBuf, kind: ChangeKind, file_type: FileType) -> Change {
        Change { path, kind, file_type, metadata: None, mountpoint: false, container: None, evidence: None }
    }

    /// The path as bytes.
    pub fn path_bytes(&self) -> &[u8] {
        self.path.as_os_str().as_bytes()
    }

    /// Whether the runtime, not the application, made this entry: a mount point, or a path the
    /// runtime manages (see [`runtime_managed`]). Such a change needs no mount in a read-only plan.
    pub fn runtime_made(&self) -> bool {
        self.mountpoint || runtime_managed(&self.path)
    }
}

/// Files the runtime manages (bind-mounted or made for the container).
const RUNTIME_FILES: &[&str] = &["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/etc/mtab", "/.dockerenv", "/.containerenv"];
/// Trees the runtime mounts its own filesystems on.
const RUNTIME_TREES: &[&str] = &["/dev", "/proc", "/sys"];

/// Whether `path` (absolute, inside the container) is one the runtime manages: `/etc/hosts`,
/// `/etc/hostname`, `/etc/resolv.conf`, `/etc/mtab`, `/.dockerenv`, `/.containerenv`, or anything
/// in `/dev`, `/proc` and `/sys`. Writes there are the runtime's, never the application's.
pub fn runtime_managed(path: &Path) -> bool {
    RUNTIME_FILES.iter().any(|f| path == Path::new(f)) || RUNTIME_TREES.iter().any(|t| path.starts_with(t))
}

/// Joins a container directory path and an entry name without allocating twice; `/` + `x` is `/x`.
pub fn join_path(dir: &Path, name: &[u8]) -> PathBuf {
    let dir = dir.as_os_str().as_bytes();
    let mut bytes = Vec::with_capacity(dir.len() + 1 + name.len());
    bytes.extend_from_slice(dir);
    if bytes.last() != Some(&b'/') {
        bytes.push(b'/');
    }
    bytes.extend_from_slice(name);
    PathBuf::from(OsStr::from_bytes(&bytes))
}

/// Orders paths as a tree listing does: by component, so that a directory's entries follow it
/// directly (`/a`, `/a/b`, `/a-b`), which plain byte order does not (`-` sorts before `/`).
pub fn path_order(a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    let common = a.iter().zip(b).position(|(x, y)| x != y);
    match common {
        None => a.len().cmp(&b.len()),
        Some(i) => {
            // The separator sorts before every other byte.
            let rank = |c: u8| if c == b'/' { 0u16 } else { c as u16 + 1 };
            rank(a[i]).cmp(&rank(b[i]))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_handles_root_and_nested() {
        assert_eq!(join_path(Path::new("/"), b"etc"), PathBuf::from("/etc"));
        assert_eq!(join_path(Path::new("/etc"), b"passwd"), PathBuf::from("/etc/passwd"));
        let odd = join_path(Path::new("/x"), b"a\xffb");
        assert_eq!(odd.as_os_str().as_bytes(), b"/x/a\xffb");
    }

    #[test]
    fn paths_sort_as_a_tree() {
        let mut paths: Vec<&[u8]> = vec![b"/a-b", b"/a/b", b"/a", b"/", b"/a/b/c", b"/b"];
        paths.sort_by(|a, b| path_order(a, b));
        assert_eq!(paths, vec![&b"/"[..], b"/a", b"/a/b", b"/a/b/c", b"/a-b", b"/b"]);
    }

    #[test]
    fn file_type_from_mode() {
        assert_eq!(FileType::from_mode(libc::S_IFDIR | 0o755), Some(FileType::Dir));
        assert_eq!(FileType::from_mode(libc::S_IFCHR), Some(FileType::Char));
        assert_eq!(FileType::from_mode(0), None);
    }
}
