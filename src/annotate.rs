//! Marks changes that exist only because the runtime created a mount point, and tags changes with
//! their container when a scan covers several.
//!
//! A runtime creates each mount destination (and any missing parent directory) in the root
//! filesystem before mounting over it, so a volume at `/data` in an image without `/data` shows up
//! as `A /data`. Those entries are real (`docker diff` lists them), but they are not writes of the
//! application and a read-only plan must ignore them.

use std::collections::HashSet;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::layer::ChangeSink;
use crate::model::{Change, ChangeKind, FileType};

/// A sink adapter that sets [`Change::mountpoint`] before passing changes on.
pub struct MountPoints<'a> {
    destinations: HashSet<PathBuf>,
    parents: HashSet<PathBuf>,
    inner: &'a dyn ChangeSink,
}

impl<'a> MountPoints<'a> {
    /// Annotates changes at `destinations` (and new directories leading to them) for `inner`.
    pub fn new(destinations: &[PathBuf], inner: &'a dyn ChangeSink) -> MountPoints<'a> {
        let destinations: HashSet<PathBuf> = destinations.iter().map(|d| normalize(d)).collect();
        let parents = destinations
            .iter()
            .flat_map(|d| d.ancestors().skip(1).map(Path::to_path_buf))
            .filter(|p| p != Path::new("/"))
            .collect();
        MountPoints { destinations, parents, inner }
    }

    /// Whether `change` exists only because of a mount point.
    pub fn is_mountpoint(&self, change: &Change) -> bool {
        match change.kind {
            ChangeKind::Deleted => false,
            ChangeKind::Added if change.file_type == FileType::Dir => {
                self.destinations.contains(&change.path) || self.parents.contains(&change.path)
            }
            _ => self.destinations.contains(&change.path),
        }
    }
}

impl ChangeSink for MountPoints<'_> {
    fn emit(&self, mut batch: Vec<Change>) -> io::Result<crate::layer::Flow> {
        if !self.destinations.is_empty() {
            for change in &mut batch {
                change.mountpoint = self.is_mountpoint(change);
            }
        }
        self.inner.emit(batch)
    }
}

/// A sink adapter that tags every change with the container it belongs to
/// ([`Change::container`]), for scans that cover several containers (a pod).
pub struct Tagged<'a> {
    container: &'a str,
    inner: &'a dyn ChangeSink,
}

impl<'a> Tagged<'a> {
    /// Tags changes with `container` before passing them to `inner`.
    pub fn new(container: &'a str, inner: &'a dyn ChangeSink) -> Tagged<'a> {
        Tagged { container, inner }
    }
}

impl ChangeSink for Tagged<'_> {
    fn emit(&self, mut batch: Vec<Change>) -> io::Result<crate::layer::Flow> {
        for change in &mut batch {
            change.container = Some(self.container.to_string());
        }
        self.inner.emit(batch)
    }
}

/// `/data/` and `/data` are the same destination.
fn normalize(path: &Path) -> PathBuf {
    let bytes = path.as_os_str().as_bytes();
    let trimmed = match bytes.iter().rposition(|&b| b != b'/') {
        Some(end) => &bytes[..=end],
        None => b"/",
    };
    PathBuf::from(std::ffi::OsStr::from_bytes(trimmed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::Collect;

    #[test]
    fn marks_destinations_and_new_parents_only() {
        let collect = Collect::default();
        let sink = MountPoints::new(&[PathBuf::from("/srv/vol/"), PathBuf::from("/etc/app.conf")], &collect);
        let batch = vec![
            Change::new("/srv".into(), ChangeKind::Added, FileType::Dir),
            Change::new("/srv/vol".into(), ChangeKind::Added, FileType::Dir),
            Change::new("/etc/app.conf".into(), ChangeKind::Added, FileType::File),
            Change::new("/etc".into(), ChangeKind::Changed, FileType::Dir),
            Change::new("/srv/other".into(), ChangeKind::Added, FileType::File),
        ];
        let _ = sink.emit(batch).unwrap();
        let marked: Vec<(String, bool)> =
            collect.into_sorted().into_iter().map(|c| (c.path.display().to_string(), c.mountpoint)).collect();
        assert_eq!(
            marked,
            vec![
                ("/etc".into(), false),
                ("/etc/app.conf".into(), true),
                ("/srv".into(), true),
                ("/srv/other".into(), false),
                ("/srv/vol".into(), true),
            ]
        );
    }
}
