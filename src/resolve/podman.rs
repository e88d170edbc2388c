//! Podman behind its Docker-compatible API (`podman system service`): what differs from Docker
//! once the [`DockerResolver`](super::docker::DockerResolver) has found the container.
//!
//! Podman answers the Engine API like dockerd, and inspect's `GraphDriver` is containers/storage's
//! `overlay` driver with overlay2's `UpperDir` / `LowerDir` / `WorkDir` data, so the layer is read
//! the same way. Three things are Podman's own:
//!
//! - **Which service it is.** `/_ping` carries a `Libpod-Api-Version` header (`4.3.1`) that dockerd
//!   never sends; the resolver reads it off the ping it makes anyway.
//! - **The markers' xattr namespace.** A rootless Podman mounts with `userxattr` (`user.overlay.*`),
//!   a rootful one without (`trusted.overlay.*`). Its compat `/info` does not say which (measured,
//!   Podman 4.3: a rootless service reports `SecurityOptions` without `name=rootless`); the libpod
//!   `/info` does, in `host.security.rootless`, and also names an `overlay.mount_program`
//!   (fuse-overlayfs) in `store.graphOptions` when the layers are mounted through one: then the
//!   upper directory holds fuse-overlayfs's own whiteouts and markers (`.wh.` files,
//!   `user.fuseoverlayfs.*`), which rodiff does not read — unsupported storage, not a wrong diff.
//!   Both hold for every container of the service, running or stopped (a stopped container has no
//!   mount whose options could be read), so the answer is taken from there.
//! - **Its own entries in the layer.** Podman has no `-init` layer: the mount points of its bind
//!   mounts (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, `/run/.containerenv`, …) and the
//!   `/etc/mtab` symlink are made in the container's upper directory, and `podman diff` leaves
//!   exactly these paths out ([`OWN_ENTRIES`]).

use std::path::PathBuf;

use serde::Deserialize;

use crate::layer::XattrNamespace;

/// The paths Podman makes in every container's writable layer for itself, which `podman diff`
/// leaves out (each path exactly, not what is below it): the mount points of what it mounts into
/// every container, the directories it makes for them, its `/etc/mtab` symlink, and the
/// `--init` binary's mount point.
pub const OWN_ENTRIES: &[&str] = &[
    "/dev",
    "/etc/hostname",
    "/etc/hosts",
    "/etc/mtab",
    "/etc/resolv.conf",
    "/proc",
    "/run",
    "/run/.containerenv",
    "/run/notify",
    "/run/podman-init",
    "/run/secrets",
    "/sys",
];

/// [`OWN_ENTRIES`] as paths.
pub fn own_entries() -> Vec<PathBuf> {
    OWN_ENTRIES.iter().map(PathBuf::from).collect()
}

/// The files Podman bind-mounts only when the container was made to have them, with the inspect
/// field that names the host file (empty when not mounted: `--no-hosts`, `--dns=none`, …).
const CONDITIONAL_MOUNTS: &[&str] = &["/etc/hosts", "/etc/hostname", "/etc/resolv.conf"];

/// Which of [`OWN_ENTRIES`] are mount points (or made for them) in this container: every one but
/// [`CONDITIONAL_MOUNTS`], and of those the ones inspect's `HostsPath`, `HostnamePath` and
/// `ResolvConfPath` name a host file for. A file of these the application writes itself in a
/// container that has no such mount is its own write, not Podman's mount point.
pub fn mounted_own_entries(inspect: &bollard::models::ContainerInspectResponse) -> Vec<PathBuf> {
    let named = |field: &Option<String>| field.as_deref().is_some_and(|p| !p.is_empty());
    let mounted = [named(&inspect.hosts_path), named(&inspect.hostname_path), named(&inspect.resolv_conf_path)];
    OWN_ENTRIES
        .iter()
        .filter(|entry| match CONDITIONAL_MOUNTS.iter().position(|c| c == *entry) {
            Some(i) => mounted[i],
            None => true,
        })
        .map(PathBuf::from)
        .collect()
}

/// What the libpod `/info` says about the service's storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StorageInfo {
    /// The service runs rootless (`host.security.rootless`).
    pub rootless: bool,
    /// The graph driver (`store.graphDriverName`).
    pub driver: String,
    /// The program that mounts the layers instead of the kernel (`overlay.mount_program` in
    /// `store.graphOptions`), if there is one.
    pub mount_program: Option<String>,
}

#[derive(Deserialize)]
struct Info {
    host: Host,
    store: Store,
}

#[derive(Deserialize)]
struct Host {
    security: Security,
}

