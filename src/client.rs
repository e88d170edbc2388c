//! The embeddable core: a [`Client`] holds explicit options, its connections to the runtime and
//! one bounded pool of walker threads, and serves diffs, plans and verifications to any number of
//! threads at once — the CLI, the C and Python bindings and the node agent all go through it.
//!
//! - **Blocking** methods ([`Client::diff`], [`Client::diff_into`], [`Client::plan`], …) run the
//!   runtime calls on the client's own I/O thread (one tokio runtime per client, made once) and the
//!   walk on its walker pool. They work from any thread, including a thread that is itself running
//!   another tokio runtime; they block it, so an async caller should use the async methods.
//! - **Async** methods ([`Client::diff_async`], …) return futures that any executor can poll: the
//!   runtime calls run on the client's I/O thread and the walk on its pool, never on the caller's.
//! - Every operation takes a [`Stop`] (in [`ScanOptions::stop`]): a cancel token and an optional
//!   deadline, checked between directories and raced against every runtime call.
//!
//! A client is `Send + Sync` and cheap to clone (clones share everything). Connections are made on
//! first use and kept; a runtime that restarts is reconnected to by the next request.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;

use crate::annotate;
use crate::cancel::{Cancel, Stop};
use crate::error::{Error, ErrorKind, Result};
use crate::evidence;
use crate::idmap::{IdMap, MappedImage};
use crate::layer::image::ImageView;
use crate::layer::{ChangeSink, Collect, Flow, Layer, ScanOptions, Walkers};
use crate::live;
use crate::model::Change;
use crate::plan::{self, Plan, Rules};
use crate::resolve::containerd::ContainerdResolver;
use crate::resolve::docker::DockerResolver;
use crate::resolve::inventory::{ListedContainer, RuntimeEvent};
use crate::resolve::{ClientOptions, Origin, ResolvedContainer, Runtime, Target};
use crate::verify::{self, Report, VerifyOptions};
use crate::watch::{Listened, Profile, Reader, WatchOptions};

/// A handle on rodiff's engines and a container runtime. See the [module docs](self).
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
    /// The containerd namespace this handle looks in, when not the options' ([`Client::in_namespace`]).
    namespace: Option<Arc<str>>,
}

struct Inner {
    options: ClientOptions,
    /// Runs every runtime call (one worker thread); `None` only while dropping.
    io: Option<tokio::runtime::Runtime>,
    walkers: Walkers,
    docker: tokio::sync::OnceCell<DockerResolver>,
    containerd: tokio::sync::OnceCell<ContainerdResolver>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        // A runtime may not be dropped from async code (the last clone of a client may go away in
        // a task): let its thread wind down on its own.
        if let Some(io) = self.io.take() {
            io.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("options", &self.inner.options).field("walkers", &self.inner.walkers.threads()).finish()
    }
}

/// The result of work run on another thread: its own, or its panic resumed here; `None` (the
/// thread went away with the client's runtime) is a cancel.
fn finish<T>(sent: Option<std::thread::Result<Result<T>>>) -> Result<T> {
    match sent {
        Some(Ok(result)) => result,
        Some(Err(panic)) => std::panic::resume_unwind(panic),
        None => Err(Error::Cancelled),
    }
}

/// A sink that, once its sink has returned [`Flow::Break`], answers `Break` itself without
/// calling it again.
struct Latch<'a> {
    inner: &'a dyn ChangeSink,
    broke: AtomicBool,
}

impl ChangeSink for Latch<'_> {
    fn emit(&self, batch: Vec<Change>) -> std::io::Result<Flow> {
        if self.broke.load(Ordering::SeqCst) {
            return Ok(Flow::Break(()));
        }
        let flow = self.inner.emit(batch)?;
        if flow.is_break() {
            self.broke.store(true, Ordering::SeqCst);
        }
        Ok(flow)
    }
}

/// Cancels an async operation's own token when its future is dropped (abandoned by its caller).
#[derive(Debug)]
struct CancelOnDrop(Cancel);

