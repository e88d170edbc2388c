//! A corpus of file operations a container does, applied to a mounted tree (an overlay's merged
//! directory or a btrfs snapshot), and the image tree they start from.

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use super::bpath;

/// Directories and files of the base image.
pub const BASE_DIRS: &[&str] = &["etc", "srv/caps", "srv/data", "srv/tree/x/y", "srv/del/sub", "srv/ren/inner", "srv/mv", "tmp", "var/log", "opq", "gone"];
/// Files of the base image.
pub const BASE_FILES: &[&str] = &["etc/conf", "srv/caps/bind", "srv/caps/raw", "srv/caps/same", "srv/data/a", "srv/data/b", "srv/data/c", "srv/tree/x/y/z", "srv/del/1", "srv/del/sub/2", "srv/ren/inner/f", "srv/ren/g", "srv/mv/file", "var/log/old.log", "opq/hidden", "gone/f"];

/// Writes the base image tree into `root`.
pub fn base_tree(root: &Path) {
    for d in BASE_DIRS {
        fs::create_dir_all(root.join(d)).unwrap();
    }
    for f in BASE_FILES {
        fs::write(root.join(f), format!("base {f}\n")).unwrap();
    }
    fs::set_permissions(root.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    set_capability(&root.join("srv/caps/raw"), Some(&CAP_NET_RAW));
    set_capability(&root.join("srv/caps/same"), Some(&CAP_NET_RAW));
}

/// `cap_net_bind_service+ep` as a `security.capability` value (`vfs_cap_data`, revision 2).
pub const CAP_NET_BIND_SERVICE: [u8; 20] = cap_v2_effective(10);
/// `cap_net_raw+ep`.
pub const CAP_NET_RAW: [u8; 20] = cap_v2_effective(13);

/// A revision-2 `vfs_cap_data` that permits capability `cap` (< 32) with the effective bit.
const fn cap_v2_effective(cap: u32) -> [u8; 20] {
    let magic = (0x0200_0000u32 | 1).to_le_bytes();
    let permitted = (1u32 << cap).to_le_bytes();
    let mut v = [0u8; 20];
    let mut i = 0;
    while i < 4 {
        v[i] = magic[i];
        v[4 + i] = permitted[i];
        i += 1;
    }
    v
}

/// Sets (`setcap`) or removes (`setcap -r`) a file's capabilities, without following a symlink.
pub fn set_capability(path: &Path, value: Option<&[u8]>) {
    let result = match value {
        Some(v) => rustix::fs::lsetxattr(path, "security.capability", v, rustix::fs::XattrFlags::empty()),
        None => rustix::fs::lremovexattr(path, "security.capability"),
    };
    result.unwrap_or_else(|e| panic!("security.capability on {}: {e}", path.display()));
}

/// Sets every mtime below `root` to one old value, so that only real changes show.
pub fn set_old_mtimes(root: &Path) {
    let walk = |p: &Path| {
        let t = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 1_000_000_000, tv_nsec: 0 },
            last_modification: rustix::fs::Timespec { tv_sec: 1_000_000_000, tv_nsec: 0 },
        };
        let _ = rustix::fs::utimensat(rustix::fs::CWD, p, &t, rustix::fs::AtFlags::SYMLINK_NOFOLLOW);
    };
    fn rec(p: &Path, f: &dyn Fn(&Path)) {
        if let Ok(rd) = fs::read_dir(p) {
            for e in rd.flatten() {
                let path = e.path();
                if e.file_type().unwrap().is_dir() {
                    rec(&path, f);
                }
                f(&path);
            }
        }
    }
    rec(root, &walk);
    walk(root);
}

/// What a container does: the corpus of file operations, below `root` (a mounted tree).
/// `dir_renames`: rename directories too (overlayfs refuses without `redirect_dir`).
pub fn container_writes(root: &Path, dir_renames: bool) {
    let at = |p: &str| root.join(p);
    fs::write(at("srv/data/new.txt"), "new\n").unwrap(); // add
    fs::write(at("srv/data/a"), "modified\n").unwrap(); // modify
    fs::remove_file(at("srv/data/b")).unwrap(); // delete
    fs::remove_dir_all(at("srv/del")).unwrap(); // recursive delete
    fs::create_dir_all(at("srv/brand/new/tree")).unwrap(); // new tree
    fs::write(at("srv/brand/new/tree/leaf"), "").unwrap(); // empty file
    fs::set_permissions(at("etc/conf"), fs::Permissions::from_mode(0o600)).unwrap(); // chmod only
    std::os::unix::fs::lchown(at("srv/tree/x/y/z"), Some(1000), Some(1000)).unwrap(); // chown only
    fs::File::create(at("tmp/scratch")).unwrap(); // temp file made and removed: /tmp is T
    fs::remove_file(at("tmp/scratch")).unwrap();
    fs::OpenOptions::new().append(true).open(at("var/log/old.log")).unwrap(); // copy-up, no change: T
    symlink("/etc/conf", at("srv/link")).unwrap(); // symlink
    rustix::fs::mknodat(rustix::fs::CWD, at("srv/fifo"), rustix::fs::FileType::Fifo, 0o644.into(), 0).unwrap();
    fs::hard_link(at("srv/data/c"), at("srv/hard")).unwrap(); // hard link to an image file
    fs::remove_dir_all(at("opq")).unwrap(); // delete-then-recreate a directory
    fs::create_dir(at("opq")).unwrap();
    fs::write(at("opq/again"), "x\n").unwrap();
    fs::create_dir(at("gone")).unwrap(); // re-create what a lower layer deleted
    fs::write(at("srv/odd\nname \u{e9}"), "").unwrap();
    fs::write(at(std::str::from_utf8(b"srv/").unwrap()).join(bpath(b"bad\xffbyte")), "").unwrap();
    fs::rename(at("srv/mv/file"), at("srv/moved-file")).unwrap(); // rename a file
    set_capability(&at("srv/caps/bind"), Some(&CAP_NET_BIND_SERVICE)); // setcap: stat unchanged
    set_capability(&at("srv/caps/raw"), None); // setcap -r
    set_capability(&at("srv/caps/same"), Some(&CAP_NET_RAW)); // setcap to what it was
    if dir_renames {
        // Without redirect_dir, overlayfs refuses these with EXDEV (and `mv` copies instead).
        fs::rename(at("srv/ren"), at("srv/renamed")).unwrap(); // rename a directory (redirect)
        fs::write(at("srv/renamed/added"), "+\n").unwrap();
        fs::remove_file(at("srv/renamed/g")).unwrap();
        fs::rename(at("srv/tree/x"), at("srv/x-top")).unwrap(); // move a directory across parents
    }
}
