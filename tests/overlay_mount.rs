//! The overlay engine on real overlayfs mounts made by the test (needs root), including what
//! Docker never produces by default: `redirect_dir=on,metacopy=on` and `userxattr` mounts.
//!
//! Each test builds an image from two lower layers (with a lower whiteout and a lower opaque
//! directory), mounts it, changes files through the mount like a container would, and compares
//! the engine's answer with an independent two-tree comparison of the mounted image and container
//! views (`common::naive`), plus explicit checks of what only rodiff sees (kind `T`).

mod common;

use std::fs;
use std::path::Path;

use common::*;
use rodiff::model::{ChangeKind, FileType};

/// Two lower layers: l0 (top) deletes `/gone` and makes `/opq` opaque over l1's content.
fn image(lowers: &[std::path::PathBuf], ns: &str) {
    let (top, base) = (&lowers[0], &lowers[1]);
    ops::base_tree(base);
    // The top layer: a whiteout for /gone, an opaque /opq with new content, a changed file.
    whiteout(&top.join("gone"));
    fs::create_dir(top.join("opq")).unwrap();
    set_xattr(&top.join("opq"), &format!("{ns}.overlay.opaque"), b"y");
    fs::write(top.join("opq/visible"), "top\n").unwrap();
    fs::create_dir_all(top.join("srv/data")).unwrap();
    fs::write(top.join("srv/data/c"), "top c\n").unwrap();
    ops::set_old_mtimes(base);
    ops::set_old_mtimes(top);
}

fn check_against_naive(m: &mut OverlayMount) -> Vec<rodiff::Change> {
    let expected = naive::diff(&m.merged, &m.image);
    let changes = engine_diff(&m.layer());
    let got = docker_visible(&changes);
    let show = |s: &std::collections::BTreeSet<(char, Vec<u8>)>| {
        s.iter().map(|(k, p)| format!("{k} {}", String::from_utf8_lossy(p))).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(got, expected, "engine:\n{}\n\nnaive oracle:\n{}", show(&got), show(&expected));
    // The engine reads the upper directory only; it must give the same answer unmounted.
    m.unmount();
    assert_eq!(docker_visible(&engine_diff(&m.layer())), expected);
    changes
}

fn touched(changes: &[rodiff::Change]) -> Vec<String> {
    paths_of(changes, ChangeKind::Touched)
}

#[test]
fn default_mount_matches_the_naive_oracle() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let mut m = OverlayMount::new(2, |l| image(l, "trusted"));
    m.mount("redirect_dir=off,index=off,metacopy=off");
    ops::container_writes(&m.merged, false);
    let changes = check_against_naive(&mut m);
    // The hard link copied its target up unchanged.
    assert_eq!(touched(&changes), vec!["/srv/data/c", "/tmp", "/var/log/old.log"]);
    let fifo = changes.iter().find(|c| c.path == Path::new("/srv/fifo")).unwrap();
    assert_eq!(fifo.file_type, FileType::Fifo);
}

#[test]
fn redirect_dir_and_metacopy_mount_matches_the_naive_oracle() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let mut m = OverlayMount::new(2, |l| image(l, "trusted"));
    m.mount("redirect_dir=on,metacopy=on,index=off");
    ops::container_writes(&m.merged, true);
    // The renames must really have produced redirects and metacopy files, or this test tests
    // nothing new.
    let redirect = rustix::fs::lgetxattr(m.upper.join("srv/renamed"), "trusted.overlay.redirect", &mut [0u8; 256][..]);
    assert!(redirect.is_ok(), "no redirect xattr on the renamed directory");
    let metacopy = rustix::fs::lgetxattr(m.upper.join("etc/conf"), "trusted.overlay.metacopy", &mut [0u8; 256][..]);
    assert!(metacopy.is_ok(), "chmod did not make a metacopy file");
    let changes = check_against_naive(&mut m);
    // The renamed directory carries the lower content: reported as added, with its content.
    let added = paths_of(&changes, ChangeKind::Added);
    assert!(added.contains(&"/srv/renamed/inner/f".to_string()), "{added:?}");
    assert!(added.contains(&"/srv/x-top/y/z".to_string()), "{added:?}");
    assert!(paths_of(&changes, ChangeKind::Deleted).contains(&"/srv/ren".to_string()));
}

#[test]
fn userxattr_mount_matches_the_naive_oracle() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let mut m = OverlayMount::new(2, |l| image(l, "user"));
    m.mount("userxattr");
    ops::container_writes(&m.merged, false);
    let opaque = rustix::fs::lgetxattr(m.upper.join("opq"), "user.overlay.opaque", &mut [0u8; 8][..]);
    assert!(opaque.is_ok(), "re-created directory is not opaque in the user namespace");
    let changes = check_against_naive(&mut m);
    assert_eq!(touched(&changes), vec!["/srv/data/c", "/tmp", "/var/log/old.log"]);
}

#[test]
fn deeper_than_path_max() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let mut m = OverlayMount::new(1, |l| fs::create_dir(l[0].join("deep")).unwrap());
    m.mount("");
    // 3000 levels of 2-byte names: 6000 bytes, more than PATH_MAX; built with relative steps.
    let name = std::ffi::CString::new("dd").unwrap();
    let mut fd = rustix::fs::open(m.at("deep"), rustix::fs::OFlags::DIRECTORY, 0.into()).unwrap();
    for _ in 0..3000 {
        rustix::fs::mkdirat(&fd, name.as_c_str(), 0o755.into()).unwrap();
        fd = rustix::fs::openat(&fd, name.as_c_str(), rustix::fs::OFlags::DIRECTORY, 0.into()).unwrap();
    }
    let f = rustix::fs::openat(&fd, c"leaf", rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY, 0o644.into()).unwrap();
    drop((f, fd));
    m.unmount();
    let changes = engine_diff(&m.layer());
    assert_eq!(changes.len(), 3002, "3000 dirs, the leaf and C /deep");
    let leaf = changes.iter().find(|c| c.path_bytes().ends_with(b"/leaf")).unwrap();
    assert_eq!(leaf.path_bytes().len(), "/deep".len() + 3000 * 3 + "/leaf".len());
    assert_eq!(leaf.kind, ChangeKind::Added);
}
