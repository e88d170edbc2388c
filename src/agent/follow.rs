//! Discovery: the containers each runtime has, kept current through its event stream (Docker's
//! `/events`, containerd's `Events.Subscribe`). Subscribed first and listed second, so nothing
//! created in between is missed; an event that may add, remove, start or stop a container makes
//! the agent list again (a listing is the truth, an event only the cue). A stream that breaks
//! (the runtime restarted) marks the runtime down, and the agent reconnects with backoff.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use rodiff::{Client, Error, Runtime};

use super::metrics::RuntimeLabel;
use super::Agent;

/// Namespaces left out unless asked for: Docker's own containers in containerd (`moby`), which
/// the agent follows through Docker.
const SKIPPED_NAMESPACES: &[&str] = &["moby"];

/// The longest wait before reconnecting to a runtime that is down.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Follows `runtime` through `client` until the agent stops.
pub async fn follow(agent: Arc<Agent>, runtime: Runtime, client: Client) {
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut events = client.events(&agent.stop);
        match discover(&agent, runtime, &client).await {
            Ok(()) => backoff = Duration::from_millis(250),
            Err(e) => {
                agent.runtime_down(runtime, &e);
                if agent.pause(backoff).await.is_err() {
                    return;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        }
        // Follow events; list again after each burst of them, and every interval in any case.
        loop {
            let event = tokio::select! {
                event = events.next() => event,
                _ = tokio::time::sleep(agent.args.interval) => {
                    if let Err(e) = discover(&agent, runtime, &client).await {
                        agent.runtime_down(runtime, &e);
                        break;
                    }
                    continue;
                }
                _ = agent.stopped() => return,
            };
            match event {
                Some(Ok(event)) => {
                    agent.metrics.events.get_or_create(&RuntimeLabel { runtime: runtime.name().into() }).inc();
                    if let Some(id) = &event.container {
                        agent.touch(runtime, event.namespace.as_deref(), id);
                    }
                    if !event.changes_containers() {
                        continue;
                    }
                    // Let the burst settle (create, start, … come together).
                    let _ = agent.pause(Duration::from_millis(100)).await;
                    while let Ok(Some(Ok(_))) = tokio::time::timeout(Duration::ZERO, events.next()).await {}
                    if let Err(e) = discover(&agent, runtime, &client).await {
                        agent.runtime_down(runtime, &e);
                        break;
                    }
                }
                Some(Err(e)) => {
                    agent.runtime_down(runtime, &e);
                    break;
                }
                None if agent.stop.cancel.is_cancelled() => return,
                None => {
                    agent.runtime_down(runtime, &Error::RuntimeUnavailable { runtime: runtime.name(), endpoint: String::new(), cause: "the event stream ended".into() });
                    break;
                }
            }
        }
        if agent.pause(backoff).await.is_err() {
            return;
        }
    }
}

/// Lists `runtime`'s containers (containerd: in the configured namespaces, else in all but
/// [`SKIPPED_NAMESPACES`]) and takes the listing in.
async fn discover(agent: &Arc<Agent>, runtime: Runtime, client: &Client) -> rodiff::Result<()> {
    let (client, stop, wanted) = (client.clone(), agent.stop.clone(), agent.args.namespaces.clone());
    let listing = tokio::task::spawn_blocking(move || -> rodiff::Result<_> {
        if runtime == Runtime::Docker {
            return Ok((Vec::new(), client.containers(&stop)?));
        }
        let namespaces = match wanted.is_empty() {
            false => wanted,
            true => client.namespaces(&stop)?.into_iter().filter(|n| !SKIPPED_NAMESPACES.contains(&n.as_str())).collect(),
        };
        let mut all = Vec::new();
        for ns in &namespaces {
            all.extend(client.in_namespace(ns).containers(&stop)?);
        }
        Ok((namespaces, all))
    })
    .await
    .map_err(|_| Error::Cancelled)?;
    let (namespaces, listed) = listing?;
    agent.take_listing(runtime, &namespaces, listed, SystemTime::now());
    Ok(())
}
