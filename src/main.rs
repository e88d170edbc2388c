//! The `rodiff` command line.

#[cfg(feature = "agent")]
mod agent;

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rodiff::dialect::Dialect;
use rodiff::escape::Escaped;
use rodiff::plan::render::PlanFormat;
use rodiff::render::{self, Format};
use rodiff::verify::VerifyOptions;
use rodiff::{Cancel, Client, ClientOptions, Collect, Error, Runtime, ScanOptions, Stop, Target};

const EXAMPLES: &str = "\
Examples:
  rodiff diff web                     what container `web` changed, as `docker diff` prints it
  rodiff diff web --format json       the same with types, modes, owners, sizes, and kind T
  rodiff diff web --format jsonl | jq -r 'select(.kind != \"D\") | .path'
  rodiff -H unix:///run/user/1000/docker.sock diff 3f2a   rootless Docker, container by id prefix
  rodiff --runtime containerd -n default diff redis   a containerd container (overlayfs or btrfs)
  rodiff --pod shop/web-0 diff --format jsonl      every container of a Kubernetes pod, tagged

Kinds: A added, C changed, D deleted, T touched (written, but identical to the image now; only in
the JSON formats, since `docker diff` cannot see it).

Exit codes: 0 ok, 2 usage, 3 runtime unreachable or container not found, 4 unsupported storage,
1 any other error. Errors are one line on stderr naming the container, path and cause.";

/// Which paths does a container write? Exact, fast diffs of a container's writable layer.
#[derive(Parser, Debug)]
#[command(name = "rodiff", version, about, after_help = EXAMPLES, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    runtime: RuntimeArgs,
    #[command(subcommand)]
    command: Command,
}

/// How to reach the container runtime (all subcommands).
#[derive(Args, Debug)]
struct RuntimeArgs {
    /// Container runtime to ask.
    #[arg(long, global = true, value_enum, default_value_t = RuntimeArg::Docker)]
    runtime: RuntimeArg,
    /// Docker endpoint: unix:///path/docker.sock or tcp://host:port; Podman's service too
    /// (unix:///run/podman/podman.sock, rootless $XDG_RUNTIME_DIR/podman/podman.sock). Default:
    /// $DOCKER_HOST, else $CONTAINER_HOST (Podman's), else unix:///var/run/docker.sock.
    #[arg(short = 'H', long = "host", global = true, env = "DOCKER_HOST", value_name = "URI",
          hide_env_values = true, value_parser = docker_endpoint)]
    host: Option<String>,
    /// containerd socket.
    #[arg(long, global = true, env = "CONTAINERD_ADDRESS", value_name = "PATH",
          default_value = rodiff::resolve::DEFAULT_CONTAINERD_ADDRESS, hide_env_values = true)]
    address: String,
    /// containerd namespace: $CONTAINERD_NAMESPACE, else `default` (`k8s.io` with --pod).
    #[arg(short = 'n', long, global = true, value_name = "NS")]
    namespace: Option<String>,
    /// A Kubernetes pod: its containers, found through their CRI labels in containerd (sandbox
    /// container left out); CONTAINER then names one of them and may be omitted.
    #[arg(long, global = true, value_name = "NAMESPACE/NAME")]
    pod: Option<rodiff::PodSelector>,
    /// With --pod: only the container of this name.
    #[arg(long = "container", global = true, value_name = "NAME", requires = "pod")]
    pod_container: Option<String>,
    /// Where the host's / is visible (when rodiff itself runs in a container).
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    host_root: std::path::PathBuf,
    /// Seconds each request to the runtime may take (Docker's ping and API calls, containerd's
    /// connect and RPCs; more than 0). A runtime that accepts the connection but does not answer
    /// in time (a hung daemon, a socket that is not the runtime's) is reported as unreachable,
    /// exit code 3, rather than waited for.
    #[arg(long, global = true, value_name = "SECONDS", default_value = "30", value_parser = parse_timeout)]
    timeout: Duration,
}

/// `--wait`: a number of seconds, zero or more (fractions allowed).
fn seconds_or_zero(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(secs) if secs.is_finite() && secs >= 0.0 && Duration::try_from_secs_f64(secs).is_ok() => Ok(secs),
        Ok(_) => Err("must be a number of seconds, 0 or more".into()),
        Err(_) => Err(format!("{} is not a number of seconds", Escaped::str(s))),
    }
}

/// `--interval`, `--duration`: a number of seconds more than zero (fractions allowed).
fn positive_seconds(s: &str) -> Result<f64, String> {
    parse_timeout(s).map(|d| d.as_secs_f64())
}

/// `-H`/`$DOCKER_HOST`: an endpoint rodiff can speak to (empty: the default).
fn docker_endpoint(s: &str) -> Result<String, String> {
    const SCHEMES: [&str; 3] = ["unix://", "tcp://", "http://"];
    if s.is_empty() || s.starts_with('/') || SCHEMES.iter().any(|scheme| s.starts_with(scheme)) {
        return Ok(s.to_string());
    }
    Err(format!("{} is not a Docker endpoint: use unix:///path/docker.sock or tcp://host:port", Escaped::str(s)))
}

/// `--timeout`: a number of seconds more than zero (fractions allowed: `0.5`).
fn parse_timeout(s: &str) -> Result<Duration, String> {
    let secs: f64 = s.parse().map_err(|_| format!("{} is not a number of seconds", Escaped::str(s)))?;
    if !(secs.is_finite() && secs > 0.0) {
        return Err("must be more than 0 seconds".into());
    }
    Duration::try_from_secs_f64(secs).map_err(|_| format!("{s} seconds is too long"))
}

