//! Diff engines: given a container's writable layer on the host, report how it differs from the
//! image. Engines know filesystems and nothing about runtimes; a resolver hands them a [`Layer`].

pub mod btrfs;
pub(crate) mod compare;
pub mod image;
pub mod overlay;
pub(crate) mod twotree;
pub mod walkers;

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::error::Result;
use crate::model::Change;

pub use btrfs::BtrfsLayer;
pub use overlay::{OverlayLayer, XattrNamespace};
pub use walkers::Walkers;

/// A container's writable layer, located on the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Layer {
    /// An overlayfs upper directory over a stack of lower directories.
    Overlay(OverlayLayer),
    /// A btrfs subvolume snapshotted from a parent subvolume.
    Btrfs(BtrfsLayer),
}

impl Layer {
    /// Diffs the layer against its image on `walkers`' threads, sending changes to `sink` as they
    /// are found. Stops at the next directory once `options.stop` says so.
    pub fn diff(&self, walkers: &Walkers, options: &ScanOptions, sink: &dyn ChangeSink) -> Result<()> {
        options.stop.check()?;
        match self {
            Layer::Overlay(layer) => overlay::diff(layer, walkers, options, sink),
            Layer::Btrfs(layer) => btrfs::diff(layer, walkers, options, sink),
        }
    }

    /// Up to `len` bytes from the start of the regular file at container path `path` as this
    /// layer holds it (a file the container added or changed), read without following any
    /// symbolic link, never leaving the layer's directory, and without updating its access time
    /// where the kernel allows. Anything but a regular file is [`std::io::ErrorKind::InvalidInput`].
    pub fn read_head(&self, path: &std::path::Path, len: usize) -> std::io::Result<Vec<u8>> {
        use rustix::fs::{Mode, OFlags, ResolveFlags};
        let top = match self {
            Layer::Overlay(layer) => &layer.upper,
            Layer::Btrfs(layer) => &layer.subvolume,
        };
        let relative = path.strip_prefix("/").unwrap_or(path);
        let dir = crate::fs::open_dir(top)?;
        let resolve = ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS | ResolveFlags::NO_XDEV;
        // O_PATH first: opening a fifo or a device node has effects (a container can make both),
        // and the type is only known once it is open; then the same inode, reopened for reading.
        let path_flags = OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let handle = rustix::fs::openat2(&dir, relative, path_flags, Mode::empty(), resolve)?;
        let file = crate::fs::reopen_regular(handle)
            .map_err(|e| if e.kind() == std::io::ErrorKind::InvalidInput { std::io::Error::new(e.kind(), format!("{} is not a regular file", path.display())) } else { e })?;
        let mut head = vec![0; len];
        let mut filled = 0;
        while filled < len {
            match rustix::io::read(&file, &mut head[filled..])? {
                0 => break,
                n => filled += n,
            }
        }
        head.truncate(filled);
        Ok(head)
    }

    /// The image this layer was made from, for look-ups by path (what a read-only plan needs).
    pub fn image(&self) -> Result<Box<dyn image::ImageView + '_>> {
        match self {
            Layer::Overlay(layer) => Ok(Box::new(overlay::image::OverlayImage::open(layer)?)),
            Layer::Btrfs(layer) => Ok(Box::new(image::DirImage::open(&layer.parent)?)),
        }
    }
}

/// What a scan collects and reports while it runs, and when it must stop.
#[derive(Clone, Debug, Default)]
pub struct ScanOptions {
    /// Collect [`crate::model::Metadata`] for every change (costs a `stat` per new entry).
    pub metadata: bool,
    /// Counts directory entries visited, for a progress display on another thread.
    pub progress: Progress,
    /// Cancels the scan, or bounds it in time: checked once per directory and around every
    /// runtime call; a stopped scan fails with [`crate::Error::Cancelled`] or
    /// [`crate::Error::Timeout`] (changes already sent to the sink stay sent).
    pub stop: crate::cancel::Stop,
}

/// A counter of visited entries that a UI thread can read while a scan runs. Clones share the
/// count: keep one to read while the scan owns the other.
#[derive(Clone, Debug, Default)]
pub struct Progress(std::sync::Arc<AtomicU64>);

