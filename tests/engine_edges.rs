//! The overlay engine on plain directories (no mount, no daemon): what a running container does
//! to its layer under the scan — removing it, changing entries — must give a clear answer, never a
//! crash or a look outside the layer.

mod common;

use std::fs;
use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use rodiff::layer::{ChangeSink, Collect, Layer, OverlayLayer, ScanOptions, XattrNamespace};
use rodiff::{Change, ChangeKind, Error};

fn layer(root: &std::path::Path) -> OverlayLayer {
    OverlayLayer { upper: root.join("upper"), lowers: vec![root.join("lower")], xattr: XattrNamespace::Trusted }
}

fn tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let (upper, lower) = (dir.path().join("upper"), dir.path().join("lower"));
    fs::create_dir_all(lower.join("etc")).unwrap();
    fs::write(lower.join("etc/conf"), "x").unwrap();
    for d in 0..20 {
        let sub = upper.join(format!("new{d}"));
        fs::create_dir_all(&sub).unwrap();
        for f in 0..50 {
            fs::write(sub.join(f.to_string()), "").unwrap();
        }
    }
    dir
}

/// Removes the upper directory when the first batch arrives, as `docker rm` would mid-scan.
struct RemoveOnFirstBatch {
    upper: PathBuf,
    done: AtomicBool,
    inner: Collect,
}

impl ChangeSink for RemoveOnFirstBatch {
    fn emit(&self, batch: Vec<Change>) -> io::Result<rodiff::Flow> {
        if !self.done.swap(true, Ordering::SeqCst) {
            fs::remove_dir_all(&self.upper).unwrap();
        }
        self.inner.emit(batch)
    }
}

#[test]
fn a_layer_removed_during_the_scan_is_an_error_not_a_partial_answer() {
    let dir = tree();
    let layer = layer(dir.path());
    let sink = RemoveOnFirstBatch { upper: layer.upper.clone(), done: AtomicBool::new(false), inner: Collect::default() };
    let err = Layer::Overlay(layer.clone()).diff(common::walkers(), &ScanOptions::default(), &sink).unwrap_err();
    assert!(matches!(&err, Error::LayerVanished { path } if *path == layer.upper), "{err}");
    assert!(err.to_string().contains("vanished"), "{err}");
}

#[test]
fn a_missing_layer_is_reported_with_its_path() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir(dir.path().join("lower")).unwrap();
    let layer = layer(dir.path());
    let err = Layer::Overlay(layer.clone()).diff(common::walkers(), &ScanOptions::default(), &Collect::default()).unwrap_err();
    assert!(err.to_string().contains(&layer.upper.display().to_string()), "{err}");
}

#[test]
fn plain_upper_directory_without_mount() {
    let dir = tree();
    let layer = layer(dir.path());
    fs::create_dir(layer.upper.join("etc")).unwrap();
    fs::write(layer.upper.join("etc/conf"), "changed!").unwrap();
    let changes = common::engine_diff(&layer);
    assert_eq!(changes.len(), 20 * 51 + 2);
    let conf = changes.iter().find(|c| c.path == std::path::Path::new("/etc/conf")).unwrap();
    assert_eq!(conf.kind, ChangeKind::Changed);
    let etc = changes.iter().find(|c| c.path == std::path::Path::new("/etc")).unwrap();
    assert_eq!(etc.kind, ChangeKind::Changed, "docker's rule: a directory with a change below is C");
}

#[test]
fn a_symlink_in_place_of_a_directory_is_reported_not_followed() {
    let dir = tree();
    let layer = layer(dir.path());
    // The image has /etc as a directory; the container replaced it with a symlink to the host's /.
    fs::create_dir(dir.path().join("lower/etc/sub")).unwrap();
    std::os::unix::fs::symlink("/", layer.upper.join("etc")).unwrap();
    let changes = common::engine_diff(&layer);
    let etc = changes.iter().find(|c| c.path == std::path::Path::new("/etc")).unwrap();
    assert_eq!((etc.kind, etc.file_type), (ChangeKind::Changed, rodiff::FileType::Symlink));
    assert!(changes.iter().all(|c| !c.path_bytes().starts_with(b"/etc/")), "followed the symlink");
}

