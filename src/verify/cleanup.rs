//! What verification made, removed on every path: the verification records each container and
//! volume before it asks Docker to make it, and removes the list at the end, whatever happened.

use bollard::query_parameters::{RemoveContainerOptions, RemoveVolumeOptions};
use crate::resolve::docker::DockerResolver;

/// Something verification made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Made {
    /// A container, by name.
    Container(String),
    /// A volume, by name.
    Volume(String),
}

/// Removes `things` (containers first, with their anonymous volumes); one already gone is fine.
/// Returns the names that could not be removed.
pub async fn remove(docker: &DockerResolver, things: &[Made]) -> Vec<String> {
    let mut ordered: Vec<&Made> = things.iter().filter(|m| matches!(m, Made::Container(_))).collect();
    ordered.extend(things.iter().filter(|m| matches!(m, Made::Volume(_))));
    let mut left = Vec::new();
    for thing in ordered {
        let result = match thing {
            Made::Container(name) => {
                let options = RemoveContainerOptions { force: true, v: true, ..Default::default() };
                docker.request(docker.client().remove_container(name, Some(options))).await
            }
            Made::Volume(name) => docker.request(docker.client().remove_volume(name, Some(RemoveVolumeOptions { force: true }))).await,
        };
        match result {
            Ok(()) | Err(bollard::errors::Error::DockerResponseServerError { status_code: 404, .. }) => {}
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
