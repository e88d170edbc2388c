//! What a snapshot's mounts (snapshots service `Mounts`) say about where its files are.
//!
//! - overlayfs: one `overlay` mount with `upperdir=`, `lowerdir=` (topmost first), `workdir=`,
//!   and maybe `index=off`, `userxattr` (rootless), `volatile`, `redirect_dir=`, `metacopy=`;
//!   or, for a snapshot whose parent is the empty snapshot, one read-write `bind` mount of the
//!   upper directory;
//! - btrfs: one `btrfs` mount of the filesystem's device with `subvolid=N`.
//!
//! Options that could change what the directories mean are refused rather than guessed at.

use std::path::PathBuf;

use crate::layer::XattrNamespace;

/// One mount as the snapshots service returns it (`containerd.types.Mount`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Mount {
    /// `overlay`, `bind`, `btrfs`, …
    pub kind: String,
    /// The device, or the directory of a bind mount.
    pub source: String,
    /// fstab-style options.
    pub options: Vec<String>,
}

/// Where a writable snapshot's files are, in the paths containerd uses (host paths).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SnapshotFiles {
    /// An overlay upper directory over lower directories (topmost first; none for a bind mount).
    Overlay {
        /// The upper (writable) directory.
        upper: PathBuf,
        /// The lower directories, topmost first.
        lowers: Vec<PathBuf>,
        /// The xattr namespace of the overlay markers.
        xattr: XattrNamespace,
    },
    /// A btrfs subvolume, known only by its id.
    Btrfs {
        /// The filesystem's device (the mount source).
        device: String,
        /// `subvolid=`.
        subvolid: u64,
    },
}

/// Interprets the mounts of a writable (active) snapshot. The error names what is not understood.
pub fn parse(mounts: &[Mount]) -> Result<SnapshotFiles, String> {
    let [mount] = mounts else {
        return Err(format!("{} mounts for one snapshot (expected one)", mounts.len()));
    };
    match mount.kind.as_str() {
        "overlay" => overlay(mount),
        "bind" | "rbind" => bind(mount),
        "btrfs" => btrfs(mount),
        other => Err(format!("snapshot mount type {other:?} (supported: overlay, bind, btrfs)")),
    }
}

fn overlay(mount: &Mount) -> Result<SnapshotFiles, String> {
    let mut upper = None;
    let mut lowers = Vec::new();
    let mut xattr = XattrNamespace::Trusted;
    for option in &mount.options {
        let (name, value) = option.split_once('=').map_or((option.as_str(), None), |(n, v)| (n, Some(v)));
        match (name, value) {
            ("upperdir", Some(dir)) => upper = Some(PathBuf::from(dir)),
            ("lowerdir", Some(dirs)) => lowers = dirs.split(':').filter(|d| !d.is_empty()).map(PathBuf::from).collect(),
            ("workdir", Some(_)) => {}
            ("userxattr", None) => xattr = XattrNamespace::User,
            // None of these changes what the upper directory records.
            ("index", Some("off")) | ("volatile", None) | ("rw", None) => {}
            // Renamed directories and metadata-only copy-ups: the overlay engine reads both.
            ("redirect_dir", Some("on" | "follow" | "nofollow" | "off")) | ("metacopy", Some("on" | "off")) => {}
            _ => return Err(format!("overlay mount option {option:?} is not supported")),
        }
    }
    let upper = upper.ok_or("overlay mount without upperdir (a read-only view has no writable layer)")?;
    if lowers.is_empty() {
        return Err("overlay mount without lowerdir".into());
    }
    Ok(SnapshotFiles::Overlay { upper, lowers, xattr })
}

/// A snapshot directly on top of the empty snapshot: containerd bind-mounts its directory.
fn bind(mount: &Mount) -> Result<SnapshotFiles, String> {
    let mut writable = false;
    for option in &mount.options {
        match option.as_str() {
            "rw" => writable = true,
            "bind" | "rbind" => {}
            "ro" => return Err("read-only bind mount (a view has no writable layer)".into()),
            other => return Err(format!("bind mount option {other:?} is not supported")),
        }
    }
    if !writable || mount.source.is_empty() {
        return Err(format!("bind mount of {:?} is not a writable snapshot", mount.source));
    }
    Ok(SnapshotFiles::Overlay { upper: PathBuf::from(&mount.source), lowers: Vec::new(), xattr: XattrNamespace::Trusted })
}

