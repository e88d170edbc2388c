//! fanotify read buffers (`FAN_REPORT_DFID_NAME`): event metadata and info records, whose names a
//! container chose.
//!
//! Invariants: never panics; events and records lie inside the buffer and follow each other
//! without overlap; every directory handle has its 4-byte type (what decoding it needs); names hold
//! no NUL.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rodiff::fuzzing::{walk_fanotify_events, walk_fanotify_records};

fuzz_target!(|data: &[u8]| {
    let mut consumed = 0usize;
    let _ = walk_fanotify_events(data, |_mask, _fd, info| {
        // Descriptors are not closed here: this process owns none of them.
        consumed += 24 + info.len();
        assert!(consumed <= data.len());
        check_records(info);
    });
    // The whole input as one event's records.
    check_records(data);
});

fn check_records(info: &[u8]) {
    let mut bytes = 0usize;
    walk_fanotify_records(info, |handle, name| {
        assert!(handle.len() >= 4);
        assert!(!name.contains(&0));
        bytes += handle.len() + name.len();
        assert!(bytes <= info.len() + 1);
    });
}
