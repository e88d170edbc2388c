//! containerd resolver (gRPC over the unix socket, with containerd-client + tonic): container
//! record → snapshotter and snapshot key → the snapshot's mounts → layer.
//!
//! - The namespace travels in the `containerd-namespace` request header.
//! - Records may leave `snapshotter` and `snapshot_key` empty (CRI, Docker): containerd's default
//!   snapshotter and the container id then apply.
//! - `Mounts` answers for active snapshots only; it is all rodiff asks for, so no `View`
//!   snapshot is ever created (and so none is ever left behind).
//! - btrfs: the mount names the subvolume by id; the snapshotter's root (introspection service)
//!   holds `active/<n>` and `snapshots/<n>`, which [`btrfs_path`] maps by subvolume id and UUID.
//! - Kubernetes pods are found through the CRI labels of their containers ([`record`]).

pub mod btrfs_path;
pub mod mounts;
pub mod record;

use std::future::Future;
use std::path::{Path, PathBuf};

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::events_client::EventsClient;
use containerd_client::services::v1::namespaces_client::NamespacesClient;
use containerd_client::services::v1::{ListNamespacesRequest, SubscribeRequest};
use containerd_client::services::v1::introspection_client::IntrospectionClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{MountsRequest, StatSnapshotRequest};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{GetRequest, ListPidsRequest};
use containerd_client::services::v1::{Container, GetContainerRequest, ListContainersRequest, PluginsRequest};
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status};

use futures_util::{Stream, StreamExt};

use super::inventory::{ListedContainer, RuntimeEvent};
use super::{ClientOptions, Origin, Runtime, PodSelector, Processes, ResolvedContainer};
use crate::error::{Error, Result};
use crate::layer::{BtrfsLayer, Layer, OverlayLayer};
use mounts::SnapshotFiles;

/// `Info.kind` of an active (writable) snapshot.
const KIND_ACTIVE: i32 = 2;

/// A connection to containerd, in one namespace.
pub struct ContainerdResolver {
    channel: Channel,
    socket: String,
    namespace: String,
    namespace_header: MetadataValue<containerd_client::tonic::metadata::Ascii>,
    options: ClientOptions,
}

impl ContainerdResolver {
    /// Connects to the socket the options select, in the namespace they select.
    pub async fn connect(options: &ClientOptions) -> Result<ContainerdResolver> {
        Self::connect_namespace(options, &options.containerd_namespace()).await
    }

    /// Connects to the socket the options select, in `namespace`.
    pub async fn connect_namespace(options: &ClientOptions, namespace: &str) -> Result<ContainerdResolver> {
        Self::connect_to(options, &options.containerd_socket(), namespace).await
    }

    /// Connects to the containerd at `socket` (a path, or `unix://` + path), in `namespace`.
    pub async fn connect_to(options: &ClientOptions, socket: &str, namespace: &str) -> Result<ContainerdResolver> {
        let socket = socket.strip_prefix("unix://").unwrap_or(socket).to_string();
        let unavailable = |cause: String| Error::RuntimeUnavailable { runtime: "containerd", endpoint: socket.clone(), cause };
        // Connecting is lazy in spirit but not in tonic: a missing socket is reported here, with
        // the OS's words rather than tonic's "transport error".
        let host_socket = options.host_path(&socket);
        std::fs::metadata(&host_socket).map_err(|e| unavailable(e.to_string()))?;
        let channel = tokio::time::timeout(options.timeout, containerd_client::connect(&host_socket))
            .await
            .map_err(|_| unavailable(options.no_answer()))?
            .map_err(|e| unavailable(error_chain(&e)))?;
        Self::with_channel(channel, socket, namespace, options.clone())
    }

    /// The same connection, looking in `namespace`.
    pub fn in_namespace(&self, namespace: &str) -> Result<ContainerdResolver> {
        Self::with_channel(self.channel.clone(), self.socket.clone(), namespace, self.options.clone())
    }

