//! The containers the agent follows, in memory: what their runtimes list, their write profiles,
//! and what the last scan said. One lock; nothing slow is done while holding it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use rodiff::{ChangeKind, FileType, ListedContainer, Runtime};

use super::store::{ContainerRow, Stored};

/// How the agent names a container everywhere (database, API): `docker/<id>` or
/// `containerd/<namespace>/<id>`.
pub fn key(listed: &ListedContainer) -> String {
    match &listed.namespace {
        Some(ns) => format!("{}/{ns}/{}", listed.runtime.name(), listed.id),
        None => format!("{}/{}", listed.runtime.name(), listed.id),
    }
}

/// One followed container.
#[derive(Debug)]
pub struct Tracked {
    /// What is kept across restarts.
    pub stored: Stored,
    /// A scan of it is under way.
    pub scanning: bool,
    /// Something happened to it since its last scan (it was created, started or stopped): scan
    /// it even if it is not running, so that what it wrote until it stopped is in its profile.
    pub dirty: bool,
    /// Why its last scan failed, if it did.
    pub last_error: Option<String>,
}

impl Tracked {
    /// Whether its runtime no longer lists it.
    pub fn removed(&self) -> bool {
        self.stored.removed_at.is_some()
    }

    /// Whether a scan is due at `now`: not removed, not under way, and either something happened
    /// to it or it may be running and `interval` passed since the last scan.
    pub fn due(&self, now: SystemTime, interval: Duration) -> bool {
        if self.removed() || self.scanning {
            return false;
        }
        let waited = self.stored.last_scan.map_or(true, |t| now.duration_since(t).unwrap_or_default() >= interval);
        self.dirty || (self.stored.listed.running != Some(false) && waited)
    }

    /// Paths of its profile by kind (`A`, `C`, `D`, `T`), and the bytes of the regular files it
    /// added or changed that are still there.
    pub fn counts(&self) -> ([u64; 4], u64) {
        let mut kinds = [0; 4];
        let mut bytes = 0;
        let profile = &self.stored.profile;
        for seen in profile.seen() {
            let change = &seen.change;
            let i = match change.kind {
                ChangeKind::Added => 0,
                ChangeKind::Changed => 1,
                ChangeKind::Deleted => 2,
                ChangeKind::Touched => 3,
            };
            kinds[i] += 1;
            if profile.in_last_diff(seen) && change.file_type == FileType::File && change.kind != ChangeKind::Deleted {
                bytes += change.metadata.map_or(0, |m| m.size);
            }
        }
        (kinds, bytes)
    }
}

/// Every followed container, by [`key`].
#[derive(Debug, Default)]
pub struct Registry {
    /// The containers.
    pub containers: BTreeMap<String, Tracked>,
}

/// What [`Registry::reconcile`] changed, for the database.
#[derive(Debug, Default)]
pub struct Reconciled {
    /// Containers that are new, back, renamed, or were removed: their rows to write.
    pub save: Vec<(String, ContainerRow)>,
}

impl Registry {
    /// Takes in a complete listing of `runtime` (in `namespaces`, for containerd) made at `now`:
    /// new containers are followed, known ones updated, those missing from it marked removed.
    pub fn reconcile(&mut self, runtime: Runtime, namespaces: &[String], listed: Vec<ListedContainer>, now: SystemTime) -> Reconciled {
        let mut out = Reconciled::default();
        let mut present = std::collections::HashSet::new();
        for l in listed {
            let k = key(&l);
            present.insert(k.clone());
            match self.containers.get_mut(&k) {
                Some(t) => {
                    let changed = t.stored.listed != l || t.removed();
                    if t.stored.listed.running != l.running || t.removed() {
                        t.dirty = true;
                    }
                    t.stored.listed = l;
                    t.stored.last_seen = now;
                    t.stored.removed_at = None;
                    if changed {
                        out.save.push((k, t.stored.row()));
                    }
                }
                None => {
                    let stored = Stored {
                        listed: l,
                        first_seen: now,
                        last_seen: now,
                        removed_at: None,
                        last_scan: None,
                        profile: Default::default(),
                        executables: Vec::new(),
                    };
                    out.save.push((k.clone(), stored.row()));
                    self.containers.insert(k, Tracked { stored, scanning: false, dirty: true, last_error: None });
                }
            }
        }
        for (k, t) in self.containers.iter_mut() {
            let l = &t.stored.listed;
            let in_scope = l.runtime == runtime && (runtime == Runtime::Docker || l.namespace.as_ref().is_some_and(|n| namespaces.contains(n)));
            if in_scope && !t.removed() && !present.contains(k) {
                t.stored.removed_at = Some(now);
                out.save.push((k.clone(), t.stored.row()));
            }
        }
        out
    }

    /// Marks a container removed now (its scan found it gone); `true` if it was not already.
    pub fn mark_removed(&mut self, key: &str, now: SystemTime) -> Option<ContainerRow> {
        let t = self.containers.get_mut(key)?;
        if t.removed() {
            return None;
        }
        t.stored.removed_at = Some(now);
        Some(t.stored.row())
    }

