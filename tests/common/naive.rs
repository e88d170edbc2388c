//! An independent oracle: the full two-tree comparison `docker diff` makes when it cannot use the
//! overlay fast path (moby's `ChangesDirs`), written plainly with `std::fs` over two mounted views.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// `(kind, path)` for every change between `old` (image view) and `new` (container view).
pub fn diff(new: &Path, old: &Path) -> BTreeSet<(char, Vec<u8>)> {
    let mut out = Vec::new();
    compare_dir(new, Some(old), b"", &mut out);
    out.into_iter().collect()
}

fn children(dir: &Path) -> BTreeMap<Vec<u8>, std::fs::Metadata> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().as_bytes().to_vec(), std::fs::symlink_metadata(e.path()).unwrap())
        })
        .collect()
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
fn compare_dir(new: &Path, old: Option<&Path>, prefix: &[u8], out: &mut Vec<(char, Vec<u8>)>) -> bool {
    let before = out.len();
    let mut old_children = old.map(children).unwrap_or_default();
    for (name, meta) in children(new) {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(&name);
        let new_child = new.join(std::ffi::OsStr::from_bytes(&name));
        let old_meta = old_children.remove(&name);
        let marked = match &old_meta {
            None => {
                out.push(('A', path.clone()));
                true
            }
            Some(o) if stat_differs(&meta, o) => {
                out.push(('C', path.clone()));
                true
            }
            Some(_) => false,
        };
        if meta.is_dir() {
            let old_child = old.map(|o| o.join(std::ffi::OsStr::from_bytes(&name)));
            let old_is_dir = old_meta.as_ref().is_some_and(|m| m.is_dir());
            let inner_before = out.len();
            let changed = compare_dir(&new_child, old_child.as_deref().filter(|_| old_is_dir), &path, out);
            if changed && !marked {
                out.insert(inner_before, ('C', path.clone()));
            }
        }
    }
    for (name, _) in old_children {
        let mut path = prefix.to_vec();
        path.push(b'/');
        path.extend_from_slice(&name);
        out.push(('D', path));
    }
    out.len() > before
}