impl CancelOnDrop {
    /// `scan` with a token of its own under the caller's, and the guard that cancels it.
    fn scan(mut scan: ScanOptions) -> (ScanOptions, CancelOnDrop) {
        scan.stop.cancel = scan.stop.cancel.child();
        let guard = CancelOnDrop(scan.stop.cancel.clone());
        (scan, guard)
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// What [`Client::watch`] saw.
#[derive(Debug)]
#[non_exhaustive]
pub struct Watched {
    /// The union of the diffs.
    pub profile: Profile,
    /// The containers as last resolved (one, or a pod's), to plan for.
    pub containers: Vec<ResolvedContainer>,
    /// The error that ended the watch after some diffs were complete: the profile holds what
    /// was seen until then, but the watch did not run its course.
    pub failed: Option<Error>,
    /// What listening with fanotify added, or why it could not listen, and how often its queue
    /// overflowed.
    pub listened: Listened,
}

/// A runtime's container events, as [`Client::events`] follows them. Dropping it stops following.
#[derive(Debug)]
pub struct Events {
    events: tokio::sync::mpsc::Receiver<Result<RuntimeEvent>>,
    _stop: CancelOnDrop,
}

impl Events {
    /// The next event; an error when the connection failed (the last item); `None` at the end.
    pub async fn next(&mut self) -> Option<Result<RuntimeEvent>> {
        self.events.recv().await
    }

    /// [`Self::next`], blocking the calling thread (not from async code).
    pub fn blocking_next(&mut self) -> Option<Result<RuntimeEvent>> {
        self.events.blocking_recv()
    }
}

/// How a streaming diff ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Outcome {
    /// Every change was sent to the sink: `false` when the sink stopped the scan early
    /// ([`crate::layer::Flow::Break`]).
    pub complete: bool,
    /// How many containers were diffed (more than one for a pod).
    pub containers: usize,
}

impl Client {
    /// A client with these options. Starts its I/O thread and its walker pool; connects to the
    /// runtime on first use.
    pub fn new(options: ClientOptions) -> Result<Client> {
        let io = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("rodiff-io")
            .enable_all()
            .build()
            .map_err(|e| Error::io("<rodiff-io thread>", e))?;
        let walkers = Walkers::new(options.walkers)?;
        let inner = Inner {
            options,
            io: Some(io),
            walkers,
            docker: tokio::sync::OnceCell::new(),
            containerd: tokio::sync::OnceCell::new(),
        };
        Ok(Client { inner: Arc::new(inner), namespace: None })
    }

    /// The options the client was made with.
    pub fn options(&self) -> &ClientOptions {
        &self.inner.options
    }

    /// The same client (connections, I/O thread, walker pool), looking for containerd containers
    /// and pods in `namespace` instead of the options' namespace: one client serves every
    /// namespace of a node.
    pub fn in_namespace(&self, namespace: &str) -> Client {
        Client { inner: self.inner.clone(), namespace: Some(namespace.into()) }
    }

    /// The containerd namespace a container reference is looked for in.
    pub fn namespace(&self) -> String {
        self.namespace.as_deref().map_or_else(|| self.options().containerd_namespace(), str::to_string)
    }

    /// The containerd namespace a pod is looked for in.
    fn pod_namespace(&self) -> String {
        self.namespace.as_deref().map_or_else(|| self.options().pod_namespace(), str::to_string)
    }

    /// The walker pool all of this client's scans share.
    pub fn walkers(&self) -> &Walkers {
        &self.inner.walkers
    }

    // ---- blocking ----

    /// Resolves what `target` names: one container, or a pod's containers (sorted by name).
    pub fn resolve(&self, target: &Target, stop: &Stop) -> Result<Vec<ResolvedContainer>> {
        let (client, target, stop) = (self.clone(), target.clone(), stop.clone());
        self.block(async move { client.resolve_io(&target, &stop).await })
    }

    /// All changes of `target` (a container, or a pod's containers each change tagged with its
    /// container), with metadata, sorted by path.
    pub fn diff(&self, target: impl Into<Target>) -> Result<Vec<Change>> {
        self.changes(&target.into(), &Stop::default())
    }

    /// [`Client::diff`] that `stop` can cancel or bound in time.
    pub fn changes(&self, target: &Target, stop: &Stop) -> Result<Vec<Change>> {
        self.changes_with(target, &ScanOptions { metadata: true, stop: stop.clone(), ..Default::default() })
    }

