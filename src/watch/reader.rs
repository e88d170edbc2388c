//! The thread that reads a watch's fanotify listeners ([`super::fanotify`]) while the diffs run,
//! so that the kernel's queue is emptied as it fills, not once per interval. The watch hands it a
//! listener per layer as it resolves containers and takes what was heard after each diff.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::fanotify::Listener;
use super::Listened;
use crate::layer::Layer;
use crate::resolve::ResolvedContainer;

/// How long the thread sleeps in `poll` before it looks at its stop flag again.
const TICK: Duration = Duration::from_millis(100);

/// Buffers read from one listener before the others get a turn (and the heard names are handed
/// over); the queue holds at most 16384 events, a few dozen buffers.
const ROUND: usize = 16;

/// A name heard, the container it belongs to (for a pod's) and when it was read.
pub(crate) type Heard = (Option<String>, super::fanotify::Heard, SystemTime);

/// What the thread hands over.
#[derive(Debug, Default)]
struct State {
    heard: Vec<Heard>,
    listened: Listened,
}

#[derive(Debug, Default)]
struct Shared {
    state: Mutex<State>,
    stop: AtomicBool,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The reading thread and the layers it listens to. Dropping it stops the thread.
#[derive(Debug, Default)]
pub(crate) struct Reader {
    shared: Arc<Shared>,
    add: Option<mpsc::Sender<(Option<String>, Listener)>>,
    thread: Option<JoinHandle<()>>,
    /// Layer roots listened to, or tried.
    layers: HashSet<PathBuf>,
}

impl Reader {
    /// Listens to the layers of `resolved` not listened to yet; with `tag`, what is heard carries
    /// the container's name. A layer fanotify cannot listen to is noted (the first cause is kept)
    /// and left to the diffs.
    pub(crate) fn listen(&mut self, resolved: &[ResolvedContainer], tag: bool) {
        for r in resolved {
            let root = match &r.layer {
                Layer::Overlay(layer) => &layer.upper,
                Layer::Btrfs(layer) => &layer.subvolume,
            };
            if !self.layers.insert(root.clone()) {
                continue;
            }
            match Listener::open(root) {
                Ok(listener) => {
                    self.shared.state().listened.layers += 1;
                    let container = tag.then(|| r.name.clone());
                    // The thread is gone only after `finish`.
                    let _ = self.sender().send((container, listener));
                }
                Err(e) => {
                    self.shared.state().listened.unavailable.get_or_insert_with(|| e.to_string());
                }
            }
        }
    }

    /// What was heard since the last call.
    pub(crate) fn take(&self) -> Vec<Heard> {
        std::mem::take(&mut self.shared.state().heard)
    }

    /// Stops the thread once it has read everything queued until now, and returns what it heard
    /// since the last [`Self::take`], with the counts.
    pub(crate) fn finish(mut self) -> (Vec<Heard>, Listened) {
        self.stop();
        let mut state = self.shared.state();
        (std::mem::take(&mut state.heard), std::mem::take(&mut state.listened))
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.add = None;
        if let Some(thread) = self.thread.take() {
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
    }

    fn sender(&mut self) -> &mpsc::Sender<(Option<String>, Listener)> {
        if self.add.is_none() {
            let (tx, rx) = mpsc::channel();
            let shared = self.shared.clone();
            self.thread = Some(
                std::thread::Builder::new().name("rodiff-fanotify".into()).spawn(move || run(&shared, &rx)).expect("spawn the fanotify reader"),
            );
            self.add = Some(tx);
        }
        self.add.as_ref().unwrap()
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The thread: waits for events on every listener, reads them, hands the names over; once told
/// to stop, reads what is still queued and ends.
fn run(shared: &Shared, add: &mpsc::Receiver<(Option<String>, Listener)>) {
    let mut listeners: Vec<(Option<String>, Listener)> = Vec::new();
    loop {
        let stopping = shared.stop.load(Ordering::SeqCst);
        listeners.extend(add.try_iter());
        if listeners.is_empty() {
            if stopping {
                return;
            }
            match add.recv_timeout(TICK) {
                Ok(listener) => listeners.push(listener),
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
            continue;
        }
        if !stopping {
            let mut fds: Vec<libc::pollfd> =
                listeners.iter().map(|(_, l)| libc::pollfd { fd: std::os::fd::AsRawFd::as_raw_fd(&l.fd()), events: libc::POLLIN, revents: 0 }).collect();
            // SAFETY: `fds` is a valid array of pollfd for its length.
            unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, TICK.as_millis() as i32) };
        }
        // Once stopping, everything queued is read: the queue is bounded, 64 rounds hold it whole
        // even while the rest of the host keeps writing.
        let rounds = if stopping { 64 * ROUND } else { ROUND };
        let mut failed = None;
        let mut heard = Vec::new();
        let mut counts = (0, 0);
        listeners.retain_mut(|(container, listener)| {
            let (events, overflows) = (listener.events(), listener.overflows());
            let mut names = Vec::new();
            let mut result = Ok(());
            for _ in 0..rounds {
                match listener.read(&mut names) {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        result = Err(e);
                        break;
                    }
                }
            }
            let at = SystemTime::now();
            heard.extend(names.into_iter().map(|h| (container.clone(), h, at)));
            counts.0 += listener.events() - events;
            counts.1 += listener.overflows() - overflows;
            match result {
                Ok(()) => true,
                Err(e) => {
                    failed.get_or_insert_with(|| format!("reading fanotify events failed: {e}"));
                    false
                }
            }
        });
        {
            let mut state = shared.state();
            state.heard.extend(heard);
            state.listened.events += counts.0;
            state.listened.overflows += counts.1;
            if let Some(failed) = failed {
                state.listened.unavailable.get_or_insert(failed);
            }
        }
        if stopping {
            return;
        }
    }
}
