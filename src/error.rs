//! The library's error type. Every variant names what it is about (container, endpoint, path), so
//! that the one-line message on stderr is enough to act on.

use std::io;
use std::path::PathBuf;

use crate::escape::Escaped;

/// Errors from resolving a container and diffing its layer.
///
/// New variants may come ([`non_exhaustive`](https://doc.rust-lang.org/reference/attributes/type_system.html)):
/// match on [`Error::kind`] for a stable classification.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The runtime's API endpoint cannot be reached (socket missing, daemon down, refused).
    #[error("cannot reach {runtime} at {}: {cause}", Escaped::str(.endpoint))]
    RuntimeUnavailable {
        /// `docker` or `containerd`.
        runtime: &'static str,
        /// The endpoint that was tried (`unix:///var/run/docker.sock`).
        endpoint: String,
        /// What went wrong, in the runtime client's words.
        cause: String,
    },
    /// The runtime answered but has no such container.
    #[error("no such container: {} (asked {runtime} at {})", Escaped::str(.container), Escaped::str(.endpoint))]
    ContainerNotFound {
        /// The reference the user gave (name, id or id prefix).
        container: String,
        /// `docker` or `containerd`.
        runtime: &'static str,
        /// The endpoint that answered.
        endpoint: String,
    },
    /// The container's storage is not something rodiff can read.
    #[error("container {}: unsupported storage: {detail}", Escaped::str(.container))]
    UnsupportedStorage {
        /// The container reference.
        container: String,
        /// What is unsupported (driver name, mount option …).
        detail: String,
    },
    /// The runtime returned something rodiff does not understand.
    #[error("container {}: unexpected answer from {runtime}: {detail}", Escaped::str(.container))]
    Protocol {
        /// The container reference.
        container: String,
        /// `docker` or `containerd`.
        runtime: &'static str,
        /// What was wrong with the answer.
        detail: String,
    },
    /// The container's layer disappeared while it was being scanned (container removed).
    #[error("layer {} vanished during the scan (was the container removed?)", Escaped::path(.path))]
    LayerVanished {
        /// The layer directory.
        path: PathBuf,
    },
    /// A tree that was frozen for the scan (a btrfs helper snapshot) lost an entry while it was
    /// read: someone deleted the snapshot. What was read so far is not the container's diff.
    #[error("{}: the frozen copy of the layer was deleted during the scan (by another process?); run again", Escaped::path(.path))]
    SnapshotVanished {
        /// The helper snapshot.
        path: PathBuf,
    },
    /// The layer holds a marker the kernel would refuse, such as an `overlay.redirect` with a `..`
    /// component: followed naively it points outside the layer, so the diff stops instead.
    #[error("{}: refusing a hostile layer: {detail}", Escaped::path(.path))]
    HostileLayer {
        /// Host path of the entry that carries the marker.
        path: PathBuf,
        /// The marker, its value and why it is refused.
        detail: String,
    },
    /// A filesystem operation on a layer failed.
    #[error("{}: {source}", Escaped::path(.path))]
    Io {
        /// Host path (or layer-relative description) of what was being read.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A plan cannot be written in the requested format (a path Docker's syntax cannot carry).
    #[error("{}: cannot be written as {format}: {detail}", Escaped::path(.path))]
    Unrepresentable {
        /// The mount's path.
        path: PathBuf,
        /// The format (`docker`, `compose`, `k8s`).
        format: &'static str,
        /// Why not.
        detail: String,
    },
    /// A plan file given to `verify` could not be read.
    #[error("plan {}: {detail}", Escaped::path(.path))]
    InvalidPlan {
        /// The plan file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// A runtime call made for the container failed (creating, starting, inspecting …).
    #[error("container {}: {runtime} could not {action}: {cause}", Escaped::str(.container))]
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
    /// The operation was cancelled through its [`crate::Cancel`] token (the CLI cancels on
    /// SIGINT, SIGTERM and SIGHUP) and stopped at the next check, having removed what it made.
    #[error("cancelled")]
    Cancelled,
    /// The sink asked the scan to stop ([`crate::layer::Flow::Break`]): what it received is a part
    /// of the diff. [`crate::Client::diff_into`] reports this as an incomplete
    /// [`crate::client::Outcome`], not as an error.
    #[error("stopped by the receiver of the changes: the result is incomplete")]
    Stopped,
    /// The operation's deadline ([`crate::ScanOptions::stop`]) passed; it stopped at the next
    /// check, having removed what it made.
    #[error("deadline passed: not done within {} s", after.as_secs_f64())]
    Timeout {
        /// How long the operation had from its start.
        after: std::time::Duration,
    },
    /// The sink the changes were sent to refused a batch, and the scan stopped there. Its error
    /// is kept as it is (a closed pipe; a binding's callback that asks to stop wraps its own error
    /// in [`io::Error::other`] and gets it back from [`io::Error::into_inner`]).
    #[error("output: {source}")]
    Sink {
        /// The sink's own error.
        #[source]
        source: io::Error,
    },
}

/// What kind of error an [`Error`] is, with a numeric code that bindings (C, Python) and scripts
/// can rely on: a code, once given, keeps its meaning and is never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[repr(u32)]
pub enum ErrorKind {
    /// The runtime cannot be reached, or did not answer in time.
    RuntimeUnavailable = 1,
    /// The runtime has no such container.
    ContainerNotFound = 2,
    /// The container's storage is not something rodiff can read.
    UnsupportedStorage = 3,
    /// The runtime answered something rodiff does not understand.
    Protocol = 4,
    /// The container's layer disappeared during the scan (the container was removed).
    LayerVanished = 5,
    /// The frozen copy of the layer (a btrfs helper snapshot) was deleted during the scan.
    SnapshotVanished = 6,
    /// The layer holds a marker the kernel would refuse; the diff stopped.
    HostileLayer = 7,
    /// A filesystem operation failed.
    Io = 8,
    /// A plan cannot be written in the requested format.
    Unrepresentable = 9,
    /// A plan file could not be read.
    InvalidPlan = 10,
    /// A runtime call made for the container (create, start, inspect …) failed.
    RuntimeCall = 11,
    /// The operation was cancelled (its cancel token; a signal in the CLI).
    Cancelled = 12,
    /// The sink the changes were sent to refused them; the scan stopped.
    Sink = 13,
    /// The operation's deadline passed before it was done.
    Timeout = 14,
    /// The sink stopped the scan early; its result is incomplete.
    Stopped = 15,
}

impl ErrorKind {
    /// The stable numeric code.
    pub fn code(self) -> u32 {
        self as u32
    }

    /// The CLI's exit status for an error of this kind (the interface contract): 3 when the runtime
    /// or the container is not there (unreachable, unknown, removed during the scan), 4 for
    /// unsupported storage, 1 otherwise (2, usage, is the argument parser's).
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::RuntimeUnavailable | ErrorKind::ContainerNotFound | ErrorKind::LayerVanished => 3,
            ErrorKind::UnsupportedStorage => 4,
            _ => 1,
        }
    }
}

