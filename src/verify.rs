//! Verification (Docker): proves a plan by running the container again, read-only, with the plan's
//! mounts — and a shadow copy of it with a writable root, whose diff shows what the read-only copy
//! would have lost.
//!
//! Podman's Docker-compatible service is verified the same way, with the plan's Podman tmpfs
//! options ([`crate::plan::render::tmpfs_options_for`]). Its `ReadonlyRootfs` also mounts tmpfs on
//! `/run`, `/tmp` and `/var/tmp` (measured, Podman 4.3; the compat API has no switch for it), so
//! the read-only copy can write there; the shadow copy has no such mounts, and its diff reports
//! writes there that the plan does not cover, so the verdict is still the plan's.
//!
//! Two new containers are made from the original's image, command, entrypoint, environment, user,
//! working directory and labels ([`spec`]), both with the plan's tmpfs mounts and (new, throw-away)
//! volumes:
//!
//! - the **read-only run** (`--read-only`): started, given `wait` to settle, probed with `exec`,
//!   stopped gracefully (the image's stop signal, then SIGKILL after `stop_timeout`), started
//!   again with the same volumes and probed again. It holds when it is running at both probes, the
//!   probes exit 0, its log shows no `Read-only file system` error (during the run, at stop, after
//!   the restart), and it exits 0 at stop — or with the same code as the shadow run (an
//!   application that exits non-zero on its stop signal does so whatever the root filesystem);
//! - the **shadow run** (writable root), at the same time: started, given `wait`, probed, diffed
//!   with rodiff's own engine, stopped gracefully the same way, diffed again. Every change outside
//!   its mounts (the plan's and the original's) and the runtime's own paths is a write the
//!   read-only container would have failed on or lost, whether the application logged it or not;
//!   it is reported with its kind and when it appeared: during the run (the first diff) or at stop
//!   (only the second).
//!
//! The containers and their volumes are removed on every path: each is recorded by the call
//! before it is made and removed before the call returns — on success, on error, and when the
//! call is cancelled (a cancel is seen between steps; a creation in flight is finished first, so
//! that nothing is made behind the cleanup's back).

mod cleanup;
pub mod logs;
pub(crate) mod spec;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerInspectResponse, VolumeCreateOptions};
use bollard::query_parameters::{
    CreateContainerOptions, InspectContainerOptions, LogsOptions, StartContainerOptions, StopContainerOptions,
};
use bollard::Docker;
use futures_util::future::BoxFuture;
use futures_util::StreamExt;
use serde::{Serialize, Serializer};

use crate::cancel::Stop;
use crate::error::{Error, Result};
use crate::model::{path_json, path_order, Change, ChangeKind, FileType};
use crate::plan::Plan;
use crate::resolve::docker::DockerResolver;

pub use logs::ReadOnlyFailure;

/// How long a probe may run.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the container's state is checked while waiting.
const POLL: Duration = Duration::from_millis(200);

/// How to verify.
#[derive(Clone, Debug)]
pub struct VerifyOptions {
    /// A shell command run in the container (`sh -c PROBE`) after the wait, and again after the
    /// restart; exit 0 passes.
    pub probe: Option<String>,
    /// How long the container must keep running before the probe (at the start and the restart).
    pub wait: Duration,
    /// How long a graceful stop may take before Docker kills the container (`docker stop -t`).
    pub stop_timeout: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions { probe: None, wait: Duration::from_secs(5), stop_timeout: Duration::from_secs(10) }
    }
}

impl VerifyOptions {
    /// Options with this probe and wait, and the default stop timeout.
    pub fn new(probe: Option<String>, wait: Duration) -> VerifyOptions {
        VerifyOptions { probe, wait, ..Default::default() }
    }

    /// The same options with this stop timeout.
    pub fn stop_timeout(mut self, stop_timeout: Duration) -> VerifyOptions {
        self.stop_timeout = stop_timeout;
        self
    }
}

/// When something happened during a verification.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// While the container ran (from its start to the probe's end).
    #[default]
    Run,
    /// During its graceful stop.
    Stop,
    /// After it was started again.
    Restart,
}

