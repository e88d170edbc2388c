//! The threads walks run on: one bounded pool, made once per [`crate::Client`] and shared by all
//! its scans, so that concurrent diffs queue for threads instead of multiplying them.

use std::sync::Arc;

use crate::error::{Error, Result};

/// Stack size of a walker thread. Walks recurse once per directory level and trees deeper than
/// `PATH_MAX` are legal, hence large stacks; the memory is reserved, and committed only as deep
/// walks touch it.
const STACK_SIZE: usize = 256 << 20;

/// The most threads a pool has: more is taken as this many (a walk gains nothing from more
/// threads than directories it can work on at once, and each thread reserves a large stack).
pub const MAX_WALKERS: usize = 1024;

/// A pool of walker threads. Clones share the pool; it ends when the last clone is dropped.
#[derive(Clone, Debug)]
pub struct Walkers(Arc<rayon::ThreadPool>);

impl Walkers {
    /// A pool of `threads` walker threads, at most [`MAX_WALKERS`] (0: one per CPU this process may run on, as
    /// `std::thread::available_parallelism` counts them; rayon's `RAYON_NUM_THREADS` is not read).
    pub fn new(threads: usize) -> Result<Walkers> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            n => n,
        }
        .min(MAX_WALKERS);
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .stack_size(STACK_SIZE)
            .thread_name(|i| format!("rodiff-walk-{i}"))
            .build()
            .map(|pool| Walkers(Arc::new(pool)))
            .map_err(|e| Error::io("<walker threads>", std::io::Error::other(e)))
    }

    /// How many threads the pool has.
    pub fn threads(&self) -> usize {
        self.0.current_num_threads()
    }

    /// Runs `work` in the pool, blocking the calling thread until it is done; the parallel
    /// iterators it uses run in the pool too. From a pool thread, runs it right there.
    pub(crate) fn install<R: Send>(&self, work: impl FnOnce() -> R + Send) -> R {
        self.0.install(work)
    }

    /// Starts `work` in the pool and returns at once.
    pub(crate) fn spawn(&self, work: impl FnOnce() + Send + 'static) {
        self.0.spawn(work)
    }
}