    /// A resolver over `channel` (to `socket`) in `namespace`; a namespace that cannot be sent in a
    /// request header is [`Error::RuntimeUnavailable`].
    fn with_channel(channel: Channel, socket: String, namespace: &str, options: ClientOptions) -> Result<ContainerdResolver> {
        let namespace_header = MetadataValue::try_from(namespace).map_err(|_| Error::RuntimeUnavailable {
            runtime: "containerd",
            endpoint: socket.clone(),
            cause: format!("namespace {namespace:?} cannot be sent in a request header"),
        })?;
        Ok(ContainerdResolver { channel, socket, namespace: namespace.to_string(), namespace_header, options })
    }

    /// The socket this resolver talks to.
    pub fn socket(&self) -> &str {
        &self.socket
    }

    /// The namespace this resolver looks in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Finds a container by id (or unique id prefix) and locates its layer.
    pub async fn resolve(&self, container: &str) -> Result<ResolvedContainer> {
        let record = self.container(container).await?;
        self.resolve_record(container, record).await
    }

    /// Finds the containers of a Kubernetes pod (CRI labels), leaving out its sandbox (pause)
    /// container, and locates their layers; sorted by container name. An empty selection is
    /// [`Error::ContainerNotFound`].
    pub async fn resolve_pod(&self, pod: &PodSelector) -> Result<Vec<ResolvedContainer>> {
        let what = pod.to_string();
        let mut records: Vec<Container> = self
            .list(&what, record::pod_filter(pod))
            .await?
            .into_iter()
            .filter(|c| !record::is_sandbox(&c.labels))
            .collect();
        if records.is_empty() {
            return Err(self.not_found(&what));
        }
        records.sort_by(|a, b| {
            record::display_name(&a.labels, &a.id).cmp(record::display_name(&b.labels, &b.id)).then(a.id.cmp(&b.id))
        });
        let mut resolved = Vec::with_capacity(records.len());
        for c in records {
            let id = c.id.clone();
            resolved.push(self.resolve_record(&id, c).await?);
        }
        Ok(resolved)
    }

    /// The namespaces containerd has, sorted.
    pub async fn namespaces(&self) -> Result<Vec<String>> {
        let mut client = NamespacesClient::new(self.channel.clone());
        let response = self.call("<namespaces>", client.list(Request::new(ListNamespacesRequest::default()))).await?;
        let mut names: Vec<String> = response.namespaces.into_iter().map(|n| n.name).collect();
        names.sort();
        Ok(names)
    }

    /// The containers of this namespace, but pods' sandbox (pause) containers. Whether they
    /// run is left unknown (it takes one call per container; resolving tells).
    pub async fn list_all(&self) -> Result<Vec<ListedContainer>> {
        let mut client = ContainersClient::new(self.channel.clone());
        let records = self.call("<containers>", client.list(self.request(ListContainersRequest::default()))).await?.containers;
        let listed = records.into_iter().filter(|c| !ListedContainer::is_sandbox(&c.labels)).map(|c| {
            let name = record::display_name(&c.labels, &c.id).to_string();
            let mut listed = ListedContainer::new(Runtime::Containerd, Some(self.namespace.clone()), c.id.clone(), name).with_labels(&c.labels);
            listed.image = Some(c.image).filter(|i| !i.is_empty());
            listed
        });
        Ok(listed.collect())
    }

