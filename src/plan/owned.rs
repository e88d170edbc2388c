//! Ownership evidence: directories the image gives the container's own user, covered although no
//! write showed there yet.
//!
//! A package that makes `/var/lib/<service>` (or `/var/log/<service>`, `/run/<service>` …) owned by
//! the service's user made it writable for that service: data written only at a graceful stop, on
//! the first backup or on a rare path goes there, and a plan from a short observation would miss
//! it. So a directory the image ships that is
//! - owned by a non-root uid the container's processes run as (and writable by its owner), or
//!   owned by a non-root group they run as and group-writable,
//! - in a place the rule table has for state or data (a place rule matches it: `/var/lib/<name>`,
//!   `/var/cache/<name>`, `/var/log`, `/var/spool/<name>`, `/run`, `/srv/<name>`, `/home/<user>`
//!   …; never `/etc/<service>`, which is configuration),
//! - and not at or below one of the container's own mounts,
//!
//! is covered as if a write had shown there, and marked as anticipated. A directory owned by root
//! (uid 0 with no group the processes run as, or a group they are in that cannot write it) never
//! is.
//!
//! **Cost.** Candidates are found without walking the image: for each place rule, the literal
//! directory its pattern starts with (`/var/lib` for `/var/lib/*`) is looked at to depth 2 — that
//! directory, the directories in it, and the directories in those — through the image view (one
//! listing per directory at depth 0 and 1, and a `stat` per entry; no file is read). On a Debian
//! service image that is about 15 directories listed and 100–200 entries looked at: a few
//! milliseconds against the diff's own cost.

use std::collections::BTreeSet;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::rules::{Matcher, Rules};
use crate::error::Result;
use crate::layer::image::ImageView;
use crate::model::Metadata;

/// How deep below a rule's literal directory candidates are looked for.
pub const DEPTH: usize = 2;

/// Who the container's processes run as, and how that is known: the ids whose directories the
/// planner anticipates writes to ([`super::PlanInput::run_as`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunAs {
    /// User ids (root among them or not: root-owned directories never count).
    pub uids: BTreeSet<u32>,
    /// Group ids.
    pub gids: BTreeSet<u32>,
    /// How they are known, completing "owned by uid 100, which …": `the container's processes run
    /// as` (a running container, from `/proc`), or `the container's user (redis) is` (its
    /// configuration).
    pub source: String,
}

impl RunAs {
    /// Why `m`, a directory's owner and mode, says the container's user may write there; `None`
    /// when it does not.
    pub fn evidence(&self, m: &Metadata) -> Option<String> {
        if m.uid != 0 && m.mode & 0o200 != 0 && self.uids.contains(&m.uid) {
            return Some(format!("owned by uid {}, which {}", m.uid, self.source));
        }
        if m.gid != 0 && m.mode & 0o020 != 0 && self.gids.contains(&m.gid) {
            return Some(format!("group-writable and owned by gid {}, which {}", m.gid, self.source));
        }
        None
    }
}

/// A directory covered on ownership evidence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Owned {
    /// The image's directory.
    pub dir: PathBuf,
    /// Why, in words ([`RunAs::evidence`]).
    pub evidence: String,
}

/// The directories the image gives the container's user in places the rule table has for state
/// or data, in path order, leaving out those at or below `mounts` (see the module documentation).
pub(super) fn owned(image: &dyn ImageView, rules: &Rules, run_as: &RunAs, mounts: &[PathBuf]) -> Result<Vec<Owned>> {
    let roots: BTreeSet<PathBuf> = rules
        .iter()
        .filter_map(|r| match &r.matcher {
            Matcher::Path(pattern) => literal_prefix(pattern),
            _ => None,
        })
        .collect();
    let mut seen = BTreeSet::new();
    let mut found = Vec::new();
    let mut consider = |dir: PathBuf, m: &Metadata, found: &mut Vec<Owned>| {
        if !seen.insert(dir.clone()) || mounts.iter().any(|mount| dir.starts_with(mount)) {
            return;
        }
        if let Some(evidence) = run_as.evidence(m) {
            if rules.place(&dir).is_some() {
                found.push(Owned { dir, evidence });
            }
        }
    };
    for root in roots {
        let Some((crate::model::FileType::Dir, m)) = image.stat(&root)? else { continue };
        consider(root.clone(), &m, &mut found);
        let mut level = vec![root];
        for _ in 0..DEPTH {
            let mut next = Vec::new();
            for dir in &level {
                for (sub, m) in image.subdirs(dir)? {
                    consider(sub.clone(), &m, &mut found);
                    next.push(sub);
                }
            }
            level = next;
        }
    }
    found.sort_by(|a, b| crate::model::path_order(a.dir.as_os_str().as_bytes(), b.dir.as_os_str().as_bytes()));
    Ok(found)
}

/// The directory a place pattern starts with: its components up to the first glob (`/var/lib` for
/// `/var/lib/*`); `None` for `/` itself (the whole image is not a place to look through).
fn literal_prefix(pattern: &Path) -> Option<PathBuf> {
    let mut prefix = PathBuf::from("/");
    for component in pattern.components() {
        match component {
            Component::Normal(name) if !name.as_bytes().iter().any(|b| matches!(b, b'*' | b'?')) => prefix.push(name),
            Component::Normal(_) => break,
            _ => {}
        }
    }
    (prefix != Path::new("/")).then_some(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_prefixes() {
        assert_eq!(literal_prefix(Path::new("/var/lib/*")), Some("/var/lib".into()));
        assert_eq!(literal_prefix(Path::new("/tmp")), Some("/tmp".into()));
        assert_eq!(literal_prefix(Path::new("/opt/*/cache")), Some("/opt".into()));
        assert_eq!(literal_prefix(Path::new("/*")), None);
        assert_eq!(literal_prefix(Path::new("/")), None);
    }

    #[test]
    fn evidence_needs_a_non_root_owner_that_can_write() {
        let run_as = RunAs { uids: [0, 100].into(), gids: [0, 102].into(), source: "the container's processes run as".into() };
        let m = |mode, uid, gid| Metadata { mode, uid, gid, size: 0, mtime_sec: 0, mtime_nsec: 0 };
        assert_eq!(run_as.evidence(&m(0o750, 100, 102)).unwrap(), "owned by uid 100, which the container's processes run as");
        assert_eq!(run_as.evidence(&m(0o1775, 0, 102)).unwrap(), "group-writable and owned by gid 102, which the container's processes run as");
        assert!(run_as.evidence(&m(0o755, 0, 0)).is_none(), "root-owned");
        assert!(run_as.evidence(&m(0o1777, 0, 0)).is_none(), "root-owned, even when anyone may write");
        assert!(run_as.evidence(&m(0o755, 0, 102)).is_none(), "the group cannot write");
        assert!(run_as.evidence(&m(0o555, 100, 102)).is_none(), "the owner cannot write");
        assert!(run_as.evidence(&m(0o755, 33, 33)).is_none(), "another user's");
    }
}