impl RuntimeArgs {
    /// The library's client options. The environment is read here, not in the library:
    /// `$DOCKER_HOST` and `$CONTAINERD_ADDRESS` through clap, `$CONTAINERD_NAMESPACE` for a
    /// container (a pod is looked for in `k8s.io` unless `-n` says otherwise).
    fn options(&self) -> ClientOptions {
        let namespace = self.namespace.clone().filter(|n| !n.is_empty()).or_else(|| match self.pod {
            Some(_) => None,
            None => std::env::var("CONTAINERD_NAMESPACE").ok().filter(|n| !n.is_empty()),
        });
        ClientOptions {
            runtime: match self.runtime {
                _ if self.pod.is_some() => Runtime::Containerd,
                RuntimeArg::Docker => Runtime::Docker,
                RuntimeArg::Containerd => Runtime::Containerd,
            },
            docker_host: self.docker_host(),
            containerd_address: self.address.clone(),
            namespace,
            host_root: self.host_root.clone(),
            timeout: self.timeout,
            walkers: 0,
        }
    }

    /// The Docker endpoint: `-H`, else `$DOCKER_HOST` (both through clap), else Podman's
    /// `$CONTAINER_HOST`, else the default. A `$CONTAINER_HOST` rodiff cannot speak to (Podman's
    /// `ssh://` connections: rodiff reads layers on this machine) is a usage error (exit 2).
    fn docker_host(&self) -> String {
        if let Some(host) = self.host.as_ref().filter(|h| !h.is_empty()) {
            return host.clone();
        }
        match std::env::var("CONTAINER_HOST") {
            Ok(host) if !host.is_empty() => docker_endpoint(&host).unwrap_or_else(|e| {
                use clap::CommandFactory;
                let e = format!("$CONTAINER_HOST: {e} (rodiff reads the container's layer on this machine: use the local socket)");
                Cli::command().error(clap::error::ErrorKind::ValueValidation, e).exit()
            }),
            _ => rodiff::resolve::DEFAULT_DOCKER_HOST.to_string(),
        }
    }

