//! One client shared by many threads keeps to its bounded walker pool. In a test binary of its own:
//! it counts the process's walker threads, and other tests' clients would add theirs.

mod common;

use std::fs;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use rodiff::layer::{OverlayLayer, XattrNamespace};
use rodiff::{Client, ClientOptions, Collect, Layer, Processes, ResolvedContainer, ScanOptions};

/// A layer of `dirs` new directories of 50 files each over a small image.
fn tree(dirs: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::create_dir_all(&upper).unwrap();
    for d in 0..dirs {
        let sub = upper.join(format!("new{d}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..50 {
            fs::write(sub.join(f.to_string()), "").unwrap();
        }
    }
    dir
}

fn resolved(root: &Path) -> ResolvedContainer {
    ResolvedContainer {
        id: "0123".into(),
        name: "plain".into(),
        image: None,
        layer: Layer::Overlay(OverlayLayer { upper: root.join("upper"), lowers: vec![root.join("lower")], xattr: XattrNamespace::Trusted }),
        mount_destinations: Vec::new(),
        processes: Processes::none(&ClientOptions::default()),
    }
}

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
    let dir = tree(30);
    let target = [resolved(dir.path())];
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