    /// containerd's container and task events, in every namespace, from now on (`Subscribe`),
    /// until the connection ends; a subscription that fails or breaks yields one
    /// [`Error::RuntimeUnavailable`] and ends the stream.
    pub async fn events(&self) -> Result<impl Stream<Item = Result<RuntimeEvent>> + Send + 'static> {
        let mut client = EventsClient::new(self.channel.clone());
        let filters = vec![r#"topic~="^/containers/""#.to_string(), r#"topic~="^/tasks/""#.to_string()];
        let stream = self.call("<events>", client.subscribe(Request::new(SubscribeRequest { filters }))).await?;
        let socket = self.socket.clone();
        Ok(stream.scan(false, move |failed, item| {
            if *failed {
                return std::future::ready(None);
            }
            std::future::ready(Some(match item {
                Ok(envelope) => Ok(RuntimeEvent {
                    runtime: Runtime::Containerd,
                    namespace: Some(envelope.namespace),
                    container: envelope.event.and_then(|any| event_subject(&any.value)),
                    action: envelope.topic,
                }),
                Err(status) => {
                    *failed = true;
                    Err(Error::RuntimeUnavailable { runtime: "containerd", endpoint: socket.clone(), cause: format!("the event stream ended: {}", status_text(&status)) })
                }
            }))
        }))
    }