    /// What CONTAINER and --pod select; a usage error (exit 2) when they select nothing.
    fn target(&self, container: Option<&str>) -> Target {
        if let Some(pod) = &self.pod {
            let mut pod = pod.clone();
            pod.container = self.pod_container.clone();
            return Target::pod(pod, container);
        }
        match container {
            Some(c) => Target::from(c),
            None => {
                use clap::CommandFactory;
                Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, "CONTAINER is required (or --pod NAMESPACE/NAME)").exit()
            }
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
#[cfg_attr(feature = "agent", derive(PartialEq, Eq))]
enum RuntimeArg {
    /// The Docker Engine API (overlay2 and btrfs storage drivers; containerd image store).
    Docker,
    /// containerd's gRPC API (overlayfs and btrfs snapshotters).
    Containerd,
}

impl RuntimeArg {
    /// The library's runtime.
    #[cfg_attr(not(feature = "agent"), allow(dead_code))]
    fn runtime(self) -> Runtime {
        match self {
            RuntimeArg::Docker => Runtime::Docker,
            RuntimeArg::Containerd => Runtime::Containerd,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List what a container changed relative to its image (`docker diff` parity, and more).
    #[command(after_help = "Examples:\n  rodiff diff web\n  rodiff diff web --format jsonl > changes.jsonl")]
    Diff(DiffArgs),
    /// Plan the mounts a container needs to run with a read-only root filesystem.
    #[command(after_help = PLAN_HELP)]
    Plan(PlanArgs),
    /// Prove a plan: run the container again, read-only with the plan's mounts, probe it, stop and
    /// restart it, beside a writable shadow copy whose diff shows any write the plan misses (Docker).
    #[command(after_help = VERIFY_HELP)]
    Verify(VerifyArgs),
    /// Accumulate what a running container writes over time, and print the union at the end.
    #[command(after_help = WATCH_HELP)]
    Watch(WatchArgs),
    /// Run the node agent: follow every container of the node's runtimes, keep their write
    /// profiles, and serve them over HTTP with Prometheus metrics.
    #[cfg(feature = "agent")]
    #[command(after_help = AGENT_HELP)]
    Agent(agent::AgentArgs),
}

#[cfg(feature = "agent")]
const AGENT_HELP: &str = "\
Examples:
  rodiff agent                                   Docker and containerd, API on 127.0.0.1:9781
  rodiff --host-root /host --address /run/containerd/containerd.sock agent \\
      --runtimes containerd --listen 0.0.0.0:9781 --state /var/lib/rodiff-agent   in a pod
  curl -s localhost:9781/v1/containers | jq '.containers[] | {name, counts, drift}'
  curl -s localhost:9781/v1/containers/web/plan?format=compose

API: GET /livez, /readyz (503 while a followed runtime does not answer), /metrics (Prometheus),
/v1/containers, /v1/containers/{id}/diff (now, as `rodiff diff --format json`),
/v1/containers/{id}/profile (the union of its scans), /v1/containers/{id}/plan?format=docker|
compose|k8s|json. {id} is a full id, a name or a unique id prefix. Errors are JSON with status 404
(unknown container), 409 (ambiguous), 503 (runtime down).

Profiles are kept in --state/rodiff.db (SQLite): a restart, even kill -9, loses no committed scan.
SIGINT or SIGTERM stops it (exit 0).";

const WATCH_HELP: &str = "\
Examples:
  rodiff watch web --duration 600 --format json > writes.json   while the test suite runs
  rodiff watch job --until-exit --plan                           flags covering everything it wrote
  rodiff watch web                                               until Ctrl-C (prints, exits 0)

rodiff diffs the container every --interval seconds and keeps the union: each path as last seen,
and what a later diff no longer shows (a temporary file made and removed) marked
\"evidence\": \"transient\" in JSON, so that a plan made from it (--plan) gives its directory a
place to write. In between it listens with fanotify to the filesystem that holds the container's
layer, keeping events in the layer only: a name made, removed, renamed or chmod'ed there that no
diff shows (a file that lived shorter than the interval) joins the union by name as kind T,
transient: in JSON and plans (the docker format has no T). An event says only directory or not,
so other types show as file. fanotify needs CAP_SYS_ADMIN and CAP_DAC_READ_SEARCH (and, on btrfs,
the filesystem mounted whole, not with subvol=); where it is unavailable rodiff says so once on
stderr and relies on the diffs, which can miss files that live shorter than the interval. Queue
overflows (events the kernel dropped) are counted in the summary on stderr.

Exit codes: 0 ok (also when Ctrl-C or SIGTERM ends the watch), 2 usage, 3 runtime unreachable or
container not found, 4 unsupported storage, 1 any other error.";

const PLAN_HELP: &str = "\
Examples:
  rodiff plan db                          flags for `docker run`, starting with --read-only
  rodiff plan db --format k8s > patch.yaml   kubectl patch deployment db --patch-file patch.yaml
  rodiff plan db --format json | jq '.mounts[] | {path, kind, reason}'
  rodiff plan db --tmpfs /var/cache/app --volume /srv/uploads   override the rules

A directory the image gives the user the container's processes run as (a running container's,
from /proc; a stopped one's configured user), in a place the rules have for state or data
(/var/lib/<service>, /var/log/<name>, /run/<name> …; never /etc), is covered too although nothing
was written there yet — data saved only at shutdown needs it (--observed-only: no such mounts).
On a running container, rodiff says on stderr that shutdown writes show only after a stop.

Each write is covered where a rule says (/tmp, /var/tmp, /run/<name>, /var/cache/<name>,
/var/log/<name> as tmpfs; /var/lib/<service>, /var/spool/<name>, /data, /srv/<name>, /home/<user>
as volumes; pid, lock and socket files are runtime state), else in its own directory. A directory
the image ships files in gets a volume, never a tmpfs that would hide them. A tmpfs keeps the owner
and mode of the directory it replaces.

A Podman container's plan is in `podman run` flags: --read-only --read-only-tmpfs=false (Podman's
--read-only otherwise adds tmpfs mounts on /run, /tmp and /var/tmp, which Docker's does not: the
plan relies on its own mounts only, and means the same on both), tmpfs owners as `U` (Podman 4.3
refuses uid=/gid=).

Exit codes: 0 ok, 2 usage, 3 runtime unreachable or container not found, 4 unsupported storage,
1 any other error.";

const VERIFY_HELP: &str = "\
Examples:
  rodiff verify db --probe 'pg_isready' --wait 10
  rodiff verify web --probe 'curl -fsS http://127.0.0.1/ >/dev/null'
  rodiff plan db --format json > plan.json; (edit it); rodiff verify db --plan plan.json
  rodiff verify db --fix --format compose --probe 'pg_isready'    the plan, grown until it holds

The new container has the original's image, command, entrypoint, environment, user, working
directory and labels, its network mode (`none` stays `none`; ports are not published), its tmpfs and
bind mounts, new throw-away volumes in place of its volumes, and the plan's mounts. It is started,
probed after --wait seconds, stopped gracefully (its stop signal, SIGKILL after --stop-timeout),
started again with the same volumes and probed again. It passes when it runs at both probes, both
exit 0, it exits 0 at stop (or as the shadow copy does), and its log has no `Read-only file system`
error. Beside it a shadow copy runs with the same mounts and a writable root, is probed and stopped
the same way, and is diffed before and after its stop: every write outside the plan's mounts fails
the verification, named with its kind and when it appeared (during the run, at stop), whether the
application logged it or not. Everything is removed afterwards, also on errors and Ctrl-C.

Exit codes: 0 verified, 1 verification failed (the problems, refused writes and uncovered writes are
printed) or any other error, 2 usage, 3 runtime unreachable or container not found.";

#[derive(Args, Debug)]
struct DiffArgs {
    /// Container name, id or unique id prefix; running or stopped. With --pod: the container's
    /// name in the pod (optional).
    #[arg(value_parser = container_name)]
    container: Option<String>,
    /// Output format: `docker` prints `A|C|D /path` lines exactly like `docker diff` (streamed in
    /// walk order, as docker does; names a line cannot carry escaped as \n, \xff); `json` an array
    /// of change objects (path, kind, type, mode, uid, gid, size, mtime, mountpoint) sorted by path;
    /// `jsonl` one object per line, streamed.
    #[arg(long, short, value_enum, default_value_t = FormatArg::Docker)]
    format: FormatArg,
}

#[derive(Args, Debug)]
struct PlanArgs {
    /// Container name, id or unique id prefix; running or stopped. With --pod: the container's
    /// name in the pod (optional; a patch for every container otherwise).
    #[arg(value_parser = container_name)]
    container: Option<String>,
    /// Output format: `docker` one shell-quoted line of flags to add to `docker run`; `compose` a
    /// service fragment; `k8s` a strategic-merge patch for the pod template; `json` the plan with
    /// the reason for every mount.
    #[arg(long, short, value_enum, default_value_t = PlanFormatArg::Docker)]
    format: PlanFormatArg,
    #[command(flatten)]
    rules: RuleArgs,
}

/// The user's additions to the rule table.
#[derive(Args, Debug)]
struct RuleArgs {
    /// Mount a tmpfs at PATH and cover every write below it there (repeatable).
    #[arg(long = "tmpfs", value_name = "PATH", value_parser = mount_path)]
    tmpfs: Vec<std::path::PathBuf>,
    /// Mount a volume at PATH and cover every write below it there (repeatable).
    #[arg(long = "volume", value_name = "PATH", value_parser = mount_path)]
    volume: Vec<std::path::PathBuf>,
    /// Cover observed writes only: no mount for a directory the image gives the container's user
    /// (ownership evidence) unless a write showed there.
    #[arg(long)]
    observed_only: bool,
}

/// `--tmpfs`/`--volume`: an absolute path in the container, not `/` itself.
fn mount_path(s: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::Path::new(s);
    if !path.is_absolute() {
        return Err(format!("{} is not an absolute path in the container", Escaped::str(s)));
    }
    if path.components().count() == 1 {
        return Err("the root itself cannot be a mount: a read-only root is the point".into());
    }
    Ok(path.to_path_buf())
}

impl RuleArgs {
    /// The built-in rules with the user's added in front.
    fn rules(&self) -> rodiff::Rules {
        use rodiff::plan::{MountKind, Rule};
        let mut rules = rodiff::Rules::builtin();
        for path in &self.volume {
            rules.add(Rule::forced(path, MountKind::Volume));
        }
        for path in &self.tmpfs {
            rules.add(Rule::forced(path, MountKind::Tmpfs));
        }
        rules.observed_only(self.observed_only);
        rules
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum PlanFormatArg {
    Docker,
    Compose,
    K8s,
    Json,
}

#[derive(Args, Debug)]
struct VerifyArgs {
    /// Container name, id or unique id prefix (Docker); running or stopped.
    #[arg(value_parser = container_name)]
    container: String,
    /// A shell command run in the new container after the wait (`sh -c PROBE`); exit 0 passes.
    #[arg(long, value_name = "CMD")]
    probe: Option<String>,
    /// Seconds the new container must keep running before the probe.
    #[arg(long, value_name = "SECONDS", default_value_t = 5.0, value_parser = seconds_or_zero, allow_negative_numbers = true)]
    wait: f64,
    /// Seconds a graceful stop may take (the image's stop signal first, then SIGKILL), for both
    /// copies: `docker stop -t`.
    #[arg(long, value_name = "SECONDS", default_value_t = 10)]
    stop_timeout: u32,
    /// Verify this plan (`rodiff plan --format json`, maybe edited) instead of planning anew.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["tmpfs", "volume", "observed_only"])]
    plan: Option<std::path::PathBuf>,
    /// Add what the shadow run wrote outside the plan's mounts to the plan (same rules, same
    /// reasons) and verify again, until the plan holds or a round adds nothing; print the final
    /// plan (--format) on stdout, each round on stderr.
    #[arg(long, conflicts_with = "plan")]
    fix: bool,
    /// With --fix: the final plan's format, as for `rodiff plan`.
    #[arg(long, short, value_enum, default_value_t = PlanFormatArg::Docker, requires = "fix")]
    format: PlanFormatArg,
    #[command(flatten)]
    rules: RuleArgs,
}

#[derive(Args, Debug)]
struct WatchArgs {
    /// Container name, id or unique id prefix. With --pod: the container's name in the pod
    /// (optional).
    #[arg(value_parser = container_name)]
    container: Option<String>,
    /// Seconds between one diff and the next.
    #[arg(long, value_name = "SECONDS", default_value_t = 1.0, value_parser = positive_seconds, allow_negative_numbers = true)]
    interval: f64,
    /// End after this many seconds (with a last diff).
    #[arg(long, value_name = "SECONDS", conflicts_with = "until_exit", value_parser = positive_seconds, allow_negative_numbers = true)]
    duration: Option<f64>,
    /// End when the container is no longer running (with a last diff).
    #[arg(long)]
    until_exit: bool,
    /// Output format of the union, as for `rodiff diff` (sorted by path).
    #[arg(long, short, value_enum, default_value_t = FormatArg::Docker)]
    format: FormatArg,
    /// Print the read-only plan for everything seen instead of the changes (FORMAT as for
    /// `rodiff plan`: docker, compose, k8s, json).
    #[arg(long, value_enum, value_name = "FORMAT", num_args = 0..=1, default_missing_value = "docker")]
    plan: Option<PlanFormatArg>,
    #[command(flatten)]
    rules: RuleArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum FormatArg {
    Docker,
    Json,
    Jsonl,
}

impl From<FormatArg> for Format {
    fn from(f: FormatArg) -> Format {
        match f {
            FormatArg::Docker => Format::Docker,
            FormatArg::Json => Format::Json,
            FormatArg::Jsonl => Format::Jsonl,
        }
    }
}

fn main() -> ExitCode {
    let stop = Stop::default();
    let signal = cancel_on_signals(stop.cancel.clone());
    // Deep trees keep a descriptor per level open; the library leaves process-wide limits alone.
    rodiff::raise_fd_limit();
    let cli = Cli::parse();
    #[cfg(feature = "agent")]
    if let Command::Agent(args) = &cli.command {
        let result = agent::run(args, cli.runtime.options(), stop);
        return match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("rodiff: {}", message(&err));
                ExitCode::from(exit_code(&err))
            }
        };
    }
    let result = Client::new(cli.runtime.options()).map_err(anyhow::Error::new).and_then(|client| {
        let run = Run { client, args: &cli.runtime, stop };
        match &cli.command {
            Command::Diff(args) => run.diff(args),
            Command::Plan(args) => run.plan(args),
            Command::Verify(args) => run.verify(args),
            Command::Watch(args) => run.watch(args),
            #[cfg(feature = "agent")]
            Command::Agent(_) => unreachable!("the agent runs above"),
        }
    });
    // A signal is how a watch without --duration ends: it printed what it saw.
    if matches!(cli.command, Command::Watch(_)) && result.is_ok() {
        return ExitCode::SUCCESS;
    }
    // A signal cancelled the work, which removed what it made on its way out: end as the signal
    // asked, whatever the work returned.
    let received = signal.load(Ordering::SeqCst);
    if received != 0 {
        std::process::exit(128 + received);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(Error::Io { source, .. } | Error::Sink { source }) = err.downcast_ref::<Error>() {
                if source.kind() == io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("rodiff: {}", message(&err));
            ExitCode::from(exit_code(&err))
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP, cancels `cancel`: the work stops at its next check and removes
/// what it made (btrfs helper snapshots, verification containers) as it returns, and `main` then
/// exits with 128 + the signal number, which the returned cell holds. Should the work not return
/// within a minute (a hung syscall), the process exits anyway. The signals are blocked here, before
/// any other thread exists, so every thread inherits the mask and only this thread receives them.
fn cancel_on_signals(cancel: Cancel) -> &'static AtomicI32 {
    static RECEIVED: AtomicI32 = AtomicI32::new(0);
    // SAFETY: plain libc signal-mask calls on a set we own; sigwait only writes `sig`.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, sig);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        std::thread::spawn(move || {
            let mut sig = 0;
            if libc::sigwait(&set, &mut sig) == 0 {
                RECEIVED.store(sig, Ordering::SeqCst);
                cancel.cancel();
                std::thread::sleep(Duration::from_secs(60));
                std::process::exit(128 + sig);
            }
        });
    }
    &RECEIVED
}

/// Standard output that gives up once `cancel` is cancelled instead of waiting for a reader that
/// does not read (a pager left open, a pipe nobody drains): a walk blocked on its output then
/// still ends, and removes what it made (a btrfs helper snapshot) before the process exits on a
/// signal. It waits for room with `poll` (checking the token every 100 ms) and writes at most
/// `PIPE_BUF` bytes at a time, which a pipe with room takes without blocking.
struct CancellableStdout {
    cancel: Cancel,
}

impl io::Write for CancellableStdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut ready = libc::pollfd { fd: libc::STDOUT_FILENO, events: libc::POLLOUT, revents: 0 };
        loop {
            if self.cancel.is_cancelled() {
                return Err(io::Error::other("cancelled while waiting for the reader"));
            }
            // SAFETY: one pollfd we own, for the duration of the call.
            match unsafe { libc::poll(&mut ready, 1, 100) } {
                0 => continue,
                n if n > 0 => break,
                _ => {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::Interrupted {
                        return Err(e);
                    }
                }
            }
        }
        let chunk = &buf[..buf.len().min(libc::PIPE_BUF)];
        // SAFETY: writes from a live slice to the process's standard output.
        match unsafe { libc::write(libc::STDOUT_FILENO, chunk.as_ptr().cast(), chunk.len()) } {
            n if n >= 0 => Ok(n as usize),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// Nothing is buffered here (the `BufWriter` over it buffers).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A container argument: any non-empty text (the runtime says whether it names a container).
fn container_name(name: &str) -> Result<String, String> {
    match name.is_empty() {
        true => Err("the container name is empty: give a name, an id or an id prefix".into()),
        false => Ok(name.to_string()),
    }
}

fn plan_format(format: PlanFormatArg) -> PlanFormat {
    match format {
        PlanFormatArg::Docker => PlanFormat::Docker,
        PlanFormatArg::Compose => PlanFormat::Compose,
        PlanFormatArg::K8s => PlanFormat::K8s,
        PlanFormatArg::Json => PlanFormat::Json,
    }
}

/// Exit status for an error, per the interface contract ([`rodiff::ErrorKind::exit_code`]).
/// The one line an error prints: its context and causes joined by `: `, a cause its parent
/// already shows left out (the library's messages name their cause; it is also their `source`),
/// a context its cause starts with left out (`container web` before `container web: …`), and for
/// a permission refused while reading a layer, what rodiff needs.
fn message(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        match parts.last() {
            Some(last) if last.ends_with(&text) => continue,
            // A context (`container web`) its cause already starts with.
            Some(last) if text.starts_with(&format!("{last}: ")) => {
                parts.pop();
            }
            _ => {}
        }
        parts.push(text);
    }
    let mut line = parts.join(": ");
    let denied = err.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::PermissionDenied));
    if denied && err.chain().any(|c| matches!(c.downcast_ref::<Error>(), Some(Error::Io { .. }))) {
        line.push_str(" (rodiff reads the runtime's storage itself: run it as root, or with CAP_DAC_READ_SEARCH and CAP_SYS_ADMIN)");
    }
    line
}

fn exit_code(err: &anyhow::Error) -> u8 {
    err.downcast_ref::<Error>().map_or(1, |e| e.kind().exit_code())
}

/// One command's run: the client, the runtime arguments, and the stop signals cancel.
struct Run<'a> {
    client: Client,
    args: &'a RuntimeArgs,
    stop: Stop,
}

