//! What a subvolume's b-tree says changed since it was snapshotted from its parent.
//!
//! Snapshots keep inode numbers, and btrfs stamps every inode with the transaction that last
//! changed it (`transid`). Every change a container makes — data, mode, owner, times, a name added
//! to or removed from a directory, a rename, a hard link — rewrites the changed inode, and every
//! rewritten b-tree leaf carries a newer generation. So one `TREE_SEARCH_V2` with
//! `min_transid = creation + 1` visits only the leaves the container touched, and the inode items
//! in them with `transid > creation` are exactly the changed inodes. Their back references
//! (`INODE_REF`/`INODE_EXTREF`) name the directories to look in. The two-tree walk then compares
//! those places only ([`crate::layer::twotree`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::BorrowedFd;

use super::ioctl::{self, InodeItem, Key, INODE_EXTREF, INODE_ITEM, INODE_REF, ROOT_DIR_INO};
use crate::layer::twotree::{Oracle, Scope};

/// The places where the container's subvolume may differ from its parent.
#[derive(Debug, Default)]
pub struct ChangedSet {
    inodes: HashSet<u64>,
    /// Directories whose entries may differ, by container path (`/a/b`).
    full: HashSet<Vec<u8>>,
    /// Entries to check, by directory path: changed inodes and directories leading to them.
    only: HashMap<Vec<u8>, HashSet<Box<[u8]>>>,
}

impl ChangedSet {
    /// Reads the changes of the subvolume `fd` is in, relative to the snapshot it was created from
    /// at transaction `created`.
    pub fn collect(fd: BorrowedFd<'_>, created: u64) -> io::Result<ChangedSet> {
        let mut changed: Vec<(u64, InodeItem)> = Vec::new();
        let mut refs: HashMap<u64, Vec<(u64, Vec<u8>)>> = HashMap::new();
        let first = Key { objectid: ROOT_DIR_INO, item_type: 0, offset: 0 };
        // BTRFS_LAST_FREE_OBJECTID: objectids above are special items, not inodes.
        let last = Key { objectid: u64::MAX - 256, item_type: u8::MAX as u32, offset: u64::MAX };
        ioctl::tree_search(fd, first, last, created + 1, |item| match item.key.item_type {
            INODE_ITEM => {
                if let Some(inode) = InodeItem::parse(&item.data).filter(|i| i.transid > created) {
                    changed.push((item.key.objectid, inode));
                }
            }
            INODE_REF | INODE_EXTREF => refs.entry(item.key.objectid).or_default().extend(ioctl::parse_refs(&item)),
            _ => {}
        })?;

        let mut set = ChangedSet::default();
        let mut dir_paths: HashMap<u64, Vec<u8>> = HashMap::new();
        for (ino, inode) in changed {
            set.inodes.insert(ino);
            if ino == ROOT_DIR_INO {
                set.full.insert(b"/".to_vec());
                continue;
            }
            // A reference in a leaf the container did not rewrite is not in the search result.
            let links = match refs.remove(&ino) {
                Some(links) => links,
                None => refs_of(fd, ino)?,
            };
            for (parent, name) in links {
                let parent_path = match dir_paths.get(&parent) {
                    Some(p) => p.clone(),
                    None => {
                        let p = dir_path(fd, parent)?;
                        dir_paths.insert(parent, p.clone());
                        p
                    }
                };
                set.add_entry(&parent_path, &name);
                if inode.is_dir() {
                    set.full.insert(child_path(&parent_path, &name));
                }
            }
        }
        Ok(set)
    }

    /// Marks `name` in directory `dir` to be checked, and the directories leading to it.
    fn add_entry(&mut self, dir: &[u8], name: &[u8]) {
        let mut dir = dir.to_vec();
        let mut name = name.to_vec();
        loop {
            let names = self.only.entry(dir.clone()).or_default();
            if !names.insert(name.clone().into_boxed_slice()) {
                // Already there: so are the directories above it.
                return;
            }
            if dir == b"/" {
                return;
            }
            let cut = dir.iter().rposition(|&b| b == b'/').expect("absolute path");
            name = dir[cut + 1..].to_vec();
            dir.truncate(cut.max(1));
        }
    }
}

impl Oracle for ChangedSet {
    fn scope(&self, path: &[u8]) -> Scope<'_> {
        if self.full.contains(path) {
            Scope::Everything
        } else if let Some(names) = self.only.get(path) {
            Scope::Only(names)
        } else {
            Scope::Nothing
        }
    }

    fn inode_changed(&self, ino: u64) -> bool {
        self.inodes.contains(&ino)
    }
}

/// `dir` + `/` + `name`, for a container directory path.
fn child_path(dir: &[u8], name: &[u8]) -> Vec<u8> {
    let mut path = dir.to_vec();
    if path.last() != Some(&b'/') {
        path.push(b'/');
    }
    path.extend_from_slice(name);
    path
}

/// The links of inode `ino`, looked up directly.
fn refs_of(fd: BorrowedFd<'_>, ino: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut links = Vec::new();
    let min = Key { objectid: ino, item_type: INODE_REF, offset: 0 };
    let max = Key { objectid: ino, item_type: INODE_EXTREF, offset: u64::MAX };
    ioctl::tree_search(fd, min, max, 0, |item| links.extend(ioctl::parse_refs(&item)))?;
    Ok(links)
}

/// The container path (`/a/b`, `/` for the root) of directory inode `ino`.
fn dir_path(fd: BorrowedFd<'_>, ino: u64) -> io::Result<Vec<u8>> {
    let rel = ioctl::ino_lookup(fd, ino)?;
    let rel = rel.strip_suffix(b"/").unwrap_or(&rel);
    let mut path = Vec::with_capacity(rel.len() + 1);
    path.push(b'/');
    path.extend_from_slice(rel);
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_mark_the_directories_leading_to_them() {
        let mut set = ChangedSet::default();
        set.add_entry(b"/a/b", b"f");
        set.add_entry(b"/a", b"g");
        set.add_entry(b"/", b"top");
        let names = |d: &[u8]| {
            let mut v: Vec<String> = set.only[d].iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(names(b"/a/b"), vec!["f"]);
        assert_eq!(names(b"/a"), vec!["b", "g"]);
        assert_eq!(names(b"/"), vec!["a", "top"]);
        assert!(matches!(set.scope(b"/a"), Scope::Only(_)));
        assert!(matches!(set.scope(b"/elsewhere"), Scope::Nothing));
    }
}