fn btrfs(mount: &Mount) -> Result<SnapshotFiles, String> {
    let mut subvolid = None;
    for option in &mount.options {
        match option.split_once('=') {
            Some(("subvolid", id)) => subvolid = Some(id.parse::<u64>().map_err(|_| format!("btrfs mount option {option:?}"))?),
            None if option == "rw" => {}
            None if option == "ro" => return Err("read-only btrfs mount (a view has no writable layer)".into()),
            _ => return Err(format!("btrfs mount option {option:?} is not supported")),
        }
    }
    let subvolid = subvolid.ok_or("btrfs mount without subvolid")?;
    Ok(SnapshotFiles::Btrfs { device: mount.source.clone(), subvolid })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(kind: &str, source: &str, options: &[&str]) -> Vec<Mount> {
        vec![Mount { kind: kind.into(), source: source.into(), options: options.iter().map(|s| s.to_string()).collect() }]
    }

    #[test]
    fn overlay_upper_and_lowers_topmost_first() {
        let m = mount(
            "overlay",
            "overlay",
            &["index=off", "workdir=/r/snapshots/3/work", "upperdir=/r/snapshots/3/fs", "lowerdir=/r/snapshots/2/fs:/r/snapshots/1/fs"],
        );
        assert_eq!(
            parse(&m).unwrap(),
            SnapshotFiles::Overlay {
                upper: "/r/snapshots/3/fs".into(),
                lowers: vec!["/r/snapshots/2/fs".into(), "/r/snapshots/1/fs".into()],
                xattr: XattrNamespace::Trusted,
            }
        );
    }

    #[test]
    fn userxattr_selects_the_user_namespace() {
        let m = mount("overlay", "overlay", &["userxattr", "upperdir=/u", "lowerdir=/l", "workdir=/w"]);
        let SnapshotFiles::Overlay { xattr, .. } = parse(&m).unwrap() else { panic!() };
        assert_eq!(xattr, XattrNamespace::User);
    }

    #[test]
    fn one_layer_bind_form() {
        let m = mount("bind", "/r/snapshots/5/fs", &["rw", "rbind"]);
        assert_eq!(
            parse(&m).unwrap(),
            SnapshotFiles::Overlay { upper: "/r/snapshots/5/fs".into(), lowers: vec![], xattr: XattrNamespace::Trusted }
        );
        assert!(parse(&mount("bind", "/r/snapshots/5/fs", &["ro", "rbind"])).unwrap_err().contains("read-only"));
    }

    #[test]
    fn unknown_options_are_refused_by_name() {
        let m = mount("overlay", "overlay", &["upperdir=/u", "lowerdir=/l", "nfs_export=on"]);
        assert!(parse(&m).unwrap_err().contains("\"nfs_export=on\""));
        assert!(parse(&mount("overlay", "overlay", &["upperdir=/u", "lowerdir=/l", "metacopy=on", "redirect_dir=on"])).is_ok());
        let m = mount("overlay", "overlay", &["upperdir=/u", "lowerdir=/l", "index=on"]);
        assert!(parse(&m).unwrap_err().contains("\"index=on\""));
        assert!(parse(&mount("overlay", "overlay", &["lowerdir=/a:/b"])).unwrap_err().contains("upperdir"));
        assert!(parse(&mount("tmpfs", "tmpfs", &[])).unwrap_err().contains("\"tmpfs\""));
        assert!(parse(&[]).is_err());
    }

    #[test]
    fn btrfs_subvolid() {
        assert_eq!(parse(&mount("btrfs", "/dev/loop1", &["subvolid=258"])).unwrap(), SnapshotFiles::Btrfs {
            device: "/dev/loop1".into(),
            subvolid: 258
        });
        assert!(parse(&mount("btrfs", "/dev/loop1", &["subvolid=258", "ro"])).unwrap_err().contains("read-only"));
        assert!(parse(&mount("btrfs", "/dev/loop1", &["compress=zstd", "subvolid=1"])).unwrap_err().contains("compress"));
        assert!(parse(&mount("btrfs", "/dev/loop1", &[])).unwrap_err().contains("subvolid"));
    }
}
