//! Docker Engine API resolver (bollard): container → graph driver data → layer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bollard::errors::Error as BollardError;
use bollard::models::{ContainerInspectResponse, ContainerState, ContainerStateStatusEnum};
use bollard::models::ContainerSummaryStateEnum;
use bollard::query_parameters::{EventsOptions, InspectContainerOptions, ListContainersOptions};
use futures_util::{Stream, StreamExt};
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};

use super::inventory::{ListedContainer, RuntimeEvent};
use super::{cgroup, podman, ClientOptions, Runtime, Origin, Processes, ResolvedContainer};
use crate::dialect::Dialect;
use crate::error::{Error, Result};
use crate::layer::{BtrfsLayer, Layer, OverlayLayer, XattrNamespace};

/// The longest container reference rodiff sends to Docker (an id is 64 bytes): a longer one is "no
/// such container" rather than a request line the daemon may refuse.
pub const MAX_REFERENCE: usize = 1024;

/// A connection to a Docker daemon (or Podman's Docker-compatible service, see [`podman`]), at an
/// API version both sides speak.
pub struct DockerResolver {
    docker: Docker,
    endpoint: String,
    options: ClientOptions,
    /// Podman's libpod API version when the daemon is Podman (its `/_ping` says so).
    libpod: Option<String>,
}

impl DockerResolver {
    /// Connects to the endpoint the options select at an API version both sides speak: the
    /// daemon's `/_ping` (unversioned, and cheap: `/version` and `/info` make dockerd ask containerd
    /// and runc) names its maximum, and we use the lower of that and bollard's own. Debian's
    /// dockerd 20.10 speaks 1.41 and refuses requests for newer versions.
    ///
    /// Podman's service announces itself in the same ping (`Libpod-Api-Version`): see [`podman`].
    ///
    /// The ping (connect, request, response) and every later request each have
    /// [`ClientOptions::timeout`]: a daemon that does not answer in time is
    /// [`Error::RuntimeUnavailable`], "no answer within N s".
    pub async fn connect(options: &ClientOptions) -> Result<DockerResolver> {
        let endpoint = options.docker_endpoint();
        let pong = match tokio::time::timeout(options.timeout, ping::ping(&endpoint)).await {
            Err(_) => return Err(unavailable(&endpoint, options.no_answer())),
            Ok(pong) => pong.map_err(|e| unavailable(&endpoint, e.to_string()))?,
        };
        let version = match pong.api_version {
            Some(v) if v < *API_DEFAULT_VERSION => v,
            _ => *API_DEFAULT_VERSION,
        };
        let docker = client(&endpoint, options.timeout_secs(), &version)?;
        Ok(DockerResolver { docker, endpoint, options: options.clone(), libpod: pong.libpod })
    }

    /// Whether the daemon is Podman's Docker-compatible service.
    pub fn is_podman(&self) -> bool {
        self.libpod.is_some()
    }

    /// Whose diff and flags its containers get: Podman's for Podman's service, else Docker's.
    pub fn dialect(&self) -> Dialect {
        if self.is_podman() { Dialect::Podman } else { Dialect::Docker }
    }

    /// The endpoint this resolver talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bollard client, for the rest of the library (its requests time out after
    /// [`ClientOptions::timeout`]).
    pub(crate) fn client(&self) -> &Docker {
        &self.docker
    }

    /// How long one request may take ([`ClientOptions::timeout`]).
    pub(crate) fn timeout(&self) -> std::time::Duration {
        self.options.timeout
    }

    /// Runs one Engine API request under [`ClientOptions::timeout`] as a whole, body included:
    /// bollard's own timeout ends when the response headers arrive, and a daemon that stalls in
    /// the middle of a body would otherwise be waited for forever. Running out of time is bollard's
    /// [`BollardError::RequestTimeoutError`], reported like its own ([`Self::unavailable`]).
    pub(crate) async fn request<T>(&self, call: impl std::future::Future<Output = Result<T, BollardError>>) -> Result<T, BollardError> {
        tokio::time::timeout(self.options.timeout, call).await.unwrap_or(Err(BollardError::RequestTimeoutError))
    }