    /// The changes of `target` sorted by path, scanned with `scan` (e.g. without metadata).
    pub fn changes_with(&self, target: &Target, scan: &ScanOptions) -> Result<Vec<Change>> {
        let collect = Collect::default();
        self.diff_into(target, scan, &collect)?;
        Ok(self.walkers().install(|| collect.into_sorted()))
    }

    /// The changes of containers already resolved, sorted by path ([`Client::diff_resolved`]
    /// into a list; changes are tagged with their container when `tag`).
    pub fn changes_resolved(&self, resolved: &[ResolvedContainer], tag: bool, scan: &ScanOptions) -> Result<Vec<Change>> {
        let collect = Collect::default();
        self.diff_resolved(resolved, tag, scan, &collect)?;
        Ok(self.walkers().install(|| collect.into_sorted()))
    }

    /// Diffs `target` into `sink` as the walk finds changes (see [`Client::diff_resolved`]).
    pub fn diff_into(&self, target: &Target, scan: &ScanOptions, sink: &dyn ChangeSink) -> Result<Outcome> {
        let resolved = self.resolve(target, &scan.stop)?;
        self.diff_resolved(&resolved, matches!(target, Target::Pod(_)), scan, sink)
    }

    /// Diffs resolved containers into `sink`, one after the other on the walker pool, marking mount
    /// points; with `tag`, every change carries its container's name ([`Change::container`]).
    /// Directories where a container's processes hold deleted files open are `T` when the layer
    /// does not tell (see [`evidence`]), sent after the layer's changes.
    ///
    /// Once `sink` returns [`Flow::Break`] it is not called again (calls already under way on
    /// other walker threads finish), and the outcome says the result is incomplete.
    pub fn diff_resolved(&self, resolved: &[ResolvedContainer], tag: bool, scan: &ScanOptions, sink: &dyn ChangeSink) -> Result<Outcome> {
        let sink = &Latch { inner: sink, broke: AtomicBool::new(false) };
        for r in resolved {
            let result = match tag {
                true => self.diff_one(r, scan, &annotate::Tagged::new(&r.name, sink)),
                false => self.diff_one(r, scan, sink),
            };
            match result {
                Ok(()) => {}
                Err(Error::Stopped) => return Ok(Outcome { complete: false, containers: resolved.len() }),
                Err(e) => return Err(e),
            }
        }
        Ok(Outcome { complete: true, containers: resolved.len() })
    }

    /// Diffs one container, then makes sure the walk saw its layer whole (see [`Self::confirm`]).
    fn diff_one(&self, resolved: &ResolvedContainer, scan: &ScanOptions, sink: &dyn ChangeSink) -> Result<()> {
        self.walk_one(resolved, scan, sink)?;
        self.confirm(resolved, &scan.stop)
    }

    /// After a walk of an overlay upper directory: fails with [`Error::LayerVanished`] when the
    /// runtime no longer has the container (or its snapshot), or is removing it. A removal deletes
    /// the directory's entries one by one while the walk reads them, and entries that vanish under
    /// a walk are normal for a running container, so the walk alone would return a shorter diff as
    /// if it were whole. (A btrfs layer is walked in a frozen snapshot, which a removal cannot thin.)
    fn confirm(&self, resolved: &ResolvedContainer, stop: &Stop) -> Result<()> {
        let Layer::Overlay(layer) = &resolved.layer else { return Ok(()) };
        if resolved.origin == Origin::Unknown {
            return Ok(());
        }
        let (client, origin, id, stop) = (self.clone(), resolved.origin.clone(), resolved.id.clone(), stop.clone());
        let there = self.block(async move {
            stop.race(async {
                match &origin {
                    Origin::Unknown => Ok(true),
                    Origin::Docker => client.docker(&stop).await?.still_there(&id).await,
                    Origin::Containerd { namespace, snapshotter, key } => {
                        client.containerd(&stop).await?.in_namespace(namespace)?.snapshot_exists(snapshotter, key).await
                    }
                }
            })
            .await
        })?;
        match there {
            true => Ok(()),
            false => Err(Error::LayerVanished { path: layer.upper.clone() }),
        }
    }

