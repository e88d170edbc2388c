//! From writes to mounts: where each write is covered, and what each mount is.
//!
//! A write is covered at the place a rule names (`/var/lib/<service>`, `/run/<name>`, `/tmp` …), or
//! where it happens when no rule matches (the smallest scope). Mounts that fall below another mount
//! are merged into it, so the plan is the smallest set of mounts that covers every write. Then each
//! mount is a tmpfs when it holds runtime state and the image ships nothing there, and a volume
//! otherwise: Docker fills a new volume with the image's files, a tmpfs would hide them.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::owned::Owned;
use super::rules::{Class, Rule, Rules};
use super::writes::Write;
use super::{MountKind, PlannedMount, Uncovered};
use crate::error::Result;
use crate::layer::image::ImageView;
use crate::model::{path_order, Change, FileType, Metadata};

/// Mode and owner Docker gives a new volume at a path the image does not have.
const NEW_VOLUME: (u32, u32, u32) = (0o755, 0, 0);

/// The mounts that cover a set of writes, and the writes nothing can cover.
#[derive(Debug, Default)]
pub(super) struct Covered {
    pub mounts: Vec<PlannedMount>,
    pub uncovered: Vec<Uncovered>,
}

/// A mount being planned: the rule that placed it, the classes of its writes, what it covers.
#[derive(Default)]
struct Candidate<'r> {
    rule: Option<&'r Rule>,
    /// The file rule that classified a write, when no place rule matched.
    file_rule: Option<&'r Rule>,
    data: bool,
    covers: Vec<PathBuf>,
    /// Directories covered on ownership evidence, with it.
    owned: Vec<(PathBuf, String)>,
}

/// Places and classifies mounts for `writes` (found in `changes`) and for the directories `owned`
/// by the container's user (each where a place rule puts it, as a write there would be).
pub(super) fn cover(writes: &[Write], owned: &[Owned], changes: &[Change], image: &dyn ImageView, rules: &Rules) -> Result<Covered> {
    let own: HashMap<&Path, Metadata> = changes
        .iter()
        .filter(|c| c.file_type == FileType::Dir)
        .filter_map(|c| c.metadata.map(|m| (c.path.as_path(), m)))
        .collect();
    let mut covered = Covered::default();
    let mut candidates: BTreeMap<PathBuf, Candidate> = BTreeMap::new();
    for (place, rule) in rules.forced_places() {
        candidates.insert(place.to_path_buf(), Candidate { rule: Some(rule), data: rule.class == Class::Data, ..Default::default() });
    }

    for write in writes {
        let change = &changes[write.change];
        let (place, rule, file_rule, class) = match rules.place(&write.target) {
            Some((place, rule)) => (place, Some(rule), None, rule.class),
            None => {
                let file_rule = rules.classify(change);
                let class = file_rule.map_or(Class::Data, |r| r.class);
                (smallest_safe(write, class, image, &own)?, None, file_rule, class)
            }
        };
        if place.parent().is_none() {
            covered.uncovered.push(Uncovered {
                path: change.path.clone(),
                reason: "a write in / itself: no mount can cover it (the application must write elsewhere)".into(),
            });
            continue;
        }
        let candidate = candidates.entry(place).or_default();
        candidate.rule = candidate.rule.or(rule);
        candidate.file_rule = candidate.file_rule.or(file_rule);
        candidate.data |= class == Class::Data;
        candidate.covers.push(change.path.clone());
    }
    for o in owned {
        // `owned` keeps only directories a place rule matches.
        let Some((place, rule)) = rules.place(&o.dir) else { continue };
        let candidate = candidates.entry(place).or_default();
        candidate.rule = candidate.rule.or(Some(rule));
        candidate.data |= rule.class == Class::Data;
        candidate.owned.push((o.dir.clone(), o.evidence.clone()));
    }

    // Merge mounts below other mounts into them (BTreeMap order puts a directory before its
    // contents); mounts the user asked for stay where they are.
    let mut kept: Vec<(PathBuf, Candidate)> = Vec::new();
    for (place, candidate) in candidates {
        let forced = candidate.rule.is_some_and(|r| r.kind.is_some());
        match kept.iter_mut().rev().find(|(p, _)| place.starts_with(p)) {
            Some((_, outer)) if !forced => {
                outer.covers.extend(candidate.covers);
                outer.owned.extend(candidate.owned);
            }
            _ => kept.push((place, candidate)),
        }
    }

    for (place, mut candidate) in kept {
        candidate.covers.sort_by(|a, b| path_order(a.as_os_str().as_bytes(), b.as_os_str().as_bytes()));
        candidate.covers.dedup();
        candidate.owned.sort_by(|a, b| path_order(a.0.as_os_str().as_bytes(), b.0.as_os_str().as_bytes()));
        covered.mounts.push(describe(place, candidate, image, &own)?);
    }
    Ok(covered)
}