    /// `Ok` when `container` can be a Docker container name, id or id prefix
    /// (`[A-Za-z0-9][A-Za-z0-9_.-]*`, Docker's name grammar, up to [`MAX_REFERENCE`] bytes); anything else is
    /// [`Error::ContainerNotFound`] without asking. The reference goes into a request path, which
    /// bollard does not escape: `x/../web` or `web/json?` would otherwise name another container or
    /// another endpoint of the API.
    pub(crate) fn check_reference(&self, container: &str) -> Result<()> {
        let mut chars = container.chars();
        let valid = container.len() <= MAX_REFERENCE
            && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
            && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
        if valid {
            return Ok(());
        }
        Err(Error::ContainerNotFound { container: container.to_string(), runtime: "docker", endpoint: self.endpoint.clone() })
    }

    /// Whether a bollard error is a request that got no answer in time.
    pub(crate) fn is_timeout(e: &BollardError) -> bool {
        matches!(e, BollardError::RequestTimeoutError)
    }

    /// A failed request as [`Error::RuntimeUnavailable`] at this endpoint: "no answer within N s"
    /// when it timed out, else bollard's words.
    pub(crate) fn unavailable(&self, e: BollardError) -> Error {
        let cause = if Self::is_timeout(&e) { self.options.no_answer() } else { e.to_string() };
        unavailable(&self.endpoint, cause)
    }

    /// Whether the container `id` still exists and is not being removed.
    pub async fn still_there(&self, id: &str) -> Result<bool> {
        match self.request(self.docker.inspect_container(id, None::<InspectContainerOptions>)).await {
            Ok(inspect) => Ok(!inspect.state.as_ref().is_some_and(removing)),
            Err(BollardError::DockerResponseServerError { status_code: 404, .. }) => Ok(false),
            Err(e) => Err(self.unavailable(e)),
        }
    }

    /// Every container the daemon has, running or not, but those being removed and pods'
    /// sandbox containers (cri-dockerd).
    pub async fn list(&self) -> Result<Vec<ListedContainer>> {
        let options = ListContainersOptions { all: true, ..Default::default() };
        let summaries = self.request(self.docker.list_containers(Some(options))).await.map_err(|e| self.unavailable(e))?;
        let gone = |s: &Option<ContainerSummaryStateEnum>| matches!(s, Some(ContainerSummaryStateEnum::REMOVING | ContainerSummaryStateEnum::DEAD));
        let listed = summaries.into_iter().filter(|s| !gone(&s.state)).filter_map(|s| {
            let labels = s.labels.unwrap_or_default();
            let id = s.id.filter(|id| !id.is_empty())?;
            if ListedContainer::is_sandbox(&labels) {
                return None;
            }
            let name = s.names.into_iter().flatten().next().map(|n| n.trim_start_matches('/').to_string()).unwrap_or_else(|| id.clone());
            let mut listed = ListedContainer::new(Runtime::Docker, None, id, name).with_labels(&labels);
            listed.image = s.image.filter(|i| !i.is_empty());
            listed.running = Some(matches!(s.state, Some(ContainerSummaryStateEnum::RUNNING)));
            Some(listed)
        });
        Ok(listed.collect())
    }

