//! A runtime endpoint that accepts connections and never answers: rodiff gives up after
//! `--timeout` seconds with exit code 3 and one line naming the endpoint, instead of hanging.
//! No daemon needed: the endpoint is a unix socket in a temporary directory, served by a thread
//! of the test that accepts every connection, holds it open and never reads or writes.

use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the test waits for rodiff before calling it hung (far above `--timeout 2`: a bound
/// that proves rodiff gives up, not a speed assertion).
const HUNG: Duration = Duration::from_secs(10);

/// A unix socket at `dir/name` whose connections are accepted, kept open, and never answered.
fn silent_socket(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    let listener = UnixListener::bind(&path).expect("bind the silent socket");
    std::thread::spawn(move || {
        let mut held: Vec<UnixStream> = Vec::new();
        for stream in listener.incoming().flatten() {
            held.push(stream);
        }
    });
    path
}

/// Runs rodiff with `args`; its exit code, its stderr and how long it took. Kills it (and fails)
/// when it runs much longer than [`HUNG`].
fn run_rodiff(args: &[&str]) -> (Option<i32>, String, Duration) {
    let start = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_rodiff"))
        .args(args)
        .env_remove("DOCKER_HOST")
        .env_remove("CONTAINERD_ADDRESS")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run rodiff");
    loop {
        if child.try_wait().expect("wait for rodiff").is_some() {
            break;
        }
        if start.elapsed() > HUNG * 2 {
            let _ = child.kill();
            let _ = child.wait();
            panic!("rodiff {args:?} hung: still running after {:?}", start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let elapsed = start.elapsed();
    let output = child.wait_with_output().expect("read rodiff's stderr");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned(), elapsed)
}

fn assert_gives_up(args: &[&str], socket: &Path) {
    let (code, stderr, elapsed) = run_rodiff(args);
    assert!(elapsed < HUNG, "rodiff {args:?} took {elapsed:?} (--timeout 2); stderr: {stderr}");
    assert_eq!(code, Some(3), "exit code 3 (runtime unreachable); stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line on stderr: {stderr:?}");
    assert!(stderr.contains(&*socket.to_string_lossy()), "stderr names the socket {}: {stderr}", socket.display());
    assert!(stderr.contains("no answer within 2 s"), "stderr names the timeout: {stderr}");
}

#[test]
fn a_silent_docker_socket_is_unreachable_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = silent_socket(dir.path(), "docker.sock");
    let host = format!("unix://{}", socket.display());
    assert_gives_up(&["-H", &host, "--timeout", "2", "diff", "x"], &socket);
}

#[test]
fn a_silent_containerd_socket_is_unreachable_within_the_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let socket = silent_socket(dir.path(), "containerd.sock");
    let address = socket.to_string_lossy().into_owned();
    assert_gives_up(&["--runtime", "containerd", "--address", &address, "--timeout", "2", "diff", "x"], &socket);
}
