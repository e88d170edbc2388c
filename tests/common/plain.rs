//! Overlay layers made of plain directories (no mount, no daemon), resolved as a runtime would hand
//! them over: for tests of the client and the engines that need no container.

use std::fs;
use std::path::Path;

use rodiff::layer::{OverlayLayer, XattrNamespace};
use rodiff::{ClientOptions, Layer, Origin, Processes, ResolvedContainer};

/// A layer of `dirs` new directories of `files` files each, over a small image.
pub fn tree(dirs: usize, files: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::write(lower.join("etc/conf"), "x").unwrap();
    fs::create_dir_all(upper.join("etc")).unwrap();
    fs::write(upper.join("etc/conf"), "changed").unwrap();
    for d in 0..dirs {
        let sub = upper.join(format!("new{d}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..files {
            fs::write(sub.join(f.to_string()), "").unwrap();
        }
    }
    dir
}

/// The tree as a resolved container named `name`.
pub fn resolved(root: &Path, name: &str) -> ResolvedContainer {
    ResolvedContainer {
        id: format!("id-{name}"),
        name: name.into(),
        image: None,
        layer: Layer::Overlay(OverlayLayer { upper: root.join("upper"), lowers: vec![root.join("lower")], xattr: XattrNamespace::Trusted }),
        mount_destinations: Vec::new(),
        runtime_entries: Vec::new(),
        dialect: rodiff::dialect::Dialect::Docker,
        processes: Processes::none(&ClientOptions::default()),
        origin: Origin::Unknown,
        user: None,
    }
}