    /// The daemon's container events from now on (`/events`, type `container`), until the
    /// connection ends; a connection that fails or breaks yields one
    /// [`Error::RuntimeUnavailable`] and ends the stream.
    pub fn events(&self) -> impl Stream<Item = Result<RuntimeEvent>> + Send + 'static {
        let filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let options = EventsOptions { filters: Some(filters), ..Default::default() };
        let endpoint = self.endpoint.clone();
        self.docker.events(Some(options)).scan(false, move |failed, item| {
            if *failed {
                return std::future::ready(None);
            }
            std::future::ready(Some(match item {
                Ok(message) => Ok(RuntimeEvent {
                    runtime: Runtime::Docker,
                    namespace: None,
                    container: message.actor.and_then(|a| a.id).filter(|id| !id.is_empty()),
                    action: message.action.unwrap_or_default(),
                }),
                Err(e) => {
                    *failed = true;
                    Err(unavailable(&endpoint, format!("the event stream ended: {e}")))
                }
            }))
        })
        .filter(|event| std::future::ready(!matches!(event, Ok(e) if e.action.is_empty())))
    }

    /// Finds a container by name, id or id prefix (running or stopped) and locates its layer.
    pub async fn resolve(&self, container: &str) -> Result<ResolvedContainer> {
        self.check_reference(container)?;
        let inspect = self.request(self.docker.inspect_container(container, None::<InspectContainerOptions>)).await;
        let inspect = inspect.map_err(|e| match e {
            BollardError::DockerResponseServerError { status_code: 404, .. } => Error::ContainerNotFound {
                container: container.to_string(),
                runtime: "docker",
                endpoint: self.endpoint.clone(),
            },
            // Docker answered, but not with the container: an id prefix that several containers
            // share ("Multiple IDs found with provided prefix"), a daemon-side failure.
            BollardError::DockerResponseServerError { status_code, message } if status_code >= 400 => Error::RuntimeCall {
                container: container.to_string(),
                runtime: "docker",
                action: "inspect the container".into(),
                cause: format!("{message} (status {status_code})"),
            },
            e => self.unavailable(e),
        })?;
        if inspect.state.as_ref().is_some_and(removing) {
            // Its layer is being deleted (its graph driver data may already lack the upper
            // directory): for a diff, the container is gone.
            return Err(Error::ContainerNotFound { container: container.to_string(), runtime: "docker", endpoint: self.endpoint.clone() });
        }
        let id = inspect.id.clone().unwrap_or_default();
        let name = inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_string();
        let driver = inspect.graph_driver.clone().unwrap_or_default();
        let protocol = |e: InfoError| match e {
            InfoError::Unavailable(e) => e,
            InfoError::Protocol(detail) => Error::Protocol { container: container.to_string(), runtime: "docker", detail },
            InfoError::Unsupported(detail) => Error::UnsupportedStorage { container: container.to_string(), detail },
        };
        let layer = match driver.name.as_str() {
            // `overlay`: containers/storage's driver (Podman), the same layer data as overlay2's.
            "overlay2" | "overlay" => Layer::Overlay(self.overlay_layer(&driver.data).await.map_err(protocol)?),
            "btrfs" => match self.btrfs_layer(&id, &inspect).await.map_err(protocol)? {
                Some(layer) => Layer::Btrfs(layer),
                // No layerdb: Docker 29's containerd image store with the btrfs snapshotter.
                None => self.containerd_store_layer(container, &id, "btrfs").await?,
            },
            // The containerd image store: no graph driver, only a snapshotter name (if any).
            "" | "overlayfs" => {
                let snapshotter = [driver.name.as_str(), inspect.driver.as_deref().unwrap_or_default()]
                    .into_iter()
                    .find(|s| !s.is_empty())
                    .unwrap_or(super::containerd::record::DEFAULT_SNAPSHOTTER);
                self.containerd_store_layer(container, &id, snapshotter).await?
            }
            other => {
                return Err(Error::UnsupportedStorage {
                    container: container.to_string(),
                    detail: format!("storage driver {other} (supported: overlay2, btrfs)"),
                })
            }
        };

        let dialect = self.dialect();
        let mount_destinations = mount_destinations(&inspect);
        // Podman makes these in the layer itself (Docker in its `-init` layer).
        let runtime_entries = if dialect == Dialect::Podman { podman::mounted_own_entries(&inspect) } else { Vec::new() };
        let pid = inspect.state.as_ref().and_then(|s| s.pid).and_then(|p| u32::try_from(p).ok()).unwrap_or(0);
        let processes = self.processes(&id, pid);
        let image = inspect.config.as_ref().and_then(|c| c.image.clone()).filter(|i| !i.is_empty());
        let user = inspect.config.as_ref().and_then(|c| c.user.clone()).filter(|u| !u.is_empty());
        Ok(ResolvedContainer { id, name, image, layer, mount_destinations, runtime_entries, dialect, processes, origin: Origin::Docker, user })
    }

    /// The processes of a container whose init process is `pid` (`State.Pid`, 0 when it is not
    /// running): `pid` and every process of its cgroup, the one whose path ends in the container id
    /// (`/docker/<id>`, `docker-<id>.scope`), or `pid` alone when that cannot be read.
    fn processes(&self, id: &str, pid: u32) -> Processes {
        if pid == 0 {
            return Processes::none(&self.options);
        }
        let own = |path: &std::path::Path| !id.is_empty() && path.file_name().is_some_and(|n| n.to_string_lossy().contains(id));
        let pids = cgroup::members(&self.options, pid, own).unwrap_or_default();
        Processes::new(&self.options, Some(pid), pids)
    }

    /// The overlay2 (Docker) or overlay (Podman's containers/storage) driver's `UpperDir` and
    /// `LowerDir` (Docker: `<id>-init/diff` first, then the image's layers, topmost first), and
    /// the xattr namespace of its markers.
    ///
    /// Docker: from the owner of the upper directory when that tells ([`namespace_of_owner`]),
    /// else from the daemon ([`namespace_of_daemon`]; `/info` costs milliseconds, so only then).
    /// Podman: always from the service's libpod `/info` ([`Self::podman_storage`]), which says
    /// whether it runs rootless (`userxattr`) for running and stopped containers alike.
    async fn overlay_layer(&self, data: &HashMap<String, String>) -> std::result::Result<OverlayLayer, InfoError> {
        let (upper, lowers) = overlay_dirs(data)?;
        let upper = self.options.host_path(upper);
        let xattr = if self.is_podman() {
            let storage = self.podman_storage().await?;
            storage.xattr_namespace().map_err(InfoError::Unsupported)?
        } else {
            let owner = std::fs::metadata(&upper).ok().map(|m| std::os::unix::fs::MetadataExt::uid(&m));
            match namespace_of_owner(owner) {
                Some(xattr) => xattr,
                None => {
                    let info = self.info().await?;
                    namespace_of_daemon(info.security_options.as_deref().unwrap_or_default())
                }
            }
        };
        let lowers = lowers.into_iter().map(|p| self.options.host_path(p)).collect();
        Ok(OverlayLayer { upper, lowers, xattr })
    }

    /// Podman's libpod `/info` (`/v<libpod version>/libpod/info`: bollard speaks only the Engine
    /// API), read for what it says about the storage ([`podman::StorageInfo`]). No answer in time
    /// is [`InfoError::Unavailable`]; an answer without the fields, a protocol error.
    async fn podman_storage(&self) -> std::result::Result<podman::StorageInfo, InfoError> {
        let path = format!("/v{}/libpod/info", self.libpod.as_deref().unwrap_or("4.0.0"));
        let response = match tokio::time::timeout(self.options.timeout, ping::get(&self.endpoint, &path)).await {
            Err(_) => return Err(InfoError::Unavailable(unavailable(&self.endpoint, self.options.no_answer()))),
            Ok(response) => response.map_err(|e| InfoError::Unavailable(unavailable(&self.endpoint, e.to_string())))?,
        };
        let body = ping::ok_body(&response).map_err(|e| format!("libpod /info {e}"))?;
        Ok(podman::StorageInfo::parse(body)?)
    }
}

