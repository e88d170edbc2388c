//! Stopping work early: a cancel token that any thread may trip, and the deadline that goes with
//! it in [`crate::ScanOptions`].
//!
//! Walks check between batches (once per directory), runtime calls are raced against the token and
//! the deadline, and what an operation made (helper snapshots, verification containers) is removed
//! by the guards of the call that made it on the way out, as on any other error.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};

/// A token that cancels the operations it is given to. Clones share the token: cancel any clone
/// and all see it. Cancelling is sticky (there is no reset) and cheap to check.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<State>);

#[derive(Debug, Default)]
struct State {
    cancelled: AtomicBool,
    wake: tokio::sync::Notify,
    /// A token whose cancel cancels this one too.
    parent: Option<Cancel>,
}

impl Cancel {
    /// A token nobody has cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancels every operation holding this token (or a clone of it). Safe from any thread;
    /// operations stop at their next check and return [`Error::Cancelled`].
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.wake.notify_waiters();
    }

    /// A new token that is cancelled when this one is, and can also be cancelled alone (an
    /// operation's own token under its caller's).
    pub fn child(&self) -> Cancel {
        Cancel(Arc::new(State { parent: Some(self.clone()), ..Default::default() }))
    }

    /// Whether [`cancel`](Self::cancel) was called, on this token or on one it is a
    /// [`child`](Self::child) of.
    pub fn is_cancelled(&self) -> bool {
        self.lineage().any(|c| c.0.cancelled.load(Ordering::SeqCst))
    }

    /// This token and its parents.
    fn lineage(&self) -> impl Iterator<Item = &Cancel> {
        std::iter::successors(Some(self), |c| c.0.parent.as_ref())
    }

    /// Completes when the token is cancelled.
    pub(crate) async fn cancelled(&self) {
        loop {
            let mut wakes: Vec<_> = self.lineage().map(|c| Box::pin(c.0.wake.notified())).collect();
            // Registered before the flags are read, so a cancel in between is not missed.
            for wake in &mut wakes {
                wake.as_mut().enable();
            }
            if self.is_cancelled() {
                return;
            }
            futures_util::future::select_all(wakes).await;
        }
    }
}

/// When an operation must stop: its token and its deadline, if any.
#[derive(Clone, Debug, Default)]
pub struct Stop {
    /// Cancels the operation.
    pub cancel: Cancel,
    /// The operation fails with [`Error::Timeout`] when it is not done by then.
    pub deadline: Option<Deadline>,
}

/// A point in time an operation must be done by, with the allowance it was made from (for the
/// error message).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Deadline {
    at: Instant,
    after: Duration,
}

impl Deadline {
    /// `after` from now.
    pub fn after(after: Duration) -> Deadline {
        let now = Instant::now();
        Deadline { at: now.checked_add(after).unwrap_or(now + Duration::from_secs(86400 * 365 * 30)), after }
    }

    /// The instant it passes.
    pub fn instant(&self) -> Instant {
        self.at
    }

    fn passed(&self) -> bool {
        Instant::now() >= self.at
    }

    fn error(&self) -> Error {
        Error::Timeout { after: self.after }
    }
}

impl Stop {
    /// `Err` once the operation must stop: [`Error::Cancelled`] or [`Error::Timeout`].
    pub fn check(&self) -> Result<()> {
        if self.cancel.is_cancelled() {
            return Err(Error::Cancelled);
        }
        match &self.deadline {
            Some(d) if d.passed() => Err(d.error()),
            _ => Ok(()),
        }
    }

    /// Blocks for `pause`, or less when the operation must stop (checked every 50 ms): then its
    /// error. The blocking counterpart of `sleep`.
    pub fn pause(&self, pause: Duration) -> Result<()> {
        let until = Instant::now() + pause;
        loop {
            self.check()?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(());
            }
            std::thread::sleep(left.min(Duration::from_millis(50)));
        }
    }

    /// Runs `work` until it completes or the operation must stop, whichever comes first; in the
    /// second case `work` is dropped, which abandons its request.
    pub(crate) async fn race<T>(&self, work: impl Future<Output = Result<T>>) -> Result<T> {
        self.check()?;
        let deadline = async {
            match &self.deadline {
                Some(d) => {
                    tokio::time::sleep_until(d.at.into()).await;
                    d.error()
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = self.cancel.cancelled() => Err(Error::Cancelled),
            e = deadline => Err(e),
            result = work => result,
        }
    }

    /// Sleeps for `duration`, or until the operation must stop.
    pub(crate) async fn sleep(&self, duration: Duration) -> Result<()> {
        self.race(async {
            tokio::time::sleep(duration).await;
            Ok(())
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_cancels_the_original() {
        let stop = Stop::default();
        assert!(stop.check().is_ok());
        stop.cancel.clone().cancel();
        assert!(matches!(stop.check(), Err(Error::Cancelled)));
    }

    #[test]
    fn a_child_is_cancelled_with_its_parent_and_alone() {
        let parent = Cancel::new();
        let (a, b) = (parent.child(), parent.child());
        a.cancel();
        assert!(a.is_cancelled() && !b.is_cancelled() && !parent.is_cancelled());
        parent.cancel();
        assert!(b.is_cancelled());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let grandchild = Cancel::new().child().child();
        let root = grandchild.0.parent.as_ref().unwrap().0.parent.clone().unwrap();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(30));
            root.cancel();
        });
        rt.block_on(grandchild.cancelled());
        t.join().unwrap();
    }

    #[test]
    fn a_passed_deadline_is_a_timeout() {
        let stop = Stop { deadline: Some(Deadline::after(Duration::ZERO)), ..Default::default() };
        assert!(matches!(stop.check(), Err(Error::Timeout { after }) if after == Duration::ZERO));
        let far = Stop { deadline: Some(Deadline::after(Duration::MAX)), ..Default::default() };
        assert!(far.check().is_ok(), "an unrepresentable deadline is far away, not now");
    }

    #[test]
    fn race_ends_a_pending_future_when_cancelled_from_another_thread() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stop = Stop::default();
        let cancel = stop.cancel.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            cancel.cancel();
        });
        let result: Result<()> = rt.block_on(stop.race(std::future::pending()));
        t.join().unwrap();
        assert!(matches!(result, Err(Error::Cancelled)));
    }

    #[test]
    fn race_ends_a_pending_future_at_the_deadline() {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let stop = Stop { deadline: Some(Deadline::after(Duration::from_millis(30))), ..Default::default() };
        let started = Instant::now();
        let result: Result<()> = rt.block_on(stop.race(std::future::pending()));
        assert!(matches!(result, Err(Error::Timeout { .. })), "{result:?}");
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
