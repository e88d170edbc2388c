//! What a subvolume's b-tree says changed since it was snapshotted from its parent.
//!
//! Snapshots keep inode numbers, and btrfs stamps every inode with the transaction that last
//! changed it (`transid`). Every change a container makes — data, mode, owner, times, a name added
//! to or removed from a directory, a rename, a hard link — rewrites the changed inode, and every
//! rewritten b-tree leaf carries a newer generation. So one `TREE_SEARCH_V2` with
//! `min_transid = creation + 1` visits only the leaves the container touched, and the inode items
//! in them with `transid > creation` are the candidates.
//!
//! A read rewrites inode items too: with `relatime` (the default) the first read of a file or
//! listing of a directory updates its access time. So each candidate is compared with the same
//! inode in the parent subvolume, looked up in batches, and one that differs in nothing but its
//! access time is not a change. What is left are the changed inodes; all their back references
//! (`INODE_REF`/`INODE_EXTREF`, read completely even when some sit in leaves the container did not
//! rewrite) name the directories to look in. Directories are keyed by inode number, never by path:
//! a tree deeper than `PATH_MAX` needs no path look-up. The two-tree walk then compares those
//! places only ([`crate::layer::twotree`]).

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::BorrowedFd;

use super::ioctl::{self, InodeItem, Key, TreeSearch, INODE_EXTREF, INODE_ITEM, INODE_REF, ROOT_DIR_INO};
use crate::layer::twotree::{Oracle, Scope};

/// `BTRFS_LAST_FREE_OBJECTID`: object ids above it are special items, not inodes.
const LAST_INODE: u64 = u64::MAX - 256;

/// The buffer of one look-up search: room for a few hundred items.
const LOOKUP_BUFFER: usize = 64 * 1024;

/// Items a look-up asks for per candidate it expects to answer: an inode item, its references, an
/// extent or two. A directory's entries follow its inode item, so a look-up that asks for more
/// than the candidates need reads a directory's listing.
const ITEMS_PER_CANDIDATE: u32 = 6;

/// The most items one look-up asks for.
const MAX_LOOKUP_ITEMS: u32 = 4096;

/// The places where the container's subvolume may differ from its parent.
#[derive(Debug, Default)]
pub struct ChangedSet {
    /// Inodes that differ from the parent (or are new).
    inodes: HashSet<u64>,
    /// Directories (by inode) whose entries may all differ.
    full: HashSet<u64>,
    /// Entries to check, by directory inode: changed inodes and the directories leading to them.
    only: HashMap<u64, HashSet<Box<[u8]>>>,
    /// What the search saw, for tests and progress: candidates and those that were access-only.
    pub stats: SearchStats,
}

/// What the b-tree searches saw: the cost of a diff, in items, for tests and diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SearchStats {
    /// Inode items written since the snapshot.
    pub candidates: u64,
    /// Of those, items that differ from the parent's in their access time only.
    pub access_only: u64,
    /// Items the look-ups of the candidates in the parent subvolume returned.
    pub parent_items: u64,
}

