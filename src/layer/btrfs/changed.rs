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
//! inode in the parent subvolume, looked up in windows of items that follow the candidates, and
//! one that differs in nothing but its access time is not a change. Search and look-ups run in
//! ranges of inode numbers, in parallel: a leaf is rewritten whole for one access time, and the
//! kernel's cost is per item. What is left are the changed inodes; all their back references
//! (`INODE_REF`/`INODE_EXTREF`, read completely even when some sit in leaves the container did not
//! rewrite) name the directories to look in. Directories are keyed by inode number, never by path:
//! a tree deeper than `PATH_MAX` needs no path look-up. The two-tree walk then compares those
//! places only (`layer::twotree`).
//!
//! Memory follows the number of changed inodes, and is kept small per inode: a changed inode is
//! kept as its number, link count and type (its whole inode item only while its range of inode
//! numbers is compared with the parent), its names in one buffer. No name is kept for a directory
//! the walk reads whole anyway (a changed one), and a directory with more than
//! [`MAX_NAMES_PER_DIR`] names to check is read whole instead.

use std::collections::{HashMap, HashSet};
use std::io;
use std::os::fd::BorrowedFd;

use super::ioctl::{self, InodeItem, Key, TreeSearch, INODE_EXTREF, INODE_ITEM, INODE_REF, ROOT_DIR_INO};
use crate::layer::twotree::{Oracle, Scope};

/// `BTRFS_LAST_FREE_OBJECTID`: object ids above it are special items, not inodes.
const LAST_INODE: u64 = u64::MAX - 256;

/// The buffer of each part of the search of the container's subvolume.
const SEARCH_BUFFER: usize = 128 * 1024;

/// Parts of the inode number range per thread, so that threads that finish early take more.
const SEARCH_PARTS_PER_THREAD: usize = 4;

/// Candidates compared with the parent at a time (their whole inode items are held until then).
const CANDIDATES_PER_COMPARISON: usize = 4096;

/// The buffer of one look-up search: room for a few hundred items.
const LOOKUP_BUFFER: usize = 64 * 1024;

/// Items a look-up asks for per candidate it expects to answer: an inode item, its references, an
/// extent or two. A directory's entries follow its inode item, so a look-up that asks for more
/// than the candidates need reads a directory's listing.
const ITEMS_PER_CANDIDATE: u32 = 6;

/// The most items one look-up asks for.
const MAX_LOOKUP_ITEMS: u32 = 4096;

/// The most names of one directory to check one by one: a directory with more is read whole (its
/// listing compared with the parent's), which costs a listing instead of memory per name.
pub const MAX_NAMES_PER_DIR: usize = 4096;

