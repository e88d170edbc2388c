//! Adversarial probes of the embeddable `Client` (issue 9) that need no daemon: plain directories
//! make overlay layers, and a fake Docker Engine on a unix socket plays the runtime.
//!
//! Run: `cargo test --test break_client` (no sandbox needed).

mod break_common;
mod common;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use break_common::*;
use rodiff::{Change, ChangeSink, Client, ClientOptions, Collect, Deadline, Error, ErrorKind, Flow, ScanOptions, Stop, Target};

fn client_at(endpoint: &str, walkers: usize, timeout: Duration) -> Client {
    Client::new(ClientOptions { docker_host: endpoint.to_string(), walkers, timeout, ..Default::default() }).unwrap()
}

/// Runs `f` on a thread and gives up after `limit`: `None` means it did not return (it hangs).
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).ok()
}

/// Re-runs this test binary for one test in a child process (`BREAK9_CHILD=1`), for probes whose
/// failure mode is the death of the process.
fn in_child(test: &str) -> std::process::Output {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("BREAK9_CHILD", "1")
        .output()
        .unwrap()
}

fn is_child() -> bool {
    std::env::var_os("BREAK9_CHILD").is_some()
}

// ---- Flow::Break ----

/// Returns `Break` for its first batch, and counts the batches it gets after that `Break` was
/// returned (calls that began while the breaking call ran are under way, not counted).
#[derive(Default)]
struct BreakOnce {
    breaking: AtomicBool,
    returned: AtomicBool,
    after_break: AtomicUsize,
}

impl ChangeSink for BreakOnce {
    fn emit(&self, _batch: Vec<Change>) -> io::Result<Flow> {
        if self.returned.load(Ordering::SeqCst) {
            self.after_break.fetch_add(1, Ordering::SeqCst);
        }
        if self.breaking.swap(true, Ordering::SeqCst) {
            // Give the other walkers time to reach their next directory, as a slow binding would.
            std::thread::sleep(Duration::from_millis(2));
            return Ok(Flow::Continue(()));
        }
        std::thread::sleep(Duration::from_millis(20));
        self.returned.store(true, Ordering::SeqCst);
        Ok(Flow::Break(()))
    }
}

/// A sink that said `Break` (a C callback asking to stop, a Python generator that was closed)
/// is not called again: the scan stops. Calls that other walker threads had under way finish;
/// one that checked just before the `Break` was recorded may still begin (at most one per other
/// walker: 3 here), never the dozens the other walkers would deliver unchecked.
#[test]
fn a_sink_that_said_break_is_not_called_again() {
    let dir = tree(400, 3);
    let client = client_at("unix:///nonexistent", 4, Duration::from_secs(5));
    for _ in 0..20 {
        let sink = BreakOnce::default();
        let outcome = client.diff_resolved(&[resolved(dir.path(), "c")], false, &ScanOptions::default(), &sink).unwrap();
        assert!(!outcome.complete);
        let after = sink.after_break.load(Ordering::SeqCst);
        assert!(after <= 3, "the sink got {after} batches after it returned Flow::Break");
    }
}

/// A pod: the sink stops during the first container; the second must not be diffed at all.
#[test]
fn break_in_the_first_container_of_a_pod_skips_the_rest() {
    let (a, b) = (tree(5, 2), tree(5, 2));
    let client = client_at("unix:///nonexistent", 2, Duration::from_secs(5));
    #[derive(Default)]
    struct Seen(Mutex<Vec<String>>);
    impl ChangeSink for Seen {
        fn emit(&self, batch: Vec<Change>) -> io::Result<Flow> {
            let mut seen = self.0.lock().unwrap();
            seen.extend(batch.iter().map(|c| c.container.clone().unwrap_or_default()));
            Ok(Flow::Break(()))
        }
    }
    let sink = Seen::default();
    let outcome = client.diff_resolved(&[resolved(a.path(), "first"), resolved(b.path(), "second")], true, &ScanOptions::default(), &sink).unwrap();
    assert!(!outcome.complete);
    let seen = sink.0.lock().unwrap();
    assert!(seen.iter().all(|c| c == "first"), "the second container was diffed after Break: {seen:?}");
}

// ---- cancellation ----

