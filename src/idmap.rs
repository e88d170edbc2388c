//! The ids a user-namespaced container sees, from the ids its layer stores.
//!
//! A container in a user namespace of its own — rootless Podman, Podman's `--uidmap`, Docker's
//! `userns-remap` — has its files stored under host ids: the container's uid 100 is the host's
//! 1000099 when the namespace maps 1..65536 to 1000000..1065535. Its layer, its image's layers and
//! `/proc/<pid>/status` all give host ids; a plan must speak the container's (`--tmpfs
//! /run/redis:uid=100`, compose, Kubernetes). The map is read from the running container's init
//! process (`/proc/<pid>/uid_map`, `gid_map`: `inside outside count` per line, `outside` in this
//! process's namespace, the host's).

use std::io;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::layer::image::ImageView;
use crate::model::{FileType, Metadata};

/// The id the kernel shows for a host id the namespace does not map (`overflowuid`).
pub const OVERFLOW_ID: u32 = 65534;

/// One line of a `uid_map`/`gid_map`: `count` ids from `inside` in the namespace are `outside` on
/// the host.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Extent {
    inside: u32,
    outside: u32,
    count: u32,
}

/// A user namespace's mapping, read from the host's side: host ids to the container's.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IdMap {
    uids: Vec<Extent>,
    gids: Vec<Extent>,
}

impl IdMap {
    /// The mapping of the user namespace process `pid` is in (`proc_root` is the host's `/proc`);
    /// `None` for the host's own namespace (the identity), or when the process is gone.
    pub fn of_process(proc_root: &Path, pid: u32) -> io::Result<Option<IdMap>> {
        let dir = proc_root.join(pid.to_string());
        let read = |name: &str| match std::fs::read_to_string(dir.join(name)) {
            Ok(text) => Ok(Some(parse(&text))),
            Err(e) if e.kind() == io::ErrorKind::NotFound || e.raw_os_error() == Some(libc::ESRCH) => Ok(None),
            Err(e) => Err(e),
        };
        let (Some(uids), Some(gids)) = (read("uid_map")?, read("gid_map")?) else { return Ok(None) };
        let map = IdMap { uids, gids };
        Ok((!map.is_identity()).then_some(map))
    }

    /// Whether every id is itself (the initial namespace: `0 0 4294967295`).
    pub fn is_identity(&self) -> bool {
        let identity = |extents: &[Extent]| extents.iter().all(|e| e.inside == e.outside);
        identity(&self.uids) && identity(&self.gids)
    }

    /// The container's uid for host uid `host` ([`OVERFLOW_ID`] when it is not mapped).
    pub fn uid(&self, host: u32) -> u32 {
        inside(&self.uids, host)
    }

    /// The container's gid for host gid `host` ([`OVERFLOW_ID`] when it is not mapped).
    pub fn gid(&self, host: u32) -> u32 {
        inside(&self.gids, host)
    }

    /// `metadata` with the container's owner and group.
    pub fn metadata(&self, metadata: Metadata) -> Metadata {
        Metadata { uid: self.uid(metadata.uid), gid: self.gid(metadata.gid), ..metadata }
    }
}

fn inside(extents: &[Extent], host: u32) -> u32 {
    extents
        .iter()
        .find(|e| host >= e.outside && u64::from(host) < u64::from(e.outside) + u64::from(e.count))
        .map_or(OVERFLOW_ID, |e| e.inside + (host - e.outside))
}

/// The lines of a `uid_map` or `gid_map` (malformed ones are skipped).
fn parse(text: &str) -> Vec<Extent> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace().map(str::parse::<u32>);
            match (fields.next(), fields.next(), fields.next()) {
                (Some(Ok(inside)), Some(Ok(outside)), Some(Ok(count))) => Some(Extent { inside, outside, count }),
                _ => None,
            }
        })
        .collect()
}

/// An image as the container sees it: the owners of its entries mapped through `ids`.
pub struct MappedImage<'a> {
    /// The image as stored (host ids).
    pub inner: &'a dyn ImageView,
    /// The container's mapping.
    pub ids: &'a IdMap,
}

impl ImageView for MappedImage<'_> {
    fn stat(&self, path: &Path) -> Result<Option<(FileType, Metadata)>> {
        Ok(self.inner.stat(path)?.map(|(t, m)| (t, self.ids.metadata(m))))
    }

    fn has_entries(&self, dir: &Path) -> Result<bool> {
        self.inner.has_entries(dir)
    }

    fn subdirs(&self, dir: &Path) -> Result<Vec<(PathBuf, Metadata)>> {
        Ok(self.inner.subdirs(dir)?.into_iter().map(|(p, m)| (p, self.ids.metadata(m))).collect())
    }

    fn read_file(&self, path: &Path, max: usize) -> Result<Option<Vec<u8>>> {
        self.inner.read_file(path, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_ids_become_the_containers() {
        // Rootless Podman: the service's user is the container's root, then a subordinate range.
        let map = IdMap { uids: parse("         0       1000          1\n         1    1000000      65536\n"), gids: parse("0 1000 1\n1 1000000 65536\n") };
        assert!(!map.is_identity());
        assert_eq!(map.uid(1000), 0);
        assert_eq!(map.uid(1000099), 100);
        assert_eq!(map.gid(1000100), 101);
        assert_eq!(map.uid(0), OVERFLOW_ID, "the host's root is not mapped");
        assert_eq!(map.uid(1065536), OVERFLOW_ID, "past the range");
        let m = Metadata { mode: 0o755, uid: 1000099, gid: 1000100, size: 0, mtime_sec: 0, mtime_nsec: 0 };
        assert_eq!((map.metadata(m).uid, map.metadata(m).gid), (100, 101));
    }

    #[test]
    fn the_initial_namespace_is_the_identity() {
        let map = IdMap { uids: parse("0 0 4294967295\n"), gids: parse("0 0 4294967295\n") };
        assert!(map.is_identity());
        assert_eq!(map.uid(4_294_967_294), 4_294_967_294, "no overflow at the top of the range");
        assert_eq!(parse("x y z\n1 2\n"), vec![], "malformed lines are skipped");
    }

    #[test]
    fn this_process_is_in_the_hosts_namespace_or_a_real_one() {
        // Whatever namespace the test runs in, reading its own map works; the host's is None.
        let map = IdMap::of_process(Path::new("/proc"), std::process::id()).unwrap();
        if let Some(map) = map {
            assert!(!map.is_identity());
        }
        assert_eq!(IdMap::of_process(Path::new("/proc"), u32::MAX).unwrap(), None, "a process that is gone");
    }
}
