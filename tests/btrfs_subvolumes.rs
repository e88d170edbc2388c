//! The btrfs engine on real subvolumes made by the test (needs root): an image subvolume, an
//! `-init`-like writable snapshot of it, and a container snapshot of that, changed with the
//! corpus of file operations. The engine's answer is compared with an independent two-tree
//! comparison of the container and parent subvolumes (`common::naive`); helper snapshots must
//! never survive, and stale ones from a killed run are swept.

mod common;

use std::fs;
use std::process::Command;

use common::btrfs::BtrfsFs;
use common::*;
use rodiff::layer::{BtrfsLayer, Collect, Layer, ScanOptions};
use rodiff::model::ChangeKind;

fn engine(layer: &BtrfsLayer) -> Vec<rodiff::Change> {
    let collect = Collect::default();
    Layer::Btrfs(layer.clone()).diff(&ScanOptions { metadata: true, ..Default::default() }, &collect).expect("btrfs diff");
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
