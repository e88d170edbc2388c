//! Writes over a span of time: the union of a container's diffs, taken at an interval while it
//! runs ([`crate::Client::watch`]).
//!
//! A diff shows what is left in the layer; a [`Profile`] also keeps what was written in between.
//! An entry that a later diff no longer shows (a temporary file made and removed, a file restored)
//! stays in the profile as it was last seen, marked [`Evidence::Transient`], so that the plan made
//! from the profile gives its directory a place to write.

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
}

impl Default for WatchOptions {
    fn default() -> WatchOptions {
        WatchOptions { interval: Duration::from_secs(1), duration: None, until_exit: false }
    }
}

/// One path of a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seen {
    /// The change as the last diff that showed it had it.
    pub change: Change,
    /// When a diff first showed it.
    pub first_seen: SystemTime,
    /// When a diff last showed it.
    pub last_seen: SystemTime,
    /// The number of the diff that last showed it (1 for the first diff of the profile).
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
