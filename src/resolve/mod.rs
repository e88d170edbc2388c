//! Resolvers: from a container reference to its layer on the host. Resolvers know runtimes and
//! nothing about filesystems beyond where a layer lives.

pub mod docker;

use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::layer::Layer;

/// The default Docker endpoint when neither `--host` nor `$DOCKER_HOST` is given.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// Which container runtime to ask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Runtime {
    /// The Docker Engine API.
    #[default]
    Docker,
}

/// How to reach the runtime and where the host's filesystem is.
#[derive(Clone, Debug)]
pub struct RuntimeOptions {
    /// The runtime to ask.
    pub runtime: Runtime,
    /// Docker endpoint (`unix:///path` or `tcp://host:port`); `None` means `$DOCKER_HOST`, else
    /// [`DEFAULT_DOCKER_HOST`].
    pub docker_host: Option<String>,
    /// Where the host's `/` is visible (an agent running in a container mounts it elsewhere).
    pub host_root: PathBuf,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions { runtime: Runtime::Docker, docker_host: None, host_root: PathBuf::from("/") }
    }
}

impl RuntimeOptions {
    /// The Docker endpoint these options select.
    pub fn docker_endpoint(&self) -> String {
        self.docker_host
            .clone()
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("DOCKER_HOST").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
    }

    /// A host path as seen from this process (below `host_root`).
    pub fn host_path(&self, path: impl AsRef<Path>) -> PathBuf {
        let path = path.as_ref();
        match path.strip_prefix("/") {
            Ok(rel) if self.host_root != Path::new("/") => self.host_root.join(rel),
            _ => path.to_path_buf(),
        }
    }
}

/// A container, resolved to what a diff needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResolvedContainer {
    /// The runtime's full container id.
    pub id: String,
    /// The container's name, without Docker's leading `/`.
    pub name: String,
    /// Its writable layer on the host.
    pub layer: Layer,
    /// Destinations of the container's mounts (volumes, binds, tmpfs): the runtime creates these
    /// in the root filesystem, and writes below them do not reach the layer.
    pub mount_destinations: Vec<PathBuf>,
}

/// Resolves `container` with the runtime the options select.
pub async fn resolve(options: &RuntimeOptions, container: &str) -> Result<ResolvedContainer> {
    match options.runtime {
        Runtime::Docker => docker::DockerResolver::connect(options).await?.resolve(container).await,
    }
}
