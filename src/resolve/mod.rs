//! Resolvers: from a container reference to its layer on the host. Resolvers know runtimes and
//! nothing about filesystems beyond where a layer lives.

pub mod cgroup;
pub mod containerd;
pub mod docker;
pub mod inventory;
pub mod podman;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::layer::Layer;

/// The default Docker endpoint when neither `--host` nor `$DOCKER_HOST` is given.
pub const DEFAULT_DOCKER_HOST: &str = "unix:///var/run/docker.sock";

/// The default containerd socket when neither `--address` nor `$CONTAINERD_ADDRESS` is given.
pub const DEFAULT_CONTAINERD_ADDRESS: &str = "/run/containerd/containerd.sock";

/// The default containerd namespace when neither `--namespace` nor `$CONTAINERD_NAMESPACE` is
/// given.
pub const DEFAULT_CONTAINERD_NAMESPACE: &str = "default";

/// How long a runtime request waits for an answer when [`ClientOptions::timeout`] is left at its
/// default (and `--timeout` is not given).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The containerd namespace the CRI plugin (Kubernetes) keeps its containers in.
pub const KUBERNETES_NAMESPACE: &str = "k8s.io";

/// Which container runtime to ask.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// The Docker Engine API.
    #[default]
    Docker,
    /// containerd's gRPC API (snapshot service).
    Containerd,
}

/// A Kubernetes pod, selected through the CRI labels of its containers (containerd only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodSelector {
    /// The pod's Kubernetes namespace (`io.kubernetes.pod.namespace`).
    pub namespace: String,
    /// The pod's name (`io.kubernetes.pod.name`).
    pub name: String,
    /// Only the container of this name (`io.kubernetes.container.name`); all of the pod's
    /// containers when `None`.
    pub container: Option<String>,
}

impl std::str::FromStr for PodSelector {
    type Err = String;

    /// Parses `NAMESPACE/NAME`.
    fn from_str(s: &str) -> std::result::Result<PodSelector, String> {
        match s.split_once('/') {
            Some((ns, name)) if !ns.is_empty() && !name.is_empty() && !name.contains('/') => {
                Ok(PodSelector { namespace: ns.to_string(), name: name.to_string(), container: None })
            }
            _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
        }
    }
}

impl std::fmt::Display for PodSelector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::escape::Escaped;
        write!(f, "pod {}/{}", Escaped::str(&self.namespace), Escaped::str(&self.name))?;
        match &self.container {
            Some(c) => write!(f, " container {}", Escaped::str(c)),
            None => Ok(()),
        }
    }
}

/// How a [`crate::Client`] reaches the runtime, where the host's filesystem is, and how many
/// threads its walks may use. Explicit: the library reads no environment variable (the CLI maps
/// `$DOCKER_HOST`, `$CONTAINERD_ADDRESS` and `$CONTAINERD_NAMESPACE` onto these fields).
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// The runtime to ask.
    pub runtime: Runtime,
    /// Docker endpoint: `unix:///path` or `tcp://host:port`. Default [`DEFAULT_DOCKER_HOST`].
    pub docker_host: String,
    /// containerd socket: a path, or `unix://` + path. Default [`DEFAULT_CONTAINERD_ADDRESS`].
    pub containerd_address: String,
    /// containerd namespace; `None` means [`DEFAULT_CONTAINERD_NAMESPACE`] for a container, and
    /// [`KUBERNETES_NAMESPACE`] for a pod.
    pub namespace: Option<String>,
    /// Where the host's `/` is visible (an agent running in a container mounts it elsewhere).
    pub host_root: PathBuf,
    /// How long each request to the runtime may take before it counts as unanswered
    /// ([`crate::Error::RuntimeUnavailable`], "no answer within N s"): Docker's `/_ping` (connect,
    /// request and response under one deadline) and every Engine API call (bollard's client
    /// timeout, in whole seconds, rounded up; for streams, until the response starts), containerd's
    /// connect and each of its RPCs. Each request has the whole timeout, so a diff that makes
    /// several may take longer in all (bound the whole with [`crate::ScanOptions::stop`]). Default
    /// [`DEFAULT_TIMEOUT`] (30 s); it should be more than zero (zero fails every request at once).
    pub timeout: Duration,
    /// Threads of the client's walker pool, shared by all its scans (0: one per CPU; at most
    /// [`crate::layer::walkers::MAX_WALKERS`]).
    pub walkers: usize,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            runtime: Runtime::Docker,
            docker_host: DEFAULT_DOCKER_HOST.to_string(),
            containerd_address: DEFAULT_CONTAINERD_ADDRESS.to_string(),
            namespace: None,
            host_root: PathBuf::from("/"),
            timeout: DEFAULT_TIMEOUT,
            walkers: 0,
        }
    }
}

impl ClientOptions {
    /// The Docker endpoint these options select.
    pub fn docker_endpoint(&self) -> String {
        non_empty(Some(self.docker_host.clone())).unwrap_or_else(|| DEFAULT_DOCKER_HOST.to_string())
    }

    /// The containerd socket path these options select (any `unix://` prefix removed).
    pub fn containerd_socket(&self) -> String {
        let address = non_empty(Some(self.containerd_address.clone())).unwrap_or_else(|| DEFAULT_CONTAINERD_ADDRESS.to_string());
        match address.strip_prefix("unix://") {
            Some(path) => path.to_string(),
            None => address,
        }
    }

    /// The containerd namespace these options select for a container reference.
    pub fn containerd_namespace(&self) -> String {
        non_empty(self.namespace.clone()).unwrap_or_else(|| DEFAULT_CONTAINERD_NAMESPACE.to_string())
    }