/// Cancels the scan from inside its first batch and counts the batches delivered afterwards.
struct CancelOnFirst {
    stop: Stop,
    first: AtomicBool,
    after: AtomicUsize,
}

impl ChangeSink for CancelOnFirst {
    fn emit(&self, _batch: Vec<Change>) -> io::Result<Flow> {
        if self.first.swap(true, Ordering::SeqCst) {
            self.after.fetch_add(1, Ordering::SeqCst);
        } else {
            self.stop.cancel.cancel();
        }
        Ok(Flow::Continue(()))
    }
}

#[test]
fn no_batch_is_delivered_after_the_cancel_was_seen() {
    let dir = tree(400, 3);
    let client = client_at("unix:///nonexistent", 4, Duration::from_secs(5));
    let scan = ScanOptions::default();
    let sink = CancelOnFirst { stop: scan.stop.clone(), first: AtomicBool::new(false), after: AtomicUsize::new(0) };
    let result = client.diff_resolved(&[resolved(dir.path(), "c")], false, &scan, &sink);
    assert!(matches!(result, Err(Error::Cancelled)), "{result:?}");
    // A batch already past its check may still arrive; more than a handful means no check.
    let after = sink.after.load(Ordering::SeqCst);
    assert!(after <= 4, "{after} batches after the cancel");
}

/// A deadline that passes while a diff is finishing: the diff is either complete and `Ok`, or
/// `Timeout` — never `Ok` with part of the changes.
#[test]
fn a_deadline_at_the_end_never_yields_a_partial_ok() {
    let dir = tree(200, 5);
    let client = client_at("unix:///nonexistent", 2, Duration::from_secs(5));
    let target = [resolved(dir.path(), "c")];
    let reference = {
        let collect = Collect::default();
        client.diff_resolved(&target, false, &ScanOptions::default(), &collect).unwrap();
        collect.into_sorted()
    };
    let started = Instant::now();
    for _ in 0..3 {
        client.diff_resolved(&target, false, &ScanOptions::default(), &Collect::default()).unwrap();
    }
    let typical = started.elapsed() / 3;
    let (mut ok, mut timeout) = (0, 0);
    for i in 0..60u32 {
        // From a quarter to twice the typical time.
        let after = typical / 4 + typical * (i % 8) / 4;
        let scan = ScanOptions { stop: Stop { deadline: Some(Deadline::after(after)), ..Default::default() }, ..Default::default() };
        let collect = Collect::default();
        match client.diff_resolved(&target, false, &scan, &collect) {
            Ok(outcome) => {
                ok += 1;
                assert!(outcome.complete);
                assert_eq!(collect.into_sorted(), reference, "Ok with a partial diff (deadline {after:?})");
            }
            Err(Error::Timeout { .. }) => timeout += 1,
            Err(e) => panic!("{e}"),
        }
    }
    eprintln!("ok {ok}, timeout {timeout}");
}

/// A far deadline (`Deadline::after(Duration::MAX)`) raced against a runtime call is no deadline:
/// the call's own result comes back (here: refused), not a panic of the I/O thread seen as
/// `Cancelled`.
#[test]
fn a_far_deadline_raced_against_a_runtime_call() {
    let sockets = tempfile::tempdir().unwrap();
    let client = client_at(&format!("unix://{}", sockets.path().join("none.sock").display()), 1, Duration::from_secs(5));
    let stop = Stop { deadline: Some(Deadline::after(Duration::MAX)), ..Default::default() };
    let result = client.resolve(&Target::from("x"), &stop);
    assert!(matches!(result, Err(Error::RuntimeUnavailable { .. })), "{result:?}");
}

// ---- connections ----

/// The first connect is cancelled while the daemon is silent; once the daemon answers, the next
/// call connects (the `OnceCell` was not poisoned) and gets the daemon's answer.
#[test]
fn a_cancelled_connect_is_retried_by_the_next_call() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), SILENT);
    let client = client_at(&fake.endpoint(), 1, Duration::from_secs(20));
    let stop = Stop::default();
    let cancel = stop.cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let started = Instant::now();
    let first = client.resolve(&Target::from("x"), &stop);
    assert!(matches!(first, Err(Error::Cancelled)), "{first:?}");
    assert!(started.elapsed() < Duration::from_secs(5));
    fake.set(ANSWER);
    let second = client.resolve(&Target::from("x"), &Stop::default());
    assert!(matches!(second, Err(Error::ContainerNotFound { .. })), "{second:?}");
}