impl Run<'_> {
    fn diff(&self, args: &DiffArgs) -> anyhow::Result<()> {
        let target = self.args.target(args.container.as_deref());
        let format = Format::from(args.format);
        let scan = ScanOptions { metadata: format != Format::Docker, stop: self.stop.clone(), ..Default::default() };
        let out = io::BufWriter::with_capacity(256 * 1024, CancellableStdout { cancel: self.stop.cancel.clone() });
        with_progress(&scan, || match format {
            Format::Docker => {
                let resolved = self.client.resolve(&target, &self.stop)?;
                if resolved.iter().all(|r| r.dialect == Dialect::Docker) {
                    let sink = render::Streaming::new(format, out);
                    self.client.diff_resolved(&resolved, matches!(target, Target::Pod(_)), &scan, &sink)?;
                    return sink.finish().map(|_| ()).map_err(|e| Error::io("<stdout>", e));
                }
                // What `podman diff` prints: from the changes with metadata, container by container.
                let scan = ScanOptions { metadata: true, ..scan.clone() };
                let mut out = out;
                for r in &resolved {
                    let changes = self.client.changes_resolved(std::slice::from_ref(r), false, &scan)?;
                    let changes = match r.dialect {
                        Dialect::Podman => rodiff::dialect::podman_view(changes, &r.layer)?,
                        Dialect::Docker => changes,
                    };
                    render::write_all(&mut out, format, &changes).map_err(|e| Error::io("<stdout>", e))?;
                }
                out.flush().map_err(|e| Error::io("<stdout>", e))
            }
            Format::Jsonl => {
                let sink = render::Streaming::new(format, out);
                self.client.diff_into(&target, &scan, &sink)?;
                sink.finish().map_err(|e| Error::io("<stdout>", e))?;
                Ok(())
            }
            Format::Json => {
                let collect = Collect::default();
                self.client.diff_into(&target, &scan, &collect)?;
                let mut out = out;
                let changes = collect.into_sorted();
                let written = render::write_all(&mut out, format, &changes).and_then(|()| out.flush());
                // The process ends next: let the OS reclaim the changes instead of freeing each one.
                std::mem::forget(changes);
                written.map_err(|e| Error::io("<stdout>", e))
            }
        })
        .map_err(|e| anyhow::Error::new(e).context(target.to_string()))
    }

    fn watch(&self, args: &WatchArgs) -> anyhow::Result<()> {
        let options = rodiff::watch::WatchOptions {
            interval: Duration::from_secs_f64(args.interval),
            duration: args.duration.map(Duration::from_secs_f64),
            until_exit: args.until_exit,
            fanotify: true,
        };
        let target = self.args.target(args.container.as_deref());
        let until = match (options.duration, options.until_exit) {
            (Some(d), _) => format!("for {} s", d.as_secs_f64()),
            (None, true) => "until it exits (or Ctrl-C)".into(),
            (None, false) => "until Ctrl-C".into(),
        };
        eprintln!("rodiff: watching {target} every {} s {until}", options.interval.as_secs_f64());
        let context = |e: Error| anyhow::Error::new(e).context(target.to_string());
        let watched = self.client.watch(&target, &options, &self.stop).map_err(context)?;
        let (profile, resolved) = (&watched.profile, &watched.containers);
        let listened = &watched.listened;
        if let Some(why) = &listened.unavailable {
            eprintln!("rodiff: fanotify unavailable ({why}): diffs only, files that live shorter than the interval can be missed");
        }
        if listened.overflows > 0 {
            eprintln!(
                "rodiff: the fanotify queue overflowed {} times: events were lost, files made and removed between diffs may be missing",
                listened.overflows
            );
        }
        let changes = profile.changes();
        eprintln!(
            "rodiff: {} diffs of {target}{}: {} paths, {} of them transient; fanotify: {} events, {} queue overflows",
            profile.diffs(),
            profile.ended.as_deref().map(|why| format!(" ({why})")).unwrap_or_default(),
            changes.len(),
            changes.iter().filter(|c| c.evidence == Some(rodiff::Evidence::Transient)).count(),
            listened.events,
            listened.overflows,
        );
        let mut out = io::BufWriter::new(io::stdout());
        match args.plan {
            None => render::write_all(&mut out, Format::from(args.format), &changes).map_err(|e| Error::io("<stdout>", e))?,
            Some(format) => {
                let rules = args.rules.rules();
                let plans = resolved
                    .iter()
                    .map(|r| {
                        let own: Vec<_> = changes.iter().filter(|c| c.container.is_none() || c.container.as_deref() == Some(r.name.as_str())).cloned().collect();
                        self.client.plan_changes(r, &own, &rules).map_err(|e| anyhow::Error::new(e).context(format!("container {}", Escaped::str(&r.name))))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                out.write_all(rodiff::plan::render::render(&plans, plan_format(format))?.as_bytes()).map_err(|e| Error::io("<stdout>", e))?;
            }
        }
        out.flush().map_err(|e| Error::io("<stdout>", e))?;
        // What was seen is printed; the watch still did not run its course.
        watched.failed.map_or(Ok(()), |e| Err(context(e)))
    }

    fn plan(&self, args: &PlanArgs) -> anyhow::Result<()> {
        let target = self.args.target(args.container.as_deref());
        let rules = args.rules.rules();
        let resolved = self.client.resolve(&target, &self.stop).map_err(|e| anyhow::Error::new(e).context(target.to_string()))?;
        if resolved.iter().any(|r| r.processes.init.is_some()) {
            eprintln!(
                "rodiff: {target} is running: what it writes only when it stops (state saved at shutdown) shows after a \
                 graceful stop; to include it, `docker stop` it and plan again, or run `rodiff verify --fix`"
            );
        }
        let plans = resolved
            .iter()
            .map(|r| self.client.plan_resolved(r, &rules, &self.stop).map_err(|e| anyhow::Error::new(e).context(format!("container {}", Escaped::str(&r.name)))))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let text = rodiff::plan::render::render(&plans, plan_format(args.format))?;
        for plan in &plans {
            for u in &plan.uncovered {
                eprintln!("rodiff: container {}: {}: {}", plan.container, u.path.display(), u.reason);
            }
        }
        io::stdout().write_all(text.as_bytes()).map_err(|e| Error::io("<stdout>", e))?;
        Ok(())
    }

    fn verify(&self, args: &VerifyArgs) -> anyhow::Result<()> {
        if self.client.options().runtime != Runtime::Docker {
            use clap::CommandFactory;
            Cli::command().error(clap::error::ErrorKind::ArgumentConflict, "verify runs containers through Docker only (--runtime docker)").exit();
        }
        let verify = VerifyOptions {
            probe: args.probe.clone(),
            wait: Duration::from_secs_f64(args.wait),
            stop_timeout: Duration::from_secs(args.stop_timeout.into()),
        };
        if args.fix {
            return self.verify_fix(args, &verify);
        }
        let context = || format!("container {}", Escaped::str(&args.container));
        let plan = match &args.plan {
            Some(file) => read_plan(file)?,
            None => {
                let target = Target::from(args.container.as_str());
                let plans = self.client.plan(&target, &args.rules.rules(), &self.stop).map_err(|e| anyhow::Error::new(e).context(context()))?;
                plans.into_iter().next().ok_or_else(|| anyhow::anyhow!("no plan").context(context()))?
            }
        };
        let flags = rodiff::plan::render::render(std::slice::from_ref(&plan), PlanFormat::Docker).unwrap_or_default();
        println!("rodiff verify: running {} again, read-only, with the plan (volumes are throw-away copies), and a shadow copy with a writable root:", args.container);
        println!("  {}", flags.trim_end());
        let report = self.client.verify(&args.container, &plan, &verify, &self.stop).map_err(|e| anyhow::Error::new(e).context(context()))?;
        print_report(&mut io::stdout().lock(), &report).map_err(|e| Error::io("<stdout>", e))?;
        for left in &report.leftovers {
            eprintln!("rodiff: warning: could not remove {left}");
        }
        if report.passed() {
            return Ok(());
        }
        Err(anyhow::anyhow!(failure_summary(&report)).context(context()))
    }

    /// `verify --fix`: plan from the container's diff, verify, add the shadow run's uncovered
    /// writes to the changes and plan again, until the plan holds or a round adds no mount.
    fn verify_fix(&self, args: &VerifyArgs, verify: &VerifyOptions) -> anyhow::Result<()> {
        /// Rounds of additions at most (each adds a mount; this only bounds a runaway).
        const MAX_ROUNDS: usize = 16;
        let context = || format!("container {}", Escaped::str(&args.container));
        let wrap = |e: Error| anyhow::Error::new(e).context(context());
        let rules = args.rules.rules();
        let resolved = self.client.resolve(&Target::from(args.container.as_str()), &self.stop).map_err(wrap)?;
        let scan = ScanOptions { metadata: true, stop: self.stop.clone(), ..Default::default() };
        let mut changes = self.client.changes_resolved(&resolved, false, &scan).map_err(wrap)?;
        let original = resolved.first().ok_or_else(|| anyhow::anyhow!("no container").context(context()))?;
        let mut plan = self.client.plan_changes(original, &changes, &rules).map_err(wrap)?;
        let mut round = 0;
        let mut err = io::stderr().lock();
        let (holds, summary) = loop {
            let flags = rodiff::plan::render::render(std::slice::from_ref(&plan), PlanFormat::Docker).unwrap_or_default();
            let _ = writeln!(err, "rodiff verify --fix: round {round}: verifying {}", flags.trim_end());
            let report = self.client.verify(&args.container, &plan, verify, &self.stop).map_err(wrap)?;
            let _ = print_report(&mut err, &report);
            for left in &report.leftovers {
                let _ = writeln!(err, "rodiff: warning: could not remove {left}");
            }
            if report.passed() {
                let _ = writeln!(err, "rodiff verify --fix: the plan holds after {round} round(s) of additions");
                break (true, String::new());
            }
            let known: std::collections::HashSet<std::path::PathBuf> = changes.iter().map(|c| c.path.clone()).collect();
            let extra: Vec<rodiff::Change> = report.uncovered.iter().map(|u| u.change.clone()).filter(|c| !known.contains(&c.path)).collect();
            changes.extend(extra);
            changes.sort_by(|a, b| rodiff::model::path_order(a.path_bytes(), b.path_bytes()));
            let next = self.client.plan_changes(original, &changes, &rules).map_err(wrap)?;
            let added: Vec<&rodiff::plan::PlannedMount> =
                next.mounts.iter().filter(|m| !plan.mounts.iter().any(|p| p.path == m.path && p.kind == m.kind)).collect();
            if added.is_empty() || round >= MAX_ROUNDS {
                let _ = writeln!(err, "rodiff verify --fix: round {} adds no mount: the plan does not hold", round + 1);
                for u in &next.uncovered {
                    let _ = writeln!(err, "rodiff verify --fix: no mount can cover {}: {}", u.path.display(), u.reason);
                }
                break (false, failure_summary(&report));
            }
            round += 1;
            for m in &added {
                let covers: Vec<String> = m.covers.iter().map(|p| p.display().to_string()).collect();
                let _ = writeln!(err, "rodiff verify --fix: round {round}: + {} {} ({}: {}) for {}", m.kind.name(), m.path.display(), m.rule, m.reason, covers.join(", "));
            }
            plan = next;
        };
        drop(err);
        let text = rodiff::plan::render::render(std::slice::from_ref(&plan), plan_format(args.format))?;
        io::stdout().write_all(text.as_bytes()).map_err(|e| Error::io("<stdout>", e))?;
        match holds {
            true => Ok(()),
            false => Err(anyhow::anyhow!(summary).context(context())),
        }
    }
}

/// The one-line reason a verification failed: its problems, the refused paths, the uncovered
/// writes.
fn failure_summary(report: &rodiff::verify::Report) -> String {
    let mut why = format!("verification failed: {}", report.problems().join("; "));
    let paths: Vec<&str> = report.failures.iter().filter_map(|f| f.path.as_deref()).collect();
    if !paths.is_empty() {
        why.push_str(&format!("; writes refused at {}", paths.join(", ")));
    }
    if !report.uncovered.is_empty() {
        let writes: Vec<String> = shown(&report.uncovered)
            .iter()
            .map(|(u, below)| match below {
                0 => format!("{} ({})", u.change.path.display(), u.when.describe()),
                n => format!("{} ({}, and {n} below it)", u.change.path.display(), u.when.describe()),
            })
            .collect();
        why.push_str(&format!("; written outside the plan's mounts: {}", writes.join(", ")));
    }
    why
}

/// More uncovered writes below a new directory than this are shown as the directory and a count.
const SHOWN_BELOW: usize = 10;

/// The uncovered writes to show: each one, but a new directory with more than [`SHOWN_BELOW`]
/// uncovered writes below it (a whole data directory) stands for them, with their number.
fn shown(uncovered: &[rodiff::verify::UncoveredWrite]) -> Vec<(&rodiff::verify::UncoveredWrite, usize)> {
    // Sorted by path: what is below a directory comes right after it.
    let mut shown = Vec::new();
    let mut i = 0;
    while i < uncovered.len() {
        let u = &uncovered[i];
        let c = &u.change;
        let below = uncovered[i + 1..].iter().take_while(|v| v.change.path.starts_with(&c.path)).count();
        if c.kind == rodiff::ChangeKind::Added && c.file_type == rodiff::FileType::Dir && below > SHOWN_BELOW {
            shown.push((u, below));
            i += 1 + below;
        } else {
            shown.push((u, 0));
            i += 1;
        }
    }
    shown
}

/// A plan saved with `rodiff plan --format json`.
fn read_plan(file: &std::path::Path) -> rodiff::Result<rodiff::Plan> {
    let invalid = |detail: String| Error::InvalidPlan { path: file.to_path_buf(), detail };
    let text = std::fs::read_to_string(file).map_err(|e| invalid(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| invalid(format!("not a plan from `rodiff plan --format json` ({e})")))
}

/// Prints what a verification found, for people.
fn print_report(out: &mut dyn Write, report: &rodiff::verify::Report) -> io::Result<()> {
    let state = match (&report.start_error, report.running, report.exit_code) {
        (Some(e), _, _) => format!("Docker could not start it: {e}"),
        (None, true, _) => "running".to_string(),
        (None, false, Some(code)) => format!("exited with code {code}"),
        (None, false, None) => "stopped".to_string(),
    };
    writeln!(out, "read-only run: after {:.1} s: {state}", report.ran_for.as_secs_f64())?;
    print_probe(out, report.probe.as_ref(), "")?;
    if let Some(stop) = &report.stop {
        writeln!(out, "graceful stop: {}", stopped(stop))?;
    }
    if let Some(r) = &report.restart {
        let state = match (&r.start_error, r.running, r.exit_code) {
            (Some(e), _, _) => format!("Docker could not start it again: {e}"),
            (None, true, _) => "running again".to_string(),
            (None, false, Some(code)) => format!("exited with code {code}"),
            (None, false, None) => "stopped".to_string(),
        };
        writeln!(out, "restart (same volumes): {state}")?;
        print_probe(out, r.probe.as_ref(), " after the restart")?;
    }
    if let Some(shadow) = &report.shadow {
        let state = match (&shadow.start_error, &shadow.stop, shadow.exit_code) {
            (Some(e), _, _) => format!("Docker could not start it: {e}"),
            (None, Some(stop), _) => format!("ran, {}", stopped(stop)),
            (None, None, Some(code)) => format!("exited with code {code} by itself"),
            (None, None, None) => "stopped by itself".to_string(),
        };
        writeln!(out, "shadow run (writable root): {state}")?;
    }
    if !report.failures.is_empty() {
        writeln!(out, "writes refused by the read-only root filesystem:")?;
        for f in &report.failures {
            writeln!(out, "  {} ({})", f.path.as_deref().unwrap_or("(the line names no path)"), f.when.describe())?;
            writeln!(out, "    {}", f.line)?;
        }
    }
    if !report.uncovered.is_empty() {
        writeln!(out, "written by the shadow run outside the plan's mounts (lost or refused under --read-only):")?;
        for (u, below) in shown(&report.uncovered) {
            let c = &u.change;
            write!(out, "  {} ", c.kind.letter())?;
            render::write_escaped(out, c.path_bytes())?;
            match below {
                0 => writeln!(out, " ({}, {})", c.file_type.name(), u.when.describe())?,
                n => writeln!(out, " ({}, {}; and {n} writes below it)", c.file_type.name(), u.when.describe())?,
            }
        }
    }
    if !report.log_tail.is_empty() {
        writeln!(out, "last log lines:")?;
        for line in &report.log_tail {
            writeln!(out, "  | {line}")?;
        }
    }
    if report.passed() {
        writeln!(out, "verified: {} runs with a read-only root filesystem and the plan's mounts, stops cleanly and starts again; the shadow run wrote nothing outside them", report.container)?;
    } else {
        for problem in report.problems() {
            writeln!(out, "failed: {problem}")?;
        }
    }
    Ok(())
}

fn print_probe(out: &mut dyn Write, probe: Option<&rodiff::verify::ProbeOutcome>, when: &str) -> io::Result<()> {
    let Some(probe) = probe else { return Ok(()) };
    let verdict = match probe.exit_code {
        Some(0) => "passed".to_string(),
        Some(code) => format!("failed (exit {code})"),
        None => "failed (no exit code)".to_string(),
    };
    writeln!(out, "probe `{}`{when}: {verdict}", probe.command)?;
    if !probe.passed() {
        for line in probe.output.lines() {
            writeln!(out, "  | {line}")?;
        }
    }
    Ok(())
}

fn stopped(stop: &rodiff::verify::Stopped) -> String {
    let code = stop.exit_code.map_or("no exit code".to_string(), |c| format!("exit code {c}"));
    let killed = if stop.killed { ", killed after the stop timeout" } else { "" };
    format!("stopped in {:.1} s, {code}{killed}", stop.took.as_secs_f64())
}

/// Runs a scan, showing a progress line on stderr (only on a terminal, only after a second).
fn with_progress<T>(scan: &ScanOptions, work: impl FnOnce() -> T) -> T {
    if !io::stderr().is_terminal() {
        return work();
    }
    let done = AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let start = Instant::now();
            let mut shown = false;
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                if start.elapsed() >= Duration::from_secs(1) {
                    eprint!("\rrodiff: scanned {} entries…", scan.progress.get());
                    shown = true;
                }
            }
            if shown {
                eprint!("\r\x1b[K");
            }
        });
        let result = work();
        done.store(true, Ordering::Relaxed);
        result
    })
}
