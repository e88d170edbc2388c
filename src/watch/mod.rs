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

/// How a profile names a path: the container it belongs to (for a pod's) and the path.
pub type ProfileKey = (Option<String>, PathBuf);

/// What one diff changed in a profile ([`Profile::absorb`]), for whoever keeps a copy of it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Absorbed {
    /// Paths that are new, differ from how they were last seen, or are back after a diff that
    /// did not show them.
    pub changed: Vec<ProfileKey>,
    /// Paths the previous diff showed and this one does not: now transient.
    pub vanished: Vec<ProfileKey>,
}

/// The union of a container's diffs over time (see the module documentation).
#[derive(Clone, Debug, Default)]
pub struct Profile {
    seen: HashMap<ProfileKey, Seen>,
    diffs: u64,
    /// Why the watch ended, in words (`the container exited`), when it ended on its own.
    pub ended: Option<String>,
}

impl Profile {
    /// Adds one complete diff, taken at `at`, and says what it changed in the profile.
    pub fn absorb(&mut self, changes: Vec<Change>, at: SystemTime) -> Absorbed {
        self.diffs += 1;
        let diff = self.diffs;
        let mut absorbed = Absorbed::default();
        for change in changes {
            let key = (change.container.clone(), change.path.clone());
            match self.seen.entry(key) {
                Entry::Occupied(mut seen) => {
                    let (key, seen) = (seen.key().clone(), seen.get_mut());
                    if seen.change != change || seen.last_diff + 1 != diff {
                        absorbed.changed.push(key);
                    }
                    (seen.change, seen.last_seen, seen.last_diff) = (change, at, diff);
                }
                Entry::Vacant(slot) => {
                    absorbed.changed.push(slot.key().clone());
                    slot.insert(Seen { change, first_seen: at, last_seen: at, last_diff: diff });
                }
            }
        }
        absorbed.vanished = self.seen.iter().filter(|(_, s)| s.last_diff + 1 == diff).map(|(k, _)| k.clone()).collect();
        absorbed
    }

    /// A profile as persisted: `diffs` diffs, and each path with when it was first and last seen
    /// and whether the last diff showed it.
    pub fn restore(diffs: u64, entries: impl IntoIterator<Item = (Change, SystemTime, SystemTime, bool)>) -> Profile {
        let seen = entries
            .into_iter()
            .map(|(change, first_seen, last_seen, in_last)| {
                let last_diff = if in_last { diffs } else { diffs.saturating_sub(1) };
                ((change.container.clone(), change.path.clone()), Seen { change, first_seen, last_seen, last_diff })
            })
            .collect();
        Profile { seen, diffs, ended: None }
    }

    /// The entry of `key`, if any diff showed it (or fanotify heard it).
    pub fn get(&self, key: &ProfileKey) -> Option<&Seen> {
        self.seen.get(key)
    }

    /// Whether the last diff showed `seen` (otherwise it is transient).
    pub fn in_last_diff(&self, seen: &Seen) -> bool {
        seen.last_diff == self.diffs
    }

    /// How many paths it holds.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether it holds no path.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
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
        let a = profile.seen().find(|s| s.change.path == Path::new("/var/a")).unwrap();
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
    fn absorb_says_what_changed_and_what_vanished_and_restore_keeps_it() {
        let (t0, t1, t2) = (SystemTime::UNIX_EPOCH, SystemTime::UNIX_EPOCH + Duration::from_secs(1), SystemTime::UNIX_EPOCH + Duration::from_secs(2));
        let key = |p: &str| (None, PathBuf::from(p));
        let mut profile = Profile::default();
        let a = profile.absorb(vec![change("/a", ChangeKind::Added), change("/b", ChangeKind::Added)], t0);
        assert_eq!((a.changed.len(), a.vanished.len()), (2, 0));
        let a = profile.absorb(vec![change("/a", ChangeKind::Added), change("/c", ChangeKind::Added)], t1);
        assert_eq!((a.changed, a.vanished), (vec![key("/c")], vec![key("/b")]));
        // Seen again after a diff without it: changed (no longer transient); unchanged: nothing.
        let a = profile.absorb(vec![change("/a", ChangeKind::Added), change("/b", ChangeKind::Added), change("/c", ChangeKind::Changed)], t2);
        let mut changed = a.changed;
        changed.sort();
        assert_eq!((changed, a.vanished), (vec![key("/b"), key("/c")], vec![]));

        let entries = profile.seen().map(|s| (s.change.clone(), s.first_seen, s.last_seen, profile.in_last_diff(s))).collect::<Vec<_>>();
        let restored = Profile::restore(profile.diffs(), entries);
        assert_eq!(restored.changes(), profile.changes());
        assert_eq!(restored.get(&key("/a")).map(|s| (s.first_seen, s.last_seen)), Some((t0, t2)));
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
