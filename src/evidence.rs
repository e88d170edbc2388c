//! Reports the directories that live evidence ([`crate::live`]) names as kind `T`, when the layer
//! diff does not already report them.
//!
//! A deleted file held open in `/tmp` means the container wrote in `/tmp`. That is reported as
//! `T /tmp` (type `dir`, the image's metadata for `/tmp`, `"evidence": "open-deleted"`) unless:
//! - the diff engine reports `/tmp` itself (any kind): the layer already tells;
//! - `/tmp` lies under one of the container's mount destinations (a write there does not reach
//!   the root filesystem).
//!
//! A directory the image does not have (the container made it) is reported `A` by the engine if
//! it still exists; if it was removed, the write is evidence for its nearest ancestor that the
//! image has — unless the engine reports that ancestor or any directory in between.
//!
//! Works with streaming sinks: the candidates are worked out before the scan from the image
//! ([`ImageView`]), only those few paths are watched while changes stream through, and the
//! remaining `T` entries are sent after the scan ([`LiveTouched::finish`]).

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::layer::image::ImageView;
use crate::layer::ChangeSink;
use crate::model::{Change, ChangeKind, Evidence, FileType, Metadata};

/// A sink adapter that watches for the candidate directories and reports the unreported ones as
/// `T` when the scan is over.
pub struct LiveTouched<'a> {
    chains: Vec<Chain>,
    /// Every path of every chain: the only paths looked up while changes stream through.
    watched: HashSet<PathBuf>,
    reported: Mutex<HashSet<PathBuf>>,
    inner: &'a dyn ChangeSink,
}

/// One written directory and the way up to the image directory reported for it.
struct Chain {
    /// The written directory, then its parents up to and including `target`.
    paths: Vec<PathBuf>,
    /// The nearest directory (the written one, or an ancestor) the image has.
    target: PathBuf,
    /// The image's metadata of `target`, when the scan collects metadata.
    metadata: Option<Metadata>,
}

impl<'a> LiveTouched<'a> {
    /// Prepares to report `written` directories (container paths) that the scan does not, looking
    /// them up in `image`; those under `mounts` are left out. With `metadata`, the `T` changes
    /// carry the image directory's metadata, as engines do when a scan collects metadata.
    pub fn new(
        written: impl IntoIterator<Item = PathBuf>,
        image: &dyn ImageView,
        mounts: &[PathBuf],
        metadata: bool,
        inner: &'a dyn ChangeSink,
    ) -> Result<LiveTouched<'a>> {
        let mut seen = HashSet::new();
        let mut chains = Vec::new();
        for dir in written {
            if !dir.has_root() || mounts.iter().any(|m| dir.starts_with(m)) || !seen.insert(dir.clone()) {
                continue;
            }
            let mut chain = chain(dir, image)?;
            chain.metadata = chain.metadata.filter(|_| metadata);
            chains.push(chain);
        }
        let watched = chains.iter().flat_map(|c| c.paths.iter().cloned()).collect();
        Ok(LiveTouched { chains, watched, reported: Mutex::new(HashSet::new()), inner })
    }

    /// Sends a `T` change for every candidate directory the scan did not report (each directory
    /// once), after the scan.
    pub fn finish(self) -> Result<()> {
        let reported = self.reported.into_inner().unwrap_or_else(|e| e.into_inner());
        let mut sent = HashSet::new();
        let mut batch = Vec::new();
        for c in self.chains {
            if c.paths.iter().any(|p| reported.contains(p)) || !sent.insert(c.target.clone()) {
                continue;
            }
            let mut change = Change::new(c.target, ChangeKind::Touched, FileType::Dir);
            change.metadata = c.metadata;
            change.evidence = Some(Evidence::OpenDeleted);
            batch.push(change);
        }
        if batch.is_empty() {
            return Ok(());
        }
        match self.inner.emit(batch) {
            Ok(crate::layer::Flow::Continue(())) => Ok(()),
            Ok(crate::layer::Flow::Break(())) => Err(Error::Stopped),
            Err(source) => Err(Error::Sink { source }),
        }
    }
}