impl Phase {
    /// In words: `during the run`, `at stop`, `after the restart`.
    pub fn describe(self) -> &'static str {
        match self {
            Phase::Run => "during the run",
            Phase::Stop => "at stop",
            Phase::Restart => "after the restart",
        }
    }
}

/// What a verification found. Serializes with durations in seconds.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    /// The read-only container's name (removed by now).
    pub container: String,
    /// Docker refused to start it (a mount it could not make, …).
    pub start_error: Option<String>,
    /// It was still running after the wait and the probe.
    pub running: bool,
    /// How long it ran before it was found stopped, or the whole wait.
    #[serde(serialize_with = "seconds")]
    pub ran_for: Duration,
    /// Its exit code, if it stopped.
    pub exit_code: Option<i64>,
    /// The probe's outcome, if there was a probe and the container was running for it.
    pub probe: Option<ProbeOutcome>,
    /// Log lines about the read-only root filesystem, with the paths they name and when they were
    /// written (during the run, at stop, after the restart).
    pub failures: Vec<ReadOnlyFailure>,
    /// Its last log lines (for a container that stopped, or did not come back after the restart).
    pub log_tail: Vec<String>,
    /// What could not be removed afterwards (normally empty).
    pub leftovers: Vec<String>,
    /// Its graceful stop, when it was running for it.
    pub stop: Option<Stopped>,
    /// Its restart after the stop (same volumes), when it stopped.
    pub restart: Option<Restarted>,
    /// The shadow run: the same container and mounts with a writable root.
    pub shadow: Option<Shadow>,
    /// Writes the shadow run made outside the plan's mounts, the container's own mounts and the
    /// runtime's paths: each one failed, or was lost, in the read-only run.
    pub uncovered: Vec<UncoveredWrite>,
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Report {
    /// Whether the plan held: every item of [`Self::problems`] is absent.
    pub fn passed(&self) -> bool {
        self.problems().is_empty()
    }

    /// Why the plan did not hold, one line each (empty when it held).
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(e) = &self.start_error {
            problems.push(format!("Docker could not start the read-only container: {e}"));
        } else if !self.running {
            problems.push(match self.exit_code {
                Some(code) => format!("the read-only container exited with code {code} during the run"),
                None => "the read-only container stopped during the run".into(),
            });
        }
        if self.probe.as_ref().is_some_and(|p| !p.passed()) {
            problems.push("the probe failed".into());
        }
        if !self.failures.is_empty() {
            let phases: Vec<&str> = unique(self.failures.iter().map(|f| f.when.describe()));
            problems.push(format!("writes refused by the read-only root filesystem ({})", phases.join(", ")));
        }
        if let Some(stop) = &self.stop {
            let shadow_code = self.shadow.as_ref().and_then(|s| s.stop.as_ref()).and_then(|s| s.exit_code);
            if stop.exit_code != Some(0) && (stop.exit_code.is_none() || stop.exit_code != shadow_code) {
                problems.push(match stop.exit_code {
                    Some(code) => format!("the read-only container exited with code {code} at stop (the writable shadow copy: {})",
                        shadow_code.map_or("no exit code".to_string(), |c| format!("code {c}"))),
                    None => "the read-only container gave no exit code at stop".into(),
                });
            }
        }
        if self.running && self.start_error.is_none() {
            match &self.restart {
                None => problems.push("the read-only container was not restarted".into()),
                Some(r) => {
                    if let Some(e) = &r.start_error {
                        problems.push(format!("Docker could not start the read-only container again: {e}"));
                    } else if !r.running {
                        problems.push(match r.exit_code {
                            Some(code) => format!("the read-only container exited with code {code} after the restart"),
                            None => "the read-only container stopped after the restart".into(),
                        });
                    }
                    if r.probe.as_ref().is_some_and(|p| !p.passed()) {
                        problems.push("the probe failed after the restart".into());
                    }
                }
            }
        }
        match &self.shadow {
            None => problems.push("the shadow run did not run".into()),
            Some(s) => {
                if let Some(e) = &s.start_error {
                    problems.push(format!("Docker could not start the shadow copy: {e}"));
                }
            }
        }
        if !self.uncovered.is_empty() {
            let phases: Vec<&str> = unique(self.uncovered.iter().map(|u| u.when.describe()));
            problems.push(format!("{} write(s) outside the plan's mounts ({})", self.uncovered.len(), phases.join(", ")));
        }
        problems
    }
}

