//! `rodiff agent`: a long-running service for one node. It follows the containers of the
//! configured runtimes ([`follow`]), scans each once per interval into a write profile — the union
//! of its diffs over its life ([`scan`]) — keeps the profiles in SQLite ([`store`]) and serves them
//! over HTTP with Prometheus metrics ([`http`], [`metrics`]), with drift: executables a container
//! added or changed ([`drift`]). A thin adapter over [`rodiff::Client`]: every diff, listing and
//! event stream is the library's.

mod drift;
mod follow;
mod http;
mod metrics;
mod registry;
mod scan;
mod store;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use rodiff::{Client, ClientOptions, Error, ListedContainer, Runtime, Stop};

use metrics::{Metrics, RuntimeLabel};
use registry::{Registry, Tracked};
use store::{ContainerRow, Store};

/// `rodiff agent` options.
#[derive(clap::Args, Debug, Clone)]
pub struct AgentArgs {
    /// Address the HTTP API listens on (0.0.0.0:9781 to be scraped from other hosts).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:9781")]
    pub listen: SocketAddr,
    /// Seconds between two scans of a running container.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = crate::parse_timeout)]
    pub interval: Duration,
    /// Directory of the state database (rodiff.db); made if missing; must be writable.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/rodiff")]
    pub state: PathBuf,
    /// Runtimes to follow, comma-separated: docker, containerd.
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "docker,containerd")]
    pub runtimes: Vec<crate::RuntimeArg>,
    /// containerd namespaces to follow, comma-separated (default: every namespace but `moby`,
    /// Docker's own, which is followed through Docker).
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub namespaces: Vec<String>,
    /// Seconds a removed container's profile is kept before it is forgotten.
    #[arg(long, value_name = "SECONDS", default_value = "86400", value_parser = crate::parse_timeout)]
    pub retention: Duration,
    /// Scans at once, across all containers (each container has at most one at a time).
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..=64))]
    pub concurrency: u64,
}

/// The agent's shared state.
pub struct Agent {
    args: AgentArgs,
    clients: BTreeMap<Runtime, Client>,
    store: Store,
    registry: Mutex<Registry>,
    metrics: Metrics,
    /// Each followed runtime's state: `Ok` when its last listing answered.
    runtimes: Mutex<BTreeMap<Runtime, Result<(), String>>>,
    /// Ends everything (SIGINT, SIGTERM).
    stop: Stop,
}

impl Agent {
    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Each followed runtime and whether it answered its last listing.
    fn runtime_states(&self) -> BTreeMap<Runtime, Result<(), String>> {
        self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set_runtime(&self, runtime: Runtime, state: Result<(), String>) {
        let up = state.is_ok();
        let was = self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).insert(runtime, state.clone());
        self.metrics.runtime_up.get_or_create(&RuntimeLabel { runtime: runtime.name().into() }).set(i64::from(up));
        if let (Err(cause), Some(Ok(()))) = (&state, &was) {
            eprintln!("rodiff agent: {runtime} is down: {cause}");
        }
        if let (Ok(()), Some(Err(_))) = (&state, &was) {
            eprintln!("rodiff agent: {runtime} is back");
        }
    }

    fn runtime_up(&self, runtime: Runtime) {
        self.set_runtime(runtime, Ok(()));
    }

    fn runtime_down(&self, runtime: Runtime, e: &Error) {
        if !matches!(e, Error::Cancelled) {
            self.set_runtime(runtime, Err(e.to_string()));
        }
    }

    /// Sleeps `d`, or fails at once when the agent stops.
    async fn pause(&self, d: Duration) -> Result<(), ()> {
        tokio::select! {
            _ = tokio::time::sleep(d) => Ok(()),
            _ = self.stopped() => Err(()),
        }
    }