/// Turns the upper directories `names` into whiteouts (character devices 0/0) when the first
/// batch arrives: after their parent was listed, before they are walked.
struct WhiteoutOnFirstBatch {
    dirs: Vec<PathBuf>,
    done: AtomicBool,
    inner: Collect,
}

impl ChangeSink for WhiteoutOnFirstBatch {
    fn emit(&self, batch: Vec<Change>) -> io::Result<rodiff::Flow> {
        if !self.done.swap(true, Ordering::SeqCst) {
            for dir in &self.dirs {
                fs::remove_dir_all(dir).unwrap();
                common::whiteout(dir);
            }
        }
        self.inner.emit(batch)
    }
}

#[test]
fn a_directory_turned_into_a_whiteout_during_the_scan_is_deleted_not_a_char_device() {
    if !common::require(common::is_root(), "root (to make whiteouts)") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let layer = layer(dir.path());
    fs::create_dir_all(dir.path().join("lower/victim")).unwrap();
    fs::write(dir.path().join("lower/victim/f"), "image").unwrap();
    for d in ["victim", "fresh"] {
        fs::create_dir_all(layer.upper.join(d)).unwrap();
        fs::write(layer.upper.join(d).join("new"), "").unwrap();
    }
    // Something at the top level, so that the root's batch is not empty.
    fs::write(layer.upper.join("top"), "").unwrap();
    let sink = WhiteoutOnFirstBatch { dirs: vec![layer.upper.join("victim"), layer.upper.join("fresh")], done: AtomicBool::new(false), inner: Collect::default() };
    Layer::Overlay(layer).diff(common::walkers(), &ScanOptions::default(), &sink).unwrap();
    assert!(sink.done.load(Ordering::SeqCst));
    let got: Vec<_> = sink.inner.into_sorted().into_iter().map(|c| (c.kind, c.file_type, c.path.to_string_lossy().into_owned())).collect();
    use rodiff::FileType::{Dir, File};
    assert_eq!(got, [(ChangeKind::Added, File, "/top".to_string()), (ChangeKind::Deleted, Dir, "/victim".to_string())], "the image's directory is deleted; the new one never existed for the image");
}

/// A binding's own error: what a Python callback's exception or a C callback's "stop" becomes.
#[derive(Debug)]
struct StopAsked;

impl std::fmt::Display for StopAsked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the caller asked to stop")
    }
}

impl std::error::Error for StopAsked {}

/// Refuses every batch with its own error, counting the batches it was offered.
#[derive(Default)]
struct Refusing(std::sync::atomic::AtomicUsize);

impl ChangeSink for Refusing {
    fn emit(&self, _batch: Vec<Change>) -> io::Result<rodiff::Flow> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(io::Error::other(StopAsked))
    }
}

#[test]
fn a_sink_that_refuses_stops_the_scan_and_its_error_comes_back_as_itself() {
    let dir = tree();
    let all = Collect::default();
    Layer::Overlay(layer(dir.path())).diff(common::walkers(), &ScanOptions::default(), &all).unwrap();
    let batches_in_all = 20;
    let sink = Refusing::default();
    let err = Layer::Overlay(layer(dir.path())).diff(common::walkers(), &ScanOptions::default(), &sink).unwrap_err();
    let Error::Sink { source } = &err else { panic!("not a sink error: {err}") };
    assert!(source.get_ref().is_some_and(|e| e.is::<StopAsked>()), "the sink's own error is lost: {source:?}");
    assert_eq!(err.kind(), rodiff::ErrorKind::Sink);
    // Walker threads that were already emitting may each have offered one batch; no more.
    let offered = sink.0.load(Ordering::SeqCst);
    assert!(offered < batches_in_all / 2, "the scan went on after the refusal: {offered} batches");
    assert!(all.into_sorted().len() > 1000, "the tree has many changes");
}