/// `items` without repeats, in order.
fn unique<'a>(items: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = Vec::new();
    for item in items {
        if !seen.contains(&item) {
            seen.push(item);
        }
    }
    seen
}

/// The outcome of a probe.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ProbeOutcome {
    /// The command (run as `sh -c COMMAND`).
    pub command: String,
    /// Its exit code (`None` when it timed out or Docker did not say).
    pub exit_code: Option<i64>,
    /// Its output, stdout and stderr interleaved.
    pub output: String,
}

impl ProbeOutcome {
    /// Whether it exited 0.
    pub fn passed(&self) -> bool {
        self.exit_code == Some(0)
    }
}

/// A graceful stop: the container's stop signal, then SIGKILL after the stop timeout.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stopped {
    /// The exit code it stopped with.
    pub exit_code: Option<i64>,
    /// How long the stop took.
    #[serde(serialize_with = "seconds")]
    pub took: Duration,
    /// It did not stop within the stop timeout, and was killed.
    pub killed: bool,
}

/// A restart after a graceful stop, with the same volumes.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Restarted {
    /// Docker refused to start it again.
    pub start_error: Option<String>,
    /// It was running after the wait and the probe.
    pub running: bool,
    /// Its exit code, if it stopped.
    pub exit_code: Option<i64>,
    /// The probe's outcome, if it was running for it.
    pub probe: Option<ProbeOutcome>,
}

/// The shadow run: the same container with the plan's mounts and a writable root.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Shadow {
    /// Its name (removed by now).
    pub container: String,
    /// Docker refused to start it.
    pub start_error: Option<String>,
    /// It was still running after the wait and the probe.
    pub running: bool,
    /// Its exit code, if it stopped by itself.
    pub exit_code: Option<i64>,
    /// The probe's outcome.
    pub probe: Option<ProbeOutcome>,
    /// Its graceful stop, when it was running for it.
    pub stop: Option<Stopped>,
}

/// A write the shadow run made where the read-only run cannot write.
///
/// Serializes as `{"path", "kind", "type", "when"}` (path as in `rodiff diff --format json`,
/// `when`: `run` or `stop`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UncoveredWrite {
    /// The change the shadow's diff showed, with metadata.
    pub change: Change,
    /// When it appeared: during the run ([`Phase::Run`]) or at stop ([`Phase::Stop`]).
    pub when: Phase,
}

impl Serialize for UncoveredWrite {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("UncoveredWrite", 4)?;
        st.serialize_field("path", &path_json::Bytes(self.change.path_bytes()))?;
        st.serialize_field("kind", &self.change.kind)?;
        st.serialize_field("type", &self.change.file_type)?;
        st.serialize_field("when", &self.when)?;
        st.end()
    }
}

/// Diffs a Docker container by name with rodiff's own engine: its changes (with metadata, sorted
/// by path, mount points marked) and its mount destinations.
pub(crate) type Differ = dyn Fn(String) -> BoxFuture<'static, Result<(Vec<Change>, Vec<PathBuf>)>> + Send + Sync;