    /// Forgets containers removed longer than `retention` ago; their keys.
    pub fn expire(&mut self, now: SystemTime, retention: Duration) -> Vec<String> {
        let old: Vec<String> = self
            .containers
            .iter()
            .filter(|(_, t)| t.stored.removed_at.is_some_and(|at| now.duration_since(at).unwrap_or_default() >= retention))
            .map(|(k, _)| k.clone())
            .collect();
        for k in &old {
            self.containers.remove(k);
        }
        old
    }

    /// The container an API path names: its key, its full id, its name (one that is followed
    /// rather than removed first), or a unique prefix of its id.
    pub fn find(&self, reference: &str) -> Result<&str, Lookup> {
        if let Some((k, _)) = self.containers.get_key_value(reference) {
            return Ok(k);
        }
        let by = |pred: &dyn Fn(&Tracked) -> bool| -> Vec<&str> {
            let mut hits: Vec<(&str, bool)> = self.containers.iter().filter(|(_, t)| pred(t)).map(|(k, t)| (k.as_str(), t.removed())).collect();
            if hits.iter().any(|(_, removed)| !removed) {
                hits.retain(|(_, removed)| !removed);
            }
            hits.into_iter().map(|(k, _)| k).collect()
        };
        for hits in [by(&|t| t.stored.listed.id == reference), by(&|t| t.stored.listed.name == reference), by(&|t| t.stored.listed.id.starts_with(reference))] {
            match hits.len() {
                0 => continue,
                1 => return Ok(hits[0]),
                n => return Err(Lookup::Ambiguous(n)),
            }
        }
        Err(Lookup::Unknown)
    }

    /// The executables of every followed container (drift), for the metrics.
    pub fn drift(&self) -> impl Iterator<Item = (&Tracked, &[PathBuf])> {
        self.containers.values().filter(|t| !t.removed()).map(|t| (t, t.stored.executables.as_slice()))
    }
}

/// Why a reference named no one container.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup {
    /// No container has that key, id, name or id prefix.
    Unknown,
    /// Several do.
    Ambiguous(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(id: &str, name: &str, ns: Option<&str>) -> ListedContainer {
        let runtime = if ns.is_some() { Runtime::Containerd } else { Runtime::Docker };
        let mut l = ListedContainer::new(runtime, ns.map(str::to_string), id.into(), name.into());
        l.running = Some(true);
        l
    }

    #[test]
    fn reconcile_follows_new_containers_and_marks_the_missing_ones_removed_in_scope_only() {
        let t0 = SystemTime::UNIX_EPOCH;
        let t1 = t0 + Duration::from_secs(10);
        let mut r = Registry::default();
        let ns = vec!["k8s.io".to_string()];
        let out = r.reconcile(Runtime::Docker, &[], vec![listed("aaa1", "web", None), listed("bbb2", "db", None)], t0);
        assert_eq!(out.save.len(), 2);
        r.reconcile(Runtime::Containerd, &ns, vec![listed("ccc3", "app", Some("k8s.io"))], t0);
        // web goes away; containerd's listing does not touch Docker's containers.
        let out = r.reconcile(Runtime::Docker, &[], vec![listed("bbb2", "db", None)], t1);
        assert_eq!(out.save.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["docker/aaa1"]);
        assert_eq!(r.containers["docker/aaa1"].stored.removed_at, Some(t1));
        assert!(!r.containers["containerd/k8s.io/ccc3"].removed());
        assert_eq!(r.find("web"), Ok("docker/aaa1"));
        assert_eq!(r.find("ccc"), Ok("containerd/k8s.io/ccc3"));
        assert_eq!(r.find("zzz"), Err(Lookup::Unknown));
        // A new container named like the removed one wins the name.
        r.reconcile(Runtime::Docker, &[], vec![listed("bbb2", "db", None), listed("ddd4", "web", None)], t1);
        assert_eq!(r.find("web"), Ok("docker/ddd4"));
        assert_eq!(r.expire(t1 + Duration::from_secs(5), Duration::from_secs(60)), Vec::<String>::new());
        assert_eq!(r.expire(t1 + Duration::from_secs(60), Duration::from_secs(60)), ["docker/aaa1"]);
    }

    #[test]
    fn only_what_may_have_changed_is_due() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        let mut r = Registry::default();
        r.reconcile(Runtime::Docker, &[], vec![listed("a", "a", None)], now);
        let t = r.containers.get_mut("docker/a").unwrap();
        assert!(t.due(now, Duration::from_secs(30)), "new: due");
        t.dirty = false;
        t.stored.last_scan = Some(now);
        assert!(!t.due(now + Duration::from_secs(29), Duration::from_secs(30)));
        assert!(t.due(now + Duration::from_secs(30), Duration::from_secs(30)));
        t.stored.listed.running = Some(false);
        assert!(!t.due(now + Duration::from_secs(300), Duration::from_secs(30)), "stopped and scanned since");
        t.dirty = true;
        assert!(t.due(now, Duration::from_secs(30)), "stopped since its last scan: one more");
    }
}
