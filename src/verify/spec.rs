//! The verification container: the original's image, command, entrypoint, environment, user,
//! working directory and labels, run with a read-only root filesystem and the plan's mounts (or a
//! writable one, for the shadow run).
//!
//! The original's own mounts come along so the application finds what it had: tmpfs mounts as
//! they were, bind mounts with the same source, and volumes as new throw-away volumes (Docker fills
//! them from the image as it filled the originals; the originals' data is never touched). Ports
//! are not published (they are the original's); the network mode is the original's (`none` stays
//! `none`).

use std::collections::HashMap;
use std::os::unix::ffi::OsStrExt;

use bollard::models::{ContainerCreateBody, ContainerInspectResponse, HostConfig, MountPointTypeEnum, MountTypeEnum};

use crate::dialect::Dialect;
use crate::plan::render::tmpfs_options_for;
use crate::plan::{MountKind, Plan};

/// The label every verification container and volume carries (value: the original's id).
pub const LABEL: &str = "rodiff.verify";

/// What to create: throw-away volumes, then the container.
#[derive(Debug)]
pub struct Spec {
    /// The container's name.
    pub name: String,
    /// Volumes to create first, all throw-away.
    pub volumes: Vec<String>,
    /// The container.
    pub body: ContainerCreateBody,
}

