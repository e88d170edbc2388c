//! rodiff: which paths does a container write, and what does it need to run read-only?
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! container ref ─► resolve ─► Layer ─► layer::*::diff ─► Change stream ─► render
//! ```
//!
//! - [`resolve`] asks a runtime (Docker Engine API) where a container's writable layer is;
//! - [`layer`] holds the diff engines (overlayfs), which know filesystems and not runtimes;
//! - [`annotate`] marks changes that only exist because the runtime made a mount point;
//! - [`render`] writes changes as `docker diff` lines, JSON or JSON lines.
//!
//! ```no_run
//! let changes = rodiff::diff("my-container", &rodiff::RuntimeOptions::default()).unwrap();
//! for change in changes {
//!     println!("{} {}", change.kind, change.path.display());
//! }
//! ```

pub mod annotate;
pub mod error;
pub mod fs;
pub mod layer;
pub mod model;
pub mod render;
pub mod resolve;

pub use error::{Error, Result};
pub use layer::{ChangeSink, Collect, Layer, ScanOptions};
pub use model::{Change, ChangeKind, FileType, Metadata};
pub use resolve::{ResolvedContainer, Runtime, RuntimeOptions};

/// Resolves `container` through the runtime, blocking the calling thread.
pub fn resolve_blocking(container: &str, options: &RuntimeOptions) -> Result<ResolvedContainer> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("<tokio runtime>", e))?;
    runtime.block_on(resolve::resolve(options, container))
}

/// Diffs a resolved container's layer into `sink`, marking mount points.
pub fn diff_resolved(resolved: &ResolvedContainer, scan: &ScanOptions, sink: &dyn ChangeSink) -> Result<()> {
    let annotated = annotate::MountPoints::new(&resolved.mount_destinations, sink);
    resolved.layer.diff(scan, &annotated)
}

/// Resolves `container` and returns all its changes with metadata, sorted by path.
pub fn diff(container: &str, options: &RuntimeOptions) -> Result<Vec<Change>> {
    let resolved = resolve_blocking(container, options)?;
    let collect = Collect::default();
    diff_resolved(&resolved, &ScanOptions { metadata: true, ..Default::default() }, &collect)?;
    Ok(collect.into_sorted())
}
