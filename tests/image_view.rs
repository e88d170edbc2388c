//! `Layer::image()`: what the planner learns about the image, by path, from an overlay lower stack
//! (whiteouts and opaque directories honoured, symlinks never followed) and from a plain directory
//! tree (a btrfs parent subvolume), checked against the same expectations.

mod common;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use common::*;
use rodiff::layer::image::ImageView;
use rodiff::layer::{BtrfsLayer, Layer, OverlayLayer, XattrNamespace};
use rodiff::FileType;

/// The image every view must show.
fn expect(view: &dyn ImageView) {
    let kind = |p: &str| view.stat(Path::new(p)).unwrap().map(|(t, _)| t);
    assert_eq!(kind("/etc/a"), Some(FileType::File));
    assert_eq!(kind("/etc/b"), None, "deleted in the top layer");
    assert_eq!(kind("/gone"), None);
    assert_eq!(kind("/gone/y"), None);
    assert_eq!(kind("/opq/x"), None, "hidden by the opaque directory");
    assert_eq!(kind("/opq/new"), Some(FileType::File));
    assert_eq!(kind("/var/run"), Some(FileType::Symlink));
    assert_eq!(kind("/var/run/lock"), None, "never through a symlink");
    assert_eq!(kind("/run/lock"), Some(FileType::Dir));
    assert_eq!(kind("/"), Some(FileType::Dir));

    let (_, svc) = view.stat(Path::new("/run/svc")).unwrap().unwrap();
    assert_eq!((svc.mode, svc.uid, svc.gid), (0o2750, 100, 4), "the top layer's owner and mode");

    let entries = |p: &str| view.has_entries(Path::new(p)).unwrap();
    assert!(entries("/etc") && entries("/run") && entries("/opq"));
    assert!(!entries("/run/lock") && !entries("/run/svc"));
    assert!(!entries("/gone") && !entries("/etc/a") && !entries("/var/run") && !entries("/absent"));
    assert!(!entries("/only-whiteouts"), "every lower entry is deleted above");

    // The directories in a directory (ownership evidence looks through a few this way).
    let subdirs = |p: &str| {
        let mut found: Vec<(String, u32, u32, u32)> = view
            .subdirs(Path::new(p))
            .unwrap()
            .into_iter()
            .map(|(path, m)| (path.to_str().unwrap().to_string(), m.mode, m.uid, m.gid))
            .collect();
        found.sort();
        found
    };
    let names = |p: &str| subdirs(p).into_iter().map(|(path, ..)| path).collect::<Vec<_>>();
    assert_eq!(names("/"), ["/etc", "/only-whiteouts", "/opq", "/run", "/var"], "/gone is deleted");
    assert_eq!(subdirs("/run")[1], ("/run/svc".to_string(), 0o2750, 100, 4), "the top layer's owner and mode");
    assert_eq!(names("/run"), ["/run/lock", "/run/svc"]);
    assert!(names("/var").is_empty(), "a symlink is not a directory");
    assert!(names("/var/run").is_empty() && names("/gone").is_empty() && names("/absent").is_empty() && names("/etc/a").is_empty());
    assert!(names("/opq").is_empty(), "files only, the lower one hidden");

    // Regular files, read from the layer that has them, never through a symlink.
    let read = |p: &str, max: usize| view.read_file(Path::new(p), max).unwrap();
    assert_eq!(read("/etc/a", 100).as_deref(), Some(&b"base"[..]));
    assert_eq!(read("/etc/a", 2).as_deref(), Some(&b"ba"[..]));
    assert_eq!(read("/opq/new", 100).as_deref(), Some(&b"top"[..]));
    for absent in ["/etc/b", "/opq/x", "/gone/y", "/run/lock", "/var/run", "/var/run/x", "/absent", "/absent/x"] {
        assert_eq!(read(absent, 100), None, "{absent}");
    }
}

/// A service's directory: owned by 100:4, mode 2750.
fn service_dir(path: &Path) {
    rustix::fs::chown(path, Some(rustix::fs::Uid::from_raw(100)), Some(rustix::fs::Gid::from_raw(4))).unwrap();
    fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o2750)).unwrap();
}

/// l1 (base) and l0 (top) as overlay lower layers.
fn lowers(root: &Path) -> Vec<PathBuf> {
    let (top, base) = (root.join("l0"), root.join("l1"));
    for d in ["etc", "gone", "opq", "run/lock", "run/svc", "var", "only-whiteouts"] {
        fs::create_dir_all(base.join(d)).unwrap();
    }
    for f in ["etc/a", "etc/b", "gone/y", "opq/x", "only-whiteouts/z"] {
        fs::write(base.join(f), "base").unwrap();
    }
    symlink("/run", base.join("var/run")).unwrap();
    for d in ["opq", "run/svc", "only-whiteouts"] {
        fs::create_dir_all(top.join(d)).unwrap();
    }
    fs::create_dir(top.join("etc")).unwrap();
    whiteout(&top.join("etc/b"));
    whiteout(&top.join("gone"));
    whiteout(&top.join("only-whiteouts/z"));
    set_xattr(&top.join("opq"), "trusted.overlay.opaque", b"y");
    fs::write(top.join("opq/new"), "top").unwrap();
    service_dir(&top.join("run/svc"));
    vec![top, base]
}

#[test]
fn overlay_lower_stack() {
    if !require(is_root(), "root (whiteouts are character devices, opaque markers trusted xattrs)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layer = Layer::Overlay(OverlayLayer {
        upper: dir.path().join("upper"),
        lowers: lowers(dir.path()),
        xattr: XattrNamespace::Trusted,
    });
    expect(layer.image().unwrap().as_ref());
}

#[test]
fn plain_directory_tree() {
    if !require(is_root(), "root (owners of the image's files)") {
        return;
    }
    // The same image, flattened as a btrfs parent subvolume holds it.
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("parent");
    for d in ["etc", "opq", "run/lock", "run/svc", "var", "only-whiteouts"] {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    fs::write(root.join("etc/a"), "base").unwrap();
    fs::write(root.join("opq/new"), "top").unwrap();
    symlink("/run", root.join("var/run")).unwrap();
    service_dir(&root.join("run/svc"));
    let layer = Layer::Btrfs(BtrfsLayer { subvolume: dir.path().join("container"), parent: root });
    expect(layer.image().unwrap().as_ref());
}
