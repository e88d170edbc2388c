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
//! Everything goes through a [`Client`]: it holds explicit options (nothing is read from the
//! environment), reuses its runtime connections and shares one bounded pool of walker threads
//! between all its scans, from any number of threads; it has blocking and async methods, and every
//! operation can be cancelled or given a deadline ([`ScanOptions::stop`]).
//!
//! ```no_run
//! use rodiff::{Client, ClientOptions};
//!
//! let client = Client::new(ClientOptions::default())?; // Docker at /var/run/docker.sock
//! for change in client.diff("my-container")? {
//!     println!("{} {}", change.kind, change.path.display());
//! }
//! # Ok::<(), rodiff::Error>(())
//! ```
//!
//! Embedding: the library changes no process-wide setting and reads no environment variable. A
//! walk keeps one descriptor open per directory level, and a container can make its tree as deep
//! as it likes: a program that diffs layers it does not control should raise its open-file limit
//! once ([`raise_fd_limit`]), as the CLI does.

pub mod annotate;
pub mod cancel;
pub mod dialect;
pub mod client;
pub mod error;
pub mod escape;
pub mod evidence;
pub(crate) mod fs;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod idmap;
pub mod layer;
pub mod live;
pub mod model;
pub mod mountinfo;
pub mod plan;
pub mod render;
pub mod resolve;
pub mod run_as;
pub mod verify;
pub mod watch;

pub use cancel::{Cancel, Deadline, Stop};
pub use client::{Client, Events, Outcome, Watched};
pub use error::{Error, ErrorKind, Result};
pub use fs::raise_fd_limit;
pub use layer::{ChangeSink, Collect, Flow, Layer, ScanOptions, Walkers};
pub use model::{Change, ChangeKind, Evidence, FileType, Metadata};
pub use plan::{Plan, PlannedMount, Rules};
pub use resolve::inventory::{ListedContainer, RuntimeEvent};
pub use resolve::{ClientOptions, Origin, PodSelector, Processes, ResolvedContainer, Runtime, Target};
