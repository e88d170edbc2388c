//! btrfs `TREE_SEARCH_V2` result buffers and the items in them (inode items, inode refs and
//! extrefs): bytes from the kernel, whose names a container chose.
//!
//! Invariants: never panics, never reads past the buffer (a buffer shorter than its headers
//! announce is an error); every item's data lies inside the buffer; every name of a ref lies inside
//! the item's data, and the names together never exceed it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rodiff::fuzzing::{parse_refs, walk_search_buffer, InodeItem, Key, INODE_EXTREF, INODE_ITEM, INODE_REF};

fuzz_target!(|data: &[u8]| {
    // First byte: how many items the ioctl says it returned.
    let Some((&count, buf)) = data.split_first() else { return };
    let mut seen = 0usize;
    let mut total = 0usize;
    let walked = walk_search_buffer(buf, count as usize, |key, item| {
        seen += 1;
        total += 32 + item.len();
        assert!(total <= buf.len());
        check_item(key, item);
    });
    match walked {
        Ok(last) => {
            assert_eq!(seen, count as usize);
            assert_eq!(last.is_some(), count > 0);
        }
        Err(_) => assert!(seen < count as usize),
    }
    // The whole input as one item of each kind.
    for item_type in [INODE_ITEM, INODE_REF, INODE_EXTREF] {
        check_item(Key { objectid: 257, item_type, offset: 256 }, data);
    }
});

fn check_item(key: Key, item: &[u8]) {
    match key.item_type {
        INODE_ITEM => {
            let parsed = InodeItem::parse(item);
            assert_eq!(parsed.is_some(), item.len() >= 160);
            if let Some(inode) = parsed {
                assert!(!inode.differs_from(&inode));
                let _ = inode.is_dir();
            }
        }
        _ => {
            let refs = parse_refs(key, item);
            let header = if key.item_type == INODE_REF { 10 } else { 18 };
            let names: usize = refs.iter().map(|(_, name)| header + name.len()).sum();
            assert!(names <= item.len());
            if key.item_type == INODE_REF {
                assert!(refs.iter().all(|(parent, _)| *parent == key.offset));
            }
        }
    }
}
