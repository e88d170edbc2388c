//! The agent's Prometheus metrics (`GET /metrics`), named by Prometheus' rules: prefix `rodiff_`,
//! base units (seconds, bytes), `_total` for counters, and no label per file path. Gauges of
//! what the profiles hold are computed from the registry at each scrape.

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry as Prometheus;

use super::registry::Registry;

/// A runtime, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RuntimeLabel {
    /// `docker` or `containerd`.
    pub runtime: String,
}

/// A kind of change, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `added`, `changed`, `deleted` or `touched`.
    pub kind: Kind,
}

/// The kinds of change.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum Kind {
    added,
    changed,
    deleted,
    touched,
}

/// Why a scan failed, as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabel {
    /// The runtime.
    pub runtime: String,
    /// The error's kind (`runtime_unavailable`, `unsupported_storage`, …).
    pub reason: String,
}

/// A container with drift, as labels (one series per container with executables, none for the
/// others).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ContainerLabel {
    /// The runtime.
    pub runtime: String,
    /// Its containerd namespace (empty for Docker).
    pub namespace: String,
    /// Its name.
    pub container: String,
    /// Its pod, `namespace/name`, when it belongs to one.
    pub pod: String,
}

/// Every metric.
pub struct Metrics {
    prometheus: Prometheus,
    watched: Family<RuntimeLabel, Gauge>,
    paths: Family<KindLabel, Gauge>,
    bytes: Gauge,
    drift: Family<ContainerLabel, Gauge>,
    /// Scan durations.
    pub scan_seconds: Histogram,
    /// Scans that ended with a complete diff.
    pub scans: Family<RuntimeLabel, Counter>,
    /// Scans that failed, by reason.
    pub scan_errors: Family<ErrorLabel, Counter>,
    /// Whether each followed runtime answered its last listing (1) or not (0).
    pub runtime_up: Family<RuntimeLabel, Gauge>,
    /// Container events received from each runtime.
    pub events: Family<RuntimeLabel, Counter>,
}

impl Metrics {
    /// The metrics, registered.
    pub fn new() -> Metrics {
        let mut prometheus = Prometheus::with_prefix("rodiff");
        let m = Metrics {
            watched: Family::default(),
            paths: Family::default(),
            bytes: Gauge::default(),
            drift: Family::default(),
            scan_seconds: Histogram::new(exponential_buckets(0.001, 4.0, 10)),
            scans: Family::default(),
            scan_errors: Family::default(),
            runtime_up: Family::default(),
            events: Family::default(),
            prometheus: Prometheus::default(),
        };
        prometheus.register("watched_containers", "Containers followed (not removed), by runtime", m.watched.clone());
        prometheus.register("written_paths", "Paths in the write profiles of followed containers, by kind of change", m.paths.clone());
        prometheus.register_with_unit(
            "written",
            "Size of the regular files followed containers added or changed (still there at their last scan)",
            prometheus_client::registry::Unit::Bytes,
            m.bytes.clone(),
        );
        prometheus.register("drifted_executables", "Executable files a container added or changed since its image", m.drift.clone());
        prometheus.register_with_unit("scan_duration", "Time a scan (resolve and diff) took", prometheus_client::registry::Unit::Seconds, m.scan_seconds.clone());
        prometheus.register("scans", "Scans that gave a complete diff", m.scans.clone());
        prometheus.register("scan_errors", "Scans that failed, by reason", m.scan_errors.clone());
        prometheus.register("runtime_up", "Whether the runtime answered its last listing", m.runtime_up.clone());
        prometheus.register("runtime_events", "Container events received from the runtime", m.events.clone());
        Metrics { prometheus, ..m }
    }

    /// The Prometheus text of every metric, with the gauges computed from `registry` now.
    pub fn render(&self, registry: &Registry) -> String {
        self.watched.clear();
        self.paths.clear();
        self.drift.clear();
        let mut kinds = [0u64; 4];
        let mut bytes = 0u64;
        for t in registry.containers.values().filter(|t| !t.removed()) {
            let listed = &t.stored.listed;
            self.watched.get_or_create(&RuntimeLabel { runtime: listed.runtime.name().into() }).inc();
            let (k, b) = t.counts();
            for (total, n) in kinds.iter_mut().zip(k) {
                *total += n;
            }
            bytes += b;
        }
        for (kind, n) in [Kind::added, Kind::changed, Kind::deleted, Kind::touched].into_iter().zip(kinds) {
            self.paths.get_or_create(&KindLabel { kind }).set(n as i64);
        }
        self.bytes.set(bytes as i64);
        for (t, executables) in registry.drift().filter(|(_, e)| !e.is_empty()) {
            let l = &t.stored.listed;
            let label = ContainerLabel {
                runtime: l.runtime.name().into(),
                namespace: l.namespace.clone().unwrap_or_default(),
                container: l.name.clone(),
                pod: l.pod.as_ref().map(|(ns, name)| format!("{ns}/{name}")).unwrap_or_default(),
            };
            self.drift.get_or_create(&label).set(executables.len() as i64);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.prometheus).expect("writing to a String cannot fail");
        text
    }
}
