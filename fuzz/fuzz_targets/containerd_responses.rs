//! What rodiff reads of containerd's gRPC answers, decoded as tonic decodes them (prost): the
//! snapshots service's `Mounts` response, and a container record (`Containers.Get`) reduced to what
//! rodiff reads of it: snapshotter, snapshot key, CRI labels, the OCI spec's mount destinations.
//!
//! Invariants: never panics; defaults fill empty record fields; a mount destination is one the
//! spec names; label filters quote what they are given (a filter never parses as more terms).
#![no_main]

use containerd_client::services::v1::snapshots::MountsResponse;
use containerd_client::services::v1::GetContainerResponse;
use libfuzzer_sys::fuzz_target;
use prost::Message;
use rodiff::fuzzing::{parse_snapshot_mounts, record, SnapshotMount};

fuzz_target!(|data: &[u8]| {
    if let Ok(response) = MountsResponse::decode(data) {
        let mounts: Vec<SnapshotMount> =
            response.mounts.into_iter().map(|m| SnapshotMount { kind: m.r#type, source: m.source, options: m.options }).collect();
        let _ = parse_snapshot_mounts(&mounts);
    }
    if let Ok(GetContainerResponse { container: Some(c) }) = GetContainerResponse::decode(data) {
        let snapshotter = record::snapshotter(&c.snapshotter);
        assert!(!snapshotter.is_empty());
        let key = record::snapshot_key(&c.snapshot_key, &c.id);
        assert!(key == c.snapshot_key || key == c.id);
        let _ = record::is_sandbox(&c.labels);
        let name = record::display_name(&c.labels, &c.id);
        assert!(name == c.id || c.labels.values().any(|v| v == name));
        if let Some(spec) = &c.spec {
            let destinations = record::mount_destinations(&spec.value);
            // Each destination is spelled in the spec (as JSON text, escapes aside).
            assert!(destinations.len() <= spec.value.len());
        }
        let _ = record::id_prefix_filter(&c.id);
    }
});
