//! Shared helpers for rodiff's integration tests.
#![allow(dead_code)]

pub mod btrfs;
pub mod containerd;
pub mod corpus;
pub mod docker;
pub mod live;
pub mod naive;
pub mod ops;
pub mod plain;
pub mod subject;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rodiff::layer::{Collect, Layer, OverlayLayer, ScanOptions, XattrNamespace};
use rodiff::model::{Change, ChangeKind};

/// Skips a test whose prerequisite is missing — but only outside CI: under `CI=true` every test
/// must run, so a missing prerequisite is a failure.
pub fn require(condition: bool, what: &str) -> bool {
    if condition {
        return true;
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what} is required under CI=true");
    }
    eprintln!("skipping: {what} is not available");
    false
}

/// Whether we run as root (real overlay mounts need it).
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Runs a command, panicking with its output when it fails.
pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A path from raw bytes.
pub fn bpath(bytes: &[u8]) -> PathBuf {
    PathBuf::from(OsStr::from_bytes(bytes))
}

/// Client options for `runtime` the way the CLI makes them: the endpoints from `$DOCKER_HOST` and
/// `$CONTAINERD_ADDRESS` (the sandbox sets them), else the defaults. The library reads neither.
pub fn client_options(runtime: rodiff::Runtime) -> rodiff::ClientOptions {
    let mut options = rodiff::ClientOptions { runtime, ..Default::default() };
    if let Ok(host) = std::env::var("DOCKER_HOST") {
        options.docker_host = host;
    }
    if let Ok(address) = std::env::var("CONTAINERD_ADDRESS") {
        options.containerd_address = address;
    }
    options
}

/// One walker pool for all the engine calls of a test binary.
pub fn walkers() -> &'static rodiff::Walkers {
    static WALKERS: std::sync::OnceLock<rodiff::Walkers> = std::sync::OnceLock::new();
    WALKERS.get_or_init(|| rodiff::Walkers::new(0).expect("walker threads"))
}

/// Runs the overlay engine on a layer and returns every change, sorted by path.
pub fn engine_diff(layer: &OverlayLayer) -> Vec<Change> {
    let collect = Collect::default();
    Layer::Overlay(layer.clone())
        .diff(walkers(), &ScanOptions { metadata: true, ..Default::default() }, &collect)
        .expect("engine diff");
    collect.into_sorted()
}

/// The `A`/`C`/`D` changes of a diff as `(kind letter, path bytes)`, what `docker diff` can see.
pub fn docker_visible(changes: &[Change]) -> std::collections::BTreeSet<(char, Vec<u8>)> {
    changes
        .iter()
        .filter(|c| c.kind.visible_to_docker())
        .map(|c| (c.kind.letter(), c.path_bytes().to_vec()))
        .collect()
}

/// The paths reported with kind `kind`.
pub fn paths_of(changes: &[Change], kind: ChangeKind) -> Vec<String> {
    changes.iter().filter(|c| c.kind == kind).map(|c| c.path.to_string_lossy().into_owned()).collect()
}

/// A real overlayfs mount over lower layers made by the test, unmounted on drop.
pub struct OverlayMount {
    pub dir: tempfile::TempDir,
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub merged: PathBuf,
    /// A read-only mount of the lower layers alone: the image as the container started with it.
    pub image: PathBuf,
    pub xattr: XattrNamespace,
    mounted: Vec<PathBuf>,
}

impl OverlayMount {
    /// Makes `layers` empty lower directories (topmost first) and lets `fill` populate them.
    pub fn new(layers: usize, fill: impl FnOnce(&[PathBuf])) -> OverlayMount {
        let dir = tempfile::Builder::new().prefix("rodiff-ovl.").tempdir_in("/tmp").unwrap();
        let lowers: Vec<PathBuf> = (0..layers).map(|i| dir.path().join(format!("l{i}"))).collect();
        for l in &lowers {
            std::fs::create_dir(l).unwrap();
        }
        fill(&lowers);
        let upper = dir.path().join("upper");
        let merged = dir.path().join("merged");
        let image = dir.path().join("image");
        for d in [&upper, &merged, &image, &dir.path().join("work")] {
            std::fs::create_dir(d).unwrap();
        }
        OverlayMount { dir, lowers, upper, merged, image, xattr: XattrNamespace::Trusted, mounted: Vec::new() }
    }

    /// Mounts the container view (`merged`) with extra options, and the image view.
    pub fn mount(&mut self, extra: &str) {
        if extra.contains("userxattr") {
            self.xattr = XattrNamespace::User;
        }
        let lowerdir = self.lowers.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(":");
        let mut opts = format!(
            "lowerdir={lowerdir},upperdir={},workdir={}",
            self.upper.display(),
            self.dir.path().join("work").display()
        );
        if !extra.is_empty() {
            opts = format!("{opts},{extra}");
        }
        run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&self.merged));
        self.mounted.push(self.merged.clone());
        if self.lowers.len() >= 2 {
            let mut opts = format!("ro,lowerdir={lowerdir}");
            if extra.contains("userxattr") {
                opts.push_str(",userxattr");
            }
            run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(&self.image));
            self.mounted.push(self.image.clone());
        } else {
            self.image = self.lowers[0].clone();
        }
    }

    /// Unmounts the container view (flushes nothing: upper is written through), keeping files.
    pub fn unmount(&mut self) {
        for m in self.mounted.drain(..).rev() {
            let ok = Command::new("umount").arg(&m).status().is_ok_and(|s| s.success());
            if !ok {
                let _ = Command::new("umount").arg("-l").arg(&m).status();
            }
        }
    }

    /// The layer as rodiff's engine sees it.
    pub fn layer(&self) -> OverlayLayer {
        OverlayLayer { upper: self.upper.clone(), lowers: self.lowers.clone(), xattr: self.xattr }
    }

    /// A path inside the merged (container) view.
    pub fn at(&self, rel: &str) -> PathBuf {
        self.merged.join(rel)
    }
}

impl Drop for OverlayMount {
    fn drop(&mut self) {
        self.unmount();
    }
}

/// `mknod path c 0 0`: an overlayfs whiteout.
pub fn whiteout(path: &Path) {
    rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::CharacterDevice, rustix::fs::Mode::empty(), 0)
        .unwrap_or_else(|e| panic!("mknod {}: {e}", path.display()));
}

/// Sets an extended attribute.
pub fn set_xattr(path: &Path, name: &str, value: &[u8]) {
    rustix::fs::lsetxattr(path, name, value, rustix::fs::XattrFlags::empty())
        .unwrap_or_else(|e| panic!("setxattr {name} on {}: {e}", path.display()));
}