/// The overlay2 (overlay) driver's `UpperDir` and `LowerDir` entries (topmost first) as inspect's
/// `GraphDriver.Data` spells them.
pub(crate) fn overlay_dirs(data: &HashMap<String, String>) -> std::result::Result<(&str, Vec<&str>), &'static str> {
    let upper = data.get("UpperDir").filter(|s| !s.is_empty()).ok_or("overlay data has no UpperDir")?;
    let lowers = data.get("LowerDir").map(|l| l.split(':').filter(|s| !s.is_empty()).collect()).unwrap_or_default();
    Ok((upper, lowers))
}

/// The xattr namespace of an overlay2 layer's markers when the owner of its upper directory
/// (`None`: cannot be read; the scan will say why) settles it: root-owned means a rootful daemon
/// without user namespace remapping, which mounts without `userxattr` — `trusted.`. Any other
/// owner (`None` returned) is either a rootless daemon's user or, with `userns-remap`, the
/// remapped root: ask the daemon.
fn namespace_of_owner(uid: Option<u32>) -> Option<XattrNamespace> {
    match uid {
        Some(0) | None => Some(XattrNamespace::Trusted),
        Some(_) => None,
    }
}

/// The xattr namespace of the daemon's overlay2 markers, from `/info`'s `SecurityOptions`
/// (`name=seccomp,profile=default`, `name=rootless`, `name=userns`, ...): a rootless daemon
/// mounts with `userxattr` (`user.`); a rootful one, `userns-remap` (`name=userns`) included,
/// does not (`trusted.`).
pub(crate) fn namespace_of_daemon(security_options: &[String]) -> XattrNamespace {
    let rootless = security_options.iter().any(|o| o.split(',').any(|field| field == "name=rootless"));
    if rootless {
        XattrNamespace::User
    } else {
        XattrNamespace::Trusted
    }
}