    /// Resolves when the agent stops.
    async fn stopped(&self) {
        while !self.stop.cancel.is_cancelled() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Takes a complete listing of `runtime` in, and writes what changed.
    fn take_listing(&self, runtime: Runtime, namespaces: &[String], listed: Vec<ListedContainer>, now: SystemTime) {
        let reconciled = self.registry().reconcile(runtime, namespaces, listed, now);
        for (key, stored) in &reconciled.save {
            self.save(key, stored);
        }
        self.runtime_up(runtime);
    }

    /// Notes an event about a container: scan it soon even if it is not running.
    fn touch(&self, runtime: Runtime, namespace: Option<&str>, id: &str) {
        let key = match (runtime, namespace) {
            (Runtime::Containerd, Some(ns)) => format!("containerd/{ns}/{id}"),
            _ => format!("{}/{id}", runtime.name()),
        };
        if let Some(t) = self.registry().containers.get_mut(&key) {
            t.dirty = true;
        }
    }

    /// The keys of the containers due for a scan at `now`, marked as being scanned.
    fn take_due(&self, now: SystemTime) -> Vec<String> {
        let mut registry = self.registry();
        let due: Vec<String> = registry.containers.iter().filter(|(_, t)| t.due(now, self.args.interval)).map(|(k, _)| k.clone()).collect();
        for k in &due {
            if let Some(t) = registry.containers.get_mut(k) {
                (t.scanning, t.dirty) = (true, false);
            }
        }
        due
    }

    /// What to scan for `key`: the container as listed, and the client (in its namespace).
    fn scan_target(&self, key: &str) -> Option<(ListedContainer, Client)> {
        let listed = self.registry().containers.get(key)?.stored.listed.clone();
        let client = self.clients.get(&listed.runtime)?;
        let client = match &listed.namespace {
            Some(ns) => client.in_namespace(ns),
            None => client.clone(),
        };
        Some((listed, client))
    }

    fn finish_scan(&self, key: &str, error: Option<String>) {
        if let Some(t) = self.registry().containers.get_mut(key) {
            (t.scanning, t.last_error) = (false, error);
        }
    }

    /// Its scan found the container gone: removed (its runtime's next listing confirms).
    fn removed(&self, key: &str) {
        let stored = self.registry().mark_removed(key, SystemTime::now());
        if let Some(stored) = stored {
            self.save(key, &stored);
        }
    }

    fn save(&self, key: &str, stored: &ContainerRow) {
        if let Err(e) = self.store.save_container(key, stored) {
            eprintln!("rodiff agent: cannot save container {key} in {}: {e:#}", self.store.path().display());
        }
    }
}

/// An error kind as the API and metrics name it: `container_not_found`, `runtime_unavailable`.
fn kind_name(kind: rodiff::ErrorKind) -> String {
    let mut name = String::new();
    for (i, c) in format!("{kind:?}").chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_lowercase());
    }
    name
}

/// Runs the agent until SIGINT or SIGTERM.
pub fn run(args: &AgentArgs, options: ClientOptions, stop: Stop) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.state).with_context(|| format!("cannot make the state directory {}", args.state.display()))?;
    let store = Store::open(&args.state)?;
    let mut registry = Registry::default();
    for (key, stored) in store.load()? {
        registry.containers.insert(key, Tracked { stored, scanning: false, dirty: false, last_error: None });
    }
    let restored = registry.containers.len();
    let mut clients = BTreeMap::new();
    for runtime in &args.runtimes {
        let runtime = runtime.runtime();
        let client = Client::new(ClientOptions { runtime, ..options.clone() })?;
        clients.insert(runtime, client);
    }
    let agent = Arc::new(Agent {
        runtimes: Mutex::new(clients.keys().map(|r| (*r, Err("not asked yet".to_string()))).collect()),
        args: args.clone(),
        clients,
        store,
        registry: Mutex::new(registry),
        metrics: Metrics::new(),
        stop,
    });
    let io = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("rodiff-agent").enable_all().build()?;
    io.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen).await.with_context(|| format!("cannot listen on {}", args.listen))?;
        eprintln!(
            "rodiff agent: listening on http://{}, following {}, state {} ({restored} containers restored)",
            listener.local_addr()?,
            agent.clients.keys().map(|r| r.name()).collect::<Vec<_>>().join(" and "),
            agent.store.path().display(),
        );
        for (runtime, client) in &agent.clients {
            tokio::spawn(follow::follow(agent.clone(), *runtime, client.clone()));
        }
        tokio::spawn(scan::schedule(agent.clone()));
        let stopping = agent.clone();
        axum::serve(listener, http::router(agent.clone()))
            .with_graceful_shutdown(async move { stopping.stopped().await })
            .await
            .context("the HTTP server failed")?;
        eprintln!("rodiff agent: stopped");
        Ok(())
    })
}
