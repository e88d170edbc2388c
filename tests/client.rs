//! The embeddable core, as the bindings and the agent use it: one `Client` shared by many threads,
//! called from inside a tokio runtime, cancelled mid-scan, given deadlines, stopped by its sink —
//! and, against the sandbox's Docker, diffs from several threads at once that match `docker diff`,
//! with one ping for the client's whole life.
//!
//! The first tests need no daemon: plain directories make an overlay layer, and unix sockets in a
//! temporary directory play runtimes that refuse or never answer.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::io::{self, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rodiff::{
    Cancel, Change, ChangeSink, Client, ClientOptions, Collect, Deadline, Error, Flow, ResolvedContainer, ScanOptions,
    Stop, Target,
};

/// A layer of `dirs` new directories of 50 files each, and a deep chain, over a small image.
fn tree(dirs: usize) -> tempfile::TempDir {
    let dir = common::plain::tree(dirs, 50);
    let mut deep = dir.path().join("upper/deep");
    for i in 0..40 {
        deep.push(format!("d{i}"));
    }
    fs::create_dir_all(&deep).unwrap();
    dir
}

/// The tree as a resolved container, as a resolver would hand it over.
fn resolved(root: &Path) -> ResolvedContainer {
    common::plain::resolved(root, "plain")
}

fn client(walkers: usize) -> Client {
    Client::new(ClientOptions { walkers, ..Default::default() }).unwrap()
}

fn with_metadata() -> ScanOptions {
    ScanOptions { metadata: true, ..Default::default() }
}


/// Refuses connections: a socket path with nothing listening.
fn refused(dir: &Path) -> String {
    format!("unix://{}", dir.join("nobody.sock").display())
}

/// Accepts connections and never answers.
fn silent(dir: &Path) -> String {
    let path = dir.join("silent.sock");
    let listener = UnixListener::bind(&path).unwrap();
    std::thread::spawn(move || {
        let mut held: Vec<UnixStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    format!("unix://{}", path.display())
}

#[test]
fn blocking_and_async_calls_work_inside_a_tokio_runtime() {
    let dir = tree(3);
    let sockets = tempfile::tempdir().unwrap();
    let target = [resolved(dir.path())];
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let expected = {
        let collect = Collect::default();
        client(1).diff_resolved(&target, false, &with_metadata(), &collect).unwrap();
        collect.into_sorted()
    };
    rt.block_on(async {
        // Made, used and dropped on a runtime thread: none of it may panic.
        let client = Client::new(ClientOptions { docker_host: refused(sockets.path()), ..Default::default() }).unwrap();
        let collect = Collect::default();
        client.diff_resolved(&target, false, &with_metadata(), &collect).unwrap();
        assert_eq!(collect.into_sorted(), expected);

        let err = client.resolve(&Target::from("web"), &Stop::default()).unwrap_err();
        assert!(matches!(&err, Error::RuntimeUnavailable { endpoint, .. } if endpoint.contains("nobody.sock")), "{err}");
        let err = client.diff_async(&Target::from("web"), with_metadata()).await.unwrap_err();
        assert!(matches!(err, Error::RuntimeUnavailable { .. }), "{err}");
        drop(client);
    });
    // A current-thread runtime too: the async methods never need the caller's executor to be
    // tokio's, nor to be more than one thread.
    let current = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = Client::new(ClientOptions { docker_host: refused(sockets.path()), ..Default::default() }).unwrap();
    let err = current.block_on(client.plan_async(&Target::from("web"), rodiff::Rules::builtin(), Stop::default())).unwrap_err();
    assert!(matches!(err, Error::RuntimeUnavailable { .. }), "{err}");
}

/// Cancels `stop` when the first batch arrives; counts the batches that arrive afterwards.
struct CancelOnFirst {
    cancel: Cancel,
    batches: AtomicUsize,
}

impl ChangeSink for CancelOnFirst {
    fn emit(&self, _batch: Vec<Change>) -> io::Result<Flow> {
        self.batches.fetch_add(1, Ordering::SeqCst);
        self.cancel.cancel();
        Ok(Flow::Continue(()))
    }
}

#[test]
fn a_scan_cancelled_midway_stops_at_the_next_directory() {
    let dir = tree(60);
    let target = [resolved(dir.path())];
    let client = client(2);
    let all = Collect::default();
    client.diff_resolved(&target, false, &ScanOptions::default(), &all).unwrap();

    let scan = ScanOptions::default();
    let sink = CancelOnFirst { cancel: scan.stop.cancel.clone(), batches: AtomicUsize::new(0) };
    let err = client.diff_resolved(&target, false, &scan, &sink).unwrap_err();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert_eq!(err.kind().code(), 12);
    // The walker that emitted the first batch stops there; the other may be past its check.
    let batches = sink.batches.load(Ordering::SeqCst);
    assert!((1..=2).contains(&batches), "{batches} batches arrived after the cancel (of 60+)");
}

#[test]
fn a_passed_deadline_is_a_timeout_and_sends_nothing() {
    let dir = tree(2);
    let scan = ScanOptions { stop: Stop { deadline: Some(Deadline::after(Duration::ZERO)), ..Default::default() }, ..Default::default() };
    let collect = Collect::default();
    let err = client(1).diff_resolved(&[resolved(dir.path())], false, &scan, &collect).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert_eq!(err.kind().code(), 14);
    assert!(collect.into_sorted().is_empty());
}

/// Takes `n` changes, then asks the scan to stop.
struct TakeN {
    n: usize,
    got: Mutex<Vec<Change>>,
}

impl ChangeSink for TakeN {
    fn emit(&self, batch: Vec<Change>) -> io::Result<Flow> {
        let mut got = self.got.lock().unwrap();
        got.extend(batch);
        Ok(if got.len() >= self.n { Flow::Break(()) } else { Flow::Continue(()) })
    }
}

#[test]
fn a_sink_that_has_seen_enough_gets_an_incomplete_outcome_not_an_error() {
    let dir = tree(40);
    let target = [resolved(dir.path())];
    let client = client(2);
    let sink = TakeN { n: 100, got: Mutex::new(Vec::new()) };
    let outcome = client.diff_resolved(&target, false, &ScanOptions::default(), &sink).unwrap();
    assert!(!outcome.complete);
    let got = sink.got.into_inner().unwrap().len();
    assert!((100..2000).contains(&got), "{got} changes taken of 2000+");
    let all = client.diff_resolved(&target, false, &ScanOptions::default(), &Collect::default()).unwrap();
    assert!(all.complete);
    assert_eq!(all.containers, 1);
}

#[test]
fn a_runtime_call_is_cancelled_or_timed_out_long_before_the_request_timeout() {
    let sockets = tempfile::tempdir().unwrap();
    let options = ClientOptions { docker_host: silent(sockets.path()), timeout: Duration::from_secs(60), ..Default::default() };
    let client = Client::new(options).unwrap();

    let stop = Stop::default();
    let cancel = stop.cancel.clone();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let started = Instant::now();
    let err = client.resolve(&Target::from("web"), &stop).unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "cancelled after {:?}", started.elapsed());

    let stop = Stop { deadline: Some(Deadline::after(Duration::from_millis(300))), ..Default::default() };
    let started = Instant::now();
    let err = client.diff_into(&Target::from("web"), &ScanOptions { stop, ..Default::default() }, &Collect::default()).unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    assert!(started.elapsed() < Duration::from_secs(20), "timed out after {:?}", started.elapsed());
}

// ---- against the sandbox's Docker ----

/// A unix-socket proxy to `upstream` that counts the `/_ping` requests passing through.
struct CountingProxy {
    endpoint: String,
    pings: Arc<AtomicUsize>,
    _dir: tempfile::TempDir,
}

impl CountingProxy {
    fn new(upstream: PathBuf) -> CountingProxy {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("proxy.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let pings = Arc::new(AtomicUsize::new(0));
        let counted = pings.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let Ok(server) = UnixStream::connect(&upstream) else { continue };
                let (mut c_read, mut s_write) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut s_read, mut c_write) = (server, client);
                let counted = counted.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 64 * 1024];
                    while let Ok(n @ 1..) = c_read.read(&mut buf) {
                        // Requests are small and start a read; a ping is one line.
                        counted.fetch_add(buf[..n].windows(10).filter(|w| w == b"GET /_ping").count(), Ordering::SeqCst);
                        if s_write.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = s_write.shutdown(std::net::Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let _ = io::copy(&mut s_read, &mut c_write);
                    let _ = c_write.shutdown(std::net::Shutdown::Write);
                });
            }
        });
        CountingProxy { endpoint: format!("unix://{}", path.display()), pings, _dir: dir }
    }
}

