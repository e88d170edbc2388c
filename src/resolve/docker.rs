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
    /// Connects to the endpoint the options select at an API version both sides speak: the
    /// daemon's `/_ping` (unversioned, and cheap: `/version` and `/info` make dockerd ask containerd
    /// and runc) names its maximum, and we use the lower of that and bollard's own. Debian's
    /// dockerd 20.10 speaks 1.41 and refuses requests for newer versions.
    pub async fn connect(options: &RuntimeOptions) -> Result<DockerResolver> {
        let endpoint = options.docker_endpoint();
        let server = ping::api_version(&endpoint).await.map_err(|e| unavailable(&endpoint, e.to_string()))?;
        let version = match server {
            Some(v) if v < *API_DEFAULT_VERSION => v,
            _ => *API_DEFAULT_VERSION,
        };
        let docker = client(&endpoint, &version)?;
        Ok(DockerResolver { docker, endpoint, options: options.clone() })
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
        let inspect = self.docker.inspect_container(container, None::<InspectContainerOptions>).await;
        let inspect = inspect.map_err(|e| match e {
            BollardError::DockerResponseServerError { status_code: 404, .. } => Error::ContainerNotFound {
                container: container.to_string(),
                runtime: "docker",
                endpoint: self.endpoint.clone(),
            },
            e => unavailable(&self.endpoint, e.to_string()),
        })?;
        let id = inspect.id.clone().unwrap_or_default();
        let name = inspect.name.clone().unwrap_or_default().trim_start_matches('/').to_string();
        let driver = inspect.graph_driver.clone().unwrap_or_default();
        let protocol = |detail: String| Error::Protocol { container: container.to_string(), runtime: "docker", detail };
        let layer = match driver.name.as_str() {
            "overlay2" => Layer::Overlay(self.overlay_layer(&driver.data).map_err(protocol)?),
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
    ///
    /// Rootless dockerd mounts with `userxattr`, so its markers are `user.overlay.*`. It runs as an
    /// unprivileged host user, who then owns the layer directories; a root-owned layer was made by
    /// a rootful daemon (`trusted.overlay.*`). This saves asking `/info`, which costs milliseconds.
    fn overlay_layer(&self, data: &HashMap<String, String>) -> std::result::Result<OverlayLayer, String> {
        let upper = data.get("UpperDir").filter(|s| !s.is_empty()).ok_or("overlay2 data has no UpperDir")?;
        let upper = self.options.host_path(upper);
        let rootless = std::fs::metadata(&upper).is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) != 0);
        let lowers = data
            .get("LowerDir")
            .map(|l| l.split(':').filter(|s| !s.is_empty()).map(|p| self.options.host_path(p)).collect())
            .unwrap_or_default();
        Ok(OverlayLayer {
            upper,
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

/// A minimal `GET /_ping` to learn the daemon's API version before speaking a versioned API.
mod ping {
    use std::io;

    use bollard::ClientVersion;
    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

    /// The `Api-Version` the daemon at `endpoint` announces; `None` if it announces none.
    pub async fn api_version(endpoint: &str) -> io::Result<Option<ClientVersion>> {
        let response = if let Some(path) = endpoint.strip_prefix("unix://").or(endpoint.strip_prefix("/").map(|_| endpoint)) {
            exchange(tokio::net::UnixStream::connect(path).await?).await?
        } else if let Some(addr) = endpoint.strip_prefix("tcp://").or(endpoint.strip_prefix("http://")) {
            exchange(tokio::net::TcpStream::connect(addr.trim_end_matches('/')).await?).await?
        } else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "unsupported endpoint scheme (use unix:// or tcp://)"));
        };
        Ok(parse_api_version(&response))
    }

    async fn exchange(mut stream: impl AsyncRead + AsyncWrite + Unpin) -> io::Result<String> {
        stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").await?;
        let mut response = Vec::new();
        stream.take(64 * 1024).read_to_end(&mut response).await?;
        Ok(String::from_utf8_lossy(&response).into_owned())
    }

    /// The `Api-Version: 1.41` header of an HTTP response.
    pub fn parse_api_version(response: &str) -> Option<ClientVersion> {
        let headers = response.split("\r\n\r\n").next()?;
        let value = headers.lines().find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.trim().eq_ignore_ascii_case("api-version").then(|| value.trim())
        })?;
        let (major, minor) = value.split_once('.')?;
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
    }
}
