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

/// What the b-tree searches of a diff of `layer` see (without freezing: the tests change nothing
/// meanwhile).
pub fn search_stats(layer: &rodiff::layer::BtrfsLayer) -> rodiff::layer::btrfs::changed::SearchStats {
    use std::os::fd::AsFd;
    let container = std::fs::File::open(&layer.subvolume).unwrap();
    let parent = std::fs::File::open(&layer.parent).unwrap();
    let created = generation_at_creation(&layer.subvolume);
    rodiff::layer::btrfs::changed::ChangedSet::collect(container.as_fd(), parent.as_fd(), created).unwrap().stats
}

/// `Gen at creation` of a subvolume, from `btrfs subvolume show`.
pub fn generation_at_creation(subvolume: &Path) -> u64 {
    let show = run(Command::new("btrfs").args(["subvolume", "show"]).arg(subvolume));
    show.lines().find_map(|l| l.trim().strip_prefix("Gen at creation:")).unwrap().trim().parse().unwrap()
}

/// Reads every file and lists every directory below `dir`, as an application, a backup or
/// `docker diff` does (each first read updates the access time under `relatime`).
pub fn read_everything(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let ty = entry.file_type().unwrap();
        if ty.is_dir() {
            read_everything(&entry.path());
        } else if ty.is_file() {
            std::fs::read(entry.path()).unwrap();
        }
    }
}

impl Drop for BtrfsFs {
    fn drop(&mut self) {
        let ok = Command::new("umount").arg(&self.mnt).status().is_ok_and(|s| s.success());
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}
