//! The btrfs engine on real subvolumes made by the test (needs root): an image subvolume, an
//! `-init`-like writable snapshot of it, and a container snapshot of that, changed with the
//! corpus of file operations. The engine's answer is compared with an independent two-tree
//! comparison of the container and parent subvolumes (`common::naive`); helper snapshots must
//! never survive, and stale ones from a killed run are swept.

mod common;

use std::fs;
use std::process::Command;

use common::btrfs::{read_everything, BtrfsFs};
use common::*;
use rodiff::layer::{BtrfsLayer, Collect, Layer, ScanOptions};
use rodiff::model::ChangeKind;

fn engine(layer: &BtrfsLayer) -> Vec<rodiff::Change> {
    let collect = Collect::default();
    Layer::Btrfs(layer.clone()).diff(common::walkers(), &ScanOptions { metadata: true, ..Default::default() }, &collect).expect("btrfs diff");
    collect.into_sorted()
}

/// image → init (writable snapshot, like Docker's `-init`) → container (snapshot of init).
fn layers(fs: &BtrfsFs, image_files: usize) -> BtrfsLayer {
    let image = fs.subvolume("image");
    ops::base_tree(&image);
    // What the overlay test's upper image layer does: /gone and /opq/hidden are not in the image.
    fs::remove_dir_all(image.join("gone")).unwrap();
    fs::remove_file(image.join("opq/hidden")).unwrap();
    fs::create_dir(image.join("bulk")).unwrap();
    for i in 0..image_files {
        fs::write(image.join("bulk").join(i.to_string()), "").unwrap();
    }
    ops::set_old_mtimes(&image);
    let init = fs.snapshot(&image, "init", false);
    fs::write(init.join("etc/hostname"), "").unwrap();
    let container = fs.snapshot(&init, "container", false);
    BtrfsLayer { subvolume: container, parent: init }
}

#[test]
fn corpus_matches_the_naive_oracle() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let layer = layers(&fs, 2000);
    ops::container_writes(&layer.subvolume, true);
    let changes = engine(&layer);
    let expected = naive::diff(&layer.subvolume, &layer.parent);
    let got = docker_visible(&changes);
    let show = |s: &std::collections::BTreeSet<(char, Vec<u8>)>| {
        s.iter().map(|(k, p)| format!("{k} {}", String::from_utf8_lossy(p))).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(got, expected, "engine:\n{}\n\nnaive oracle:\n{}", show(&got), show(&expected));
    assert!(expected.len() > 30, "the corpus makes many changes");
    // btrfs has no copy-up: only a directory whose mtime alone changed is touched.
    assert_eq!(paths_of(&changes, ChangeKind::Touched), vec!["/tmp"]);
    assert!(fs.helper_snapshots().is_empty(), "helper snapshot left: {:?}", fs.helper_snapshots());
}

#[test]
fn an_unchanged_container_has_no_changes_and_an_untouched_parent_is_not_read() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let layer = layers(&fs, 100);
    assert!(engine(&layer).is_empty());
    // One change deep in a big directory: only that entry and the directories above it.
    fs::write(layer.subvolume.join("bulk/42"), "now with content").unwrap();
    let changes = engine(&layer);
    let got: Vec<(char, String)> = changes.iter().map(|c| (c.kind.letter(), c.path.display().to_string())).collect();
    assert_eq!(got, vec![('C', "/bulk".to_string()), ('C', "/bulk/42".to_string())]);
}

#[test]
fn stale_helper_snapshots_of_dead_processes_are_swept() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let layer = layers(&fs, 10);
    // A run killed with SIGKILL leaves its snapshot; pid 4194305 exceeds pid_max, so it is dead.
    fs::create_dir(fs.mnt.join(".rodiff-snapshots")).unwrap();
    let stale = fs.snapshot(&layer.subvolume, ".rodiff-snapshots/rodiff-4194305-1-0", true);
    let other = fs.snapshot(&layer.subvolume, ".rodiff-snapshots/not-a-rodiff-snapshot", true);
    engine(&layer);
    assert!(!stale.exists(), "stale helper snapshot not swept");
    assert!(other.exists(), "swept something that is not ours");
    run(Command::new("btrfs").args(["-q", "subvolume", "delete"]).arg(&other));
    assert!(fs.helper_snapshots().is_empty());
}

fn engine_counting(layer: &BtrfsLayer) -> (Vec<rodiff::Change>, u64) {
    let collect = Collect::default();
    let scan = ScanOptions { metadata: true, ..Default::default() };
    Layer::Btrfs(layer.clone()).diff(common::walkers(), &scan, &collect).expect("btrfs diff");
    (collect.into_sorted(), scan.progress.get())
}