    /// The layer of the active snapshot `key` of `snapshotter`, for `container` (named in
    /// errors). Used for containers whose record does not say (Docker's containerd image store).
    pub async fn snapshot_layer(&self, container: &str, snapshotter: &str, key: &str) -> Result<Layer> {
        let unsupported = |detail: String| Error::UnsupportedStorage { container: container.to_string(), detail };
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let stat = StatSnapshotRequest { snapshotter: snapshotter.to_string(), key: key.to_string() };
        let info = self
            .call(container, snapshots.stat(self.request(stat)))
            .await
            .map_err(|e| self.snapshot_error(container, snapshotter, key, e))?
            .info
            .unwrap_or_default();
        if info.kind != KIND_ACTIVE {
            return Err(unsupported(format!("snapshot {key} of snapshotter {snapshotter} is not writable (kind {})", info.kind)));
        }
        let request = MountsRequest { snapshotter: snapshotter.to_string(), key: key.to_string() };
        let response = self
            .call(container, snapshots.mounts(self.request(request)))
            .await
            .map_err(|e| self.snapshot_error(container, snapshotter, key, e))?;
        let found: Vec<mounts::Mount> = response
            .mounts
            .into_iter()
            .map(|m| mounts::Mount { kind: m.r#type, source: m.source, options: m.options })
            .collect();
        let files = mounts::parse(&found).map_err(|detail| unsupported(format!("snapshotter {snapshotter}: {detail}")))?;
        match files {
            SnapshotFiles::Overlay { upper, lowers, xattr } => Ok(Layer::Overlay(OverlayLayer {
                upper: self.options.host_path(upper),
                lowers: lowers.into_iter().map(|l| self.options.host_path(l)).collect(),
                xattr,
            })),
            SnapshotFiles::Btrfs { device, subvolid } => {
                if info.parent.is_empty() {
                    return Err(unsupported(format!("btrfs snapshot {key} has no parent snapshot to compare with")));
                }
                let root = self.snapshotter_root(container, snapshotter).await?;
                let layer = btrfs_layer(&root, subvolid, &info.parent)
                    .map_err(|detail| unsupported(format!("snapshotter {snapshotter} (device {device}, root {}): {detail}", root.display())))?;
                Ok(Layer::Btrfs(layer))
            }
        }
    }

    /// Whether the snapshot `key` of `snapshotter` still exists (containerd forgets a snapshot
    /// before it deletes its directories).
    pub async fn snapshot_exists(&self, snapshotter: &str, key: &str) -> Result<bool> {
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let stat = StatSnapshotRequest { snapshotter: snapshotter.to_string(), key: key.to_string() };
        match self.call(key, snapshots.stat(self.request(stat))).await {
            Ok(_) => Ok(true),
            Err(Error::ContainerNotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    async fn resolve_record(&self, container: &str, c: Container) -> Result<ResolvedContainer> {
        let snapshotter = record::snapshotter(&c.snapshotter);
        let key = record::snapshot_key(&c.snapshot_key, &c.id);
        let layer = self.snapshot_layer(container, snapshotter, key).await?;
        let mount_destinations = c.spec.as_ref().map(|spec| record::mount_destinations(&spec.value)).unwrap_or_default();
        let user = c.spec.as_ref().and_then(|spec| record::user(&spec.value));
        let name = record::display_name(&c.labels, &c.id).to_string();
        let processes = self.task_processes(container, &c.id).await?;
        let image = Some(c.image).filter(|i| !i.is_empty());
        let origin = Origin::Containerd { namespace: self.namespace.clone(), snapshotter: snapshotter.to_string(), key: key.to_string() };
        Ok(ResolvedContainer { id: c.id, name, image, layer, mount_destinations, runtime_entries: Vec::new(), dialect: crate::dialect::Dialect::Docker, processes, origin, user })
    }

    /// The processes of the container's task: its pid (the init, from `Get`) and every process of
    /// its cgroup (`ListPids`), in containerd's PID namespace; none when it has no task (never
    /// started, or stopped and deleted) or its task has stopped (`ListPids` lists nothing).
    async fn task_processes(&self, container: &str, id: &str) -> Result<Processes> {
        let mut tasks = TasksClient::new(self.channel.clone());
        let request = self.request(ListPidsRequest { container_id: id.to_string() });
        let pids: Vec<u32> = match self.call(container, tasks.list_pids(request)).await {
            Ok(response) => response.processes.into_iter().map(|p| p.pid).collect(),
            Err(Error::ContainerNotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        if pids.is_empty() {
            return Ok(Processes::none(&self.options));
        }
        let request = self.request(GetRequest { container_id: id.to_string(), exec_id: String::new() });
        let init = match self.call(container, tasks.get(request)).await {
            Ok(response) => response.process.map(|p| p.pid).filter(|&pid| pid != 0 && pids.contains(&pid)),
            // Deleted between the two calls: not running any more.
            Err(Error::ContainerNotFound { .. }) => return Ok(Processes::none(&self.options)),
            Err(e) => return Err(e),
        };
        Ok(Processes::new(&self.options, init, pids))
    }

    /// The record of `container`: by exact id, else the one container whose id starts with it.
    async fn container(&self, container: &str) -> Result<Container> {
        if container.is_empty() {
            return Err(self.not_found(container));
        }
        let mut client = ContainersClient::new(self.channel.clone());
        let request = self.request(GetContainerRequest { id: container.to_string() });
        match self.call(container, client.get(request)).await {
            Ok(response) => return response.container.ok_or_else(|| self.not_found(container)),
            Err(Error::ContainerNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
        let mut matches = self.list(container, record::id_prefix_filter(container)).await?;
        match matches.len() {
            1 => Ok(matches.remove(0)),
            0 => Err(self.not_found(container)),
            n => Err(Error::ContainerNotFound {
                container: format!("{container} (ambiguous: {n} containers have ids starting with it)"),
                runtime: "containerd",
                endpoint: self.endpoint(),
            }),
        }
    }

    async fn list(&self, what: &str, filter: String) -> Result<Vec<Container>> {
        let mut client = ContainersClient::new(self.channel.clone());
        let request = self.request(ListContainersRequest { filters: vec![filter] });
        Ok(self.call(what, client.list(request)).await?.containers)
    }

    /// The snapshotter's root directory (its plugin's `root` export), as seen from this process.
    async fn snapshotter_root(&self, container: &str, snapshotter: &str) -> Result<PathBuf> {
        let mut client = IntrospectionClient::new(self.channel.clone());
        let filter = format!("type==io.containerd.snapshotter.v1,id=={snapshotter}");
        let plugins = self.call(container, client.plugins(self.request(PluginsRequest { filters: vec![filter] }))).await?.plugins;
        let root = plugins.into_iter().find_map(|p| p.exports.get("root").cloned()).filter(|r| !r.is_empty());
        let root = root.ok_or_else(|| Error::Protocol {
            container: container.to_string(),
            runtime: "containerd",
            detail: format!("the introspection service names no root for snapshotter {snapshotter}"),
        })?;
        Ok(self.options.host_path(root))
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request.metadata_mut().insert("containerd-namespace", self.namespace_header.clone());
        request
    }

    /// Awaits one RPC with a timeout, mapping its status to the library's errors.
    async fn call<T>(
        &self,
        container: &str,
        rpc: impl Future<Output = std::result::Result<containerd_client::tonic::Response<T>, Status>>,
    ) -> Result<T> {
        match tokio::time::timeout(self.options.timeout, rpc).await {
            Err(_) => Err(self.unavailable(self.options.no_answer())),
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(match status.code() {
                Code::NotFound => self.not_found(container),
                Code::Unavailable => self.unavailable(status_text(&status)),
                // A status made on this side from a broken connection (containerd gone in the middle
                // of its answer) carries its cause; one containerd sent does not.
                _ if std::error::Error::source(&status).is_some() => self.unavailable(transport_text(&status)),
                _ => Error::Protocol { container: container.to_string(), runtime: "containerd", detail: status_text(&status) },
            }),
        }
    }

    /// A snapshot that the record names but containerd does not have is storage rodiff cannot
    /// read, not a missing container.
    fn snapshot_error(&self, container: &str, snapshotter: &str, key: &str, e: Error) -> Error {
        match e {
            Error::ContainerNotFound { .. } => Error::UnsupportedStorage {
                container: container.to_string(),
                detail: format!("no snapshot {key} in snapshotter {snapshotter} ({})", self.endpoint()),
            },
            e => e,
        }
    }

    /// How errors name where we looked: socket and namespace.
    fn endpoint(&self) -> String {
        format!("{}, namespace {}", self.socket, self.namespace)
    }

    fn not_found(&self, container: &str) -> Error {
        Error::ContainerNotFound { container: container.to_string(), runtime: "containerd", endpoint: self.endpoint() }
    }

    fn unavailable(&self, cause: String) -> Error {
        Error::RuntimeUnavailable { runtime: "containerd", endpoint: self.socket.clone(), cause }
    }
}

/// The container a container or task event is about: each of them (`ContainerCreate`,
/// `ContainerDelete`, `TaskStart`, `TaskExit`, …) carries its container's id as field 1.
fn event_subject(payload: &[u8]) -> Option<String> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Subject {
        #[prost(string, tag = "1")]
        id: String,
    }
    let subject = <Subject as prost::Message>::decode(payload).ok()?;
    Some(subject.id).filter(|id| !id.is_empty())
}

/// The btrfs layer of active subvolume `subvolid` under the snapshotter `root`: the subvolume is
/// one of `root/active/*`, and its parent the entry of `root/snapshots/*` it was snapshotted
/// from (`parent` is the parent snapshot's name, for messages).
fn btrfs_layer(root: &Path, subvolid: u64, parent: &str) -> std::result::Result<BtrfsLayer, String> {
    let active = root.join("active");
    let (subvolume, info) = btrfs_path::find_by_id(&active, subvolid)
        .map_err(|e| format!("{}: {e}", active.display()))?
        .ok_or_else(|| format!("no subvolume {subvolid} in {}", active.display()))?;
    let snapshots = root.join("snapshots");
    let parent_dir = btrfs_path::find_by_uuid(&snapshots, &info.parent_uuid)
        .map_err(|e| format!("{}: {e}", snapshots.display()))?
        .ok_or_else(|| format!("parent snapshot {parent} of {} not found in {}", subvolume.display(), snapshots.display()))?;
    Ok(BtrfsLayer { subvolume, parent: parent_dir })
}

fn status_text(status: &Status) -> String {
    let message = status.message();
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.to_string()
    }
}

/// A status made from a broken connection, in one line: its message and the causes below it.
fn transport_text(status: &Status) -> String {
    let mut text = status_text(status);
    if let Some(source) = std::error::Error::source(status) {
        let causes = error_chain(source);
        text = if causes.starts_with(&text) { causes } else { format!("{text}: {causes}") };
    }
    text
}

/// An error and its sources in one line (tonic's top-level message alone is "transport error").
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}
