//! Running a blocking core call from Python: without the GIL (other Python threads go on, and
//! several threads may call at once), and interruptible — Ctrl-C (any signal whose Python handler
//! raises) cancels the call through its [`Cancel`] token, waits for it to stop (having removed
//! what it made), and raises the handler's exception.

use std::sync::mpsc;
use std::time::Duration;

use pyo3::prelude::*;

use core_lib::Cancel;

/// How often a waiting call lets Python run its signal handlers.
const SIGNAL_CHECK: Duration = Duration::from_millis(50);

/// Runs `work` on a thread of its own while this one, without the GIL, waits for it and checks
/// for signals. `cancel` must be the token `work` observes.
pub(crate) fn run<T: Send>(py: Python<'_>, cancel: &Cancel, work: impl FnOnce() -> T + Send) -> PyResult<T> {
    std::thread::scope(|scope| {
        let (tx, rx) = mpsc::sync_channel(1);
        // Waiting without the GIL needs a `Sync` receiver.
        let rx = std::sync::Mutex::new(rx);
        let recv = |timeout: Option<Duration>| {
            let rx = rx.lock().unwrap_or_else(|e| e.into_inner());
            match timeout {
                Some(t) => rx.recv_timeout(t),
                None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            }
        };
        let worker = scope.spawn(move || {
            let _ = tx.send(work());
        });
        loop {
            match py.detach(|| recv(Some(SIGNAL_CHECK))) {
                Ok(result) => return Ok(result),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if let Err(interrupt) = py.check_signals() {
                        cancel.cancel();
                        // The call stops at its next check; its clean-up is done when it returns.
                        let _ = py.detach(|| recv(None));
                        return Err(interrupt);
                    }
                }
                // The worker panicked before sending: let the scope resume its panic.
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let panic = py.detach(|| worker.join()).expect_err("a worker that sent nothing panicked");
                    std::panic::resume_unwind(panic)
                }
            }
        }
    })
}
