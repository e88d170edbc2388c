//! Read-only plans: from a container's changes to the mounts it needs to run with a read-only root
//! filesystem.
//!
//! The planner knows neither runtimes nor filesystems. It takes the changes of a diff (kinds `A`,
//! `C`, `D`, `T`, with metadata), an [`ImageView`] for what the image ships, and a [`Rules`] table,
//! and returns a [`Plan`]: plain data that renderers ([`render`]) turn into `docker run` flags, a
//! compose fragment, a Kubernetes patch or JSON, and that bindings can hand out as is.
//!
//! How mounts are chosen:
//! 1. `writes`: every change becomes the directory that must be writable for it (an added
//!    directory may instead be made by the runtime, as a mount point); runtime-managed paths,
//!    mount points and writes below the container's own mounts are left out;
//! 2. `cover`: each such directory is covered where a rule says (`/var/lib/<service>`, `/run`,
//!    `/tmp` …), else where it is; mounts below other mounts are merged into them;
//! 3. each mount becomes a tmpfs (runtime state) or a volume (data), and a volume also whenever a
//!    tmpfs would hide files the image ships there. A tmpfs keeps the directory's owner and mode.
//!
//! Besides what the diff shows, `owned` anticipates writes: a directory the image gives the
//! user the container's processes run as ([`RunAs`]), in a place the rule table has for state or
//! data, is covered by step 2 as if a write had shown there, and the mount says so
//! ([`PlannedMount::evidence`]). [`Rules::observed_only`] turns that off.

mod cover;
pub mod names;
mod owned;
pub mod render;
pub mod rules;
mod writes;
mod yaml;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dialect::Dialect;
use crate::error::Result;
use crate::layer::image::ImageView;
use crate::model::Change;

pub use owned::RunAs;
pub use rules::{Class, Matcher, Rule, Rules};

/// The mounts a container needs to run with a read-only root filesystem.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The container the plan is for (its name).
    pub container: String,
    /// The container's image reference, when the runtime told (Kubernetes seeding needs it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// The mounts, in path order; none of them is below another.
    pub mounts: Vec<PlannedMount>,
    /// Changes that need no mount, and why (runtime-managed files, mount points, existing mounts).
    #[serde(default)]
    pub ignored: Vec<Ignored>,
    /// Writes no mount can cover (a file written directly in `/`), and why.
    #[serde(default)]
    pub uncovered: Vec<Uncovered>,
    /// The runtime whose `run` flags the plan is rendered in: `podman` for a container of
    /// Podman's service (see [`render::docker_args`]); left out for Docker.
    #[serde(default, skip_serializing_if = "Dialect::is_docker")]
    pub runtime: Dialect,
}

/// One mount of a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedMount {
    /// Where it is mounted, inside the container.
    #[serde(with = "crate::model::path_json")]
    pub path: PathBuf,
    /// What Docker mounts there.
    pub kind: MountKind,
    /// A short name derived from the path (`var-lib-postgresql`), unique in the plan and valid as a
    /// Kubernetes volume name; Docker volume names add the container's name in front.
    pub name: String,
    /// Whether the content must outlive the container (data, not runtime state): a persistent
    /// volume in Kubernetes, an `emptyDir` otherwise.
    pub persistent: bool,
    /// Whether the image ships entries here that the mount must start with: Docker copies them into
    /// a new volume; Kubernetes needs an init container to copy them.
    pub seed: bool,
    /// Owner the mount's root directory must have (a tmpfs gets it as `uid=`).
    pub uid: u32,
    /// Group the mount's root directory must have (`gid=`).
    pub gid: u32,
    /// Permission bits of the mount's root directory (`mode=`), set-id and sticky bits included.
    pub mode: u32,
    /// The rule that placed the mount (`/var/lib/*`, `--tmpfs /cache`), or `default`.
    pub rule: String,
    /// Why this mount, and why this kind, in words.
    pub reason: String,
    /// The changes that need it (the roots of added trees, changed files, written directories).
    #[serde(with = "crate::model::path_json::many")]
    pub covers: Vec<PathBuf>,
    /// No change needs it: it is there only for [`Self::anticipates`] (left out of JSON when
    /// `false`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub anticipated: bool,
    /// Directories of the image the container's user owns that it covers although no write showed
    /// there yet (left out of JSON when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty", with = "crate::model::path_json::many")]
    pub anticipates: Vec<PathBuf>,
    /// Why those are covered: `owned by uid 100, which the container's processes run as` (left out
    /// of JSON when `None`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<String>,
}

