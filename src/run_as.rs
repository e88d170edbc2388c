//! Who a container's processes run as, for ownership evidence in plans ([`crate::plan::RunAs`]).
//!
//! - A running container: the real and effective uids and gids of each of its processes, from
//!   `<proc>/<pid>/status` (processes often start as root and drop to the service's user; their
//!   supplementary groups are left out: root's include groups such as `adm` that say nothing about
//!   the service).
//! - A stopped one: the user its runtime configuration names ([`ResolvedContainer::user`]):
//!   Docker's `Config.User` (`redis`, `redis:adm`, `100`, `100:102`), names resolved as the
//!   runtime does, against the image's `/etc/passwd` and `/etc/group` (a user without a group
//!   gets the primary group of its passwd entry); containerd's OCI `process.user` (`uid:gid`).
//!   No user (root) anticipates nothing.

use std::collections::BTreeSet;
use std::path::Path;

use crate::error::Result;
use crate::layer::image::ImageView;
use crate::plan::RunAs;
use crate::resolve::{Processes, ResolvedContainer};

/// How much of `/etc/passwd` or `/etc/group` is read (the rest is ignored).
const ID_FILE_MAX: usize = 1 << 20;

/// Who `resolved`'s processes run as: from `/proc` while it runs (when any of its processes can
/// be read), else from its configured user; `None` when neither says (no user configured: root).
pub fn run_as(resolved: &ResolvedContainer, image: &dyn ImageView) -> Result<Option<RunAs>> {
    if let Some(found) = of_processes(&resolved.processes) {
        return Ok(Some(found));
    }
    match resolved.user.as_deref() {
        Some(user) => of_user(user, image),
        None => Ok(None),
    }
}

/// The real and effective ids of `processes` (those that vanished are skipped); `None` when none
/// could be read.
pub fn of_processes(processes: &Processes) -> Option<RunAs> {
    let mut found = RunAs { source: "the container's processes run as".into(), ..Default::default() };
    let mut read = false;
    for pid in &processes.pids {
        let Ok(status) = std::fs::read(processes.proc_root.join(pid.to_string()).join("status")) else { continue };
        if let Some((uids, gids)) = parse_status(&status) {
            found.uids.extend(uids);
            found.gids.extend(gids);
            read = true;
        }
    }
    read.then_some(found)
}

/// The real and effective uids and gids in a `/proc/<pid>/status`.
fn parse_status(status: &[u8]) -> Option<([u32; 2], [u32; 2])> {
    let text = String::from_utf8_lossy(status);
    let ids = |key: &str| -> Option<[u32; 2]> {
        let line = text.lines().find_map(|l| l.strip_prefix(key))?;
        let mut fields = line.split_whitespace().map(str::parse::<u32>);
        Some([fields.next()?.ok()?, fields.next()?.ok()?])
    };
    Some((ids("Uid:")?, ids("Gid:")?))
}

/// The ids of a configured user `USER[:GROUP]` (names or numbers), names looked up in the image;
/// `None` for root or an empty user, and for a name the image does not have (the runtime would
/// refuse to start the container).
pub fn of_user(user: &str, image: &dyn ImageView) -> Result<Option<RunAs>> {
    let (name, group) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g).filter(|g| !g.is_empty())),
        None => (user, None),
    };
    if name.is_empty() {
        return Ok(None);
    }
    let passwd = image.read_file(Path::new("/etc/passwd"), ID_FILE_MAX)?.unwrap_or_default();
    // passwd: name:password:uid:gid:...
    let entry = |pred: &dyn Fn(&[&str]) -> bool| -> Option<(u32, u32)> {
        String::from_utf8_lossy(&passwd).lines().map(|l| l.split(':').collect::<Vec<_>>()).find(|f| f.len() >= 4 && pred(f)).and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
    };
    let (uid, primary) = match name.parse::<u32>() {
        Ok(uid) => (uid, entry(&|f| f[2] == name).map_or(0, |(_, gid)| gid)),
        Err(_) => match entry(&|f| f[0] == name) {
            Some(ids) => ids,
            None => return Ok(None),
        },
    };
    let gid = match group {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => {
                let groups = image.read_file(Path::new("/etc/group"), ID_FILE_MAX)?.unwrap_or_default();
                // group: name:password:gid:members
                let found = String::from_utf8_lossy(&groups)
                    .lines()
                    .map(|l| l.split(':').collect::<Vec<_>>())
                    .find(|f| f.len() >= 3 && f[0] == g)
                    .and_then(|f| f[2].parse::<u32>().ok());
                match found {
                    Some(gid) => gid,
                    None => return Ok(None),
                }
            }
        },
    };
    if uid == 0 && gid == 0 {
        return Ok(None);
    }
    Ok(Some(RunAs {
        uids: BTreeSet::from([uid]),
        gids: BTreeSet::from([gid]),
        source: format!("the container's configured user ({user}) is"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layer::image::DirImage;

    #[test]
    fn status_ids() {
        let status = b"Name:\tredis-server\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t100\t101\t100\t100\nGid:\t102\t102\t102\t102\nGroups:\t4 102\n";
        assert_eq!(parse_status(status), Some(([100, 101], [102, 102])));
        assert_eq!(parse_status(b"Name:\tx\n"), None);
    }

    #[test]
    fn configured_users_resolve_in_the_image() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("etc")).unwrap();
        std::fs::write(tmp.path().join("etc/passwd"), "root:x:0:0:root:/root:/bin/bash\nredis:x:100:102::/var/lib/redis:/usr/sbin/nologin\n").unwrap();
        std::fs::write(tmp.path().join("etc/group"), "root:x:0:\nadm:x:4:\nredis:x:102:\n").unwrap();
        let image = DirImage::open(tmp.path()).unwrap();
        let ids = |user: &str| of_user(user, &image).unwrap().map(|r| (r.uids.into_iter().collect::<Vec<_>>(), r.gids.into_iter().collect::<Vec<_>>()));
        assert_eq!(ids("redis"), Some((vec![100], vec![102])));
        assert_eq!(ids("redis:adm"), Some((vec![100], vec![4])));
        assert_eq!(ids("100"), Some((vec![100], vec![102])), "a uid gets its passwd entry's group");
        assert_eq!(ids("1234"), Some((vec![1234], vec![0])), "a uid the image does not know: group 0, as Docker does");
        assert_eq!(ids("100:7"), Some((vec![100], vec![7])));
        assert_eq!(ids("root"), None);
        assert_eq!(ids("0"), None);
        assert_eq!(ids(""), None);
        assert_eq!(ids("nobody"), None, "not in the image");
        assert_eq!(ids("redis:nogroup"), None);
        assert!(of_user("redis", &image).unwrap().unwrap().source.contains("(redis)"));
    }
}
