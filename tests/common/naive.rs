//! An independent oracle: the full two-tree comparison `docker diff` makes when it cannot use the
//! overlay fast path (moby's `ChangesDirs`), written plainly with `std::fs` over two mounted views:
//! stat fields as moby compares them, and every entry's `security.capability` — and, beyond moby,
//! the bytes of regular files whose stat is equal (a same-size rewrite with its mtime put back is a
//! change for rodiff; `docker diff` misses it).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `(kind, path)` for every change between `old` (image view) and `new` (container view).
pub fn diff(new: &Path, old: &Path) -> BTreeSet<(char, Vec<u8>)> {
    diff_skipping(new, old, &[])
}

/// [`diff`] that neither lists nor enters the paths in `skip`, on either side: the mount points
/// of a container's merged view seen through `/proc/<pid>/root`.
pub fn diff_skipping(new: &Path, old: &Path, skip: &[Vec<u8>]) -> BTreeSet<(char, Vec<u8>)> {
    let mut out = Vec::new();
    compare_dir(new, Some(old), b"", skip, &mut out);
    out.into_iter().collect()
}

/// An entry's stat and capabilities.
struct Entry {
    meta: std::fs::Metadata,
    capability: Vec<u8>,
}

fn children(dir: &Path) -> BTreeMap<Vec<u8>, Entry> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let entry = Entry { meta: std::fs::symlink_metadata(e.path()).unwrap(), capability: capability(&e.path()) };
            (e.file_name().as_bytes().to_vec(), entry)
        })
        .collect()
}

/// `security.capability`, empty when unset (moby's `Lgetxattr`, errors ignored).
fn capability(path: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; 1024];
    match rustix::fs::lgetxattr(path, "security.capability", &mut buf[..]) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(),
    }
}

fn differs(a: &Entry, b: &Entry) -> bool {
    stat_differs(&a.meta, &b.meta) || a.capability != b.capability
}

/// For two regular files of equal stat: whether their bytes differ (read plainly: this oracle
/// runs after the engine, or before it where access times do not matter).
fn bytes_differ(a: &Entry, b: &Entry, a_path: &Path, b_path: Option<std::path::PathBuf>) -> bool {
    match b_path {
        Some(b_path) if a.meta.is_file() && b.meta.is_file() => std::fs::read(a_path).ok() != std::fs::read(b_path).ok(),
        _ => false,
    }
}

fn stat_differs(a: &std::fs::Metadata, b: &std::fs::Metadata) -> bool {
    let same_time = a.mtime() == b.mtime() && (a.mtime_nsec() == b.mtime_nsec() || a.mtime_nsec() == 0 || b.mtime_nsec() == 0);
    a.mode() != b.mode()
        || a.uid() != b.uid()
        || a.gid() != b.gid()
        || a.rdev() != b.rdev()
        || (!a.is_dir() && (!same_time || a.size() != b.size()))
}

/// Adds the changes below `new` (compared with `old`, if the image has a directory there).
/// Returns whether anything was added.
fn compare_dir(new: &Path, old: Option<&Path>, prefix: &[u8], skip: &[Vec<u8>], out: &mut Vec<(char, Vec<u8>)>) -> bool {
    let before = out.len();
    let mut old_children = old.map(children).unwrap_or_default();
    for (name, entry) in children(new) {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(&name);
        let old_meta = old_children.remove(&name);
        if skip.contains(&path) {
            continue;
        }
        let new_child = new.join(OsStr::from_bytes(&name));
        let marked = match &old_meta {
            None => {
                out.push(('A', path.clone()));
                true
            }
            Some(o) if differs(&entry, o) || bytes_differ(&entry, o, &new_child, old.map(|d| d.join(OsStr::from_bytes(&name)))) => {
                out.push(('C', path.clone()));
                true
            }
            Some(_) => false,
        };
        if entry.meta.is_dir() {
            let old_child = old.map(|o| o.join(std::ffi::OsStr::from_bytes(&name)));
            let old_is_dir = old_meta.as_ref().is_some_and(|m| m.meta.is_dir());
            let inner_before = out.len();
            let changed = compare_dir(&new_child, old_child.as_deref().filter(|_| old_is_dir), &path, skip, out);
            if changed && !marked {
                out.insert(inner_before, ('C', path.clone()));
            }
        }
    }
    for (name, _) in old_children {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(&name);
        if !skip.contains(&path) {
            out.push(('D', path));
        }
    }
    out.len() > before
}