/// The daemon is not there at the first call (refused) and comes up later: the same client
/// reaches it.
#[test]
fn a_daemon_that_comes_up_later_is_reached() {
    let sockets = tempfile::tempdir().unwrap();
    let path = sockets.path().join("d.sock");
    let client = client_at(&format!("unix://{}", path.display()), 1, Duration::from_secs(5));
    let first = client.resolve(&Target::from("x"), &Stop::default());
    assert!(matches!(first, Err(Error::RuntimeUnavailable { .. })), "{first:?}");
    let _fake = FakeDocker::start(&path, ANSWER);
    let second = client.resolve(&Target::from("x"), &Stop::default());
    assert!(matches!(second, Err(Error::ContainerNotFound { .. })), "{second:?}");
}

/// The daemon restarts between two calls (every connection closed, the socket made anew): the
/// next call of the same client gets an answer, not a connection error.
#[test]
fn a_restarted_daemon_is_reconnected_to() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), ANSWER);
    let client = client_at(&fake.endpoint(), 1, Duration::from_secs(5));
    for round in 0..5 {
        let r = client.resolve(&Target::from("x"), &Stop::default());
        assert!(matches!(r, Err(Error::ContainerNotFound { .. })), "round {round}: {r:?}");
        fake.restart();
    }
}

/// A daemon that answers the ping, then sends the headers of a container inspect and stalls in
/// its body. Every request is said to have `ClientOptions::timeout` ("a timeout on every runtime
/// request"; "nothing waits forever"): with a 1 s timeout and no deadline, the call must fail
/// (RuntimeUnavailable, exit 3 in the CLI) within a few seconds.
#[test]
fn a_stalled_response_body_times_out_library() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), STALL_BODY);
    let client = client_at(&fake.endpoint(), 1, Duration::from_secs(1));
    let started = Instant::now();
    let result = within(Duration::from_secs(15), move || client.resolve(&Target::from("x"), &Stop::default()).map(|_| ()));
    match result {
        None => panic!("Client::resolve did not return within 15 s (timeout 1 s): the response body has no timeout"),
        Some(r) => {
            assert!(matches!(r, Err(Error::RuntimeUnavailable { .. })), "{r:?}");
            assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        }
    }
}

/// The same through the CLI: `rodiff --timeout 1 -H <stalling daemon> diff x` must exit 3 within
/// a few seconds.
#[test]
fn a_stalled_response_body_times_out_cli() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), STALL_BODY);
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rodiff"))
        .args(["--timeout", "1", "-H", &fake.endpoint(), "diff", "x"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let status = status.expect("rodiff --timeout 1 diff still running after 20 s against a daemon that stalls mid-body");
    assert_eq!(status.code(), Some(3), "{status:?}");
}

/// A timed-out connect ("no answer within 1 s") against a silent daemon, and then the daemon
/// answers: the second call must not need a new client.
#[test]
fn a_timed_out_connect_is_retried() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), SILENT);
    let client = client_at(&fake.endpoint(), 1, Duration::from_millis(500));
    let first = client.resolve(&Target::from("x"), &Stop::default());
    assert!(matches!(first, Err(Error::RuntimeUnavailable { .. })), "{first:?}");
    fake.set(ANSWER);
    let second = client.resolve(&Target::from("x"), &Stop::default());
    assert!(matches!(second, Err(Error::ContainerNotFound { .. })), "{second:?}");
}

// ---- runtimes, threads, drops ----

