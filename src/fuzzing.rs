//! The parsers of input rodiff does not control, for the fuzz targets in `fuzz/` (feature
//! `fuzzing`; not a stable API). Each item is the library's own function, re-exported or wrapped
//! where its type is private; nothing is reimplemented here.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

pub use crate::layer::btrfs::ioctl::{parse_refs, InodeItem, Key, INODE_EXTREF, INODE_ITEM, INODE_REF};
pub use crate::mountinfo::{parse as parse_mountinfo, unescape as unescape_mountinfo};
pub use crate::resolve::containerd::mounts::{parse as parse_snapshot_mounts, Mount as SnapshotMount, SnapshotFiles};
pub use crate::resolve::containerd::record;

/// `/proc/<pid>/cgroup`, one line: hierarchy id, controllers, path (plain absolute paths only).
pub fn parse_cgroup_line(line: &str) -> Option<(&str, &str, &Path)> {
    crate::resolve::cgroup::parse_line(line)
}

/// An `overlay.redirect` value: whether it is absolute and its components, or why it is refused.
pub fn parse_redirect(value: &[u8]) -> Result<(bool, Vec<CString>), &'static str> {
    crate::layer::overlay::redirect::parse(value).map(|r| (r.absolute, r.components))
}

/// The items of a `TREE_SEARCH_V2` result buffer.
pub fn walk_search_buffer(buf: &[u8], count: usize, visit: impl FnMut(Key, &[u8])) -> io::Result<Option<Key>> {
    crate::layer::btrfs::ioctl::walk_items(buf, count, visit)
}

/// The events of a fanotify read buffer: mask, descriptor, info records.
pub fn walk_fanotify_events(buf: &[u8], event: impl FnMut(u64, i32, &[u8])) -> io::Result<()> {
    crate::watch::fanotify::walk_events(buf, event)
}

/// The directory handles and names of one fanotify event's info records.
pub fn walk_fanotify_records(info: &[u8], record: impl FnMut(&[u8], &[u8])) {
    crate::watch::fanotify::walk_records(info, record)
}

/// Docker: the `Api-Version` header of a `/_ping` response, as (major, minor).
pub fn parse_api_version(response: &str) -> Option<(usize, usize)> {
    crate::resolve::docker::ping::parse_api_version(response).map(|v| (v.major_version, v.minor_version))
}

/// Docker: the id a layerdb file (`mount-id`, `init-id`) holds.
pub fn layerdb_id(text: &[u8]) -> Option<&str> {
    crate::resolve::docker::layerdb_id(text)
}

/// What rodiff reads of a Docker inspect response (`GET /containers/{id}/json`), given as JSON.
#[derive(Debug)]
pub struct Inspected {
    /// `State` says the container is being removed.
    pub removing: bool,
    /// Docker's data root as the container's own files show it.
    pub data_root: Option<PathBuf>,
    /// overlay2's upper and lower directories (or why not).
    pub overlay: Result<(String, Vec<String>), &'static str>,
    /// Mount destinations.
    pub mount_destinations: Vec<PathBuf>,
}

/// Parses an inspect response as bollard does, then reads from it what `resolve` reads; `None`
/// when bollard does not accept the JSON.
pub fn inspect(json: &[u8]) -> Option<Inspected> {
    use crate::resolve::docker;
    let inspect: bollard::models::ContainerInspectResponse = serde_json::from_slice(json).ok()?;
    let id = inspect.id.clone().unwrap_or_default();
    let data = inspect.graph_driver.clone().unwrap_or_default().data;
    Some(Inspected {
        removing: inspect.state.as_ref().is_some_and(docker::removing),
        data_root: docker::root_from_container_files(&inspect, &id),
        overlay: docker::overlay_dirs(&data).map(|(u, l)| (u.to_string(), l.into_iter().map(str::to_string).collect())),
        mount_destinations: docker::mount_destinations(&inspect),
    })
}

/// Docker: the overlay2 xattr namespace `/info`'s `SecurityOptions` implies (`true`: `user.`).
pub fn daemon_is_rootless(security_options: &[String]) -> bool {
    crate::resolve::docker::namespace_of_daemon(security_options) == crate::layer::XattrNamespace::User
}
