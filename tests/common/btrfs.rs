//! A btrfs filesystem on a loop file, made and mounted by a test (needs root), unmounted on drop.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::run;

/// A scratch btrfs filesystem.
pub struct BtrfsFs {
    _dir: tempfile::TempDir,
    /// Where it is mounted.
    pub mnt: PathBuf,
}

impl BtrfsFs {
    /// Makes a 1 GiB btrfs on a sparse loop file and mounts it.
    pub fn new() -> BtrfsFs {
        let dir = tempfile::Builder::new().prefix("rodiff-btrfs.").tempdir_in("/tmp").unwrap();
        let img = dir.path().join("fs.img");
        let mnt = dir.path().join("mnt");
        std::fs::create_dir(&mnt).unwrap();
        run(Command::new("truncate").args(["-s", "1G"]).arg(&img));
        run(Command::new("mkfs.btrfs").arg("-q").arg(&img));
        run(Command::new("mount").args(["-o", "loop"]).arg(&img).arg(&mnt));
        BtrfsFs { _dir: dir, mnt }
    }

    /// `btrfs subvolume create`.
    pub fn subvolume(&self, name: &str) -> PathBuf {
        let path = self.mnt.join(name);
        run(Command::new("btrfs").args(["-q", "subvolume", "create"]).arg(&path));
        path
    }

    /// `btrfs subvolume snapshot [-r] SRC NAME`.
    pub fn snapshot(&self, source: &Path, name: &str, readonly: bool) -> PathBuf {
        let path = self.mnt.join(name);
        let mut cmd = Command::new("btrfs");
        cmd.args(["-q", "subvolume", "snapshot"]);
        if readonly {
            cmd.arg("-r");
        }
        run(cmd.arg(source).arg(&path));
        path
    }

    /// Names in the helper-snapshot directory (empty when it does not exist).
    pub fn helper_snapshots(&self) -> Vec<String> {
        match std::fs::read_dir(self.mnt.join(rodiff::layer::btrfs::helper::HELPER_DIR)) {
            Ok(rd) => rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        }
    }
}

/// Helper snapshots in `dir` (a `.rodiff-snapshots` directory) whose rodiff process has ended:
/// leaked ones. Snapshots of runs still going (other tests run rodiff at the same time) are theirs
/// to remove and are not counted.
pub fn leaked_helper_snapshots(dir: &Path) -> Vec<String> {
    let names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(rd) => rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => return Vec::new(),
    };
    names
        .into_iter()
        .filter(|name| {
            let pid = name.strip_prefix("rodiff-").and_then(|r| r.split('-').next()).unwrap_or("");
            pid.is_empty() || !Path::new("/proc").join(pid).exists()
        })
        .collect()
}

impl Drop for BtrfsFs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.mnt).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}