/// The places where the container's subvolume may differ from its parent.
#[derive(Debug, Default)]
pub struct ChangedSet {
    /// Inodes that differ from the parent (or are new), sorted.
    inodes: Vec<u64>,
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
        let Changed { inodes, mut links, stats } = Changed::search_all(fd, parent, created)?;
        links.refs.sort_unstable_by_key(|r| r.0);
        let mut lookups = TreeSearch::new(LOOKUP_BUFFER);
        let mut set = ChangedSet { stats, ..Default::default() };
        set.inodes = inodes.iter().map(|i| i.ino).collect();
        set.inodes.sort_unstable();
        // Changed directories are read whole: known before any name is added, none is kept for them.
        set.full = inodes.iter().filter(|i| i.is_dir).map(|i| i.ino).collect();
        let mut ancestry = Ancestry::default();
        for inode in inodes.iter().filter(|i| i.ino != ROOT_DIR_INO) {
            // The search holds only the references in rewritten leaves: complete them when the
            // inode has more names than were seen (a directory has exactly one).
            let seen = links.of(inode.ino);
            let expected = if inode.is_dir { 1 } else { inode.nlink as usize };
            if seen.len() >= expected {
                for (dir, name) in seen {
                    set.add_entry(&mut lookups, fd, &mut ancestry, dir, name)?;
                }
            } else {
                for (dir, name) in refs_of(&mut lookups, fd, inode.ino)? {
                    set.add_entry(&mut lookups, fd, &mut ancestry, dir, &name)?;
                }
            }
        }
        Ok(set)
    }

    /// Marks `name` in directory `dir` to be checked, and the directories leading to it.
    fn add_entry(&mut self, search: &mut TreeSearch, fd: BorrowedFd<'_>, ancestry: &mut Ancestry, mut dir: u64, name: &[u8]) -> io::Result<()> {
        let mut name: Box<[u8]> = name.into();
        loop {
            // A directory read whole needs no names, and the directories leading to it are marked
            // already or will be: by its own references (a changed directory), or by its first
            // name (one that had too many).
            if self.full.contains(&dir) {
                return Ok(());
            }
            let names = self.only.entry(dir).or_default();
            if !names.insert(name) {
                // Already there: so are the directories above it.
                return Ok(());
            }
            let first = names.len() == 1;
            if names.len() > MAX_NAMES_PER_DIR {
                self.only.remove(&dir);
                self.full.insert(dir);
            }
            if !first || dir == ROOT_DIR_INO {
                // Not the directory's first name: the directories above it are marked.
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
        self.inodes.binary_search(&ino).is_ok()
    }
}

/// The changed inodes of the container's subvolume and their back references, as far as the
/// leaves written since the snapshot hold them.
#[derive(Default)]
struct Changed {
    inodes: Vec<ChangedInode>,
    links: Links,
    stats: SearchStats,
}

/// What the walk's plan needs of a changed inode's item.
#[derive(Clone, Copy, Debug)]
struct ChangedInode {
    ino: u64,
    nlink: u32,
    is_dir: bool,
}

/// Back references, `(directory inode, name)` of inodes, with every name in one buffer.
#[derive(Default)]
struct Links {
    /// `(inode, directory, start of the name in names, its length)`.
    refs: Vec<(u64, u64, usize, u16)>,
    names: Vec<u8>,
}

impl Links {
    fn push(&mut self, ino: u64, dir: u64, name: &[u8]) {
        let len = u16::try_from(name.len()).expect("btrfs names are at most 255 bytes");
        self.refs.push((ino, dir, self.names.len(), len));
        self.names.extend_from_slice(name);
    }

    /// Appends `other`'s references.
    fn append(&mut self, other: Links) {
        let base = self.names.len();
        self.names.extend_from_slice(&other.names);
        self.refs.extend(other.refs.into_iter().map(|(ino, dir, start, len)| (ino, dir, base + start, len)));
    }

    /// Keeps only the references of the inodes `keep` says yes to.
    fn retain(&mut self, keep: impl Fn(u64) -> bool) {
        let mut kept = Links::default();
        for &(ino, dir, start, len) in self.refs.iter().filter(|r| keep(r.0)) {
            kept.push(ino, dir, &self.names[start..start + len as usize]);
        }
        *self = kept;
    }

    /// The references of `ino`, once `refs` is sorted by inode.
    fn of(&self, ino: u64) -> impl ExactSizeIterator<Item = (u64, &[u8])> {
        let first = self.refs.partition_point(|r| r.0 < ino);
        let count = self.refs[first..].iter().take_while(|r| r.0 == ino).count();
        self.refs[first..first + count].iter().map(|&(_, dir, start, len)| (dir, &self.names[start..start + len as usize]))
    }
}

impl Changed {
    /// Searches the whole subvolume, in ranges of inode numbers searched in parallel (on the
    /// caller's rayon pool): the kernel's cost is per item of every rewritten leaf, and a leaf is
    /// rewritten whole for one access time.
    fn search_all(fd: BorrowedFd<'_>, parent: BorrowedFd<'_>, created: u64) -> io::Result<Changed> {
        use rayon::prelude::*;
        let highest = highest_inode(fd)?;
        let ranges = split_range(ROOT_DIR_INO, highest, (rayon::current_num_threads() * SEARCH_PARTS_PER_THREAD) as u64);
        ranges.into_par_iter().map(|(first, last)| Changed::search(fd, parent, created, first, last)).try_reduce(
            Changed::default,
            |mut a, b| {
                a.inodes.extend(b.inodes);
                a.links.append(b.links);
                a.stats.candidates += b.stats.candidates;
                a.stats.access_only += b.stats.access_only;
                a.stats.parent_items += b.stats.parent_items;
                Ok(a)
            },
        )
    }

    /// Searches the inodes numbered `first..=last` for candidates (inode items written since the
    /// snapshot), and keeps those that differ from the parent's in more than the access time:
    /// compared with the parent [`CANDIDATES_PER_COMPARISON`] at a time, so that whole inode items
    /// are held for that many only.
    fn search(fd: BorrowedFd<'_>, parent: BorrowedFd<'_>, created: u64, first: u64, last: u64) -> io::Result<Changed> {
        let mut found = Changed::default();
        let mut candidates = Vec::new();
        let mut access_only = Vec::new();
        let mut search = TreeSearch::new(SEARCH_BUFFER);
        let mut lookups = TreeSearch::new(LOOKUP_BUFFER);
        let mut start = Key { objectid: first, item_type: 0, offset: 0 };
        let max = Key { objectid: last, item_type: u8::MAX as u32, offset: u64::MAX };
        // An inode's references follow its inode item in key order: keep those of candidates
        // only (a rewritten leaf holds many inodes that did not change).
        let mut candidate = None;
        loop {
            let next = search.batch(fd, start, max, created + 1, u32::MAX, |key, data| match key.item_type {
                INODE_ITEM => {
                    candidate = None;
                    if let Some(inode) = InodeItem::parse(data).filter(|i| i.transid > created) {
                        candidates.push((key.objectid, inode));
                        candidate = Some(key.objectid);
                    }
                }
                INODE_REF | INODE_EXTREF if candidate == Some(key.objectid) => {
                    for (dir, name) in ioctl::parse_refs(key, data) {
                        found.links.push(key.objectid, dir, &name);
                    }
                }
                _ => {}
            })?;
            if candidates.len() >= CANDIDATES_PER_COMPARISON || next.is_none() {
                found.compare(&mut lookups, parent, &mut candidates, &mut access_only)?;
            }
            match next {
                Some(key) => start = key,
                None => break,
            }
        }
        if !access_only.is_empty() {
            // In key order, so sorted.
            found.links.retain(|ino| access_only.binary_search(&ino).is_err());
        }
        Ok(found)
    }

    /// Compares `candidates` with the same inodes in the parent: keeps those that differ, adds
    /// the others' numbers to `access_only`, and empties `candidates`.
    fn compare(&mut self, lookups: &mut TreeSearch, parent: BorrowedFd<'_>, candidates: &mut Vec<(u64, InodeItem)>, access_only: &mut Vec<u64>) -> io::Result<()> {
        self.stats.candidates += candidates.len() as u64;
        let before = parent_items(lookups, parent, candidates.iter().map(|(ino, _)| *ino), &mut self.stats.parent_items)?;
        for (ino, inode) in candidates.drain(..) {
            if before.get(&ino).map_or(true, |old| inode.differs_from(old)) {
                self.inodes.push(ChangedInode { ino, nlink: inode.nlink, is_dir: inode.is_dir() });
            } else {
                self.stats.access_only += 1;
                access_only.push(ino);
            }
        }
        Ok(())
    }
}

/// `first..=last` cut into at most `parts` consecutive ranges of about the same width, covering
/// every number once.
fn split_range(first: u64, last: u64, parts: u64) -> Vec<(u64, u64)> {
    let width = ((last - first) / parts.max(1)).max(1);
    let mut ranges = Vec::new();
    let mut start = first;
    loop {
        let end = start.saturating_add(width - 1);
        if end >= last || ranges.len() as u64 + 1 == parts {
            ranges.push((start, last));
            return ranges;
        }
        ranges.push((start, end));
        start = end + 1;
    }
}

/// The highest inode number in the subvolume `fd` is in (binary search, one item per probe).
fn highest_inode(fd: BorrowedFd<'_>) -> io::Result<u64> {
    let mut probe = TreeSearch::new(4096);
    let last = Key { objectid: LAST_INODE, item_type: u8::MAX as u32, offset: u64::MAX };
    let (mut present, mut absent) = (ROOT_DIR_INO, LAST_INODE + 1);
    while absent - present > 1 {
        let mid = present + (absent - present) / 2;
        let mut any = false;
        probe.batch(fd, Key { objectid: mid, item_type: 0, offset: 0 }, last, 0, 1, |_, _| any = true)?;
        if any {
            present = mid;
        } else {
            absent = mid;
        }
    }
    Ok(present)
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
        set.add_entry(&mut search, fd, &mut ancestry, 301, b"f").unwrap();
        set.add_entry(&mut search, fd, &mut ancestry, 300, b"g").unwrap();
        set.add_entry(&mut search, fd, &mut ancestry, ROOT_DIR_INO, b"top").unwrap();
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
    fn a_directory_with_too_many_names_is_read_whole() {
        // 256 (root) ─ a (300); a gets one name more than is kept one by one.
        let mut ancestry = Ancestry::default();
        ancestry.0.insert(300, (ROOT_DIR_INO, b"a".to_vec().into()));
        let fd = std::fs::File::open("/").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&fd);
        let mut search = TreeSearch::new(4096);
        let mut set = ChangedSet::default();
        for i in 0..MAX_NAMES_PER_DIR {
            set.add_entry(&mut search, fd, &mut ancestry, 300, format!("f{i}").as_bytes()).unwrap();
        }
        assert!(matches!(set.scope(300), Scope::Only(names) if names.len() == MAX_NAMES_PER_DIR));
        set.add_entry(&mut search, fd, &mut ancestry, 300, b"one more").unwrap();
        assert!(matches!(set.scope(300), Scope::Everything));
        assert!(!set.only.contains_key(&300), "its names are dropped");
        set.add_entry(&mut search, fd, &mut ancestry, 300, b"and another").unwrap();
        assert!(!set.only.contains_key(&300), "and no new ones kept");
        // The way to it stays marked.
        assert!(matches!(set.scope(ROOT_DIR_INO), Scope::Only(names) if names.len() == 1 && names.contains(&b"a"[..])));
    }

    #[test]
    fn a_directory_read_whole_keeps_no_names() {
        let mut ancestry = Ancestry::default();
        let fd = std::fs::File::open("/").unwrap();
        let fd = std::os::fd::AsFd::as_fd(&fd);
        let mut search = TreeSearch::new(4096);
        let mut set = ChangedSet::default();
        set.full.insert(300);
        // No look-up of 300's parent either: the (absent) filesystem would fail it.
        set.add_entry(&mut search, fd, &mut ancestry, 300, b"f").unwrap();
        assert!(set.only.is_empty());
    }

    #[test]
    fn links_keep_each_inodes_names() {
        let mut a = Links::default();
        a.push(257, 256, b"x");
        a.push(258, 256, b"y");
        a.push(258, 257, b"yy");
        let mut b = Links::default();
        b.push(300, 257, b"z");
        b.push(259, 256, b"w");
        a.append(b);
        a.retain(|ino| ino != 257);
        a.refs.sort_unstable_by_key(|r| r.0);
        let names = |ino| a.of(ino).map(|(d, n)| (d, String::from_utf8_lossy(n).into_owned())).collect::<Vec<_>>();
        assert_eq!(names(257), vec![]);
        let mut y = names(258);
        y.sort();
        assert_eq!(y, vec![(256, "y".to_string()), (257, "yy".to_string())]);
        assert_eq!(names(259), vec![(256, "w".to_string())]);
        assert_eq!(names(300), vec![(257, "z".to_string())]);
        assert_eq!(a.of(301).len(), 0);
    }

    #[test]
    fn ranges_cover_every_inode_number_once() {
        for (first, last, parts) in [(256, 256, 8), (256, 257, 8), (256, 100_000, 8), (256, 100_007, 3), (256, u64::MAX - 256, 16)] {
            let ranges = split_range(first, last, parts);
            assert!(ranges.len() as u64 <= parts, "{ranges:?}");
            assert_eq!(ranges.first().unwrap().0, first);
            assert_eq!(ranges.last().unwrap().1, last, "{ranges:?}");
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].1 + 1, pair[1].0, "{ranges:?}");
            }
        }
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