    fn walk_one(&self, resolved: &ResolvedContainer, scan: &ScanOptions, sink: &dyn ChangeSink) -> Result<()> {
        let walkers = self.walkers();
        let held = live::open_deleted(&resolved.processes)?;
        let written: Vec<PathBuf> = held.iter().filter_map(|f| f.path.parent().map(|p| p.to_path_buf())).collect();
        // The runtime's own entries are mount points (or made for them) like the destinations.
        let marked: Vec<PathBuf> = resolved.mount_destinations.iter().chain(&resolved.runtime_entries).cloned().collect();
        if written.is_empty() {
            let annotated = annotate::MountPoints::new(&marked, sink);
            return resolved.layer.diff(walkers, scan, &annotated);
        }
        let image = resolved.layer.image()?;
        let touched = evidence::LiveTouched::new(written, image.as_ref(), &resolved.mount_destinations, scan.metadata, sink)?;
        drop(image);
        let annotated = annotate::MountPoints::new(&marked, &touched);
        resolved.layer.diff(walkers, scan, &annotated)?;
        touched.finish()
    }

    /// Plans the mounts each container of `target` needs to run with a read-only root filesystem
    /// (see [`plan`](mod@plan)), one plan per container.
    pub fn plan(&self, target: &Target, rules: &Rules, stop: &Stop) -> Result<Vec<Plan>> {
        self.resolve(target, stop)?.iter().map(|r| self.plan_resolved(r, rules, stop)).collect()
    }

    /// Plans the mounts a resolved container needs: diffs it, asks its layer what the image ships,
    /// and applies `rules`.
    pub fn plan_resolved(&self, resolved: &ResolvedContainer, rules: &Rules, stop: &Stop) -> Result<Plan> {
        let collect = Collect::default();
        let scan = ScanOptions { metadata: true, stop: stop.clone(), ..Default::default() };
        self.diff_one(resolved, &scan, &collect)?;
        let changes = self.walkers().install(|| collect.into_sorted());
        self.plan_changes(resolved, &changes, rules)
    }

    /// Plans the mounts for `changes` (with metadata, sorted by path) of a resolved container: a
    /// diff, or the union of a watch ([`Self::watch`]).
    /// A running container in a user namespace of its own (rootless Podman, `--uidmap`,
    /// `userns-remap`) gets its plan in its own ids, not the host's its layer stores
    /// ([`crate::idmap`]).
    pub fn plan_changes(&self, resolved: &ResolvedContainer, changes: &[Change], rules: &Rules) -> Result<Plan> {
        let stored = resolved.layer.image()?;
        let ids = match resolved.processes.init {
            Some(pid) => IdMap::of_process(&resolved.processes.proc_root, pid).map_err(|e| Error::io(resolved.processes.proc_root.join(pid.to_string()).join("uid_map"), e))?,
            None => None,
        };
        let Some(ids) = ids else { return self.plan_in_ids(resolved, changes, stored.as_ref(), rules, None) };
        let mapped: Vec<Change> =
            changes.iter().map(|c| Change { metadata: c.metadata.map(|m| ids.metadata(m)), ..c.clone() }).collect();
        self.plan_in_ids(resolved, &mapped, &MappedImage { inner: stored.as_ref(), ids: &ids }, rules, Some(&ids))
    }

    /// [`Self::plan_changes`] with `changes` and `view` in the container's ids; `ids` maps what
    /// `/proc` tells (host ids) to them.
    fn plan_in_ids(&self, resolved: &ResolvedContainer, changes: &[Change], view: &dyn ImageView, rules: &Rules, ids: Option<&IdMap>) -> Result<Plan> {
        let run_as = match (rules.anticipates(), ids) {
            (false, _) => None,
            (true, None) => crate::run_as::run_as(resolved, view)?,
            // What /proc tells is in host ids; a configured user is the image's, the container's.
            (true, Some(ids)) => match crate::run_as::of_processes(&resolved.processes) {
                Some(found) => Some(crate::plan::RunAs {
                    uids: found.uids.iter().map(|&u| ids.uid(u)).collect(),
                    gids: found.gids.iter().map(|&g| ids.gid(g)).collect(),
                    ..found
                }),
                None => crate::run_as::run_as(resolved, view)?,
            },
        };
        let input = plan::PlanInput {
            container: resolved.name.clone(),
            image: resolved.image.clone(),
            mount_destinations: resolved.mount_destinations.clone(),
            run_as,
            runtime: resolved.dialect,
        };
        plan::plan(changes, view, &input, rules)
    }

