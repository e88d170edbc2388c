//! The library's error type. Every variant names what it is about (container, endpoint, path), so
//! that the one-line message on stderr is enough to act on.

use std::io;
use std::path::PathBuf;

/// Errors from resolving a container and diffing its layer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The runtime's API endpoint cannot be reached (socket missing, daemon down, refused).
    #[error("cannot reach {runtime} at {endpoint}: {cause}")]
    RuntimeUnavailable {
        /// `docker` or `containerd`.
        runtime: &'static str,
        /// The endpoint that was tried (`unix:///var/run/docker.sock`).
        endpoint: String,
        /// What went wrong, in the runtime client's words.
        cause: String,
    },
    /// The runtime answered but has no such container.
    #[error("no such container: {container} (asked {runtime} at {endpoint})")]
    ContainerNotFound {
        /// The reference the user gave (name, id or id prefix).
        container: String,
        /// `docker` or `containerd`.
        runtime: &'static str,
        /// The endpoint that answered.
        endpoint: String,
    },
    /// The container's storage is not something rodiff can read.
    #[error("container {container}: unsupported storage: {detail}")]
    UnsupportedStorage {
        /// The container reference.
        container: String,
        /// What is unsupported (driver name, mount option …).
        detail: String,
    },
    /// The runtime returned something rodiff does not understand.
    #[error("container {container}: unexpected answer from {runtime}: {detail}")]
    Protocol {
        /// The container reference.
        container: String,
        /// `docker` or `containerd`.
        runtime: &'static str,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The container's layer disappeared while it was being scanned (container removed).
    #[error("layer {path} vanished during the scan (was the container removed?)")]
    LayerVanished {
        /// The layer directory.
        path: PathBuf,
    },
    /// A tree that was frozen for the scan (a btrfs helper snapshot) lost an entry while it was
    /// read: someone deleted the snapshot. What was read so far is not the container's diff.
    #[error("{path}: the frozen copy of the layer was deleted during the scan (by another process?); run again")]
    SnapshotVanished {
        /// The helper snapshot.
        path: PathBuf,
    },
    /// The layer holds a marker the kernel would refuse, such as an `overlay.redirect` with a `..`
    /// component: followed naively it points outside the layer, so the diff stops instead.
    #[error("{path}: refusing a hostile layer: {detail}")]
    HostileLayer {
        /// Host path of the entry that carries the marker.
        path: PathBuf,
        /// The marker, its value and why it is refused.
        detail: String,
    },
    /// A filesystem operation on a layer failed.
    #[error("{path}: {source}")]
    Io {
        /// Host path (or layer-relative description) of what was being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A plan cannot be written in the requested format (a path Docker's syntax cannot carry).
    #[error("{path}: cannot be written as {format}: {detail}")]
    Unrepresentable {
        /// The mount's path.
        path: PathBuf,
        /// The format (`docker`, `compose`, `k8s`).
        format: &'static str,
        /// Why not.
        detail: String,
    },
    /// A plan file given to `verify` could not be read.
    #[error("plan {path}: {detail}")]
    InvalidPlan {
        /// The plan file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A runtime call made for the container failed (creating, starting, inspecting …).
    #[error("container {container}: {runtime} could not {action}: {cause}")]
    RuntimeCall {
        /// The container reference.
        container: String,
        /// `docker` or `containerd`.
        runtime: &'static str,
        /// What was asked (`create the verification container`).
        action: String,
        /// The runtime's answer.
        cause: String,
    },
    /// The operation was interrupted (a signal arrived) and stopped before making anything more.
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Error {
        Error::Io { path: path.into(), source: source.into() }
    }
}

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;