/// The writes among the shadow's changes `before` its stop and `after` it that no mount covers:
/// not the runtime's, not at or below one of `mounts`. A path first seen `after` appeared at stop.
/// A changed directory with any change below it is left out: what is below speaks for it — an
/// uncovered write, or a covered one, or a mount point the runtime made (`/var` changes when
/// Docker makes `/var/lib` for a volume at `/var/lib/app`; the read-only run has it too).
pub(crate) fn uncovered(before: &[Change], after: Option<&[Change]>, mounts: &[PathBuf]) -> Vec<UncoveredWrite> {
    let has_below = |dir: &Change| {
        let below = |c: &Change| c.path != dir.path && c.path.starts_with(&dir.path);
        before.iter().any(below) || after.unwrap_or_default().iter().any(below)
    };
    let outside = |c: &&Change| !c.runtime_made() && !mounts.iter().any(|m| c.path.starts_with(m));
    let mut found: Vec<UncoveredWrite> =
        before.iter().filter(outside).map(|c| UncoveredWrite { change: c.clone(), when: Phase::Run }).collect();
    let seen: HashMap<&std::path::Path, ()> = before.iter().map(|c| (c.path.as_path(), ())).collect();
    for c in after.unwrap_or_default().iter().filter(outside) {
        if !seen.contains_key(c.path.as_path()) {
            found.push(UncoveredWrite { change: c.clone(), when: Phase::Stop });
        }
    }
    found.retain(|u| !(u.change.kind == ChangeKind::Changed && u.change.file_type == FileType::Dir && has_below(&u.change)));
    found.sort_by(|a, b| path_order(a.change.path_bytes(), b.change.path_bytes()));
    found
}

/// Verifies `plan` for Docker container `container` (name, id or id prefix) through `docker`;
/// `diff` diffs the shadow copy (see [`crate::Client::verify`]).
pub(crate) async fn verify(docker: &DockerResolver, container: &str, plan: &Plan, options: &VerifyOptions, diff: &Differ, stop: &Stop) -> Result<Report> {
    let original = stop.race(inspect(docker, container)).await?;
    let mut verification = Verification { docker: docker.client(), resolver: docker, container, made: Vec::new(), stop };
    let result = verification.attempt(&original, plan, options, diff).await;
    let leftovers = cleanup::remove(docker, &verification.made).await;
    result.map(|report| Report { leftovers, ..report })
}

async fn inspect(resolver: &DockerResolver, container: &str) -> Result<ContainerInspectResponse> {
    resolver.check_reference(container)?;
    resolver.request(resolver.client().inspect_container(container, None::<InspectContainerOptions>)).await.map_err(|e| match e {
        bollard::errors::Error::DockerResponseServerError { status_code: 404, .. } => Error::ContainerNotFound {
            container: container.to_string(),
            runtime: "docker",
            endpoint: resolver.endpoint().to_string(),
        },
        e => resolver.unavailable(e),
    })
}

/// One verification in progress.
struct Verification<'a> {
    docker: &'a Docker,
    /// Where `docker` came from: how its failures are reported.
    resolver: &'a DockerResolver,
    /// The original container, as the user named it.
    container: &'a str,
    /// What was made (or is being made), to remove at the end.
    made: Vec<cleanup::Made>,
    stop: &'a Stop,
}

/// A container's state: running, and its exit code when it is not.
#[derive(Clone, Copy, Debug, Default)]
struct State {
    running: bool,
    exit_code: Option<i64>,
}

/// What a run (start, wait, probe) found.
#[derive(Debug, Default)]
struct Ran {
    start_error: Option<String>,
    state: State,
    ran_for: Duration,
    probe: Option<ProbeOutcome>,
}