fn docker_socket() -> PathBuf {
    let host = common::client_options(rodiff::Runtime::Docker).docker_host;
    PathBuf::from(host.strip_prefix("unix://").expect("a unix DOCKER_HOST in the sandbox"))
}

fn visible(changes: &[Change]) -> BTreeSet<(char, String)> {
    common::docker::lossy(&common::docker_visible(changes))
}

#[test]
fn diffs_from_several_threads_share_one_connection_and_match_docker_diff() {
    use common::docker::*;
    if !sandbox() {
        return;
    }
    let a = Container::run("client-a", &[], BUSYBOX, &["sh", "-c", "mkdir -p /srv/a && touch /srv/a/1 /etc/a && rm /bin/ls && sleep 600"]);
    let b = Container::run("client-b", &[], BUSYBOX, &["sh", "-c", "echo b > /tmp/b && chmod 700 /etc && sleep 600"]);
    std::thread::sleep(Duration::from_secs(1));
    let expected = [a.docker_changes(), b.docker_changes()];
    assert!(expected.iter().all(|e| !e.is_empty()));

    let proxy = CountingProxy::new(docker_socket());
    let client = Client::new(ClientOptions { docker_host: proxy.endpoint.clone(), ..Default::default() }).unwrap();
    let names = [a.name.as_str(), b.name.as_str()];
    std::thread::scope(|s| {
        for t in 0..6 {
            let (client, expected) = (&client, &expected);
            s.spawn(move || {
                for i in 0..4 {
                    let which = (t + i) % 2;
                    let changes = client.diff(names[which]).unwrap();
                    assert_eq!(visible(&changes), expected[which], "thread {t} diff {i} of {}", names[which]);
                }
            });
        }
    });
    // From inside a runtime, async: the same answers.
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        for (name, expected) in names.iter().zip(&expected) {
            let changes = client.diff_async(&Target::from(*name), with_metadata()).await.unwrap();
            assert_eq!(&visible(&changes), expected);
            assert_eq!(&visible(&client.diff(*name).unwrap()), expected, "blocking, on a runtime thread");
        }
    });
    assert_eq!(proxy.pings.load(Ordering::SeqCst), 1, "26 diffs, one client: one ping");
}
