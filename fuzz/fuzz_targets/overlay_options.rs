//! A containerd snapshot's mount options (overlay, bind, btrfs) and `overlay.redirect` values: the
//! first come from the runtime, the second from xattrs a rootless container's user can write.
//!
//! Invariants: never panics; an accepted overlay has an upper directory and at least one lower
//! directory, each named by an option; an accepted redirect has no empty, `.` or `..` component and
//! no NUL, and a relative one is a single name.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rodiff::fuzzing::{parse_redirect, parse_snapshot_mounts, SnapshotFiles, SnapshotMount};

fuzz_target!(|data: &[u8]| {
    // Redirect: the whole input.
    match parse_redirect(data) {
        Ok((absolute, components)) => {
            assert!(!data.contains(&0));
            assert_eq!(absolute, data.starts_with(b"/"));
            assert!(!components.is_empty());
            if !absolute {
                assert_eq!(components.len(), 1);
            }
            for c in &components {
                let c = c.as_bytes();
                assert!(!c.is_empty() && c != b"." && c != b".." && !c.contains(&b'/'));
            }
            let joined = components.iter().map(|c| c.as_bytes()).collect::<Vec<_>>().join(&b'/');
            assert_eq!(&joined[..], if absolute { &data[1..] } else { data });
        }
        Err(why) => assert!(!why.is_empty()),
    }

    // Mounts: lines are mounts; in each, `type source opt,opt,...` (fields split by tabs so that
    // options may hold spaces and commas may be tested inside values too, with `\x1f`).
    let Ok(text) = std::str::from_utf8(data) else { return };
    let mounts: Vec<SnapshotMount> = text
        .lines()
        .map(|line| {
            let mut fields = line.splitn(3, '\t');
            SnapshotMount {
                kind: fields.next().unwrap_or_default().to_string(),
                source: fields.next().unwrap_or_default().to_string(),
                options: fields.next().map(|o| o.split('\x1f').map(str::to_string).collect()).unwrap_or_default(),
            }
        })
        .collect();
    match parse_snapshot_mounts(&mounts) {
        Ok(SnapshotFiles::Overlay { upper, lowers, .. }) => {
            let m = &mounts[0];
            if m.kind == "overlay" {
                assert!(!lowers.is_empty());
                assert!(m.options.iter().any(|o| o.strip_prefix("upperdir=") == upper.to_str()));
                for lower in &lowers {
                    assert!(!lower.as_os_str().is_empty());
                }
            } else {
                assert!(lowers.is_empty());
                assert_eq!(upper.to_str(), Some(m.source.as_str()));
                assert!(m.options.iter().any(|o| o == "rw"));
            }
        }
        Ok(SnapshotFiles::Btrfs { device, subvolid }) => {
            let m = &mounts[0];
            assert_eq!(device, m.source);
            assert!(m.options.contains(&format!("subvolid={subvolid}")) || m.options.iter().any(|o| o.starts_with("subvolid=")));
        }
        Err(why) => assert!(!why.is_empty()),
    }
});
