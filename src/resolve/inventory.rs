//! What a runtime holds and what happens to it: the containers it lists and the events it sends
//! when they are created, started, stopped or removed. A node agent follows these
//! ([`crate::Client::containers`], [`crate::Client::events`]); a diff never needs them.

use std::collections::HashMap;

use super::containerd::record;
use super::Runtime;

/// A container as its runtime lists it (no layer resolved yet).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct ListedContainer {
    /// The runtime that holds it.
    pub runtime: Runtime,
    /// Its containerd namespace (`None` for Docker).
    pub namespace: Option<String>,
    /// The runtime's full container id.
    pub id: String,
    /// Its name: Docker's (without the leading `/`), else its CRI container name, else its id.
    pub name: String,
    /// The image reference it was created from, when the runtime keeps one.
    pub image: Option<String>,
    /// Whether the runtime says it is running (containerd: unknown, `None`; ask its task).
    pub running: Option<bool>,
    /// The Kubernetes pod it belongs to, from its CRI labels: `(namespace, name)`.
    pub pod: Option<(String, String)>,
    /// Its container name in the pod (CRI label), when it belongs to one.
    pub pod_container: Option<String>,
}

impl ListedContainer {
    /// A listed container with nothing known but its runtime, namespace, id and name.
    pub fn new(runtime: Runtime, namespace: Option<String>, id: String, name: String) -> ListedContainer {
        ListedContainer { runtime, namespace, id, name, image: None, running: None, pod: None, pod_container: None }
    }

    /// The same with the pod fields read from `labels` (CRI's, which cri-dockerd also sets on
    /// Docker containers).
    pub(crate) fn with_labels(mut self, labels: &HashMap<String, String>) -> ListedContainer {
        let label = |key: &str| labels.get(key).filter(|v| !v.is_empty()).cloned();
        self.pod = label(record::LABEL_POD_NAMESPACE).zip(label(record::LABEL_POD_NAME));
        self.pod_container = label(record::LABEL_CONTAINER_NAME);
        self
    }

    /// A pod's sandbox (pause) container, which runs no application: its labels say so.
    pub(crate) fn is_sandbox(labels: &HashMap<String, String>) -> bool {
        record::is_sandbox(labels) || labels.get("io.kubernetes.docker.type").is_some_and(|t| t == "podsandbox")
    }
}

/// Something a runtime reports about its containers.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RuntimeEvent {
    /// The runtime that sent it.
    pub runtime: Runtime,
    /// The containerd namespace it happened in (`None` for Docker).
    pub namespace: Option<String>,
    /// The container it is about, when the event names one.
    pub container: Option<String>,
    /// What happened, in the runtime's words: Docker's action (`create`, `start`, `die`,
    /// `destroy`, …) or containerd's topic (`/containers/create`, `/tasks/exit`, …).
    pub action: String,
}

impl RuntimeEvent {
    /// Whether the event may add or remove a container, or start or stop one (so that a list of
    /// the runtime's containers is worth refreshing).
    pub fn changes_containers(&self) -> bool {
        let a = self.action.as_str();
        let a = a.rsplit('/').next().unwrap_or(a);
        matches!(a, "create" | "start" | "die" | "stop" | "exit" | "destroy" | "delete" | "rename" | "kill" | "oom")
    }
}