impl ChangeSink for LiveTouched<'_> {
    fn emit(&self, batch: Vec<Change>) -> io::Result<crate::layer::Flow> {
        let hits: Vec<PathBuf> = batch.iter().filter(|c| self.watched.contains(&c.path)).map(|c| c.path.clone()).collect();
        if !hits.is_empty() {
            self.reported.lock().unwrap_or_else(|e| e.into_inner()).extend(hits);
        }
        self.inner.emit(batch)
    }
}

/// The way up from `dir` to the nearest directory the image has (`/` at the latest).
fn chain(dir: PathBuf, image: &dyn ImageView) -> Result<Chain> {
    let mut paths = Vec::new();
    let mut at: &Path = &dir;
    loop {
        paths.push(at.to_path_buf());
        if let Some((FileType::Dir, metadata)) = image.stat(at)? {
            return Ok(Chain { target: at.to_path_buf(), paths, metadata: Some(metadata) });
        }
        match at.parent() {
            Some(parent) => at = parent,
            // An image without `/` as a directory: report `/`, with no metadata to tell.
            None => return Ok(Chain { target: at.to_path_buf(), paths, metadata: None }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::image::DirImage;
    use crate::layer::Collect;

    fn summary(changes: &[Change]) -> Vec<(String, char, bool, Option<Evidence>)> {
        changes.iter().map(|c| (c.path.display().to_string(), c.kind.letter(), c.metadata.is_some(), c.evidence)).collect()
    }

    /// Runs a "scan" that reports `scanned` through the adapter, then finishes it.
    fn report(written: &[&str], scanned: &[&str], mounts: &[&str], metadata: bool) -> Vec<Change> {
        let root = tempfile::tempdir().unwrap();
        for d in ["tmp", "var/cache", "data"] {
            std::fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let image = DirImage::open(root.path()).unwrap();
        let collect = Collect::default();
        let mounts: Vec<PathBuf> = mounts.iter().map(PathBuf::from).collect();
        let touched = LiveTouched::new(written.iter().map(PathBuf::from), &image, &mounts, metadata, &collect).unwrap();
        let batch = scanned.iter().map(|p| Change::new(p.into(), ChangeKind::Changed, FileType::Dir)).collect();
        let _ = touched.emit(batch).unwrap();
        touched.finish().unwrap();
        collect.into_sorted()
    }

    #[test]
    fn an_unreported_image_directory_is_touched_once_with_its_metadata() {
        let got = report(&["/tmp", "/tmp"], &["/etc"], &[], true);
        assert_eq!(summary(&got), vec![("/etc".into(), 'C', false, None), ("/tmp".into(), 'T', true, Some(Evidence::OpenDeleted))]);
        let tmp = got.iter().find(|c| c.path == Path::new("/tmp")).unwrap();
        assert_eq!(tmp.file_type, FileType::Dir);
        assert_eq!(report(&["/tmp"], &[], &[], false)[0].metadata, None, "no metadata when the scan collects none");
    }

    #[test]
    fn reported_directories_and_mounts_add_nothing() {
        assert_eq!(summary(&report(&["/tmp"], &["/tmp"], &[], true)), vec![("/tmp".into(), 'C', false, None)]);
        assert!(report(&["/data", "/data/sub"], &[], &["/data/"], true).is_empty(), "under a mount destination");
    }

    #[test]
    fn a_removed_new_directory_counts_for_its_nearest_image_ancestor_unless_reported() {
        let got = report(&["/var/cache/new/sub"], &[], &[], true);
        assert_eq!(summary(&got), vec![("/var/cache".into(), 'T', true, Some(Evidence::OpenDeleted))]);
        let got = report(&["/var/cache/new/sub"], &["/var/cache/new"], &[], true);
        assert_eq!(summary(&got), vec![("/var/cache/new".into(), 'C', false, None)], "a directory in between is reported");
        let got = report(&["/nothing/here"], &[], &[], false);
        assert_eq!(summary(&got), vec![("/".into(), 'T', false, Some(Evidence::OpenDeleted))]);
    }
}