impl DockerResolver {
    /// The btrfs driver's subvolumes. Inspect says nothing for btrfs (`GraphDriver.Data` is
    /// empty); the layer store does: `<DockerRootDir>/image/btrfs/layerdb/mounts/<container id>/`
    /// holds `mount-id` (the container's subvolume) and `init-id` (its parent, `<mount-id>-init`),
    /// both below `<DockerRootDir>/btrfs/subvolumes/`. `None` when there is no such layerdb entry.
    ///
    /// The data root is read off the container's own files (`<DockerRootDir>/containers/<id>/
    /// hostname`), which inspect already named; `/info` (5–10 ms: dockerd asks containerd and
    /// runc) only when that does not lead to a layerdb entry.
    async fn btrfs_layer(&self, id: &str, inspect: &ContainerInspectResponse) -> std::result::Result<Option<BtrfsLayer>, InfoError> {
        let layerdb = |root: &Path| self.options.host_path(root.join("image/btrfs/layerdb/mounts").join(id));
        let root = match root_from_container_files(inspect, id).filter(|root| layerdb(root).is_dir()) {
            Some(root) => root,
            None => {
                let info = self.info().await?;
                PathBuf::from(info.docker_root_dir.ok_or("/info has no DockerRootDir")?)
            }
        };
        let mounts = layerdb(&root);
        match std::fs::metadata(&mounts) {
            Ok(m) if m.is_dir() => {}
            // Not readable is not absent: a user without the rights must hear so, not be sent to
            // containerd's image store.
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => return Err(InfoError::Unavailable(Error::io(&mounts, e))),
            _ => return Ok(None),
        }
        let read_id = |file: &str| -> std::result::Result<String, String> {
            let path = mounts.join(file);
            let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let id = layerdb_id(&text).ok_or_else(|| format!("{}: unexpected content {:?}", path.display(), String::from_utf8_lossy(&text)))?;
            Ok(id.to_string())
        };
        let subvolumes = self.options.host_path(root.join("btrfs/subvolumes"));
        Ok(Some(BtrfsLayer { subvolume: subvolumes.join(read_id("mount-id")?), parent: subvolumes.join(read_id("init-id")?) }))
    }
}