/// The kind of a planned mount.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MountKind {
    /// An in-memory filesystem, empty at every start (`--tmpfs`).
    Tmpfs,
    /// A Docker volume: Docker fills a new one with the image's content at that path.
    Volume,
}

impl MountKind {
    /// `tmpfs` or `volume`.
    pub fn name(self) -> &'static str {
        match self {
            MountKind::Tmpfs => "tmpfs",
            MountKind::Volume => "volume",
        }
    }
}

/// A change the plan needs no mount for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ignored {
    /// The changed path.
    #[serde(with = "crate::model::path_json")]
    pub path: PathBuf,
    /// Why it needs no mount.
    pub reason: String,
}

/// A write no mount can cover.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Uncovered {
    /// The changed path.
    #[serde(with = "crate::model::path_json")]
    pub path: PathBuf,
    /// Why no mount covers it.
    pub reason: String,
}

/// What the planner needs to know besides the changes and the image.
#[derive(Clone, Debug, Default)]
pub struct PlanInput {
    /// The container's name (for the plan and volume names).
    pub container: String,
    /// The container's image reference, if known.
    pub image: Option<String>,
    /// Destinations of the container's existing mounts (volumes, binds, tmpfs): writes there do not
    /// touch the root filesystem.
    pub mount_destinations: Vec<PathBuf>,
    /// Who the container's processes run as: directories the image gives them are covered on
    /// ownership evidence (unless [`Rules::observed_only`]). `None`: nothing is anticipated.
    pub run_as: Option<RunAs>,
    /// The container's runtime, for the plan's renderings ([`Plan::runtime`]).
    pub runtime: Dialect,
}

impl Plan {
    /// The mount at `path`, if the plan has one.
    pub fn mount(&self, path: &Path) -> Option<&PlannedMount> {
        self.mounts.iter().find(|m| m.path == path)
    }

    /// The plan reduced to what concerns `paths`: the mounts at or above one of them, and the
    /// ignored and uncovered entries for exactly those paths. A test that found some unexpected
    /// writes shows this: the mounts that would cover them, and why the rest need or get none.
    pub fn covering(&self, paths: &[PathBuf]) -> Plan {
        let listed = |p: &PathBuf| paths.contains(p);
        Plan {
            container: self.container.clone(),
            image: self.image.clone(),
            mounts: self.mounts.iter().filter(|m| paths.iter().any(|p| p.starts_with(&m.path))).cloned().collect(),
            ignored: self.ignored.iter().filter(|i| listed(&i.path)).cloned().collect(),
            uncovered: self.uncovered.iter().filter(|u| listed(&u.path)).cloned().collect(),
            runtime: self.runtime,
        }
    }
}

/// Plans the mounts for a container's `changes` (a diff with metadata), given its image.
pub fn plan(changes: &[Change], image: &dyn ImageView, input: &PlanInput, rules: &Rules) -> Result<Plan> {
    let found = writes::writes(changes, image, &input.mount_destinations)?;
    let owned = match &input.run_as {
        Some(run_as) if rules.anticipates() => owned::owned(image, rules, run_as, &input.mount_destinations)?,
        _ => Vec::new(),
    };
    let covered = cover::cover(&found.writes, &owned, changes, image, rules)?;
    let mut plan = Plan {
        container: input.container.clone(),
        image: input.image.clone(),
        mounts: covered.mounts,
        ignored: found.ignored,
        uncovered: covered.uncovered,
        runtime: input.runtime,
    };
    names::assign(&mut plan.mounts);
    Ok(plan)
}

#[cfg(test)]
mod tests;