impl Verification<'_> {
    async fn attempt(&mut self, original: &ContainerInspectResponse, plan: &Plan, options: &VerifyOptions, diff: &Differ) -> Result<Report> {
        let id = original.id.clone().unwrap_or_default();
        // Unique per call: verifications of one container may run at once (threads of an
        // embedder), and each removes everything under its own names.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("rodiff-verify-{}-{}-{call}", &id[..id.len().min(12)], std::process::id());
        let runtime = self.resolver.dialect();
        let read_only = spec::spec(original, plan, runtime, &prefix, true);
        let shadow = spec::spec(original, plan, runtime, &format!("{prefix}-shadow"), false);
        self.create(&id, read_only).await?;
        let shadow_name = self.create(&id, shadow).await?;
        let name = prefix;

        let (report, shadow) = tokio::join!(self.read_only_run(&name, options), self.shadow_run(&shadow_name, options, diff));
        let mut report = report?;
        let (shadow, uncovered) = shadow?;
        report.shadow = Some(shadow);
        report.uncovered = uncovered;
        Ok(report)
    }

    /// Creates `spec`'s volumes and container (each recorded first); returns the container's name.
    async fn create(&mut self, id: &str, spec: spec::Spec) -> Result<String> {
        for volume in &spec.volumes {
            self.begin(cleanup::Made::Volume(volume.clone()))?;
            let labels = [(spec::LABEL.to_string(), id.to_string())].into();
            let config = VolumeCreateOptions { name: Some(volume.clone()), labels: Some(labels), ..Default::default() };
            self.resolver.request(self.docker.create_volume(config)).await.map_err(|e| self.failed(format!("create volume {volume}"), e))?;
        }
        self.begin(cleanup::Made::Container(spec.name.clone()))?;
        let create = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        self.resolver
            .request(self.docker.create_container(Some(create), spec.body))
            .await
            .map_err(|e| self.failed(format!("create the verification container {}", spec.name), e))?;
        Ok(spec.name)
    }

    /// The read-only run: start, wait, probe; graceful stop; restart, wait, probe.
    async fn read_only_run(&self, name: &str, options: &VerifyOptions) -> Result<Report> {
        let mut report = Report { container: name.to_string(), ..Default::default() };
        let ran = self.run(name, options).await?;
        report.start_error = ran.start_error;
        report.running = ran.state.running;
        report.exit_code = ran.state.exit_code;
        report.ran_for = ran.ran_for;
        report.probe = ran.probe;
        if report.start_error.is_some() {
            return Ok(report);
        }
        let log = self.log(name).await?;
        report.failures = logs::failures_in(&log, 0, Phase::Run);
        if !report.running {
            report.log_tail = tail(&log);
            return Ok(report);
        }

        report.stop = Some(self.stop_gracefully(name, options.stop_timeout).await?);
        let at_stop = self.log(name).await?;
        report.failures.extend(logs::failures_in(&at_stop, log.lines().count(), Phase::Stop));

        let again = self.run(name, options).await?;
        report.restart =
            Some(Restarted { start_error: again.start_error, running: again.state.running, exit_code: again.state.exit_code, probe: again.probe });
        let after = self.log(name).await?;
        report.failures.extend(logs::failures_in(&after, at_stop.lines().count(), Phase::Restart));
        if !again.state.running {
            report.log_tail = tail(&after);
        }
        Ok(report)
    }

    /// The shadow run: start, wait, probe, diff; graceful stop, diff. Returns what it found and
    /// the writes outside its mounts.
    async fn shadow_run(&self, name: &str, options: &VerifyOptions, diff: &Differ) -> Result<(Shadow, Vec<UncoveredWrite>)> {
        let ran = self.run(name, options).await?;
        let mut shadow = Shadow {
            container: name.to_string(),
            start_error: ran.start_error,
            running: ran.state.running,
            exit_code: ran.state.exit_code,
            probe: ran.probe,
            stop: None,
        };
        if shadow.start_error.is_some() {
            return Ok((shadow, Vec::new()));
        }
        let (before, mounts) = self.stop.race(diff(name.to_string())).await?;
        let mut after = None;
        if shadow.running {
            shadow.stop = Some(self.stop_gracefully(name, options.stop_timeout).await?);
            after = Some(self.stop.race(diff(name.to_string())).await?.0);
        }
        let uncovered = uncovered(&before, after.as_deref(), &mounts);
        Ok((shadow, uncovered))
    }

    /// Starts the container (again), checks that it keeps running for the wait, and probes it.
    async fn run(&self, name: &str, options: &VerifyOptions) -> Result<Ran> {
        let mut ran = Ran::default();
        self.stop.check()?;
        if let Err(e) = self.stop.race(async { Ok(self.resolver.request(self.docker.start_container(name, None::<StartContainerOptions>)).await) }).await? {
            ran.start_error = Some(docker_message(e));
            return Ok(ran);
        }
        let started = Instant::now();
        let deadline = started + options.wait;
        loop {
            ran.state = self.state(name).await?;
            if !ran.state.running || Instant::now() >= deadline {
                break;
            }
            self.stop.sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await?;
        }
        ran.ran_for = started.elapsed().min(options.wait);
        if ran.state.running {
            if let Some(command) = &options.probe {
                ran.probe = Some(self.stop.race(self.probe(name, command)).await?);
            }
            ran.state = self.state(name).await?;
        }
        Ok(ran)
    }

    /// Stops the container as `docker stop -t` does: its stop signal, SIGKILL after `timeout`.
    async fn stop_gracefully(&self, name: &str, timeout: Duration) -> Result<Stopped> {
        let started = Instant::now();
        let seconds = i32::try_from(timeout.as_secs()).unwrap_or(i32::MAX);
        let options = StopContainerOptions { t: Some(seconds), signal: None };
        // Docker answers when the container has stopped: allow the timeout on top of the usual.
        let allowance = timeout + self.resolver.timeout();
        let docker = self.docker.clone().with_timeout(allowance);
        let call = tokio::time::timeout(allowance, docker.stop_container(name, Some(options)));
        match self.stop.race(async { Ok(call.await) }).await? {
            Ok(Ok(())) => {}
            // Already stopped: it ended by itself in between.
            Ok(Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. })) => {}
            Ok(Err(e)) => return Err(self.failed(format!("stop {name}"), e)),
            Err(_) => return Err(self.failed(format!("stop {name}"), bollard::errors::Error::RequestTimeoutError)),
        }
        let took = started.elapsed();
        let state = self.state(name).await?;
        Ok(Stopped { exit_code: state.exit_code, took, killed: took >= timeout && state.exit_code == Some(137) })
    }

    /// Records something about to be made (so that it is removed whatever happens next), unless
    /// the verification must stop: then nothing more is made.
    fn begin(&mut self, made: cleanup::Made) -> Result<()> {
        self.stop.check()?;
        self.made.push(made);
        Ok(())
    }

    /// Whether the container is running, and its exit code when it is not.
    async fn state(&self, name: &str) -> Result<State> {
        let inspect = self
            .stop
            .race(async { Ok(self.resolver.request(self.docker.inspect_container(name, None::<InspectContainerOptions>)).await) })
            .await?
            .map_err(|e| self.failed(format!("inspect the verification container {name}"), e))?;
        let state = inspect.state.unwrap_or_default();
        let running = state.running == Some(true) && state.restarting != Some(true);
        Ok(State { running, exit_code: if running { None } else { state.exit_code } })
    }

    /// Runs `sh -c COMMAND` in the container and collects its output and exit code.
    async fn probe(&self, name: &str, command: &str) -> Result<ProbeOutcome> {
        let mut outcome = ProbeOutcome { command: command.to_string(), ..Default::default() };
        let exec = CreateExecOptions {
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            cmd: Some(vec!["sh", "-c", command]),
            ..Default::default()
        };
        let action = || format!("run the probe in {name}");
        let exec = self.resolver.request(self.docker.create_exec(name, exec)).await.map_err(|e| self.failed(action(), e))?;
        let started = self.resolver.request(self.docker.start_exec(&exec.id, None)).await.map_err(|e| self.failed(action(), e))?;
        if let StartExecResults::Attached { mut output, .. } = started {
            let collect = async {
                while let Some(chunk) = output.next().await {
                    match chunk {
                        Ok(chunk) => outcome.output.push_str(&String::from_utf8_lossy(&chunk.into_bytes())),
                        Err(_) => break,
                    }
                }
            };
            if tokio::time::timeout(PROBE_TIMEOUT, collect).await.is_err() {
                outcome.output.push_str(&format!("\n(probe timed out after {} s)", PROBE_TIMEOUT.as_secs()));
                return Ok(outcome);
            }
        }
        let inspect = self.resolver.request(self.docker.inspect_exec(&exec.id)).await.map_err(|e| self.failed(action(), e))?;
        outcome.exit_code = inspect.exit_code;
        Ok(outcome)
    }

    /// The container's whole log, stdout and stderr.
    async fn log(&self, name: &str) -> Result<String> {
        let options = LogsOptions { stdout: true, stderr: true, ..Default::default() };
        let read = async {
            let mut stream = self.docker.logs(name, Some(options));
            let mut log = Vec::new();
            while let Some(chunk) = stream.next().await {
                log.extend_from_slice(&chunk?.into_bytes());
            }
            Ok(log)
        };
        let log = self.stop.race(async { Ok(self.resolver.request(read).await) }).await?;
        let log = log.map_err(|e| self.failed(format!("read the log of {name}"), e))?;
        Ok(String::from_utf8_lossy(&log).into_owned())
    }

    /// A request that failed: the runtime's refusal ([`Error::RuntimeCall`]), or no answer in
    /// time ([`Error::RuntimeUnavailable`]).
    fn failed(&self, action: String, e: bollard::errors::Error) -> Error {
        if DockerResolver::is_timeout(&e) {
            return self.resolver.unavailable(e);
        }
        Error::RuntimeCall { container: self.container.to_string(), runtime: "docker", action, cause: docker_message(e) }
    }
}

