//! Verification (Docker): proves a plan by running the container again, read-only, with the plan's
//! mounts.
//!
//! A new container is made from the original's image, command, entrypoint, environment, user,
//! working directory and labels ([`spec`]), with `--read-only` and the plan's tmpfs mounts and
//! (new, throw-away) volumes. It is started, given `wait` to settle, and probed with `exec`. It
//! passes when it is still running, the probe exits 0, and its log shows no `Read-only file
//! system` error. The container and its volumes are removed on every path: each is recorded by the
//! call before it is made and removed before the call returns — on success, on error, and when the
//! call is cancelled (a cancel is seen between steps; a creation in flight is finished first, so
//! that nothing is made behind the cleanup's back).

mod cleanup;
pub mod logs;
pub(crate) mod spec;

use std::time::{Duration, Instant};

use bollard::exec::{CreateExecOptions, StartExecResults};
use bollard::models::{ContainerInspectResponse, VolumeCreateOptions};
use bollard::query_parameters::{CreateContainerOptions, InspectContainerOptions, LogsOptions, StartContainerOptions};
use bollard::Docker;
use futures_util::StreamExt;

use crate::cancel::Stop;
use crate::error::{Error, Result};
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
    /// A shell command run in the container (`sh -c PROBE`) after the wait; exit 0 passes.
    pub probe: Option<String>,
    /// How long the container must keep running before the probe.
    pub wait: Duration,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        VerifyOptions { probe: None, wait: Duration::from_secs(5) }
    }
}

/// What a verification found. Serializes with `ran_for` in seconds.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Report {
    /// The verification container's name (removed by now).
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
    /// Log lines about the read-only root filesystem, with the paths they name.
    pub failures: Vec<ReadOnlyFailure>,
    /// Its last log lines (for a container that stopped).
    pub log_tail: Vec<String>,
    /// What could not be removed afterwards (normally empty).
    pub leftovers: Vec<String>,
}

fn seconds<S: serde::Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

impl Report {
    /// Whether the plan held: running, probe passed, no read-only errors in the log.
    pub fn passed(&self) -> bool {
        self.start_error.is_none()
            && self.running
            && self.probe.as_ref().map_or(true, ProbeOutcome::passed)
            && self.failures.is_empty()
    }
}

/// The outcome of a probe.
#[derive(Clone, Debug, Default, serde::Serialize)]
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

/// Verifies `plan` for Docker container `container` (name, id or id prefix) through `docker`
/// (see [`crate::Client::verify`]).
pub(crate) async fn verify(docker: &DockerResolver, container: &str, plan: &Plan, options: &VerifyOptions, stop: &Stop) -> Result<Report> {
    let original = stop.race(inspect(docker, container)).await?;
    let mut verification = Verification { docker: docker.client(), resolver: docker, container, made: Vec::new(), stop };
    let result = verification.attempt(&original, plan, options).await;
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

impl Verification<'_> {
    async fn attempt(&mut self, original: &ContainerInspectResponse, plan: &Plan, options: &VerifyOptions) -> Result<Report> {
        let id = original.id.clone().unwrap_or_default();
        // Unique per call: verifications of one container may run at once (threads of an
        // embedder), and each removes everything under its own names.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = format!("rodiff-verify-{}-{}-{call}", &id[..id.len().min(12)], std::process::id());
        let spec = spec::spec(original, plan, &prefix);
        let mut report = Report { container: spec.name.clone(), ..Default::default() };

        for volume in &spec.volumes {
            self.begin(cleanup::Made::Volume(volume.clone()))?;
            let labels = [(spec::LABEL.to_string(), id.clone())].into();
            let config = VolumeCreateOptions { name: Some(volume.clone()), labels: Some(labels), ..Default::default() };
            self.resolver.request(self.docker.create_volume(config)).await.map_err(|e| self.failed(format!("create volume {volume}"), e))?;
        }
        self.begin(cleanup::Made::Container(spec.name.clone()))?;
        let create = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        self.resolver
            .request(self.docker.create_container(Some(create), spec.body))
            .await
            .map_err(|e| self.failed(format!("create the verification container {}", spec.name), e))?;
        self.stop.check()?;
        if let Err(e) = self.resolver.request(self.docker.start_container(&spec.name, None::<StartContainerOptions>)).await {
            report.start_error = Some(docker_message(e));
            return Ok(report);
        }

        // The container must keep running for the whole wait.
        let started = Instant::now();
        let deadline = started + options.wait;
        while self.state(&spec.name, &mut report).await? && Instant::now() < deadline {
            self.stop.sleep(POLL.min(deadline.saturating_duration_since(Instant::now()))).await?;
        }
        report.ran_for = started.elapsed().min(options.wait);
        if report.running {
            if let Some(command) = &options.probe {
                report.probe = Some(self.stop.race(self.probe(&spec.name, command)).await?);
            }
            self.state(&spec.name, &mut report).await?;
        }

        let log = self.stop.race(self.log(&spec.name)).await?;
        report.failures = logs::failures(&log);
        if !report.running {
            let lines: Vec<&str> = log.lines().collect();
            report.log_tail = lines[lines.len().saturating_sub(20)..].iter().map(|l| l.to_string()).collect();
        }
        Ok(report)
    }

    /// Records something about to be made (so that it is removed whatever happens next), unless
    /// the verification must stop: then nothing more is made.
    fn begin(&mut self, made: cleanup::Made) -> Result<()> {
        self.stop.check()?;
        self.made.push(made);
        Ok(())
    }

    /// Updates `running` and `exit_code`; returns `running`.
    async fn state(&self, name: &str, report: &mut Report) -> Result<bool> {
        let inspect = self
            .stop
            .race(async { Ok(self.resolver.request(self.docker.inspect_container(name, None::<InspectContainerOptions>)).await) })
            .await?
            .map_err(|e| self.failed(format!("inspect the verification container {name}"), e))?;
        let state = inspect.state.unwrap_or_default();
        report.running = state.running == Some(true) && state.restarting != Some(true);
        report.exit_code = if report.running { None } else { state.exit_code };
        Ok(report.running)
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
        let log = self.resolver.request(read).await.map_err(|e| self.failed(format!("read the log of {name}"), e))?;
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

/// The daemon's own message for an error, when it sent one.
fn docker_message(e: bollard::errors::Error) -> String {
    match e {
        bollard::errors::Error::DockerResponseServerError { message, .. } => message,
        e => e.to_string(),
    }
}