impl Progress {
    /// Adds `n` visited entries.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// Entries visited so far.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Receives changes from an engine, in batches, from several threads.
///
/// Order: a directory's own change comes after the changes below it when its kind depends on them
/// (`C`/`T` of a directory the image has), before them otherwise (`A`).
pub trait ChangeSink: Sync {
    /// Takes a batch of changes. [`Flow::Break`] stops the scan early and without error (a
    /// caller that has seen enough; the result is then incomplete, see
    /// [`crate::client::Outcome::complete`]); an error (a closed pipe, a binding's exception)
    /// stops it with [`crate::Error::Sink`].
    fn emit(&self, batch: Vec<Change>) -> io::Result<Flow>;
}

/// What a [`ChangeSink`] tells the scan after a batch: go on, or stop here.
pub type Flow = std::ops::ControlFlow<()>;

/// Runs `walk` on every item, in parallel when there are several, and combines the answers with
/// `|` (e.g. `true` for a subtree with a change that counts for its parent directory).
pub(crate) fn walk_all<T: Send, R>(items: Vec<T>, walk: impl Fn(T) -> Result<R> + Sync) -> Result<R>
where
    R: Default + std::ops::BitOr<Output = R> + Send,
{
    use rayon::prelude::*;
    if items.len() <= 1 {
        let mut any = R::default();
        for item in items {
            any = any | walk(item)?;
        }
        return Ok(any);
    }
    items.into_par_iter().map(&walk).try_reduce(R::default, |a, b| Ok(a | b))
}

/// How an engine reports: builds changes (with metadata when the scan asks for it) and sends
/// batches to the sink.
pub(crate) struct Reporter<'a> {
    pub options: &'a ScanOptions,
    pub sink: &'a dyn ChangeSink,
}

impl Reporter<'_> {
    /// A change of `file_type`, with `st`'s metadata when the scan collects metadata.
    pub fn change(&self, path: std::path::PathBuf, kind: crate::model::ChangeKind, file_type: crate::model::FileType, st: Option<&crate::fs::Stat>) -> Change {
        let mut change = Change::new(path, kind, file_type);
        if self.options.metadata {
            change.metadata = st.map(crate::fs::metadata);
        }
        change
    }

    /// Sends a batch (nothing for an empty one); a sink error stops the scan, and so does the
    /// scan's [`ScanOptions::stop`] (checked first, so once per directory).
    pub fn emit(&self, batch: Vec<Change>) -> Result<()> {
        self.options.stop.check()?;
        if batch.is_empty() {
            return Ok(());
        }
        match self.sink.emit(batch) {
            Ok(Flow::Continue(())) => Ok(()),
            Ok(Flow::Break(())) => Err(crate::error::Error::Stopped),
            Err(source) => Err(crate::error::Error::Sink { source }),
        }
    }
}

/// A sink that keeps every change in memory.
#[derive(Debug, Default)]
pub struct Collect(Mutex<Vec<Change>>);

impl Collect {
    /// The collected changes, sorted by path (see [`crate::model::path_order`]).
    pub fn into_sorted(self) -> Vec<Change> {
        use rayon::slice::ParallelSliceMut;
        let changes = self.0.into_inner().unwrap_or_else(|e| e.into_inner());
        // Sort small (path, index) pairs rather than moving whole changes around.
        let mut order: Vec<(&[u8], u32)> = changes.iter().enumerate().map(|(i, c)| (c.path_bytes(), i as u32)).collect();
        order.par_sort_unstable_by(|a, b| crate::model::path_order(a.0, b.0));
        let order: Vec<u32> = order.into_iter().map(|(_, i)| i).collect();
        let mut slots: Vec<Option<Change>> = changes.into_iter().map(Some).collect();
        order.into_iter().map(|i| slots[i as usize].take().expect("each index once")).collect()
    }
}

impl ChangeSink for Collect {
    fn emit(&self, mut batch: Vec<Change>) -> io::Result<Flow> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).append(&mut batch);
        Ok(Flow::Continue(()))
    }
}
