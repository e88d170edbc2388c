//! Helper-snapshot names across PID namespaces (found by an adversarial review): pids repeat
//! across PID namespaces, so another rodiff may hold a helper snapshot named
//! `rodiff-<our pid>-<our start time>-0`. Our diff must neither collide with it nor delete it.
//! One test in its own binary: the helper sequence number of this process is still 0.

mod common;

use std::process::Command;

use common::btrfs::BtrfsFs;
use common::*;
use rodiff::layer::{BtrfsLayer, Collect, Layer, ScanOptions};

#[test]
fn a_helper_snapshot_of_another_namespace_with_the_same_name_is_never_deleted() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let image = fs.subvolume("image");
    std::fs::write(image.join("f"), "x").unwrap();
    let init = fs.snapshot(&image, "init", false);
    let container = fs.snapshot(&init, "container", false);
    std::fs::write(container.join("g"), "y").unwrap();

    // The other rodiff: same pid number and start time in its own PID namespace, sequence 0,
    // holding its helper snapshot under the shared lock.
    let me = std::process::id();
    let stat = std::fs::read_to_string(format!("/proc/{me}/stat")).unwrap();
    let start: u64 = stat.rsplit_once(')').unwrap().1.split_whitespace().nth(19).unwrap().parse().unwrap();
    let dir = fs.mnt.join(rodiff::layer::btrfs::helper::HELPER_DIR);
    std::fs::create_dir(&dir).unwrap();
    let name = format!("rodiff-{me}-{start}-0");
    let theirs = fs.snapshot(&container, &format!("{}/{name}", rodiff::layer::btrfs::helper::HELPER_DIR), true);
    let lock = std::fs::File::open(&dir).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared).unwrap();

    let result = Layer::Btrfs(BtrfsLayer { subvolume: container, parent: init }).diff(common::walkers(), &ScanOptions::default(), &Collect::default());
    // Ours has a name of its own: the diff works.
    assert!(result.is_ok(), "{:?}", result.err().map(|e| e.to_string()));
    let survived = theirs.exists();
    drop(lock);
    if survived {
        run(Command::new("btrfs").args(["-q", "subvolume", "delete"]).arg(&theirs));
    }
    assert!(survived, "the other process's helper snapshot {name} was deleted while it held the lock");
    assert!(fs.helper_snapshots().is_empty(), "left behind: {:?}", fs.helper_snapshots());
}