/// Blocking methods from a current-thread runtime (and a `LocalSet`), where nothing else can run
/// while the caller blocks.
#[test]
fn blocking_methods_on_a_current_thread_runtime() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), ANSWER);
    let dir = tree(20, 3);
    let client = client_at(&fake.endpoint(), 1, Duration::from_secs(5));
    let c = client.clone();
    let target = [resolved(dir.path(), "c")];
    let out = within(Duration::from_secs(30), move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async move {
            let r = c.resolve(&Target::from("x"), &Stop::default());
            assert!(matches!(r, Err(Error::ContainerNotFound { .. })), "{r:?}");
            let collect = Collect::default();
            c.diff_resolved(&target, false, &ScanOptions::default(), &collect).unwrap();
            let n = collect.into_sorted().len();
            // And the async form awaited on the same current-thread runtime.
            let r = c.resolve_async(&Target::from("x"), &Stop::default()).await;
            assert!(matches!(r, Err(Error::ContainerNotFound { .. })), "{r:?}");
            let d = c.diff_async(&Target::from("x"), ScanOptions::default()).await;
            assert!(matches!(d, Err(Error::ContainerNotFound { .. })), "{d:?}");
            n
        })
    });
    assert!(out.expect("hung on a current-thread runtime") > 60);
}

/// Many threads × blocking and async diffs on a one-walker client, with a sink that calls back
/// into the client (a blocking diff and a runtime call from a walker thread): no deadlock.
#[test]
fn many_threads_reentrant_sinks_no_deadlock() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), ANSWER);
    let (big, small) = (tree(40, 3), tree(2, 1));
    let client = client_at(&fake.endpoint(), 1, Duration::from_secs(5));
    struct Reentrant {
        client: Client,
        inner: Vec<rodiff::ResolvedContainer>,
        calls: AtomicUsize,
    }
    impl ChangeSink for Reentrant {
        fn emit(&self, _batch: Vec<Change>) -> io::Result<Flow> {
            if self.calls.fetch_add(1, Ordering::SeqCst) % 10 == 0 {
                let c = Collect::default();
                self.client.diff_resolved(&self.inner, false, &ScanOptions::default(), &c).unwrap();
                let r = self.client.resolve(&Target::from("y"), &Stop::default());
                assert!(matches!(r, Err(Error::ContainerNotFound { .. })), "{r:?}");
            }
            Ok(Flow::Continue(()))
        }
    }
    let big_target = vec![resolved(big.path(), "big")];
    let inner = vec![resolved(small.path(), "small")];
    let c2 = client.clone();
    let done = within(Duration::from_secs(120), move || {
        std::thread::scope(|s| {
            for t in 0..12 {
                let (client, big_target, inner) = (c2.clone(), big_target.clone(), inner.clone());
                s.spawn(move || {
                    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                    for _ in 0..4 {
                        let sink = Reentrant { client: client.clone(), inner: inner.clone(), calls: AtomicUsize::new(0) };
                        if t % 2 == 0 {
                            client.diff_resolved(&big_target, false, &ScanOptions::default(), &sink).unwrap();
                        } else {
                            rt.block_on(async {
                                let r = client.diff_into_async(&Target::from("x"), ScanOptions::default(), Arc::new(sink)).await;
                                assert!(matches!(r, Err(Error::ContainerNotFound { .. })), "{r:?}");
                                let d = client.diff_async(&Target::from("x"), ScanOptions::default()).await;
                                assert!(matches!(d, Err(Error::ContainerNotFound { .. })), "{d:?}");
                            });
                        }
                    }
                });
            }
        });
    });
    assert!(done.is_some(), "12 threads of diffs did not finish within 120 s: deadlock");
}

/// Counts panics on rodiff's own threads (`rodiff-io`, `rodiff-walk-*`).
fn count_rodiff_thread_panics() -> Arc<AtomicUsize> {
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let name = std::thread::current().name().unwrap_or_default().to_string();
        if name.starts_with("rodiff-") {
            c.fetch_add(1, Ordering::SeqCst);
            eprintln!("PANIC on {name}: {info}");
        }
        previous(info);
    }));
    count
}

/// The caller's future is dropped (a `tokio::time::timeout` around it) and the caller drops its
/// client: the last clone then goes away on rodiff's own I/O thread, inside its runtime. No panic,
/// and the process goes on.
#[test]
fn the_last_clone_dropped_on_the_io_thread() {
    if !is_child() {
        let out = in_child("the_last_clone_dropped_on_the_io_thread");
        assert!(out.status.success(), "child: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        return;
    }
    let panics = count_rodiff_thread_panics();
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), SILENT);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    for _ in 0..20 {
        let client = client_at(&fake.endpoint(), 1, Duration::from_millis(300));
        rt.block_on(async {
            let r = tokio::time::timeout(Duration::from_millis(20), client.resolve_async(&Target::from("x"), &Stop::default())).await;
            assert!(r.is_err(), "the call should still be waiting on the silent daemon");
            drop(client); // the I/O task still holds a clone; it ends after the 300 ms request timeout
        });
    }
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(panics.load(Ordering::SeqCst), 0);
}

