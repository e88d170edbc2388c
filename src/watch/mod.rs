//! Writes over a span of time: the union of a container's diffs, taken at an interval while it
//! runs ([`crate::Client::watch`]), and of what fanotify heard in between.
//!
//! A diff shows what is left in the layer; a [`Profile`] also keeps what was written in between.
//! An entry that a later diff no longer shows (a temporary file made and removed, a file restored)
//! stays in the profile as it was last seen, marked [`Evidence::Transient`], so that the plan made
//! from the profile gives its directory a place to write.
//!
//! Files that live shorter than the interval leave nothing for a diff to see. While it diffs, the
//! watch also listens to the filesystem that holds each layer ([`fanotify`], read by a thread of
//! its own): every name made, removed, renamed or re-attributed in the layer is heard, and one that
//! no diff shows joins the profile as kind [`crate::ChangeKind::Touched`] (written, identical to
//! the image now), [`Evidence::Transient`] ([`Profile::hear`]). Where fanotify cannot listen, the
//! watch says why in [`Listened::unavailable`] and relies on its diffs.

pub mod fanotify;
mod reader;

pub(crate) use reader::{Heard, Reader};

use std::collections::hash_map::{Entry, HashMap};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use crate::model::{path_order, Change, Evidence};

/// How long and how often to watch.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Time between the end of one diff and the start of the next.
    pub interval: Duration,
    /// End after this long (a last diff is taken then); `None`: until stopped.
    pub duration: Option<Duration>,
    /// End when the container is no longer running (after a last diff).
    pub until_exit: bool,
    /// Also listen with fanotify for what is written between diffs (see the module
    /// documentation); `false`: diffs only.
    pub fanotify: bool,
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions { interval: Duration::from_secs(1), duration: None, until_exit: false, fanotify: true }
    }
}

/// What listening with fanotify added to a watch ([`crate::Watched::listened`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Listened {
    /// Layers listened to.
    pub layers: usize,
    /// Why fanotify did not listen to a layer, or stopped (the first cause: no `CAP_SYS_ADMIN`,
    /// a kernel without fanotify or unable to mark that filesystem, …): those layers were
    /// watched by their diffs alone. `None` when it listened to every layer throughout, or was not
    /// asked to ([`WatchOptions::fanotify`]).
    pub unavailable: Option<String>,
    /// How often the kernel's event queue overflowed (`FAN_Q_OVERFLOW`): each time, events were
    /// lost and names written in between may be missing from the profile.
    pub overflows: u64,
    /// Events heard that named an entry of a watched layer.
    pub events: u64,
}

/// One path of a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The change as the last diff that showed it had it.
    pub change: Change,
    /// When a diff first showed it, or fanotify first heard it.
    pub first_seen: SystemTime,
    /// When a diff last showed it, or (while no diff has) fanotify last heard it.
    pub last_seen: SystemTime,
    /// The number of the diff that last showed it (1 for the first diff of the profile; 0 when
    /// only heard).
    last_diff: u64,
}

/// The union of a container's diffs over time (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Profile {
    seen: HashMap<(Option<String>, PathBuf), Seen>,
    diffs: u64,
    /// Why the watch ended, in words (`the container exited`), when it ended on its own.
    pub ended: Option<String>,
}

impl Profile {
    /// Adds one complete diff, taken at `at`.
    pub fn absorb(&mut self, changes: Vec<Change>, at: SystemTime) {
        self.diffs += 1;
        let diff = self.diffs;
        for change in changes {
            match self.seen.entry((change.container.clone(), change.path.clone())) {
                Entry::Occupied(mut seen) => {
                    let seen = seen.get_mut();
                    (seen.change, seen.last_seen, seen.last_diff) = (change, at, diff);
                }
                Entry::Vacant(slot) => {
                    slot.insert(Seen { change, first_seen: at, last_seen: at, last_diff: diff });
                }
            }
        }
    }

    /// Adds a write heard between diffs (fanotify), read at `at`: kept only while no diff has
    /// shown the path, which then has its say. Until then it is `change` (made by the listener:
    /// kind [`crate::ChangeKind::Touched`]) and, in [`Self::changes`], transient.
    pub fn hear(&mut self, change: Change, at: SystemTime) {
        match self.seen.entry((change.container.clone(), change.path.clone())) {
            Entry::Occupied(mut seen) if seen.get().last_diff == 0 => seen.get_mut().last_seen = at,
            Entry::Occupied(_) => {}
            Entry::Vacant(slot) => {
                slot.insert(Seen { change, first_seen: at, last_seen: at, last_diff: 0 });
            }
        }
    }