impl Error {
    /// What kind of error this is.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::RuntimeUnavailable { .. } => ErrorKind::RuntimeUnavailable,
            Error::ContainerNotFound { .. } => ErrorKind::ContainerNotFound,
            Error::UnsupportedStorage { .. } => ErrorKind::UnsupportedStorage,
            Error::Protocol { .. } => ErrorKind::Protocol,
            Error::LayerVanished { .. } => ErrorKind::LayerVanished,
            Error::SnapshotVanished { .. } => ErrorKind::SnapshotVanished,
            Error::HostileLayer { .. } => ErrorKind::HostileLayer,
            Error::Io { .. } => ErrorKind::Io,
            Error::Unrepresentable { .. } => ErrorKind::Unrepresentable,
            Error::InvalidPlan { .. } => ErrorKind::InvalidPlan,
            Error::RuntimeCall { .. } => ErrorKind::RuntimeCall,
            Error::Cancelled => ErrorKind::Cancelled,
            Error::Timeout { .. } => ErrorKind::Timeout,
            Error::Stopped => ErrorKind::Stopped,
            Error::Sink { .. } => ErrorKind::Sink,
        }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Error {
        Error::Io { path: path.into(), source: source.into() }
    }
}

/// Result alias used throughout the library.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [ErrorKind; 15] = [
        ErrorKind::RuntimeUnavailable,
        ErrorKind::ContainerNotFound,
        ErrorKind::UnsupportedStorage,
        ErrorKind::Protocol,
        ErrorKind::LayerVanished,
        ErrorKind::SnapshotVanished,
        ErrorKind::HostileLayer,
        ErrorKind::Io,
        ErrorKind::Unrepresentable,
        ErrorKind::InvalidPlan,
        ErrorKind::RuntimeCall,
        ErrorKind::Cancelled,
        ErrorKind::Sink,
        ErrorKind::Timeout,
        ErrorKind::Stopped,
    ];

    #[test]
    fn codes_are_the_documented_ones_and_unique() {
        let codes: Vec<u32> = ALL.iter().map(|k| k.code()).collect();
        assert_eq!(codes, (1..=15).collect::<Vec<u32>>(), "codes never change meaning");
    }

    #[test]
    fn exit_codes_follow_the_interface_contract() {
        let unavailable = Error::RuntimeUnavailable { runtime: "docker", endpoint: "unix:///x".into(), cause: "refused".into() };
        assert_eq!(unavailable.kind().exit_code(), 3);
        let missing = Error::ContainerNotFound { container: "c".into(), runtime: "docker", endpoint: "unix:///x".into() };
        assert_eq!(missing.kind().exit_code(), 3);
        assert_eq!(Error::LayerVanished { path: "/l".into() }.kind().exit_code(), 3);
        assert_eq!(Error::UnsupportedStorage { container: "c".into(), detail: "vfs".into() }.kind().exit_code(), 4);
        assert_eq!(Error::SnapshotVanished { path: "/s".into() }.kind().exit_code(), 1);
        assert_eq!(Error::io("/p", io::Error::other("x")).kind(), ErrorKind::Io);
        for kind in ALL {
            assert!([1, 3, 4].contains(&kind.exit_code()), "{kind:?}");
        }
    }
}