    /// Watches `target` (see [`crate::watch`]): diffs it with metadata, again every
    /// `options.interval`, until `options.duration` has passed, the container is no longer
    /// running (`options.until_exit`), it is removed, or `stop` ends the watch. A diff under way
    /// when the watch ends is left out. An error before the first complete diff is returned; a
    /// later one (the runtime went away) ends the watch with what was seen, and the error in
    /// [`Watched::failed`]. With `options.fanotify`, each layer is listened to from when it is
    /// first resolved (before its first diff) until the last diff ends, and what no diff showed
    /// joins the profile ([`Watched::listened`] says how that went).
    pub fn watch(&self, target: &Target, options: &WatchOptions, stop: &Stop) -> Result<Watched> {
        let started = std::time::Instant::now();
        let mut profile = Profile::default();
        let mut last = Vec::new();
        let mut reader = Reader::default();
        let tag = matches!(target, Target::Pod(_));
        let ends = |e: &Error| matches!(e, Error::Cancelled | Error::Timeout { .. });
        let gone = |e: &Error| matches!(e.kind(), ErrorKind::ContainerNotFound | ErrorKind::LayerVanished);
        let mut failed = None;
        loop {
            let diff = self.resolve(target, stop).and_then(|resolved| {
                if options.fanotify {
                    reader.listen(&resolved, tag);
                }
                let collect = Collect::default();
                let scan = ScanOptions { metadata: true, stop: stop.clone(), ..Default::default() };
                self.diff_resolved(&resolved, tag, &scan, &collect)?;
                Ok((resolved, self.walkers().install(|| collect.into_sorted())))
            });
            match diff {
                Ok((resolved, changes)) => {
                    profile.absorb(changes, std::time::SystemTime::now());
                    Self::hear(&mut profile, reader.take());
                    last = resolved;
                }
                Err(e) if profile.diffs() > 0 && ends(&e) => break,
                Err(e) if profile.diffs() > 0 && gone(&e) => {
                    profile.ended = Some("the container was removed".into());
                    break;
                }
                Err(e) if profile.diffs() > 0 => {
                    profile.ended = Some("a diff failed".into());
                    failed = Some(e);
                    break;
                }
                Err(e) => return Err(e),
            }
            if options.until_exit && last.iter().all(|r| r.processes.init.is_none()) {
                profile.ended = Some("the container is not running".into());
                break;
            }
            let pause = match options.duration.map(|d| d.saturating_sub(started.elapsed())) {
                Some(left) if left.is_zero() => {
                    profile.ended = Some("the duration passed".into());
                    break;
                }
                Some(left) => left.min(options.interval),
                None => options.interval,
            };
            if stop.pause(pause).is_err() {
                break;
            }
        }
        let (heard, listened) = reader.finish();
        Self::hear(&mut profile, heard);
        Ok(Watched { profile, containers: last, failed, listened })
    }

    /// Adds the writes fanotify heard to a watch's profile: kind `T`, transient until a diff
    /// shows the path (see [`Profile::hear`]).
    fn hear(profile: &mut Profile, heard: Vec<crate::watch::Heard>) {
        for (container, heard, at) in heard {
            let mut change = Change::new(heard.path, crate::model::ChangeKind::Touched, heard.file_type);
            change.container = container;
            profile.hear(change, at);
        }
    }

    /// Proves `plan` by running Docker container `container` again, read-only, with the plan's
    /// mounts, through a graceful stop and a restart, beside a shadow copy with a writable root
    /// whose diff shows the writes no mount covers (see [`verify`](mod@verify)). What it makes is
    /// removed before it returns, also when `stop` cancels it.
    pub fn verify(&self, container: &str, plan: &Plan, options: &VerifyOptions, stop: &Stop) -> Result<Report> {
        if self.options().runtime != Runtime::Docker {
            return Err(Error::RuntimeCall {
                container: container.to_string(),
                runtime: "containerd",
                action: "verify a plan".into(),
                cause: "verification runs containers through Docker only".into(),
            });
        }
        let (client, container, plan, options, stop) = (self.clone(), container.to_string(), plan.clone(), options.clone(), stop.clone());
        self.block(async move {
            let docker = client.docker(&stop).await?;
            let differ = client.clone();
            let diff_stop = stop.clone();
            // The shadow copy is diffed with the engine every diff uses: resolved through Docker,
            // walked on the walker pool, mount points marked.
            let diff = move |name: String| -> futures_util::future::BoxFuture<'static, Result<(Vec<Change>, Vec<PathBuf>)>> {
                let (client, stop) = (differ.clone(), diff_stop.clone());
                Box::pin(async move {
                    let resolved = client.resolve_io(&Target::from(name.as_str()), &stop).await?;
                    let mounts = resolved.iter().flat_map(|r| r.mount_destinations.clone()).collect();
                    let scan = ScanOptions { metadata: true, stop, ..Default::default() };
                    let changes = client.on_walkers(move |client| client.changes_resolved(&resolved, false, &scan)).await?;
                    Ok((changes, mounts))
                })
            };
            verify::verify(docker, &container, &plan, &options, &diff, &stop).await
        })
    }

