//! The btrfs engine: a container's writable subvolume is a snapshot of its parent (the image, or
//! Docker's `-init` layer); the diff compares the two, visiting only what changed since the
//! snapshot was taken.

use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::layer::{ChangeSink, ScanOptions};

/// A btrfs layer: the container's writable subvolume and the subvolume it was snapshotted from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BtrfsLayer {
    /// The container's writable subvolume (Docker: `<root>/btrfs/subvolumes/<mount-id>`;
    /// containerd: `<root>/active/<n>`).
    pub subvolume: PathBuf,
    /// The subvolume it is a snapshot of (Docker: `<mount-id>-init`; containerd: the parent's
    /// committed snapshot `<root>/snapshots/<n>`).
    pub parent: PathBuf,
}

/// Diffs a btrfs layer against its parent subvolume.
pub fn diff(layer: &BtrfsLayer, _options: &ScanOptions, _sink: &dyn ChangeSink) -> Result<()> {
    Err(Error::UnsupportedStorage {
        container: layer.subvolume.display().to_string(),
        detail: "the btrfs engine is being written".into(),
    })
}