/// The same with the walk: a `diff_async` future dropped while its walk runs on the pool, and the
/// caller's client dropped: the last clone then goes away on a walker thread (the pool is dropped
/// from one of its own threads, the I/O runtime shut down from outside it).
#[test]
fn the_last_clone_dropped_on_a_walker_thread() {
    if !is_child() {
        let out = in_child("the_last_clone_dropped_on_a_walker_thread");
        assert!(out.status.success(), "child: {:?}\n{}", out.status, String::from_utf8_lossy(&out.stderr));
        return;
    }
    let panics = count_rodiff_thread_panics();
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), ANSWER);
    let dir = tree(1500, 2);
    fake.add("web", dir.path());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut abandoned = 0;
    for i in 0..10u64 {
        let client = client_at(&fake.endpoint(), 2, Duration::from_secs(5));
        rt.block_on(async {
            let r = tokio::time::timeout(Duration::from_millis(2 + 3 * i), client.diff_async(&Target::from("web"), ScanOptions::default())).await;
            abandoned += usize::from(r.is_err());
            drop(client);
        });
    }
    std::thread::sleep(Duration::from_secs(3));
    eprintln!("{abandoned} of 10 diffs abandoned while running");
    assert!(abandoned > 0, "no diff was still running when dropped: the probe proved nothing");
    assert_eq!(panics.load(Ordering::SeqCst), 0);
}

/// A sink that panics during an async diff (a Rust callback with a bug; a binding's shim that
/// unwinds). For the blocking call the panic reaches the caller, as with any callback; for the
/// async call the returned future must fail or resume the panic — it must not take the whole
/// process down (the node agent runs for months). The child must not die of SIGABRT.
#[test]
fn a_panicking_sink_in_an_async_diff_does_not_abort_the_process() {
    if !is_child() {
        let out = in_child("a_panicking_sink_in_an_async_diff_does_not_abort_the_process");
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            None,
            "the process was killed by signal {:?} (6 = SIGABRT) after a sink panicked in diff_into_async\n{}",
            out.status.signal(),
            String::from_utf8_lossy(&out.stderr)
        );
        return;
    }
    struct Panics;
    impl ChangeSink for Panics {
        fn emit(&self, _batch: Vec<Change>) -> io::Result<Flow> {
            panic!("a callback with a bug");
        }
    }
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), ANSWER);
    let dir = tree(5, 2);
    fake.add("web", dir.path());
    let client = client_at(&fake.endpoint(), 2, Duration::from_secs(5));
    // Blocking: the panic comes back to the caller.
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let _ = client.diff_into(&Target::from("web"), &ScanOptions::default(), &Panics);
    }));
    assert!(caught.is_err(), "the panic should reach the blocking caller");
    // Async: the same callback.
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = rt.block_on(async {
        let target = Target::from("web");
        let fut = client.diff_into_async(&target, ScanOptions::default(), Arc::new(Panics));
        tokio::time::timeout(Duration::from_secs(10), fut).await
    });
    eprintln!("async diff with a panicking sink: {result:?}");
    // And the client still works.
    let changes = client.diff("web").unwrap();
    assert!(!changes.is_empty());
}

/// Dropping a `diff_into_async` future is how async callers give up (`select!`, `timeout`). The
/// walk it started goes on regardless, on the shared pool, and its sink keeps receiving changes
/// from a call its caller abandoned.
#[test]
fn a_dropped_async_diff_stops_walking() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), ANSWER);
    let dir = tree(300, 3);
    fake.add("web", dir.path());
    let client = client_at(&fake.endpoint(), 2, Duration::from_secs(5));
    struct Slow(Arc<AtomicUsize>);
    impl ChangeSink for Slow {
        fn emit(&self, _batch: Vec<Change>) -> io::Result<Flow> {
            self.0.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(Duration::from_millis(5));
            Ok(Flow::Continue(()))
        }
    }
    let count = Arc::new(AtomicUsize::new(0));
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let r = rt.block_on(async {
        let target = Target::from("web");
        let fut = client.diff_into_async(&target, ScanOptions::default(), Arc::new(Slow(count.clone())));
        tokio::time::timeout(Duration::from_millis(100), fut).await
    });
    assert!(r.is_err(), "the diff should still run at 100 ms");
    std::thread::sleep(Duration::from_millis(100));
    let at_drop = count.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_secs(1));
    let later = count.load(Ordering::SeqCst);
    assert_eq!(later, at_drop, "the abandoned diff went on: {at_drop} batches when it was dropped, {later} a second later");
}