    // ---- what the runtime holds ----

    /// containerd's namespaces, sorted (Docker has none: an empty list).
    pub fn namespaces(&self, stop: &Stop) -> Result<Vec<String>> {
        let (client, stop) = (self.clone(), stop.clone());
        self.block(async move {
            match client.options().runtime {
                Runtime::Docker => Ok(Vec::new()),
                Runtime::Containerd => stop.race(async { client.containerd(&stop).await?.namespaces().await }).await,
            }
        })
    }

    /// The runtime's containers, running or not: Docker's, or those of this client's containerd
    /// namespace ([`Self::namespace`]); pods' sandbox (pause) containers and containers being
    /// removed are left out.
    pub fn containers(&self, stop: &Stop) -> Result<Vec<ListedContainer>> {
        let (client, stop) = (self.clone(), stop.clone());
        self.block(async move {
            stop.race(async {
                match client.options().runtime {
                    Runtime::Docker => client.docker(&stop).await?.list().await,
                    Runtime::Containerd => client.containerd(&stop).await?.in_namespace(&client.namespace())?.list_all().await,
                }
            })
            .await
        })
    }

    /// Follows the runtime's container events (Docker's `/events`; containerd's in every
    /// namespace) from now until `stop`, or until the connection fails or ends: then the stream
    /// yields that error ([`Error::RuntimeUnavailable`]) and ends. Subscribe again to reconnect
    /// (events in between are lost: list the containers again after reconnecting).
    pub fn events(&self, stop: &Stop) -> Events {
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        let cancel = stop.cancel.child();
        let stop = Stop { cancel: cancel.clone(), ..stop.clone() };
        let client = self.clone();
        self.io().spawn(async move {
            let follow = async {
                let mut stream: std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<RuntimeEvent>> + Send>> = match client.options().runtime {
                    Runtime::Docker => Box::pin(client.docker(&stop).await?.events()),
                    Runtime::Containerd => Box::pin(client.containerd(&stop).await?.events().await?),
                };
                while let Some(event) = futures_util::StreamExt::next(&mut stream).await {
                    if tx.send(event).await.is_err() {
                        break;
                    }
                }
                Ok(())
            };
            if let Err(e) = stop.race(follow).await {
                if !matches!(e, Error::Cancelled | Error::Timeout { .. }) {
                    let _ = tx.send(Err(e)).await;
                }
            }
        });
        Events { events: rx, _stop: CancelOnDrop(cancel) }
    }

    // ---- async ----
    //
    // Dropping one of these futures cancels its operation (a child of the caller's token), so
    // that an abandoned walk stops at its next directory instead of occupying the pool.

    /// [`Client::resolve`] for async callers.
    pub async fn resolve_async(&self, target: &Target, stop: &Stop) -> Result<Vec<ResolvedContainer>> {
        let (client, target, stop) = (self.clone(), target.clone(), stop.clone());
        self.spawn_io(async move { client.resolve_io(&target, &stop).await }).await
    }

    /// [`Client::diff`] for async callers, with the caller's scan options (`scan.metadata` as
    /// they say): the walk runs on the walker pool, not on the caller's executor.
    pub async fn diff_async(&self, target: &Target, scan: ScanOptions) -> Result<Vec<Change>> {
        let (scan, _abandon) = CancelOnDrop::scan(scan);
        let resolved = self.resolve_async(target, &scan.stop).await?;
        let tag = matches!(target, Target::Pod(_));
        self.on_walkers(move |client| {
            let collect = Collect::default();
            client.diff_resolved(&resolved, tag, &scan, &collect)?;
            Ok(collect.into_sorted())
        })
        .await
    }

