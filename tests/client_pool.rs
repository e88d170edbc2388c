//! One client shared by many threads keeps to its bounded walker pool. In a test binary of its own:
//! it counts the process's walker threads, and other tests' clients would add theirs.

mod common;

use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rodiff::{Client, ClientOptions, Collect, ScanOptions};

fn with_metadata() -> ScanOptions {
    ScanOptions { metadata: true, ..Default::default() }
}

/// Threads of this process whose name starts with `prefix`.
fn threads_named(prefix: &str) -> usize {
    fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.starts_with(prefix))
        .count()
}

#[test]
fn threads_share_one_client_and_its_bounded_pool() {
    let dir = common::plain::tree(30, 50);
    let target = [common::plain::resolved(dir.path(), "plain")];
    let client = Client::new(ClientOptions { walkers: 2, ..Default::default() }).unwrap();
    let reference = {
        let collect = Collect::default();
        client.diff_resolved(&target, false, &with_metadata(), &collect).unwrap();
        collect.into_sorted()
    };
    assert!(reference.len() > 1500, "{} changes", reference.len());

    let most = AtomicUsize::new(0);
    let done = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..8 {
            s.spawn(|| {
                for _ in 0..5 {
                    let collect = Collect::default();
                    client.diff_resolved(&target, false, &with_metadata(), &collect).unwrap();
                    assert_eq!(collect.into_sorted(), reference, "a concurrent diff differs");
                }
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
        while done.load(Ordering::SeqCst) < 8 {
            most.fetch_max(threads_named("rodiff-walk"), Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(1));
        }
    });
    assert_eq!(client.walkers().threads(), 2);
    assert_eq!(most.load(Ordering::SeqCst), 2, "40 diffs on 8 threads use the client's 2 walker threads, no more");
    assert_eq!(threads_named("rodiff-io"), 1, "one I/O thread per client");
    drop(client);
}

