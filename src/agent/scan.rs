//! Scanning: every followed container that may have written is diffed once per interval (with
//! metadata), its profile takes the diff in ([`rodiff::watch::Profile::absorb`]), and what
//! changed is written to the database in one transaction. Cost is bounded: one scan at a time per
//! container, `--concurrency` scans at once in all, and a container that is not running is
//! scanned once after it stops, not again.

use std::sync::Arc;
use std::time::{Instant, SystemTime};

use rodiff::{Error, ErrorKind, Runtime, ScanOptions, Target};

use super::drift;
use super::metrics::{ErrorLabel, RuntimeLabel};
use super::store::Row;
use super::Agent;

/// Starts due scans every second until the agent stops.
pub async fn schedule(agent: Arc<Agent>) {
    let permits = Arc::new(tokio::sync::Semaphore::new(agent.args.concurrency.max(1) as usize));
    loop {
        let due = agent.take_due(SystemTime::now());
        for key in due {
            let Ok(permit) = permits.clone().acquire_owned().await else { return };
            let agent = agent.clone();
            tokio::spawn(async move {
                let _permit = permit;
                let agent2 = agent.clone();
                let k = key.clone();
                if tokio::task::spawn_blocking(move || scan(&agent2, &k)).await.is_err() {
                    agent.finish_scan(&key, Some("the scan panicked".into()));
                }
            });
        }
        expire(&agent);
        if agent.pause(std::time::Duration::from_secs(1)).await.is_err() {
            return;
        }
    }
}

/// Forgets containers removed longer than `--retention` ago, in memory and in the database.
fn expire(agent: &Agent) {
    let gone = agent.registry().expire(SystemTime::now(), agent.args.retention);
    for key in gone {
        if let Err(e) = agent.store.forget(&key) {
            eprintln!("rodiff agent: cannot forget container {key} in {}: {e:#}", agent.store.path().display());
        }
    }
}

/// Scans one container (on a blocking thread): resolve, diff, absorb, drift, persist.
fn scan(agent: &Agent, key: &str) {
    let Some((listed, client)) = agent.scan_target(key) else { return };
    let started = Instant::now();
    let stop = agent.stop.clone();
    let diff = client.resolve(&Target::Container(listed.id.clone()), &stop).and_then(|resolved| {
        let scan = ScanOptions { metadata: true, stop: stop.clone(), ..Default::default() };
        let changes = client.changes_resolved(&resolved, false, &scan)?;
        Ok((resolved, changes))
    });
    let runtime = RuntimeLabel { runtime: listed.runtime.name().into() };
    let (resolved, changes) = match diff {
        Ok(found) => found,
        Err(e) => {
            let gone = matches!(e.kind(), ErrorKind::ContainerNotFound | ErrorKind::LayerVanished);
            if !matches!(e, Error::Cancelled) {
                let reason = super::kind_name(e.kind());
                agent.metrics.scan_errors.get_or_create(&ErrorLabel { runtime: runtime.runtime.clone(), reason }).inc();
            }
            if gone {
                agent.removed(key);
            }
            if e.kind() == ErrorKind::RuntimeUnavailable {
                agent.runtime_down(listed.runtime, &e);
            }
            agent.finish_scan(key, Some(e.to_string()));
            return;
        }
    };
    let now = SystemTime::now();
    let layer = &resolved[0].layer;
    // Take the diff in under the lock, and read what drift needs outside it.
    let (absorbed, candidates) = {
        let mut registry = agent.registry();
        let Some(t) = registry.containers.get_mut(key) else { return };
        let absorbed = t.stored.profile.absorb(changes, now);
        t.stored.last_scan = Some(now);
        let candidates: Vec<_> = absorbed.changed.iter().filter_map(|k| t.stored.profile.get(k)).map(|s| s.change.clone()).collect();
        (absorbed, candidates)
    };
    let executables: std::collections::HashSet<_> = candidates.iter().filter(|c| drift::is_executable(layer, c)).map(|c| c.path.clone()).collect();
    // Update memory under the lock; copy out what to write, and write without it.
    let update = {
        let mut registry = agent.registry();
        let Some(t) = registry.containers.get_mut(key) else { return };
        let exe = &mut t.stored.executables;
        let changed: std::collections::HashSet<&std::path::PathBuf> = absorbed.changed.iter().map(|(_, p)| p).collect();
        exe.retain(|p| !changed.contains(p) || executables.contains(p));
        for p in &executables {
            if !exe.contains(p) {
                exe.push(p.clone());
            }
        }
        exe.sort();
        let profile = &t.stored.profile;
        let rows: Vec<Row> = absorbed
            .changed
            .iter()
            .chain(&absorbed.vanished)
            .filter_map(|k| profile.get(k))
            .map(|seen| Row { seen: seen.clone(), in_last_diff: profile.in_last_diff(seen), executable: t.stored.executables.binary_search(&seen.change.path).is_ok() })
            .collect();
        (t.stored.row(), rows)
    };
    let saved = agent.store.save_scan(key, &update.0, &update.1);
    if let Err(e) = saved {
        eprintln!("rodiff agent: cannot save the scan of {key} in {}: {e:#}", agent.store.path().display());
    }
    agent.metrics.scan_seconds.observe(started.elapsed().as_secs_f64());
    agent.metrics.scans.get_or_create(&runtime).inc();
    if listed.runtime == Runtime::Docker || listed.runtime == Runtime::Containerd {
        agent.runtime_up(listed.runtime);
    }
    agent.finish_scan(key, None);
}