    /// [`Client::diff_into`] for async callers: `sink` is called on walker threads. Keep a clone
    /// of `scan.progress` to watch it.
    pub async fn diff_into_async(&self, target: &Target, scan: ScanOptions, sink: Arc<dyn ChangeSink + Send>) -> Result<Outcome> {
        let (scan, _abandon) = CancelOnDrop::scan(scan);
        let resolved = self.resolve_async(target, &scan.stop).await?;
        let tag = matches!(target, Target::Pod(_));
        self.on_walkers(move |client| client.diff_resolved(&resolved, tag, &scan, sink.as_ref())).await
    }

    /// [`Client::plan`] for async callers.
    pub async fn plan_async(&self, target: &Target, rules: Rules, stop: Stop) -> Result<Vec<Plan>> {
        let (scan, _abandon) = CancelOnDrop::scan(ScanOptions { stop, ..Default::default() });
        let resolved = self.resolve_async(target, &scan.stop).await?;
        self.on_walkers(move |client| resolved.iter().map(|r| client.plan_resolved(r, &rules, &scan.stop)).collect()).await
    }

    // ---- plumbing ----

    fn io(&self) -> &tokio::runtime::Runtime {
        self.inner.io.as_ref().expect("the runtime is only taken on drop")
    }

    /// Runs `work` on the I/O thread and blocks the calling thread for its result (a panic in it
    /// resumes here). A std channel, not `Runtime::block_on`: this works on a thread that runs
    /// another runtime.
    fn block<T: Send + 'static>(&self, work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.io().spawn(async move {
            let _ = tx.send(AssertUnwindSafe(work).catch_unwind().await);
        });
        finish(rx.recv().ok())
    }

    /// Runs `work` on the I/O thread; the returned future can be awaited on any executor (a panic
    /// in `work` resumes there).
    async fn spawn_io<T: Send + 'static>(&self, work: impl Future<Output = Result<T>> + Send + 'static) -> Result<T> {
        match self.io().spawn(work).await {
            Ok(result) => result,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => Err(Error::Cancelled),
        }
    }

    /// Runs blocking `work` on the walker pool; the returned future can be awaited on any executor
    /// (a panic in `work` — a sink's — resumes there, as it would in a blocking call).
    async fn on_walkers<T: Send + 'static>(&self, work: impl FnOnce(&Client) -> Result<T> + Send + 'static) -> Result<T> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let client = self.clone();
        self.walkers().spawn(move || {
            let _ = tx.send(std::panic::catch_unwind(AssertUnwindSafe(|| work(&client))));
        });
        finish(rx.await.ok())
    }

    /// Resolves on the I/O thread, raced against `stop`.
    async fn resolve_io(&self, target: &Target, stop: &Stop) -> Result<Vec<ResolvedContainer>> {
        stop.race(async {
            match (target, self.options().runtime) {
                (Target::Pod(pod), _) => {
                    let namespace = self.pod_namespace();
                    self.containerd(stop).await?.in_namespace(&namespace)?.resolve_pod(pod).await
                }
                (Target::Container(c), Runtime::Docker) => Ok(vec![self.docker(stop).await?.resolve(c).await?]),
                (Target::Container(c), Runtime::Containerd) => {
                    let namespace = self.namespace();
                    Ok(vec![self.containerd(stop).await?.in_namespace(&namespace)?.resolve(c).await?])
                }
            }
        })
        .await
    }

    /// The Docker connection, made on first use (a failed attempt is retried next time).
    async fn docker(&self, stop: &Stop) -> Result<&DockerResolver> {
        stop.race(self.inner.docker.get_or_try_init(|| DockerResolver::connect(&self.inner.options))).await
    }

    /// The containerd connection, made on first use (a failed attempt is retried next time).
    async fn containerd(&self, stop: &Stop) -> Result<&ContainerdResolver> {
        let options = &self.inner.options;
        let connect = || async move { ContainerdResolver::connect_namespace(options, &options.containerd_namespace()).await };
        stop.race(self.inner.containerd.get_or_try_init(connect)).await
    }
}
