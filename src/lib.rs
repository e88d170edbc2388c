//! rodiff: which paths does a container write, and what does it need to run read-only?
//!
//! The pipeline, one module per stage, data flowing one way:
//!
//! ```text
//! container ref ─► resolve ─► Layer ─► layer::*::diff ─► Change stream ─► render
//! ```
//!
//! - [`resolve`] asks a runtime (Docker Engine API, containerd's gRPC API) where a container's
//!   writable layer is;
//! - [`layer`] holds the diff engines (overlayfs, btrfs), which know filesystems and not runtimes;
//! - [`annotate`] marks changes that only exist because the runtime made a mount point;
//! - [`live`] finds writes that left no name (deleted files the container's processes hold
//!   open, placed through [`mountinfo`]), which [`evidence`] reports as kind `T`;
//! - [`render`] writes changes as `docker diff` lines, JSON or JSON lines;
//! - [`plan`](mod@plan) turns changes into the mounts a read-only root filesystem needs, and
//!   [`verify`](mod@verify) proves them by re-running the container read-only (Docker).
//!
//! ```no_run
//! let changes = rodiff::diff("my-container", &rodiff::RuntimeOptions::default()).unwrap();
//! for change in changes {
//!     println!("{} {}", change.kind, change.path.display());
//! }
//! ```
//!
//! Embedding: the library changes no process-wide setting. A walk keeps one descriptor open per
//! directory level, and a container can make its tree as deep as it likes: a program that diffs
//! layers it does not control should raise its open-file limit once ([`fs::raise_fd_limit`]), as
//! the CLI does.

pub mod annotate;
pub mod error;
pub mod evidence;
pub mod fs;
pub mod layer;
pub mod live;
pub mod model;
pub mod mountinfo;
pub mod plan;
pub mod render;
pub mod resolve;
pub mod verify;

pub use error::{Error, ErrorKind, Result};
pub use layer::{ChangeSink, Collect, Layer, ScanOptions};
pub use model::{Change, ChangeKind, Evidence, FileType, Metadata};
pub use plan::{Plan, PlannedMount, Rules};
pub use resolve::{PodSelector, Processes, ResolvedContainer, Runtime, RuntimeOptions};

/// Resolves `container` through the runtime, blocking the calling thread.
pub fn resolve_blocking(container: &str, options: &RuntimeOptions) -> Result<ResolvedContainer> {
    block_on(resolve::resolve(options, container))
}

/// Resolves what `options` and `container` select (a pod's containers when `options.pod` is set,
/// see [`resolve::resolve_all`]), blocking the calling thread.
pub fn resolve_all_blocking(container: Option<&str>, options: &RuntimeOptions) -> Result<Vec<ResolvedContainer>> {
    block_on(resolve::resolve_all(options, container))
}

fn block_on<T>(future: impl std::future::Future<Output = Result<T>>) -> Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("<tokio runtime>", e))?;
    runtime.block_on(future)
}

/// Diffs a resolved container's layer into `sink`, marking mount points, and adds what its
/// running processes show: directories where they hold deleted files open are `T` when the layer
/// does not tell (see [`evidence`]), sent after the layer's changes.
pub fn diff_resolved(resolved: &ResolvedContainer, scan: &ScanOptions, sink: &dyn ChangeSink) -> Result<()> {
    let held = live::open_deleted(&resolved.processes)?;
    let written: Vec<std::path::PathBuf> = held.iter().filter_map(|f| f.path.parent().map(|p| p.to_path_buf())).collect();
    if written.is_empty() {
        let annotated = annotate::MountPoints::new(&resolved.mount_destinations, sink);
        return resolved.layer.diff(scan, &annotated);
    }
    let image = resolved.layer.image()?;
    let touched = evidence::LiveTouched::new(written, image.as_ref(), &resolved.mount_destinations, scan.metadata, sink)?;
    drop(image);
    let annotated = annotate::MountPoints::new(&resolved.mount_destinations, &touched);
    resolved.layer.diff(scan, &annotated)?;
    touched.finish()
}

/// Diffs several resolved containers (a pod's) one after the other into `sink`, each change
/// tagged with its container's name ([`Change::container`]).
pub fn diff_tagged(resolved: &[ResolvedContainer], scan: &ScanOptions, sink: &dyn ChangeSink) -> Result<()> {
    resolved.iter().try_for_each(|r| diff_resolved(r, scan, &annotate::Tagged::new(&r.name, sink)))
}

/// Resolves `container` and returns all its changes with metadata, sorted by path. With
/// `options.pod` set, diffs the pod's containers (`container`, if not empty, names one of them),
/// each change tagged with its container.
pub fn diff(container: &str, options: &RuntimeOptions) -> Result<Vec<Change>> {
    let collect = Collect::default();
    let scan = ScanOptions { metadata: true, ..Default::default() };
    if options.pod.is_some() {
        diff_tagged(&resolve_all_blocking(Some(container), options)?, &scan, &collect)?;
    } else {
        diff_resolved(&resolve_blocking(container, options)?, &scan, &collect)?;
    }
    Ok(collect.into_sorted())
}

/// Plans the mounts a resolved container needs to run with a read-only root filesystem: diffs it,
/// asks its layer what the image ships, and applies `rules` (see [`plan`](mod@plan)). `image` is the
/// container's image reference, when known (Kubernetes seeding names it).
pub fn plan_resolved(resolved: &ResolvedContainer, image: Option<String>, rules: &Rules) -> Result<Plan> {
    let collect = Collect::default();
    diff_resolved(resolved, &ScanOptions { metadata: true, ..Default::default() }, &collect)?;
    let changes = collect.into_sorted();
    let view = resolved.layer.image()?;
    let input = plan::PlanInput {
        container: resolved.name.clone(),
        image,
        mount_destinations: resolved.mount_destinations.clone(),
    };
    plan::plan(&changes, view.as_ref(), &input, rules)
}

/// Resolves `container` and plans the mounts it needs to run read-only (see [`plan_resolved`]).
pub fn plan(container: &str, options: &RuntimeOptions, rules: &Rules) -> Result<Plan> {
    let resolved = resolve_blocking(container, options)?;
    let image = image_reference(options, &resolved)?;
    plan_resolved(&resolved, image, rules)
}

/// The image reference a container was created from, when the runtime keeps one (Docker).
pub fn image_reference(options: &RuntimeOptions, resolved: &ResolvedContainer) -> Result<Option<String>> {
    if options.runtime != Runtime::Docker {
        return Ok(None);
    }
    block_on(verify::image_reference(options, &resolved.id))
}