fn kinds(changes: &[rodiff::Change]) -> Vec<(char, String)> {
    changes.iter().map(|c| (c.kind.letter(), c.path.display().to_string())).collect()
}

/// Replaces the container subvolume of `layer` by a fresh snapshot of its parent.
fn fresh_container(fs: &BtrfsFs, layer: BtrfsLayer) -> BtrfsLayer {
    run(Command::new("btrfs").args(["-q", "subvolume", "delete"]).arg(&layer.subvolume));
    BtrfsLayer { subvolume: fs.snapshot(&layer.parent, "container", false), ..layer }
}

#[test]
fn reads_are_not_changes_and_the_walk_follows_the_changes() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let layer = layers(&fs, 0);
    // A big image: 40 directories of 500 files each, with content (as an application's files).
    for d in 0..40 {
        let dir = layer.parent.join(format!("app/d{d}"));
        fs::create_dir_all(&dir).unwrap();
        for f in 0..500 {
            fs::write(dir.join(f.to_string()), "x").unwrap();
        }
    }
    ops::set_old_mtimes(&layer.parent);
    let layer = fresh_container(&fs, layer);
    // A few real changes.
    fs::write(layer.subvolume.join("app/d3/7"), "changed").unwrap();
    fs::remove_file(layer.subvolume.join("app/d9/9")).unwrap();
    fs::write(layer.subvolume.join("app/d20/new"), "").unwrap();
    std::os::unix::fs::chown(layer.subvolume.join("app/d30/30"), Some(1), Some(1)).unwrap();

    let (before, visited_before) = engine_counting(&layer);
    let sample = layer.subvolume.join("app/d17/17");
    let atime = |p: &std::path::Path| std::os::unix::fs::MetadataExt::atime(&fs::metadata(p).unwrap());
    let atime_before = atime(&sample);
    read_everything(&layer.subvolume);
    assert_ne!(atime(&sample), atime_before, "the reads must have rewritten inode items (relatime)");

    let (after, visited_after) = engine_counting(&layer);
    assert_eq!(kinds(&after), kinds(&before), "reads changed the diff");
    assert_eq!(
        kinds(&before),
        vec![
            ('C', "/app".into()),
            ('C', "/app/d20".into()),
            ('A', "/app/d20/new".into()),
            ('C', "/app/d3".into()),
            ('C', "/app/d3/7".into()),
            ('C', "/app/d30".into()),
            ('C', "/app/d30/30".into()),
            ('C', "/app/d9".into()),
            ('D', "/app/d9/9".into()),
        ]
    );
    // The walk visits what changed: the four directories with changes, listed in full (2,000
    // entries), and the names leading to them — never the 20,000 the reads touched.
    assert!(visited_before > 0 && visited_before <= 2_100, "walk visited {visited_before} entries");
    assert_eq!(visited_after, visited_before, "reads made the walk visit more");
}

#[test]
fn every_link_of_a_changed_inode_is_reported() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let layer = layers(&fs, 0);
    // One file linked from 1,500 directories: its back references span many b-tree leaves, and
    // a chmod rewrites only the leaf that holds its inode item.
    let hl = layer.parent.join("hl");
    fs::create_dir(&hl).unwrap();
    fs::write(hl.join("f"), "shared").unwrap();
    for i in 0..1500 {
        fs::create_dir(hl.join(format!("d{i:04}"))).unwrap();
        fs::hard_link(hl.join("f"), hl.join(format!("d{i:04}/link"))).unwrap();
    }
    ops::set_old_mtimes(&layer.parent);
    let layer = fresh_container(&fs, layer);
    fs::set_permissions(layer.subvolume.join("hl/f"), std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();

    let changes = engine(&layer);
    let expected = naive::diff(&layer.subvolume, &layer.parent);
    assert_eq!(expected.len(), 1 + 1 + 1500 * 2, "the oracle sees every link and its directory");
    assert_eq!(docker_visible(&changes), expected);
}

#[test]
fn a_tree_deeper_than_path_max_is_diffed() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    // A descriptor per level is open during the walk: as an embedder must, raise the limit.
    rodiff::raise_fd_limit();
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let fs = BtrfsFs::new();
    let layer = layers(&fs, 0);
    // 1,500 levels of 8-byte names: a 13,500-byte path, beyond PATH_MAX and INO_LOOKUP's 4,080
    // bytes. A container can make such a tree; it must not make its own diff impossible.
    const DEPTH: usize = 1500;
    let descend = |root: &std::path::Path, create: bool| {
        let mut dir = openat(rustix::fs::CWD, root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        for _ in 0..DEPTH {
            if create {
                mkdirat(&dir, "deep0000", Mode::from_raw_mode(0o755)).unwrap();
            }
            dir = openat(&dir, "deep0000", OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        }
        dir
    };
    drop(descend(&layer.parent, true));
    let layer = fresh_container(&fs, layer);
    let bottom = descend(&layer.subvolume, false);
    drop(openat(&bottom, "leaf", OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o644)).unwrap());

    let changes = engine(&layer);
    let added: Vec<_> = changes.iter().filter(|c| c.kind == ChangeKind::Added).collect();
    assert_eq!(added.len(), 1);
    assert_eq!(added[0].path.as_os_str().len(), DEPTH * 9 + "/leaf".len());
    // Every directory on the way is `C` (something below changed), nothing else is reported.
    assert_eq!(changes.iter().filter(|c| c.kind == ChangeKind::Changed).count(), DEPTH);
    assert_eq!(changes.len(), DEPTH + 1);
}

