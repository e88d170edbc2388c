//! What rodiff reads from a containerd container record: which snapshot holds its root
//! filesystem, where the runtime mounts things (the OCI spec), and its CRI (Kubernetes) labels.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::resolve::PodSelector;

/// The snapshotter containerd uses when a record names none (the Linux default).
pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";

/// CRI label: the pod's name.
pub const LABEL_POD_NAME: &str = "io.kubernetes.pod.name";
/// CRI label: the pod's Kubernetes namespace.
pub const LABEL_POD_NAMESPACE: &str = "io.kubernetes.pod.namespace";
/// CRI label: the container's name in the pod.
pub const LABEL_CONTAINER_NAME: &str = "io.kubernetes.container.name";
/// CRI label: `sandbox` for a pod's pause container, `container` for the others.
pub const LABEL_KIND: &str = "io.cri-containerd.kind";

/// The snapshotter of a record: its own, or containerd's default when it names none (CRI and
/// Docker records may leave it empty).
pub fn snapshotter(record_snapshotter: &str) -> &str {
    if record_snapshotter.is_empty() {
        DEFAULT_SNAPSHOTTER
    } else {
        record_snapshotter
    }
}

/// The snapshot key of a record: its own, or the container id when it names none.
pub fn snapshot_key<'a>(record_key: &'a str, id: &'a str) -> &'a str {
    if record_key.is_empty() {
        id
    } else {
        record_key
    }
}

/// The mount destinations listed in an OCI runtime spec (JSON): runc creates each of them in the
/// root filesystem before mounting over it. A spec that is not JSON yields none.
pub fn mount_destinations(spec_json: &[u8]) -> Vec<PathBuf> {
    let Ok(spec) = serde_json::from_slice::<serde_json::Value>(spec_json) else {
        return Vec::new();
    };
    spec["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str())
        .filter(|d| d.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// The user an OCI runtime spec (JSON) starts the process as, `uid:gid` from `process.user`;
/// `None` for root (`0:0`), or when the spec says nothing or is not JSON.
pub fn user(spec_json: &[u8]) -> Option<String> {
    let spec = serde_json::from_slice::<serde_json::Value>(spec_json).ok()?;
    let user = &spec["process"]["user"];
    let (uid, gid) = (user["uid"].as_u64()?, user["gid"].as_u64().unwrap_or(0));
    (uid != 0 || gid != 0).then(|| format!("{uid}:{gid}"))
}

/// Whether a record is a pod's sandbox (pause) container.
pub fn is_sandbox(labels: &HashMap<String, String>) -> bool {
    labels.get(LABEL_KIND).is_some_and(|k| k == "sandbox")
}

/// The name a record goes by: its CRI container name, else its id.
pub fn display_name<'a>(labels: &'a HashMap<String, String>, id: &'a str) -> &'a str {
    labels.get(LABEL_CONTAINER_NAME).map(String::as_str).filter(|n| !n.is_empty()).unwrap_or(id)
}

/// The containers-service filter that lists a pod's containers (and, when the selector names one,
/// only that container): `labels."K"==V` terms joined by `,` (all must match).
pub fn pod_filter(pod: &PodSelector) -> String {
    let mut terms = vec![label_term(LABEL_POD_NAMESPACE, &pod.namespace), label_term(LABEL_POD_NAME, &pod.name)];
    if let Some(container) = &pod.container {
        terms.push(label_term(LABEL_CONTAINER_NAME, container));
    }
    terms.join(",")
}

/// The filter matching ids that start with `prefix`.
pub fn id_prefix_filter(prefix: &str) -> String {
    let escaped: String = prefix.chars().flat_map(|c| if c.is_ascii_alphanumeric() { vec![c] } else { vec!['\\', c] }).collect();
    format!("id~={}", quote(&format!("^{escaped}")))
}

fn label_term(key: &str, value: &str) -> String {
    format!("labels.{}=={}", quote(key), quote(value))
}

/// A quoted string for containerd's filter syntax (Go-style escapes).
fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_user() {
        assert_eq!(user(br#"{"process":{"user":{"uid":100,"gid":102,"additionalGids":[102]}}}"#).as_deref(), Some("100:102"));
        assert_eq!(user(br#"{"process":{"user":{"uid":0,"gid":0}}}"#), None);
        assert_eq!(user(br#"{"process":{}}"#), None);
        assert_eq!(user(b"not json"), None);
    }

    #[test]
    fn defaults_for_empty_record_fields() {
        assert_eq!(snapshotter(""), "overlayfs");
        assert_eq!(snapshotter("btrfs"), "btrfs");
        assert_eq!(snapshot_key("", "abc"), "abc");
        assert_eq!(snapshot_key("k", "abc"), "k");
    }

    #[test]
    fn destinations_from_the_spec() {
        let spec = br#"{"ociVersion":"1.0.2","mounts":[
            {"destination":"/proc","type":"proc","source":"proc"},
            {"destination":"/run","type":"tmpfs"},
            {"destination":"/data","type":"bind","source":"/srv/data","options":["rbind"]},
            {"type":"bind"}]}"#;
        assert_eq!(mount_destinations(spec), vec![PathBuf::from("/proc"), "/run".into(), "/data".into()]);
        assert!(mount_destinations(b"not json").is_empty());
        assert!(mount_destinations(b"{}").is_empty());
    }

    #[test]
    fn cri_labels() {
        let mut labels = HashMap::new();
        assert!(!is_sandbox(&labels));
        assert_eq!(display_name(&labels, "id1"), "id1");
        labels.insert(LABEL_KIND.to_string(), "sandbox".to_string());
        labels.insert(LABEL_CONTAINER_NAME.to_string(), "web".to_string());
        assert!(is_sandbox(&labels));
        assert_eq!(display_name(&labels, "id1"), "web");
    }

    #[test]
    fn filters() {
        let pod = PodSelector { namespace: "prod".into(), name: "web-1".into(), container: None };
        assert_eq!(pod_filter(&pod), r#"labels."io.kubernetes.pod.namespace"=="prod",labels."io.kubernetes.pod.name"=="web-1""#);
        let pod = PodSelector { container: Some("app\"x".into()), ..pod };
        assert!(pod_filter(&pod).ends_with(r#",labels."io.kubernetes.container.name"=="app\"x""#));
        assert_eq!(id_prefix_filter("ab1-"), r#"id~="^ab1\\-""#);
    }
}
