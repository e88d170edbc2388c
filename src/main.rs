//! The `rodiff` command line.

use std::io::{self, IsTerminal, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rodiff::render::{self, Format};
use rodiff::{Collect, Error, Runtime, RuntimeOptions, ScanOptions};

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
    /// Docker endpoint: unix:///path/docker.sock or tcp://host:port.
    #[arg(short = 'H', long = "host", global = true, env = "DOCKER_HOST", value_name = "URI")]
    host: Option<String>,
    /// containerd socket [default: /run/containerd/containerd.sock].
    #[arg(long, global = true, env = "CONTAINERD_ADDRESS", value_name = "PATH")]
    address: Option<String>,
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
}

impl RuntimeArgs {
    /// The library's runtime options.
    fn options(&self) -> RuntimeOptions {
        let pod = self.pod.clone().map(|mut pod| {
            pod.container = self.pod_container.clone();
            pod
        });
        RuntimeOptions {
            runtime: match self.runtime {
                _ if pod.is_some() => Runtime::Containerd,
                RuntimeArg::Docker => Runtime::Docker,
                RuntimeArg::Containerd => Runtime::Containerd,
            },
            docker_host: self.host.clone(),
            containerd_address: self.address.clone(),
            namespace: self.namespace.clone(),
            pod,
            host_root: self.host_root.clone(),
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuntimeArg {
    /// The Docker Engine API (overlay2 storage driver; containerd image store).
    Docker,
    /// containerd's gRPC API (overlayfs and btrfs snapshotters).
    Containerd,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List what a container changed relative to its image (`docker diff` parity, and more).
    #[command(after_help = "Examples:\n  rodiff diff web\n  rodiff diff web --format jsonl > changes.jsonl")]
    Diff(DiffArgs),
}

#[derive(Args, Debug)]
struct DiffArgs {
    /// Container name, id or unique id prefix; running or stopped. With --pod: the container's
    /// name in the pod (optional).
    container: Option<String>,
    /// Output format: `docker` prints `A|C|D /path` lines exactly like `docker diff` (streamed in
    /// walk order, as docker does; names a line cannot carry escaped as \n, \xff); `json` an array
    /// of change objects (path, kind, type, mode, uid, gid, size, mtime, mountpoint) sorted by path;
    /// `jsonl` one object per line, streamed.
    #[arg(long, short, value_enum, default_value_t = FormatArg::Docker)]
    format: FormatArg,
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
    remove_helpers_on_signals();
    let cli = Cli::parse();
    let options = cli.runtime.options();
    let result = match &cli.command {
        Command::Diff(args) => run_diff(&options, args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            if let Some(Error::Io { source, .. }) = err.downcast_ref::<Error>() {
                if source.kind() == io::ErrorKind::BrokenPipe {
                    return ExitCode::SUCCESS;
                }
            }
            eprintln!("rodiff: {err:#}");
            ExitCode::from(exit_code(&err))
        }
    }
}

/// On SIGINT, SIGTERM or SIGHUP, deletes the btrfs helper snapshots this process made, then exits
/// with 128 + the signal number. (The library removes them on every return path; a signal ends
/// the process without unwinding.) The signals are blocked here, before any other thread exists,
/// so every thread inherits the mask and only the dedicated thread receives them.
fn remove_helpers_on_signals() {
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
                rodiff::layer::btrfs::helper::remove_all();
                std::process::exit(128 + sig);
            }
        });
    }
}

/// Exit status for an error, per the interface contract.
fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<Error>() {
        Some(Error::RuntimeUnavailable { .. } | Error::ContainerNotFound { .. } | Error::LayerVanished { .. }) => 3,
        Some(Error::UnsupportedStorage { .. }) => 4,
        _ => 1,
    }
}

/// What CONTAINER and --pod select, resolved; a usage error (exit 2) when they select nothing.
fn resolve_targets(options: &RuntimeOptions, container: Option<&str>) -> anyhow::Result<Vec<rodiff::ResolvedContainer>> {
    if options.pod.is_none() && container.is_none() {
        use clap::CommandFactory;
        Cli::command().error(clap::error::ErrorKind::MissingRequiredArgument, "CONTAINER is required (or --pod NAMESPACE/NAME)").exit();
    }
    Ok(rodiff::resolve_all_blocking(container, options)?)
}

/// Diffs what [`resolve_targets`] found: one container as it is, a pod's containers tagged.
fn diff_targets(
    options: &RuntimeOptions,
    resolved: &[rodiff::ResolvedContainer],
    scan: &ScanOptions,
    sink: &dyn rodiff::ChangeSink,
) -> rodiff::Result<()> {
    match resolved {
        [one] if options.pod.is_none() => rodiff::diff_resolved(one, scan, sink),
        several => rodiff::diff_tagged(several, scan, sink),
    }
}

fn run_diff(options: &RuntimeOptions, args: &DiffArgs) -> anyhow::Result<()> {
    let resolved = resolve_targets(options, args.container.as_deref())?;
    let format = Format::from(args.format);
    let scan = ScanOptions { metadata: format != Format::Docker, ..Default::default() };
    let context = || match (&options.pod, &args.container) {
        (Some(pod), _) => pod.to_string(),
        (None, container) => format!("container {}", container.as_deref().unwrap_or_default()),
    };
    let out = io::BufWriter::with_capacity(256 * 1024, io::stdout());

    with_progress(&scan, || match format {
        Format::Docker | Format::Jsonl => {
            let sink = render::Streaming::new(format, out);
            diff_targets(options, &resolved, &scan, &sink)?;
            sink.finish().map_err(|e| Error::io("<stdout>", e))?;
            Ok(())
        }
        Format::Json => {
            let collect = Collect::default();
            diff_targets(options, &resolved, &scan, &collect)?;
            let mut out = out;
            let changes = collect.into_sorted();
            let written = render::write_all(&mut out, format, &changes).and_then(|()| out.flush());
            // The process ends next: let the OS reclaim the changes instead of freeing each one.
            std::mem::forget(changes);
            written.map_err(|e| Error::io("<stdout>", e))
        }
    })
    .map_err(|e| anyhow::Error::new(e).context(context()))
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