impl DockerResolver {
    /// A container of Docker's containerd image store (Docker 29's default): inspect names no
    /// layer directories; the root filesystem is the containerd snapshot keyed by the container
    /// id (its parent is `<id>-init`), in the namespace `/info` names (`Containerd.Namespaces.
    /// Containers`, else `moby`) of the containerd `/info` names (`Containerd.Address`, else the
    /// options' containerd socket).
    async fn containerd_store_layer(&self, container: &str, id: &str, snapshotter: &str) -> Result<Layer> {
        let containerd = match self.request(self.docker.info()).await {
            Err(e) if Self::is_timeout(&e) => return Err(self.unavailable(e)),
            info => info.ok().and_then(|info| info.containerd),
        };
        let address = containerd.as_ref().and_then(|c| c.address.clone()).filter(|a| !a.is_empty());
        let address = address.unwrap_or_else(|| self.options.containerd_socket());
        let namespace = containerd.and_then(|c| c.namespaces).and_then(|n| n.containers).filter(|n| !n.is_empty());
        let namespace = namespace.unwrap_or_else(|| MOBY_NAMESPACE.to_string());
        let resolver = super::containerd::ContainerdResolver::connect_to(&self.options, &address, &namespace).await?;
        resolver.snapshot_layer(container, snapshotter, id).await
    }
}

/// Why the daemon's `/info` did not settle a layer: no answer in time (the runtime is
/// unavailable), an answer that does not tell (a protocol error, for the container), or one that
/// names storage rodiff does not read (its description).
enum InfoError {
    Unavailable(Error),
    Protocol(String),
    Unsupported(String),
}

impl From<String> for InfoError {
    fn from(detail: String) -> InfoError {
        InfoError::Protocol(detail)
    }
}

impl From<&str> for InfoError {
    fn from(detail: &str) -> InfoError {
        InfoError::Protocol(detail.to_string())
    }
}

impl DockerResolver {
    /// The daemon's `/info`; a timeout is [`InfoError::Unavailable`], other failures protocol.
    async fn info(&self) -> std::result::Result<bollard::models::SystemInfo, InfoError> {
        self.request(self.docker.info()).await.map_err(|e| match e {
            e if Self::is_timeout(&e) => InfoError::Unavailable(self.unavailable(e)),
            e => InfoError::Protocol(format!("/info: {e}")),
        })
    }
}

/// The id a layerdb file (`mount-id`, `init-id`) holds: hex, plus Docker's `-init` suffix, never a
/// path; `None` for anything else.
pub(crate) fn layerdb_id(text: &[u8]) -> Option<&str> {
    let id = std::str::from_utf8(text).ok()?.trim();
    (!id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')).then_some(id)
}

/// The destinations of a container's mounts (volumes, binds) and tmpfs mounts, as inspect names
/// them.
pub(crate) fn mount_destinations(inspect: &ContainerInspectResponse) -> Vec<PathBuf> {
    let mut destinations: Vec<PathBuf> = inspect.mounts.iter().flatten().filter_map(|m| m.destination.as_ref().map(PathBuf::from)).collect();
    if let Some(tmpfs) = inspect.host_config.as_ref().and_then(|h| h.tmpfs.as_ref()) {
        destinations.extend(tmpfs.keys().map(PathBuf::from));
    }
    destinations
}

/// Docker's data root as the container's own files show it: `<root>/containers/<id>/<file>` for
/// its `hostname`, `hosts` and `resolv.conf`.
pub(crate) fn root_from_container_files(inspect: &ContainerInspectResponse, id: &str) -> Option<PathBuf> {
    [&inspect.hostname_path, &inspect.hosts_path, &inspect.resolv_conf_path].into_iter().flatten().find_map(|file| {
        let dir = Path::new(file).parent()?;
        (dir.file_name()? == id && dir.parent()?.file_name()? == "containers").then(|| dir.parent()?.parent().map(Path::to_path_buf))?
    })
}

/// The containerd namespace of Docker's containers.
const MOBY_NAMESPACE: &str = "moby";

/// A bollard client for an endpoint at a given API version, whose requests time out after
/// `timeout_secs`.
fn client(endpoint: &str, timeout_secs: u64, version: &ClientVersion) -> Result<Docker> {
    let result = if endpoint.starts_with("unix://") || endpoint.starts_with('/') {
        Docker::connect_with_unix(endpoint, timeout_secs, version)
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, timeout_secs, version)
    } else {
        return Err(unavailable(endpoint, "unsupported endpoint scheme (use unix:// or tcp://)".into()));
    };
    result.map_err(|e| unavailable(endpoint, e.to_string()))
}