/// The verification container for `original` with `plan`'s mounts; every name starts with `prefix`.
/// Its root filesystem is read-only when `read_only` (the shadow run's is writable). Mount options
/// are written for `runtime`, the service the copy is created on, whatever runtime the plan was
/// made for (a plan file made on Docker, verified on Podman).
pub fn spec(original: &ContainerInspectResponse, plan: &Plan, runtime: Dialect, prefix: &str, read_only: bool) -> Spec {
    let config = original.config.clone().unwrap_or_default();
    let host = original.host_config.clone().unwrap_or_default();
    let id = original.id.clone().unwrap_or_default();

    let mut volumes = Vec::new();
    let mut binds = Vec::new();
    let mut tmpfs: HashMap<String, String> = host.tmpfs.clone().unwrap_or_default();
    let mut existing: Vec<String> = tmpfs.keys().cloned().collect();

    for (n, m) in original.mounts.iter().flatten().enumerate() {
        let (Some(dest), Some(kind)) = (m.destination.clone(), m.typ) else { continue };
        let ro = if m.rw == Some(false) { ":ro" } else { "" };
        match kind {
            MountPointTypeEnum::VOLUME => {
                let name = format!("{prefix}-own-{n}");
                binds.push(format!("{name}:{dest}{ro}"));
                volumes.push(name);
            }
            MountPointTypeEnum::BIND => match &m.source {
                Some(source) => binds.push(format!("{source}:{dest}{ro}")),
                None => continue,
            },
            // tmpfs from --mount: carried over below, with its options.
            _ => continue,
        }
        existing.push(dest);
    }
    let own_tmpfs_mounts: Vec<_> =
        host.mounts.iter().flatten().filter(|m| m.typ == Some(MountTypeEnum::TMPFS)).cloned().collect();
    existing.extend(own_tmpfs_mounts.iter().filter_map(|m| m.target.clone()));

    for m in &plan.mounts {
        let path = String::from_utf8_lossy(m.path.as_os_str().as_bytes()).into_owned();
        if existing.contains(&path) {
            continue;
        }
        match m.kind {
            MountKind::Tmpfs => {
                tmpfs.insert(path, tmpfs_options_for(m, runtime));
            }
            MountKind::Volume => {
                let name = format!("{prefix}-{}", m.name);
                binds.push(format!("{name}:{path}"));
                volumes.push(name);
            }
        }
    }

    let network = host.network_mode.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| "none".into());
    let host_config = HostConfig {
        readonly_rootfs: Some(read_only),
        network_mode: Some(network),
        binds: Some(binds),
        tmpfs: Some(tmpfs),
        mounts: Some(own_tmpfs_mounts),
        // What the application may do (capabilities, limits, devices, name resolution).
        cap_add: host.cap_add,
        cap_drop: host.cap_drop,
        privileged: host.privileged,
        security_opt: host.security_opt,
        ulimits: host.ulimits,
        init: host.init,
        shm_size: host.shm_size,
        group_add: host.group_add,
        sysctls: host.sysctls,
        devices: host.devices,
        extra_hosts: host.extra_hosts,
        dns: host.dns,
        dns_search: host.dns_search,
        dns_options: host.dns_options,
        runtime: host.runtime,
        userns_mode: host.userns_mode,
        ..Default::default()
    };
    let mut labels = config.labels.clone().unwrap_or_default();
    labels.insert(LABEL.to_string(), id);
    let body = ContainerCreateBody {
        image: original.image.clone().or(config.image),
        cmd: config.cmd,
        entrypoint: config.entrypoint,
        env: config.env,
        user: config.user,
        working_dir: config.working_dir,
        labels: Some(labels),
        tty: config.tty,
        open_stdin: config.open_stdin,
        stop_signal: config.stop_signal,
        host_config: Some(host_config),
        ..Default::default()
    };
    Spec { name: prefix.to_string(), volumes, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::{ContainerConfig, MountPoint};

    #[test]
    fn copies_what_runs_and_adds_the_plan() {
        let original = ContainerInspectResponse {
            id: Some("abc".into()),
            image: Some("sha256:1234".into()),
            config: Some(ContainerConfig {
                image: Some("pg:15".into()),
                cmd: Some(vec!["postgres".into()]),
                env: Some(vec!["PGDATA=/d".into()]),
                user: Some("postgres".into()),
                working_dir: Some("/w".into()),
                ..Default::default()
            }),
            host_config: Some(HostConfig {
                network_mode: Some("none".into()),
                tmpfs: Some([("/scratch".to_string(), "size=1m".to_string())].into()),
                port_bindings: Some(Default::default()),
                ..Default::default()
            }),
            mounts: Some(vec![
                MountPoint { typ: Some(MountPointTypeEnum::VOLUME), destination: Some("/vol".into()), rw: Some(true), ..Default::default() },
                MountPoint { typ: Some(MountPointTypeEnum::BIND), source: Some("/etc/x".into()), destination: Some("/x".into()), rw: Some(false), ..Default::default() },
            ]),
            ..Default::default()
        };
        let plan: Plan = serde_json::from_value(serde_json::json!({
            "container": "pg",
            "mounts": [
                {"path": "/run/pg", "kind": "tmpfs", "name": "run-pg", "persistent": false, "seed": false,
                 "uid": 100, "gid": 102, "mode": 1533, "rule": "/run/*", "reason": "", "covers": []},
                {"path": "/var/lib/pg", "kind": "volume", "name": "var-lib-pg", "persistent": true, "seed": false,
                 "uid": 100, "gid": 102, "mode": 493, "rule": "/var/lib/*", "reason": "", "covers": []}
            ]
        }))
        .unwrap();
        assert_eq!(spec(&original, &plan, Dialect::Docker, "rv", false).body.host_config.unwrap().readonly_rootfs, Some(false));
        let spec = spec(&original, &plan, Dialect::Docker, "rv", true);
        assert_eq!(spec.volumes, ["rv-own-0", "rv-var-lib-pg"]);
        let body = spec.body;
        assert_eq!(body.image.as_deref(), Some("sha256:1234"));
        assert_eq!(body.user.as_deref(), Some("postgres"));
        assert_eq!(body.labels.unwrap()[LABEL], "abc");
        let host = body.host_config.unwrap();
        assert_eq!(host.readonly_rootfs, Some(true));
        assert_eq!(host.network_mode.as_deref(), Some("none"));
        assert_eq!(host.binds.unwrap(), ["rv-own-0:/vol", "/etc/x:/x:ro", "rv-var-lib-pg:/var/lib/pg"]);
        let tmpfs = host.tmpfs.unwrap();
        assert_eq!(tmpfs["/run/pg"], "uid=100,gid=102,mode=2775");
        assert_eq!(tmpfs["/scratch"], "size=1m");
        assert!(host.port_bindings.is_none());
    }
}