    /// How many diffs it holds.
    pub fn diffs(&self) -> u64 {
        self.diffs
    }

    /// Every path any diff showed, with when.
    pub fn seen(&self) -> impl Iterator<Item = &Seen> {
        self.seen.values()
    }

    /// The union as changes sorted by container and path: each path as last seen, and
    /// [`Evidence::Transient`] on those the last diff no longer showed.
    pub fn changes(&self) -> Vec<Change> {
        let mut changes: Vec<Change> = self
            .seen
            .values()
            .map(|s| {
                let mut change = s.change.clone();
                if s.last_diff < self.diffs {
                    change.evidence = Some(Evidence::Transient);
                }
                change
            })
            .collect();
        changes.sort_by(|a, b| a.container.cmp(&b.container).then_with(|| path_order(a.path_bytes(), b.path_bytes())));
        changes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use crate::model::{ChangeKind, FileType};

    fn change(path: &str, kind: ChangeKind) -> Change {
        Change::new(path.into(), kind, FileType::File)
    }

    #[test]
    fn the_union_keeps_what_a_later_diff_no_longer_shows_as_transient() {
        let t0 = SystemTime::UNIX_EPOCH;
        let t1 = t0 + Duration::from_secs(1);
        let mut profile = Profile::default();
        profile.absorb(vec![change("/tmp/x", ChangeKind::Added), change("/var/a", ChangeKind::Added)], t0);
        profile.absorb(vec![change("/var/a", ChangeKind::Changed), change("/var/b", ChangeKind::Added)], t1);
        let got: Vec<_> = profile.changes().into_iter().map(|c| (c.path.display().to_string(), c.kind.letter(), c.evidence)).collect();
        assert_eq!(
            got,
            [
                ("/tmp/x".to_string(), 'A', Some(Evidence::Transient)),
                ("/var/a".to_string(), 'C', None),
                ("/var/b".to_string(), 'A', None),
            ]
        );
        let a = profile.seen().find(|s| s.change.path == PathBuf::from("/var/a")).unwrap();
        assert_eq!((a.first_seen, a.last_seen), (t0, t1));
        assert_eq!(profile.diffs(), 2);
        // Seen again: no longer transient.
        profile.absorb(vec![change("/tmp/x", ChangeKind::Added)], t1);
        assert_eq!(profile.changes().iter().filter(|c| c.evidence.is_none()).count(), 1);
    }

    #[test]
    fn heard_names_are_transient_touches_until_a_diff_shows_them() {
        let (t0, t1, t2) = (SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH + Duration::from_secs(1), SystemTime::UNIX_EPOCH + Duration::from_secs(2));
        let mut profile = Profile::default();
        profile.absorb(vec![change("/var/a", ChangeKind::Added)], t0);
        profile.hear(change("/var/a", ChangeKind::Touched), t1);
        profile.hear(change("/var/burst/f1", ChangeKind::Touched), t1);
        profile.hear(change("/var/burst/f1", ChangeKind::Touched), t2);
        let got: Vec<_> = profile.changes().into_iter().map(|c| (c.path.display().to_string(), c.kind.letter(), c.evidence)).collect();
        assert_eq!(got, [("/var/a".to_string(), 'A', None), ("/var/burst/f1".to_string(), 'T', Some(Evidence::Transient))]);
        let f1 = profile.seen().find(|s| s.change.path == Path::new("/var/burst/f1")).unwrap();
        assert_eq!((f1.first_seen, f1.last_seen), (t1, t2));
        // A diff that shows it has the last word.
        profile.absorb(vec![change("/var/a", ChangeKind::Added), change("/var/burst/f1", ChangeKind::Added)], t2);
        assert!(profile.changes().iter().all(|c| c.kind == ChangeKind::Added && c.evidence.is_none()));
    }

    #[test]
    fn pods_keep_their_containers_apart() {
        let mut profile = Profile::default();
        let mut web = change("/x", ChangeKind::Added);
        web.container = Some("web".into());
        let mut db = web.clone();
        db.container = Some("db".into());
        profile.absorb(vec![web, db], SystemTime::UNIX_EPOCH);
        let order: Vec<_> = profile.changes().into_iter().map(|c| c.container.unwrap()).collect();
        assert_eq!(order, ["db", "web"]);
    }
}