/// Whether Docker is removing the container (`State.Status` is `removing`, or `dead` when a
/// removal failed): set before it deletes the layer.
pub(crate) fn removing(state: &ContainerState) -> bool {
    matches!(state.status, Some(ContainerStateStatusEnum::REMOVING | ContainerStateStatusEnum::DEAD)) || state.dead == Some(true)
}

fn unavailable(endpoint: &str, cause: String) -> Error {
    Error::RuntimeUnavailable { runtime: "docker", endpoint: endpoint.to_string(), cause }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn layerdb_ids_are_names_never_paths() {
        assert_eq!(layerdb_id(b"6f1c0d2e\n"), Some("6f1c0d2e"));
        assert_eq!(layerdb_id(b"6f1c0d2e-init"), Some("6f1c0d2e-init"));
        for bad in [&b""[..], b" \n", b"../../etc", b"a/b", b"a.b", b"\xff", b"a b"] {
            assert_eq!(layerdb_id(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_root_owned_layer_is_trusted_without_asking() {
        assert_eq!(namespace_of_owner(Some(0)), Some(XattrNamespace::Trusted));
        assert_eq!(namespace_of_owner(None), Some(XattrNamespace::Trusted));
        assert_eq!(namespace_of_owner(Some(100000)), None, "remapped root or rootless user: ask");
        assert_eq!(namespace_of_owner(Some(1000)), None);
    }

    #[test]
    fn the_daemon_says_rootless_or_not() {
        let rootless = options(&["name=seccomp,profile=default", "name=rootless", "name=cgroupns"]);
        assert_eq!(namespace_of_daemon(&rootless), XattrNamespace::User);
        let remapped = options(&["name=apparmor", "name=seccomp,profile=default", "name=userns"]);
        assert_eq!(namespace_of_daemon(&remapped), XattrNamespace::Trusted, "userns-remap: dockerd runs as root");
        assert_eq!(namespace_of_daemon(&[]), XattrNamespace::Trusted);
        assert_eq!(namespace_of_daemon(&options(&["name=rootlessish"])), XattrNamespace::Trusted);
    }
}

/// A minimal `GET /_ping` to learn the daemon's API version (and whether it is Podman) before
/// speaking a versioned API, and plain `GET`s of what bollard has no call for (libpod's `/info`).
pub(crate) mod ping {
    use std::io;

    use bollard::ClientVersion;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// The most of an answer read: a `/_ping` is a few hundred bytes, libpod's `/info` a few KiB.
    const MAX_ANSWER: u64 = 1 << 20;

    /// What `/_ping` tells about the daemon.
    #[derive(Clone, Debug, Default)]
    pub struct Pong {
        /// The Engine API version it announces (`Api-Version`), if any.
        pub api_version: Option<ClientVersion>,
        /// Podman's libpod API version (`Libpod-Api-Version`, `4.3.1`): set only by Podman.
        pub libpod: Option<String>,
    }

    /// Pings the daemon at `endpoint`.
    pub async fn ping(endpoint: &str) -> io::Result<Pong> {
        let response = get(endpoint, "/_ping").await?;
        let response = String::from_utf8_lossy(&response);
        Ok(Pong { api_version: parse_api_version(&response), libpod: header(&response, "libpod-api-version").map(str::to_string) })
    }

    /// The whole HTTP/1.0 response (status line, headers, body) to `GET path` at `endpoint`.
    pub async fn get(endpoint: &str, path: &str) -> io::Result<Vec<u8>> {
        if let Some(socket) = endpoint.strip_prefix("unix://").or(endpoint.strip_prefix("/").map(|_| endpoint)) {
            exchange(tokio::net::UnixStream::connect(socket).await?, path).await
        } else if let Some(addr) = endpoint.strip_prefix("tcp://").or(endpoint.strip_prefix("http://")) {
            exchange(tokio::net::TcpStream::connect(addr.trim_end_matches('/')).await?, path).await
        } else {
            Err(io::Error::new(io::ErrorKind::InvalidInput, "unsupported endpoint scheme (use unix:// or tcp://)"))
        }
    }

    async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin, path: &str) -> io::Result<Vec<u8>> {
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: docker\r\n\r\n").as_bytes()).await?;
        let mut response = Vec::new();
        stream.take(MAX_ANSWER).read_to_end(&mut response).await?;
        Ok(response)
    }

    /// The body of a `200 OK` response; the error names the status otherwise.
    pub fn ok_body(response: &[u8]) -> Result<&[u8], String> {
        let split = response.windows(4).position(|w| w == b"\r\n\r\n").ok_or("no HTTP response")?;
        let status = String::from_utf8_lossy(response[..split].split(|&b| b == b'\n').next().unwrap_or_default());
        match status.split_whitespace().nth(1) {
            Some("200") => Ok(&response[split + 4..]),
            _ => Err(format!("answered {:?}", status.trim())),
        }
    }

    /// The value of header `name` (lower case) of an HTTP response.
    fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
        let headers = response.split("\r\n\r\n").next()?;
        headers.lines().skip(1).find_map(|l| {
            let (key, value) = l.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The `Api-Version: 1.41` header of an HTTP response.
    pub fn parse_api_version(response: &str) -> Option<ClientVersion> {
        let (major, minor) = header(response, "api-version")?.split_once('.')?;
        Some(ClientVersion { major_version: major.parse().ok()?, minor_version: minor.parse().ok()? })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn reads_the_api_version_header() {
            let v = parse_api_version("HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nDocker-Experimental: false\r\n\r\nOK").unwrap();
            assert_eq!((v.major_version, v.minor_version), (1, 41));
            let v = parse_api_version("HTTP/1.0 200 OK\r\napi-version:1.52\r\n\r\n").unwrap();
            assert_eq!((v.major_version, v.minor_version), (1, 52));
            assert!(parse_api_version("HTTP/1.0 404 Not Found\r\n\r\nApi-Version: 1.0").is_none());
        }

        #[test]
        fn podman_says_libpod() {
            let pong = "HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nLibpod-Api-Version: 4.3.1\r\nServer: Libpod/4.3.1 (linux)\r\n\r\nOK";
            assert_eq!(header(pong, "libpod-api-version"), Some("4.3.1"));
            assert_eq!(header("HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\n\r\nOK", "libpod-api-version"), None);
        }

        #[test]
        fn bodies_of_ok_answers_only() {
            assert_eq!(ok_body(b"HTTP/1.0 200 OK\r\nA: b\r\n\r\n{}"), Ok(&b"{}"[..]));
            assert!(ok_body(b"HTTP/1.0 404 Not Found\r\n\r\n{}").unwrap_err().contains("404"));
            assert!(ok_body(b"garbage").is_err());
        }
    }
}
