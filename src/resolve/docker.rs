//! Docker Engine API resolver (bollard): container → graph driver data → layer.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::errors::Error as BollardError;
use bollard::query_parameters::InspectContainerOptions;
use bollard::{ClientVersion, Docker, API_DEFAULT_VERSION};

use super::{ResolvedContainer, RuntimeOptions};
use crate::error::{Error, Result};
use crate::layer::{Layer, OverlayLayer, XattrNamespace};

/// Seconds to wait for an answer from the daemon.
const TIMEOUT_SECS: u64 = 30;

/// A connection to a Docker daemon, at an API version both sides speak.
pub struct DockerResolver {
    docker: Docker,
    endpoint: String,
    options: RuntimeOptions,
}

impl DockerResolver {
    /// Connects to the endpoint the options select and negotiates the API version: bollard's own
    /// version first; a daemon that finds it too new says which maximum it supports, and we retry
    /// with that (Debian's dockerd 20.10 speaks 1.41).
    pub async fn connect(options: &RuntimeOptions) -> Result<DockerResolver> {
        let endpoint = options.docker_endpoint();
        let mut version = API_DEFAULT_VERSION.clone();
        for _ in 0..2 {
            let docker = client(&endpoint, &version)?;
            match docker.version().await {
                Ok(_) => return Ok(DockerResolver { docker, endpoint, options: options.clone() }),
                Err(BollardError::DockerResponseServerError { status_code: 400, message }) => {
                    match supported_version(&message) {
                        Some(v) if v != version => version = v,
                        _ => return Err(unavailable(&endpoint, message)),
                    }
                }
                Err(e) => return Err(unavailable(&endpoint, e.to_string())),
            }
        }
        Err(unavailable(&endpoint, "API version negotiation failed".into()))
    }

    /// The endpoint this resolver talks to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The bollard client, for callers that need more of the Docker API.
    pub fn client(&self) -> &Docker {
        &self.docker
    }

    /// Finds a container by name, id or id prefix (running or stopped) and locates its layer.
    pub async fn resolve(&self, container: &str) -> Result<ResolvedContainer> {
        let (inspect, info) = tokio::join!(
            self.docker.inspect_container(container, None::<InspectContainerOptions>),
            self.docker.info()
        );
        let inspect = inspect.map_err(|e| match e {
            BollardError::DockerResponseServerError { status_code: 404, .. } => Error::ContainerNotFound {
                container: container.to_string(),
                runtime: "docker",
                endpoint: self.endpoint.clone(),
            },
            e => unavailable(&self.endpoint, e.to_string()),
        })?;
        let rootless = info
            .ok()
            .and_then(|i| i.security_options)
            .is_some_and(|opts| opts.iter().any(|o| o.contains("name=rootless")));

        let id = inspect.id.clone().unwrap_or_default();
        let name = inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_string();
        let driver = inspect.graph_driver.clone().unwrap_or_default();
        let protocol = |detail: String| Error::Protocol { container: container.to_string(), runtime: "docker", detail };
        let layer = match driver.name.as_str() {
            "overlay2" => Layer::Overlay(self.overlay_layer(&driver.data, rootless).map_err(protocol)?),
            "" => {
                return Err(Error::UnsupportedStorage {
                    container: container.to_string(),
                    detail: "the daemon reports no storage driver (containerd image store?)".into(),
                })
            }
            other => {
                return Err(Error::UnsupportedStorage {
                    container: container.to_string(),
                    detail: format!("storage driver {other} (supported: overlay2)"),
                })
            }
        };

        let mut mount_destinations: Vec<PathBuf> = inspect
            .mounts
            .iter()
            .flatten()
            .filter_map(|m| m.destination.as_ref().map(PathBuf::from))
            .collect();
        if let Some(tmpfs) = inspect.host_config.as_ref().and_then(|h| h.tmpfs.as_ref()) {
            mount_destinations.extend(tmpfs.keys().map(PathBuf::from));
        }
        Ok(ResolvedContainer { id, name, layer, mount_destinations })
    }

    /// The overlay2 driver's `UpperDir` and `LowerDir` (`<id>-init/diff` first, then the image's
    /// layers, topmost first).
    fn overlay_layer(&self, data: &HashMap<String, String>, rootless: bool) -> std::result::Result<OverlayLayer, String> {
        let upper = data.get("UpperDir").filter(|s| !s.is_empty()).ok_or("overlay2 data has no UpperDir")?;
        let lowers = data
            .get("LowerDir")
            .map(|l| l.split(':').filter(|s| !s.is_empty()).map(|p| self.options.host_path(p)).collect())
            .unwrap_or_default();
        Ok(OverlayLayer {
            upper: self.options.host_path(upper),
            lowers,
            xattr: if rootless { XattrNamespace::User } else { XattrNamespace::Trusted },
        })
    }
}

/// A bollard client for an endpoint at a given API version.
fn client(endpoint: &str, version: &ClientVersion) -> Result<Docker> {
    let result = if endpoint.starts_with("unix://") || endpoint.starts_with('/') {
        Docker::connect_with_unix(endpoint, TIMEOUT_SECS, version)
    } else if endpoint.starts_with("tcp://") || endpoint.starts_with("http://") {
        Docker::connect_with_http(endpoint, TIMEOUT_SECS, version)
    } else {
        return Err(unavailable(endpoint, "unsupported endpoint scheme (use unix:// or tcp://)".into()));
    };
    result.map_err(|e| unavailable(endpoint, e.to_string()))
}

fn unavailable(endpoint: &str, cause: String) -> Error {
    Error::RuntimeUnavailable { runtime: "docker", endpoint: endpoint.to_string(), cause }
}

/// The version in a daemon's "client version 1.49 is too new. Maximum supported API version is
/// 1.41" (or "too old. Minimum supported API version is 1.44") answer.
fn supported_version(message: &str) -> Option<ClientVersion> {
    let (_, tail) = message.rsplit_once("supported API version is ")?;
    let version: String = tail.chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
    let (major, minor) = version.trim_end_matches('.').split_once('.')?;
    Some(ClientVersion { major_version: major.parse().ok()?, minor_version: minor.parse().ok()? })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_daemons_supported_version() {
        let v = supported_version("client version 1.49 is too new. Maximum supported API version is 1.41").unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 41));
        let v = supported_version("client version 1.24 is too old. Minimum supported API version is 1.44, please upgrade").unwrap();
        assert_eq!((v.major_version, v.minor_version), (1, 44));
        assert!(supported_version("page not found").is_none());
    }
}