/// Where a write no place rule claims is covered: where it happens. An added directory that would
/// hold a volume moves up to its parent when Docker would make the new volume with another owner
/// or mode than the application gave the directory (a non-root service could not use it).
fn smallest_safe(write: &Write, class: Class, image: &dyn ImageView, own: &HashMap<&Path, Metadata>) -> Result<PathBuf> {
    let place = write.target.clone();
    if !write.premade || class != Class::Data || image.stat(&place)?.is_some() {
        return Ok(place);
    }
    let wanted = own.get(place.as_path()).map(|m| (m.mode, m.uid, m.gid));
    match place.parent() {
        Some(parent) if parent.parent().is_some() && wanted.is_some_and(|w| w != NEW_VOLUME) => Ok(parent.to_path_buf()),
        _ => Ok(place),
    }
}

/// The planned mount for a candidate: its kind, owner, mode and reason.
fn describe(place: PathBuf, c: Candidate, image: &dyn ImageView, own: &HashMap<&Path, Metadata>) -> Result<PlannedMount> {
    let in_image = image.stat(&place)?.filter(|(t, _)| *t == FileType::Dir).map(|(_, m)| m);
    let populated = in_image.is_some() && image.has_entries(&place)?;
    let class = match c.rule {
        Some(rule) => rule.class,
        None if c.data => Class::Data,
        None => Class::State,
    };
    let kind = match c.rule.and_then(|r| r.kind) {
        Some(kind) => kind,
        None if class == Class::State && !populated => MountKind::Tmpfs,
        None => MountKind::Volume,
    };
    let (mode, uid, gid) = own
        .get(place.as_path())
        .or(in_image.as_ref())
        .map_or(NEW_VOLUME, |m| (m.mode, m.uid, m.gid));

    let mut why = match (c.rule, c.file_rule) {
        (Some(rule), _) | (None, Some(rule)) if class == rule.class => rule.reason.clone(),
        _ => "written by the application, and no rule says it is disposable".into(),
    };
    let anticipated = c.covers.is_empty() && !c.owned.is_empty();
    let mut evidence: Vec<String> = Vec::new();
    for (dir, e) in &c.owned {
        let e = if *dir == place { e.clone() } else { format!("{}: {e}", dir.display()) };
        if !evidence.contains(&e) {
            evidence.push(e);
        }
    }
    let evidence = (!evidence.is_empty()).then(|| evidence.join("; "));
    if let Some(e) = &evidence {
        why = if anticipated {
            format!("{why}; anticipated, no write seen yet: {e}")
        } else {
            format!("{why}; also {e}")
        };
    }
    let how = match kind {
        MountKind::Tmpfs if populated => "a tmpfs, as asked: it hides what the image ships here".to_string(),
        MountKind::Tmpfs => format!(
            "a tmpfs owned by {uid}:{gid}, mode {mode:o}, {}",
            if in_image.is_some() { "like the directory it replaces" } else { "as the container made it" }
        ),
        MountKind::Volume if class == Class::State => "the image ships files here and a tmpfs would hide them: a volume, \
            which Docker fills with the image's content (Kubernetes: an emptyDir seeded by an init container)"
            .to_string(),
        MountKind::Volume if populated => "kept in a volume, which Docker fills with the image's content \
            (Kubernetes: a persistent volume seeded by an init container)"
            .to_string(),
        MountKind::Volume if in_image.is_none() && (mode, uid, gid) != NEW_VOLUME => format!(
            "kept in a volume; note that Docker makes a new volume owned by 0:0, mode 755, where the container made {uid}:{gid}, mode {mode:o}"
        ),
        MountKind::Volume => "kept in a volume".to_string(),
    };
    Ok(PlannedMount {
        path: place,
        kind,
        name: String::new(),
        persistent: class == Class::Data,
        seed: populated && kind == MountKind::Volume,
        uid,
        gid,
        mode,
        rule: c.rule.or(c.file_rule).map_or_else(|| "default".to_string(), Rule::label),
        reason: format!("{why}; {how}"),
        covers: c.covers,
        anticipated,
        anticipates: c.owned.into_iter().map(|(dir, _)| dir).collect(),
        evidence,
    })
}
