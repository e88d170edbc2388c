//! SIGPIPE. Writing to a socket whose peer has gone (a runtime restarting, a proxy dropping the
//! connection, a socket that accepts and closes) raises SIGPIPE in the writing thread, and its
//! default action ends the process. A Rust program ignores it from its `main`; a C or Go program
//! that links librodiff usually does not, so one closed connection would kill it (found by the
//! `c_abi` fuzz target). rodiff's own threads therefore block it: a write then fails with EPIPE,
//! which rodiff reports like any lost connection, and the caller's threads keep their signals.

use std::ptr::null_mut;

/// Runs `f` (which starts rodiff's threads) with SIGPIPE blocked in the calling thread, so that
/// the threads it starts, which inherit the mask, block it for their whole life; the calling
/// thread's mask is put back afterwards.
pub(crate) fn with_sigpipe_blocked<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: pthread_sigmask on sets this function owns; the old mask is restored below.
    let old = unsafe {
        let mut block: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut block);
        libc::sigaddset(&mut block, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old);
        old
    };
    let out = f();
    // SAFETY: as above. No SIGPIPE can be pending for this thread: `f` writes to no socket.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, null_mut()) };
    out
}

#[cfg(test)]
mod tests {
    use std::ffi::CString;
    use std::os::unix::net::UnixListener;
    use std::ptr::{null, null_mut};
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    use crate::*;

    /// Whether SIGPIPE is in a `SigBlk:` mask of /proc/…/status (hex; bit SIGPIPE - 1).
    fn blocks_sigpipe(status: &str) -> bool {
        let mask = status.lines().find_map(|l| l.strip_prefix("SigBlk:")).expect("SigBlk in status");
        u64::from_str_radix(mask.trim(), 16).expect("a hex mask") & (1 << (libc::SIGPIPE - 1)) != 0
    }

    /// A client of `runtime` at `endpoint` with two walkers.
    fn client(runtime: rodiff_runtime, endpoint: &str) -> *mut rodiff_client {
        let endpoint = CString::new(endpoint).unwrap();
        let options = rodiff_options {
            runtime,
            docker_host: endpoint.as_ptr(),
            containerd_address: endpoint.as_ptr(),
            containerd_namespace: null(),
            host_root: null(),
            timeout_ms: 2000,
            walkers: 2,
        };
        let mut client = null_mut();
        // SAFETY: valid options and out slot.
        assert_eq!(unsafe { rodiff_client_new(&options, &mut client, null_mut()) }, rodiff_result::RODIFF_OK);
        client
    }

    #[test]
    fn rodiff_threads_block_sigpipe_and_the_callers_mask_is_kept() {
        let own = || std::fs::read_to_string("/proc/thread-self/status").unwrap();
        let before = blocks_sigpipe(&own());
        let client = client(RODIFF_RUNTIME_DOCKER, "unix:///nonexistent/docker.sock");
        assert_eq!(blocks_sigpipe(&own()), before, "the caller's mask changed");
        // Threads name themselves once running: look until the I/O thread and both walkers are.
        let mut seen = 0;
        for _ in 0..200 {
            seen = 0;
            for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
                let comm = std::fs::read_to_string(task.path().join("comm")).unwrap_or_default();
                // The client's I/O thread and walkers (the test binary's own are `rodiff-<hash>`).
                if comm.starts_with("rodiff-io") || comm.starts_with("rodiff-walk-") {
                    let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
                    assert!(status.is_empty() || blocks_sigpipe(&status), "thread {} does not block SIGPIPE", comm.trim());
                    seen += 1;
                }
            }
            if seen >= 3 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(seen >= 3, "the I/O thread and two walkers: {seen} seen");
        // SAFETY: a client from rodiff_client_new, freed once.
        unsafe { rodiff_client_free(client) };
    }

    /// The fuzz target's crash: a Docker endpoint that accepts and closes at once ended a process
    /// that leaves SIGPIPE at its default, as C programs do.
    #[test]
    fn a_connection_the_runtime_closes_does_not_raise_sigpipe() {
        let dir = std::env::temp_dir().join(format!("rodiff-c-sigpipe.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let socket = dir.join("closer.sock");
        // Closes each connection as soon as it is made (a spinning accept: before the client's
        // first write, most times).
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let closer = {
            let done = done.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    drop(listener.accept());
                }
            })
        };
        // As a C program has it (the test harness, a Rust program, ignores SIGPIPE).
        // SAFETY: setting a signal's disposition to its default.
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
        let container = CString::new("web").unwrap();
        for (runtime, endpoint) in [(RODIFF_RUNTIME_DOCKER, format!("unix://{}", socket.display())), (RODIFF_RUNTIME_CONTAINERD, socket.display().to_string())] {
            let client = client(runtime, &endpoint);
            for _ in 0..200 {
                let mut list = null_mut();
                // SAFETY: valid client, string and out slot.
                let code = unsafe { rodiff_diff(client, container.as_ptr(), null(), &mut list, null_mut()) };
                assert_ne!(code, rodiff_result::RODIFF_OK);
            }
            // SAFETY: as above.
            unsafe { rodiff_client_free(client) };
        }
        unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
        done.store(true, Ordering::Relaxed);
        closer.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// The caller's whole mask is kept (not only its SIGPIPE bit), whatever it blocks, and a
    /// caller's own SIGPIPE handler is never run for rodiff's writes (review probe).
    #[test]
    fn a_callers_full_mask_and_own_handler_are_kept() {
        static HANDLED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        extern "C" fn on_sigpipe(_: libc::c_int) {
            HANDLED.fetch_add(1, Ordering::Relaxed);
        }
        let dir = std::env::temp_dir().join(format!("rodiff-c-sigmask.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        let socket = dir.join("closer.sock");
        let listener = UnixListener::bind(&socket).unwrap();
        listener.set_nonblocking(true).unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let closer = {
            let done = done.clone();
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    drop(listener.accept());
                }
            })
        };
        let endpoint = format!("unix://{}", socket.display());
        // A caller thread that blocks SIGUSR1 and SIGTERM but not SIGPIPE, with its own handler.
        let t = std::thread::spawn(move || unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            libc::sigaddset(&mut set, libc::SIGTERM);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, null_mut());
            libc::signal(libc::SIGPIPE, on_sigpipe as extern "C" fn(libc::c_int) as *const () as libc::sighandler_t);
            let mut before: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, null(), &mut before);
            let c = client(RODIFF_RUNTIME_DOCKER, &endpoint);
            let mut after: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_SETMASK, null(), &mut after);
            for sig in 1..65 {
                assert_eq!(libc::sigismember(&before, sig), libc::sigismember(&after, sig), "signal {sig}'s bit changed");
            }
            let container = CString::new("web").unwrap();
            for _ in 0..200 {
                let mut list = null_mut();
                let code = rodiff_diff(c, container.as_ptr(), null(), &mut list, null_mut());
                assert_ne!(code, rodiff_result::RODIFF_OK);
            }
            rodiff_client_free(c);
            libc::signal(libc::SIGPIPE, libc::SIG_IGN);
        });
        let r = t.join();
        done.store(true, Ordering::Relaxed);
        closer.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        r.unwrap();
        assert_eq!(HANDLED.load(Ordering::Relaxed), 0, "the caller's SIGPIPE handler ran for rodiff's writes");
    }
}