/// The last 20 lines of a log.
fn tail(log: &str) -> Vec<String> {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].iter().map(|l| l.to_string()).collect()
}

/// The daemon's own message for an error, when it sent one.
fn docker_message(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        e => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(path: &str, kind: ChangeKind, file_type: FileType) -> Change {
        Change::new(PathBuf::from(path), kind, file_type)
    }

    #[test]
    fn uncovered_writes_are_outside_mounts_and_dated() {
        let mut mountpoint = change("/var/lib/app", ChangeKind::Added, FileType::Dir);
        mountpoint.mountpoint = true;
        let before = vec![
            change("/etc/hosts", ChangeKind::Changed, FileType::File),
            change("/run", ChangeKind::Changed, FileType::Dir),
            change("/run/app.pid", ChangeKind::Added, FileType::File),
            change("/tmp/x", ChangeKind::Added, FileType::File),
            mountpoint.clone(),
        ];
        let mut after = before.clone();
        after.push(change("/var/cache", ChangeKind::Changed, FileType::Dir));
        after.push(change("/var/cache/app", ChangeKind::Touched, FileType::Dir));
        after.push(change("/srv/state", ChangeKind::Added, FileType::File));
        after.sort_by(|a, b| path_order(a.path_bytes(), b.path_bytes()));
        // /var changed only because the runtime made the mount point /var/lib/app: not a write.
        after.push(change("/var", ChangeKind::Changed, FileType::Dir));
        // /opt changed by itself (its mode): a write.
        after.push(change("/opt", ChangeKind::Changed, FileType::Dir));
        after.sort_by(|a, b| path_order(a.path_bytes(), b.path_bytes()));
        let found = uncovered(&before, Some(&after), &[PathBuf::from("/tmp"), PathBuf::from("/var/lib/app")]);
        let got: Vec<(&str, char, Phase)> =
            found.iter().map(|u| (u.change.path.to_str().unwrap(), u.change.kind.letter(), u.when)).collect();
        assert_eq!(
            got,
            [("/opt", 'C', Phase::Stop), ("/run/app.pid", 'A', Phase::Run), ("/srv/state", 'A', Phase::Stop), ("/var/cache/app", 'T', Phase::Stop)]
        );
        let json = serde_json::to_value(&found[2]).unwrap();
        assert_eq!(json, serde_json::json!({"path": "/srv/state", "kind": "A", "type": "file", "when": "stop"}));
    }

    #[test]
    fn a_stop_exit_code_fails_unless_the_shadow_gives_it_too() {
        let shadow = |code| Some(Shadow { stop: Some(Stopped { exit_code: Some(code), ..Default::default() }), ..Default::default() });
        let report = |code, shadow| Report {
            running: true,
            stop: Some(Stopped { exit_code: Some(code), ..Default::default() }),
            restart: Some(Restarted { running: true, ..Default::default() }),
            shadow,
            ..Default::default()
        };
        assert!(report(0, shadow(0)).passed());
        assert!(report(143, shadow(143)).passed());
        let failed = report(1, shadow(0));
        assert_eq!(failed.problems(), ["the read-only container exited with code 1 at stop (the writable shadow copy: code 0)"]);
        assert!(!report(0, None).passed());
    }
}
