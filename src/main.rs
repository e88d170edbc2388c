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
    /// Where the host's / is visible (when rodiff itself runs in a container).
    #[arg(long, global = true, value_name = "DIR", default_value = "/")]
    host_root: std::path::PathBuf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RuntimeArg {
    /// The Docker Engine API (overlay2 storage driver).
    Docker,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// List what a container changed relative to its image (`docker diff` parity, and more).
    #[command(after_help = "Examples:\n  rodiff diff web\n  rodiff diff web --format jsonl > changes.jsonl")]
    Diff(DiffArgs),
}

#[derive(Args, Debug)]
struct DiffArgs {
    /// Container name, id or unique id prefix; running or stopped.
    container: String,
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
    let cli = Cli::parse();
    let options = RuntimeOptions {
        runtime: match cli.runtime.runtime {
            RuntimeArg::Docker => Runtime::Docker,
        },
        docker_host: cli.runtime.host.clone(),
        host_root: cli.runtime.host_root.clone(),
    };
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

/// Exit status for an error, per the interface contract.
fn exit_code(err: &anyhow::Error) -> u8 {
    match err.downcast_ref::<Error>() {
        Some(Error::RuntimeUnavailable { .. } | Error::ContainerNotFound { .. } | Error::LayerVanished { .. }) => 3,
        Some(Error::UnsupportedStorage { .. }) => 4,
        _ => 1,
    }
}

fn run_diff(options: &RuntimeOptions, args: &DiffArgs) -> anyhow::Result<()> {
    let resolved = rodiff::resolve_blocking(&args.container, options)?;
    let format = Format::from(args.format);
    let scan = ScanOptions { metadata: format != Format::Docker, ..Default::default() };
    let context = || format!("container {}", args.container);
    let out = io::BufWriter::with_capacity(256 * 1024, io::stdout());

    with_progress(&scan, || match format {
        Format::Docker | Format::Jsonl => {
            let sink = render::Streaming::new(format, out);
            rodiff::diff_resolved(&resolved, &scan, &sink)?;
            sink.finish().map_err(|e| Error::io("<stdout>", e))?;
            Ok(())
        }
        Format::Json => {
            let collect = Collect::default();
            rodiff::diff_resolved(&resolved, &scan, &collect)?;
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
