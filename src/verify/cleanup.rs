//! What verification made, removed on every path.
//!
//! Each container and volume is recorded in a process-wide registry *before* it is created, so
//! that [`remove_all`] — called by a signal handler, which ends the process without unwinding —
//! can remove it too. `remove_all` closes the registry first (nothing new is made after it) and
//! waits for creations in flight to finish, so nothing is created behind its back.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bollard::query_parameters::{RemoveContainerOptions, RemoveVolumeOptions};
use bollard::Docker;

use crate::error::{Error, Result};

/// Something verification made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Made {
    /// A container, by name.
    Container(String),
    /// A volume, by name.
    Volume(String),
}

#[derive(Default)]
struct Registry {
    /// A signal arrived: make nothing more.
    closed: bool,
    /// Creations under way.
    in_flight: usize,
    /// What exists (or may), with the Docker endpoint it lives at.
    made: Vec<(String, Made)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { closed: false, in_flight: 0, made: Vec::new() });
static SETTLED: Condvar = Condvar::new();

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

/// A creation under way; the registry knows about it until dropped.
pub struct InFlight(());

impl Drop for InFlight {
    fn drop(&mut self) {
        registry().in_flight -= 1;
        SETTLED.notify_all();
    }
}

/// Records that `made` is about to be created at `endpoint`; fails once a signal has arrived.
pub fn begin(endpoint: &str, made: Made) -> Result<InFlight> {
    let mut reg = registry();
    if reg.closed {
        return Err(Error::Interrupted);
    }
    reg.made.push((endpoint.to_string(), made));
    reg.in_flight += 1;
    Ok(InFlight(()))
}

/// Whether [`remove_all`] has run (a signal arrived): what verification made is gone, or going.
pub fn interrupted() -> bool {
    registry().closed
}

/// Removes `things` (containers first, with their anonymous volumes), forgetting each that is
/// gone. Returns the names that could not be removed.
pub async fn remove(docker: &Docker, endpoint: &str, things: &[Made]) -> Vec<String> {
    let mut ordered: Vec<&Made> = things.iter().filter(|m| matches!(m, Made::Container(_))).collect();
    ordered.extend(things.iter().filter(|m| matches!(m, Made::Volume(_))));
    let mut left = Vec::new();
    for thing in ordered {
        let result = match thing {
            Made::Container(name) => {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                docker.remove_container(name, Some(options)).await
            }
            Made::Volume(name) => docker.remove_volume(name, Some(RemoveVolumeOptions { force: true })).await,
        };
        match result {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {
                registry().made.retain(|(e, m)| !(e == endpoint && m == thing));
            }
            Err(e) => left.push(format!("{}: {e}", name(thing))),
        }
    }
    left
}

fn name(thing: &Made) -> String {
    match thing {
        Made::Container(n) => format!("container {n}"),
        Made::Volume(n) => format!("volume {n}"),
    }
}

/// Removes everything verification made in this process and makes sure nothing more is made: for
/// signal handlers, before the process exits. Blocks for up to ~40 s; does nothing when nothing
/// was made.
pub fn remove_all() {
    let made = {
        let mut reg = registry();
        reg.closed = true;
        let deadline = Instant::now() + Duration::from_secs(10);
        while reg.in_flight > 0 && Instant::now() < deadline {
            reg = SETTLED.wait_timeout(reg, Duration::from_millis(100)).unwrap_or_else(|e| e.into_inner()).0;
        }
        std::mem::take(&mut reg.made)
    };
    if made.is_empty() {
        return;
    }
    let mut endpoints: Vec<&str> = made.iter().map(|(e, _)| e.as_str()).collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    let _ = crate::block_on(async {
        for endpoint in endpoints {
            let options = crate::RuntimeOptions { docker_host: Some(endpoint.to_string()), ..Default::default() };
            let Ok(resolver) = crate::resolve::docker::DockerResolver::connect(&options).await else { continue };
            let things: Vec<Made> = made.iter().filter(|(e, _)| e == endpoint).map(|(_, m)| m.clone()).collect();
            remove(resolver.client(), endpoint, &things).await;
        }
        Ok(())
    });
}