/// `plan_async`, `diff_async` and `diff_into_async` against the fake daemon agree with the
/// blocking calls.
#[test]
fn async_and_blocking_agree() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), ANSWER);
    let dir = tree(30, 3);
    fake.add("web", dir.path());
    let client = client_at(&fake.endpoint(), 2, Duration::from_secs(5));
    let blocking = client.diff("web").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let asynced = rt.block_on(client.diff_async(&Target::from("web"), ScanOptions { metadata: true, ..Default::default() })).unwrap();
    assert_eq!(blocking, asynced);
    let plans = rt.block_on(client.plan_async(&Target::from("web"), rodiff::Rules::builtin(), Stop::default())).unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(fake.requests.lock().unwrap().iter().filter(|l| l.contains("_ping")).count(), 1, "one ping for the client's life");
}

// ---- API surface ----

/// Error codes: every kind's code is the documented one and the CLI mapping holds for the new
/// kinds (Cancelled, Sink, Timeout, Stopped → 1; the CLI exits 128+sig on a signal itself).
#[test]
fn new_error_kinds_codes() {
    assert_eq!(Error::Cancelled.kind(), ErrorKind::Cancelled);
    assert_eq!(ErrorKind::Cancelled.code(), 12);
    assert_eq!(ErrorKind::Sink.code(), 13);
    assert_eq!(ErrorKind::Timeout.code(), 14);
    assert_eq!(ErrorKind::Stopped.code(), 15);
    assert_eq!(Error::Timeout { after: Duration::from_secs(1) }.kind().exit_code(), 1);
}

/// A watch whose runtime stops answering after some diffs: it ends with what it saw and the
/// runtime's error, instead of losing the union; one that never got a diff returns the error.
#[test]
fn a_watch_keeps_what_it_saw_when_the_runtime_goes_away() {
    let sockets = tempfile::tempdir().unwrap();
    let fake = FakeDocker::start(&sockets.path().join("d.sock"), ANSWER);
    let dir = tree(3, 2);
    fake.add("web", dir.path());
    let client = client_at(&fake.endpoint(), 2, Duration::from_millis(500));
    let options = rodiff::watch::WatchOptions { interval: Duration::from_millis(50), ..Default::default() };
    let watching = {
        let (client, options) = (client.clone(), options.clone());
        std::thread::spawn(move || client.watch(&Target::from("web"), &options, &Stop::default()))
    };
    std::thread::sleep(Duration::from_millis(400));
    fake.set(SILENT);
    let watched = within(Duration::from_secs(20), move || watching.join().unwrap()).expect("the watch ends").unwrap();
    assert!(watched.profile.diffs() >= 2, "{}", watched.profile.diffs());
    assert_eq!(watched.profile.changes(), client_changes_of(dir.path()));
    let failed = watched.failed.expect("the error that ended it");
    assert_eq!(failed.kind(), ErrorKind::RuntimeUnavailable, "{failed}");
    assert_eq!(watched.containers.len(), 1);
    // Silent from the start: the error itself.
    let err = client.watch(&Target::from("web"), &options, &Stop::default()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::RuntimeUnavailable, "{err}");
}

/// The diff of the plain tree, as the client gives it without a runtime.
fn client_changes_of(root: &std::path::Path) -> Vec<Change> {
    let client = Client::new(ClientOptions::default()).unwrap();
    let collect = Collect::default();
    let scan = ScanOptions { metadata: true, ..Default::default() };
    client.diff_resolved(&[common::plain::resolved(root, "web")], false, &scan, &collect).unwrap();
    collect.into_sorted()
}