#[test]
fn a_helper_snapshot_deleted_during_the_scan_is_an_error_never_a_shorter_list() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let layer = layers(&fs, 0);
    // Enough changes that a scan takes a while, all in the subvolume's root directory: a deleted
    // subvolume's root refuses look-ups (`S_DEAD`), and a scan with metadata looks up each entry.
    for f in 0..20_000 {
        fs::write(layer.subvolume.join(format!("new{f}")), "").unwrap();
    }
    let expected = docker_visible(&engine(&layer));
    assert!(expected.len() >= 20_000);

    // Another process deletes whatever helper snapshot it sees, as a sweep that wrongly thinks
    // the owner is dead would.
    let helpers = fs.mnt.join(rodiff::layer::btrfs::helper::HELPER_DIR);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let deleter = {
        let (stop, helpers) = (stop.clone(), helpers.clone());
        std::thread::spawn(move || {
            // Each helper snapshot lives a different while (0 to 200 ms), so that deletions land
            // before, during and after the walk.
            let (mut deleted, mut seen) = (0, 0u64);
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                for entry in fs::read_dir(&helpers).into_iter().flatten().flatten() {
                    std::thread::sleep(std::time::Duration::from_millis(seen * 23 % 200));
                    seen += 1;
                    deleted += delete_subvolume(&helpers, &entry.file_name()) as u32;
                }
            }
            deleted
        })
    };
    let mut errors = 0;
    for _ in 0..30 {
        let collect = Collect::default();
        match Layer::Btrfs(layer.clone()).diff(common::walkers(), &ScanOptions { metadata: true, ..Default::default() }, &collect) {
            Ok(()) => assert_eq!(docker_visible(&collect.into_sorted()), expected, "a scan succeeded with a partial list"),
            Err(e) => {
                assert!(matches!(e, rodiff::Error::SnapshotVanished { .. } | rodiff::Error::Io { .. }), "{e}");
                errors += 1;
            }
        }
        if errors >= 10 {
            break;
        }
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let deleted = deleter.join().unwrap();
    assert!(deleted > 0 && errors > 0, "the race never happened ({deleted} deletions, {errors} errors)");
}

#[test]
fn a_helper_snapshot_whose_owner_holds_the_lock_is_never_swept() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let layer = layers(&fs, 10);
    // A rodiff in another PID namespace (a node agent) holds a helper snapshot: its pid means
    // nothing here (pid 1 runs, with another start time), only its lock on the directory counts.
    let helpers = fs.mnt.join(rodiff::layer::btrfs::helper::HELPER_DIR);
    fs::create_dir(&helpers).unwrap();
    let theirs = fs.snapshot(&layer.subvolume, ".rodiff-snapshots/rodiff-1-1-0", true);
    let lock = fs::File::open(&helpers).unwrap();
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockShared).unwrap();
    engine(&layer);
    assert!(theirs.exists(), "swept a helper snapshot whose owner holds the lock");
    // The owner is gone (its lock with it): the next scan sweeps the leftover.
    drop(lock);
    engine(&layer);
    assert!(!theirs.exists(), "leftover helper snapshot not swept");
    assert!(fs.helper_snapshots().is_empty());
}

/// `BTRFS_IOC_SNAP_DESTROY` of `name` in `dir`, directly: as fast as a racing process can be.
fn delete_subvolume(dir: &std::path::Path, name: &std::ffi::OsStr) -> bool {
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    const SNAP_DESTROY: libc::c_ulong = 0x5000_940f;
    let Ok(dir) = fs::File::open(dir) else { return false };
    // struct btrfs_ioctl_vol_args { s64 fd; char name[4088]; }
    let mut args = vec![0u8; 4096];
    args[8..8 + name.len()].copy_from_slice(name.as_bytes());
    // SAFETY: the buffer has the size the ioctl number encodes.
    unsafe { libc::ioctl(dir.as_raw_fd(), SNAP_DESTROY, args.as_mut_ptr()) == 0 }
}