impl ChangedSet {
    /// Reads the changes of the subvolume `fd` is in, relative to the snapshot it was created from
    /// at transaction `created`; `parent` is a directory of the subvolume it was snapshotted from.
    pub fn collect(fd: BorrowedFd<'_>, parent: BorrowedFd<'_>, created: u64) -> io::Result<ChangedSet> {
        let mut candidates: Vec<(u64, InodeItem)> = Vec::new();
        let mut refs: HashMap<u64, Vec<(u64, Vec<u8>)>> = HashMap::new();
        let first = Key { objectid: ROOT_DIR_INO, item_type: 0, offset: 0 };
        let last = Key { objectid: LAST_INODE, item_type: u8::MAX as u32, offset: u64::MAX };
        // An inode's references follow its inode item in key order: keep those of candidates
        // only (a rewritten leaf holds many inodes that did not change).
        let mut candidate = None;
        TreeSearch::new(256 * 1024).run(fd, first, last, created + 1, |key, data| match key.item_type {
            INODE_ITEM => {
                candidate = None;
                if let Some(inode) = InodeItem::parse(data).filter(|i| i.transid > created) {
                    candidates.push((key.objectid, inode));
                    candidate = Some(key.objectid);
                }
            }
            INODE_REF | INODE_EXTREF if candidate == Some(key.objectid) => {
                refs.entry(key.objectid).or_default().extend(ioctl::parse_refs(key, data))
            }
            _ => {}
        })?;
        let mut lookups = TreeSearch::new(LOOKUP_BUFFER);

        let mut set = ChangedSet { stats: SearchStats { candidates: candidates.len() as u64, ..Default::default() }, ..Default::default() };
        let before = parent_items(&mut lookups, parent, candidates.iter().map(|(ino, _)| *ino), &mut set.stats.parent_items)?;
        let mut ancestry = Ancestry::default();
        for (ino, inode) in candidates {
            if before.get(&ino).is_some_and(|old| !inode.differs_from(old)) {
                set.stats.access_only += 1;
                continue;
            }
            set.inodes.insert(ino);
            if inode.is_dir() {
                set.full.insert(ino);
            }
            if ino == ROOT_DIR_INO {
                continue;
            }
            // The search holds only the references in rewritten leaves: complete them when the
            // inode has more names than were seen (a directory has exactly one).
            let seen = refs.remove(&ino).unwrap_or_default();
            let expected = if inode.is_dir() { 1 } else { inode.nlink as usize };
            let links = if seen.len() >= expected { seen } else { refs_of(&mut lookups, fd, ino)? };
            for (dir, name) in links {
                set.add_entry(&mut lookups, fd, &mut ancestry, dir, name.into_boxed_slice())?;
            }
        }
        Ok(set)
    }

    /// Marks `name` in directory `dir` to be checked, and the directories leading to it.
    fn add_entry(&mut self, search: &mut TreeSearch, fd: BorrowedFd<'_>, ancestry: &mut Ancestry, mut dir: u64, mut name: Box<[u8]>) -> io::Result<()> {
        loop {
            if !self.only.entry(dir).or_default().insert(name) {
                // Already there: so are the directories above it.
                return Ok(());
            }
            if dir == ROOT_DIR_INO {
                return Ok(());
            }
            (dir, name) = ancestry.parent_of(search, fd, dir)?;
        }
    }
}

impl Oracle for ChangedSet {
    fn scope(&self, dir_ino: u64) -> Scope<'_> {
        if self.full.contains(&dir_ino) {
            Scope::Everything
        } else if let Some(names) = self.only.get(&dir_ino) {
            Scope::Only(names)
        } else {
            Scope::Nothing
        }
    }

    fn inode_changed(&self, ino: u64) -> bool {
        self.inodes.contains(&ino)
    }
}

/// The parent directory and name of directories, looked up once each.
#[derive(Default)]
struct Ancestry(HashMap<u64, (u64, Box<[u8]>)>);

impl Ancestry {
    /// The directory that holds directory `dir`, and its name there.
    fn parent_of(&mut self, search: &mut TreeSearch, fd: BorrowedFd<'_>, dir: u64) -> io::Result<(u64, Box<[u8]>)> {
        if let Some(found) = self.0.get(&dir) {
            return Ok(found.clone());
        }
        let (parent, name) = refs_of(search, fd, dir)?.into_iter().next().ok_or_else(|| {
            io::Error::new(io::ErrorKind::NotFound, format!("directory inode {dir} has no back reference"))
        })?;
        let found = (parent, name.into_boxed_slice());
        self.0.insert(dir, found.clone());
        Ok(found)
    }
}