#[derive(Deserialize)]
struct Security {
    rootless: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Store {
    #[serde(default)]
    graph_driver_name: String,
    #[serde(default)]
    graph_options: Option<serde_json::Map<String, serde_json::Value>>,
}

impl StorageInfo {
    /// Parses a libpod `/info` body; the error says what is missing.
    pub fn parse(body: &[u8]) -> Result<StorageInfo, String> {
        let info: Info = serde_json::from_slice(body).map_err(|e| format!("libpod /info: {e}"))?;
        let mount_program = info.store.graph_options.unwrap_or_default().into_iter().find_map(|(key, value)| {
            key.ends_with("mount_program").then(|| match &value {
                serde_json::Value::String(s) => s.clone(),
                other => other.get("Executable").and_then(|e| e.as_str()).map(str::to_string).unwrap_or_else(|| other.to_string()),
            })
        });
        Ok(StorageInfo { rootless: info.host.security.rootless, driver: info.store.graph_driver_name, mount_program })
    }

    /// The xattr namespace of the layers' overlay markers: `user.` for a rootless service (it
    /// mounts with `userxattr`), `trusted.` for a rootful one. An error (the unsupported storage's
    /// description) when the layers are mounted by a program rather than the kernel's overlayfs.
    pub fn xattr_namespace(&self) -> Result<XattrNamespace, String> {
        if let Some(program) = &self.mount_program {
            return Err(format!(
                "Podman's overlay layers are mounted by {program} (overlay.mount_program), whose whiteouts and markers rodiff does not read; \
                 configure native overlay (no mount_program in storage.conf)"
            ));
        }
        Ok(if self.rootless { XattrNamespace::User } else { XattrNamespace::Trusted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_files_are_mount_points_only_when_inspect_names_them() {
        let mut inspect = bollard::models::ContainerInspectResponse {
            hosts_path: Some("/run/containers/x/hosts".into()),
            hostname_path: Some("/run/containers/x/hostname".into()),
            resolv_conf_path: Some("/run/containers/x/resolv.conf".into()),
            ..Default::default()
        };
        assert_eq!(mounted_own_entries(&inspect), own_entries());
        inspect.hosts_path = Some(String::new());
        inspect.resolv_conf_path = None;
        let mounted = mounted_own_entries(&inspect);
        assert!(!mounted.contains(&PathBuf::from("/etc/hosts")) && !mounted.contains(&PathBuf::from("/etc/resolv.conf")), "{mounted:?}");
        assert!(mounted.contains(&PathBuf::from("/etc/hostname")) && mounted.contains(&PathBuf::from("/run/.containerenv")), "{mounted:?}");
    }

    /// Abridged from Podman 4.3.1's answers (rootful, rootless, rootless through fuse-overlayfs).
    const ROOTFUL: &str = r#"{"host":{"arch":"amd64","security":{"rootless":false,"seccompEnabled":true}},
        "store":{"graphDriverName":"overlay","graphOptions":{},"graphRoot":"/var/lib/containers/storage"},"version":{"APIVersion":"4.3.1"}}"#;
    const ROOTLESS: &str = r#"{"host":{"security":{"rootless":true}},"store":{"graphDriverName":"overlay","graphOptions":{}}}"#;
    const FUSE: &str = r#"{"host":{"security":{"rootless":true}},"store":{"graphDriverName":"overlay",
        "graphOptions":{"overlay.mount_program":{"Executable":"/usr/bin/fuse-overlayfs","Package":"fuse-overlayfs_1.10-1_amd64","Version":"fuse-overlayfs: version 1.10"}}}}"#;

    #[test]
    fn rootless_means_user_xattrs() {
        let info = StorageInfo::parse(ROOTFUL.as_bytes()).unwrap();
        assert_eq!(info, StorageInfo { rootless: false, driver: "overlay".into(), mount_program: None });
        assert_eq!(info.xattr_namespace(), Ok(XattrNamespace::Trusted));
        let info = StorageInfo::parse(ROOTLESS.as_bytes()).unwrap();
        assert_eq!(info.xattr_namespace(), Ok(XattrNamespace::User));
    }

    #[test]
    fn a_mount_program_is_unsupported() {
        let info = StorageInfo::parse(FUSE.as_bytes()).unwrap();
        assert_eq!(info.mount_program.as_deref(), Some("/usr/bin/fuse-overlayfs"));
        let e = info.xattr_namespace().unwrap_err();
        assert!(e.contains("/usr/bin/fuse-overlayfs"), "{e}");
    }

    #[test]
    fn an_answer_without_the_fields_is_an_error() {
        assert!(StorageInfo::parse(b"{}").is_err());
        assert!(StorageInfo::parse(br#"{"host":{},"store":{}}"#).is_err());
        assert!(StorageInfo::parse(b"OK").is_err());
    }
}