    /// The containerd namespace to look for a pod in: `namespace` if set, else
    /// [`KUBERNETES_NAMESPACE`].
    pub fn pod_namespace(&self) -> String {
        non_empty(self.namespace.clone()).unwrap_or_else(|| KUBERNETES_NAMESPACE.to_string())
    }

    /// The cause of a request that timed out: `no answer within 30 s`.
    pub(crate) fn no_answer(&self) -> String {
        format!("no answer within {} s", self.timeout.as_secs_f64())
    }

    /// [`timeout`](Self::timeout) in whole seconds, rounded up (bollard counts in seconds).
    pub(crate) fn timeout_secs(&self) -> u64 {
        self.timeout.as_secs() + u64::from(self.timeout.subsec_nanos() > 0)
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
    /// The image reference it was created from (`postgres:15`), when the runtime keeps one.
    pub image: Option<String>,
    /// Its writable layer on the host.
    pub layer: Layer,
    /// Destinations of the container's mounts (volumes, binds, tmpfs): the runtime creates these
    /// in the root filesystem, and writes below them do not reach the layer.
    pub mount_destinations: Vec<PathBuf>,
    /// Entries the runtime itself makes in the layer for its own mounts, each exactly (not what is
    /// below it): Podman's ([`podman::mounted_own_entries`](crate::resolve::podman::mounted_own_entries));
    /// none for Docker, which makes them in its `-init` layer. Marked as mount points in every
    /// diff, so that a plan ignores them and does not take the directories they were made in for
    /// the application's writes.
    pub runtime_entries: Vec<PathBuf>,
    /// Whose diff its `docker`-format diff follows ([`crate::dialect`]): Podman's for a container
    /// of Podman's service.
    pub dialect: crate::dialect::Dialect,
    /// The container's processes when it was resolved (none when it is not running), for live
    /// evidence ([`crate::live`]).
    pub processes: Processes,
    /// What the runtime calls the layer, to confirm after a walk that it still exists.
    pub origin: Origin,
    /// The user the runtime starts the container's process as, as configured: Docker's
    /// `Config.User` (`redis`, `redis:adm`, `100:102`; names are the image's), containerd's OCI
    /// `process.user` as `uid:gid`; `None` when none is set (root). For ownership evidence in
    /// plans of a stopped container ([`crate::run_as`]).
    pub user: Option<String>,
}

/// The runtime object a resolved layer belongs to. A container removed while its upper directory
/// is walked loses entries under the walk, which then looks like a shorter diff; asking the
/// runtime after the walk tells the two apart ([`crate::Client`] does).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Origin {
    /// Nothing to ask: a layer given by its paths.
    #[default]
    Unknown,
    /// A Docker container, by [`ResolvedContainer::id`].
    Docker,
    /// An active containerd snapshot.
    Containerd {
        /// The containerd namespace the container is in.
        namespace: String,
        /// The snapshotter that holds the snapshot.
        snapshotter: String,
        /// The snapshot's key.
        key: String,
    },
}

/// The processes of a container, as its runtime knows them, and where to read them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Processes {
    /// The host's `/proc`, as seen from this process (`<host-root>/proc`).
    pub proc_root: PathBuf,
    /// The container's init process (host pid): the one the runtime started at the root of the
    /// container's root filesystem (Docker: `State.Pid`; containerd: the task's pid), from whose
    /// `/` live evidence tells which filesystem and directory that is ([`crate::live`]). `None`
    /// when the container is not running; otherwise also one of `pids`.
    pub init: Option<u32>,
    /// Their pids in the host's PID namespace (the runtime's), sorted, without duplicates; empty
    /// when the container is not running. Docker: `State.Pid` and every process of its cgroup
    /// ([`cgroup`]); containerd: the task's `ListPids`. Their order says nothing: which one is the
    /// init is `init`.
    pub pids: Vec<u32>,
}

impl Processes {
    /// The init process `init` and the other processes `pids` (in any order, maybe repeated, with
    /// or without `init`), read from `<host-root>/proc` as `options` say.
    pub fn new(options: &ClientOptions, init: Option<u32>, mut pids: Vec<u32>) -> Processes {
        pids.extend(init);
        pids.sort_unstable();
        pids.dedup();
        Processes { proc_root: options.host_path("/proc"), init, pids }
    }

    /// No processes: the container is not running.
    pub fn none(options: &ClientOptions) -> Processes {
        Processes::new(options, None, Vec::new())
    }
}

/// What to diff: one container, or the containers of a Kubernetes pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// A container by name, id or unique id prefix, running or stopped.
    Container(String),
    /// A pod's containers (containerd, CRI labels), or one of them ([`PodSelector::container`]).
    Pod(PodSelector),
}

impl Target {
    /// A pod, or the container `container` of it when given.
    pub fn pod(pod: PodSelector, container: Option<&str>) -> Target {
        let mut pod = pod;
        if let Some(c) = container.filter(|c| !c.is_empty()) {
            pod.container = Some(c.to_string());
        }
        Target::Pod(pod)
    }
}

impl Runtime {
    /// Its name in messages and JSON: `docker`, `containerd`.
    pub fn name(self) -> &'static str {
        match self {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
        }
    }
}

impl std::fmt::Display for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl From<&str> for Target {
    fn from(container: &str) -> Target {
        Target::Container(container.to_string())
    }
}

impl From<String> for Target {
    fn from(container: String) -> Target {
        Target::Container(container)
    }
}

impl From<PodSelector> for Target {
    fn from(pod: PodSelector) -> Target {
        Target::Pod(pod)
    }
}

impl std::fmt::Display for Target {
    /// `container web` or `pod shop/web-0 container app`: how errors name what was asked for.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Container(c) => write!(f, "container {}", crate::escape::Escaped::str(c)),
            Target::Pod(pod) => pod.fmt(f),
        }
    }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.filter(|s| !s.is_empty())
}