/// The inode items of `inos` in the subvolume `parent` is in (absent ones are new inodes), so
/// that the cost follows the number of candidates, not what lies between them: each search starts
/// at the next candidate not yet answered and asks for a window of items that grows while
/// searches answer many candidates (files made together have neighbouring inode numbers) and
/// shrinks when they answer one (a directory's inode item is followed by all its entries, of
/// which a look-up then reads a handful).
fn parent_items(
    search: &mut TreeSearch,
    parent: BorrowedFd<'_>,
    inos: impl Iterator<Item = u64>,
    items_read: &mut u64,
) -> io::Result<HashMap<u64, InodeItem>> {
    let mut inos: Vec<u64> = inos.collect();
    inos.sort_unstable();
    inos.dedup();
    let mut found = HashMap::with_capacity(inos.len());
    let Some(&last) = inos.last() else { return Ok(found) };
    let max = Key { objectid: last, item_type: INODE_ITEM, offset: u64::MAX };
    let mut next = 0;
    let mut window = ITEMS_PER_CANDIDATE;
    while next < inos.len() {
        let min = Key { objectid: inos[next], item_type: INODE_ITEM, offset: 0 };
        let mut wanted = inos[next..].iter().copied().peekable();
        let resume = search.batch(parent, min, max, 0, window, |key, data| {
            *items_read += 1;
            while wanted.next_if(|&ino| ino < key.objectid).is_some() {}
            if key.item_type == INODE_ITEM && wanted.peek() == Some(&key.objectid) {
                if let Some(item) = InodeItem::parse(data) {
                    found.insert(key.objectid, item);
                }
            }
        })?;
        let Some(resume) = resume else { break };
        // Candidates whose inode item lies before where the search stopped are answered (found,
        // or absent from the parent).
        let answered = inos[next..].partition_point(|&ino| Key { objectid: ino, item_type: INODE_ITEM, offset: 0 } < resume);
        next += answered;
        window = (answered as u32).saturating_mul(2 * ITEMS_PER_CANDIDATE).clamp(ITEMS_PER_CANDIDATE, MAX_LOOKUP_ITEMS);
    }
    Ok(found)
}

/// Every link of inode `ino`, looked up directly.
fn refs_of(search: &mut TreeSearch, fd: BorrowedFd<'_>, ino: u64) -> io::Result<Vec<(u64, Vec<u8>)>> {
    let mut links = Vec::new();
    let min = Key { objectid: ino, item_type: INODE_REF, offset: 0 };
    let max = Key { objectid: ino, item_type: INODE_EXTREF, offset: u64::MAX };
    search.run(fd, min, max, 0, |key, data| links.extend(ioctl::parse_refs(key, data)))?;
    Ok(links)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_mark_the_directories_leading_to_them() {
        // A made-up tree: 256 (root) ─ a (300) ─ b (301); the ancestry is known, so no look-up
        // reaches the (absent) filesystem.
        let mut ancestry = Ancestry::default();
        ancestry.0.insert(300, (ROOT_DIR_INO, b"a".to_vec().into()));
        ancestry.0.insert(301, (300, b"b".to_vec().into()));
        let fd = std::fs::File::open("/").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&fd);
        let mut search = TreeSearch::new(4096);
        let mut set = ChangedSet::default();
        set.add_entry(&mut search, fd, &mut ancestry, 301, b"f".to_vec().into()).unwrap();
        set.add_entry(&mut search, fd, &mut ancestry, 300, b"g".to_vec().into()).unwrap();
        set.add_entry(&mut search, fd, &mut ancestry, ROOT_DIR_INO, b"top".to_vec().into()).unwrap();
        let names = |d: u64| {
            let mut v: Vec<String> = set.only[&d].iter().map(|n| String::from_utf8_lossy(n).into_owned()).collect();
            v.sort();
            v
        };
        assert_eq!(names(301), vec!["f"]);
        assert_eq!(names(300), vec!["b", "g"]);
        assert_eq!(names(ROOT_DIR_INO), vec!["a", "top"]);
        assert!(matches!(set.scope(300), Scope::Only(_)));
        assert!(matches!(set.scope(999), Scope::Nothing));
    }

    #[test]
    fn an_access_time_alone_is_no_difference() {
        let mut data = vec![0u8; 160];
        data[8..16].copy_from_slice(&7u64.to_le_bytes()); // transid
        data[52..56].copy_from_slice(&0o40755u32.to_le_bytes()); // mode
        let old = InodeItem::parse(&data).unwrap();
        data[8..16].copy_from_slice(&9u64.to_le_bytes());
        data[112..120].copy_from_slice(&1_700_000_000u64.to_le_bytes()); // atime
        assert!(!InodeItem::parse(&data).unwrap().differs_from(&old));
        data[124..132].copy_from_slice(&1_700_000_000u64.to_le_bytes()); // ctime
        assert!(InodeItem::parse(&data).unwrap().differs_from(&old));
    }
}
