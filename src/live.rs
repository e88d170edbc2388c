//! Live evidence: the files a running container's processes hold open after they lost their name.
//!
//! A file made with `O_TMPFILE`, or created, opened and unlinked, leaves no name in the layer (on
//! btrfs no trace at all), yet making it is a write that fails under `--read-only`. While the
//! process holds it, the host sees it in `/proc/<pid>/fd`: `3 -> /tmp/#6970 (deleted)` (an
//! `O_TMPFILE` file is named `#<inode>`), `4 -> /tmp/work.db-journal (deleted)`. Its directory, as
//! a path of the container's root filesystem, is where the container wrote.
//!
//! **Which filesystem.** The container's root filesystem is identified once, from the container's
//! init process ([`Processes::init`]: the runtime starts it at the container's root): the mount at
//! `/` in its `mountinfo` (the lowest, if mounts are stacked there: one a process put over `/`
//! later is not the container's) gives the filesystem (`major:minor`) and the directory of it that
//! is the container's `/` (the mount's root: `/` for overlayfs, the subvolume's path inside the
//! btrfs filesystem for Docker's btrfs driver and containerd's btrfs snapshotter).
//!
//! **Which path.** A process need not see that filesystem at its `/`: one that moved into another
//! root (`unshare -m` and `pivot_root`: bubblewrap, nested runc or buildkit, CI sandboxes; or
//! `chroot`) sees a tmpfs there, or a bind of one of the container's directories. So each
//! descriptor is placed through its own mount: the `mnt_id:` of `/proc/<pid>/fdinfo/<fd>` is looked
//! up among the mounts of the process's mount namespace; a mount of another filesystem (tmpfs
//! mounts, `/dev/shm`, volumes, the runtime's binds of `/etc/hosts`, memfds' internal mount) is not
//! evidence; on the container's filesystem, the file's path inside the filesystem is the mount's
//! root joined with the link target below the mount point, and its container path is that path
//! below the container's root (a directory of the same filesystem outside it, such as a volume on
//! Docker's btrfs data root, is not evidence).
//!
//! **How the kernel spells both.** A link target read from another mount namespace is spelled
//! from the root of that namespace's mount tree (`d_path` walks up the file's mounts and never
//! meets the reader's root): for a process that pivot_rooted, its own root; for a chrooted one
//! not (`chroot /var`, then an `O_TMPFILE` in `/tmp`: `/var/tmp/#12 (deleted)`). `mountinfo` spells
//! mount points from the process's root and lists only the mounts below it (a chrooted process's
//! may not list the container's root mount at all). So each process's mount points are re-spelled
//! from the namespace's root by prefixing its root as `/proc/<pid>/root` reads (spelled from there
//! too), and the views of one namespace are merged into one table (mount ids are unique on the
//! system): `mountinfo` is read once per namespace and process root. Paths in `mountinfo` are
//! unescaped ([`crate::mountinfo`]).
//!
//! Which descriptors count, for each process:
//! - the link target is an absolute path that ends in ` (deleted)` (sockets, pipes and
//!   anonymous inodes are `socket:[…]`, `pipe:[…]`, `anon_inode:…`);
//! - its mount is on the container's root filesystem, below the container's root (above);
//! - its inode really has no links: `st_nlink == 0` from `stat` of the magic link, which looks the
//!   inode up without opening the file (a name may itself end in ` (deleted)`);
//! - the target read again afterwards is the same (the descriptor was not closed and reused).
//!
//! The files are never opened and never read. Paths are bytes. A process that exits during the
//! read is skipped, as is one rodiff may not inspect (`EACCES`: `/proc/<pid>/fd` needs ptrace
//! access, i.e. root): the evidence is what the processes hold at this instant, a lower bound. A
//! descriptor whose mount the process's namespace no longer lists (a detached mount) is skipped.
//! Processes in rodiff's own mount namespace are skipped too: they are not in a container, and
//! their paths would not be container paths; a container whose init is in rodiff's namespace, has
//! exited, or has no mount at `/` (its init chrooted) gives no evidence. The init is trusted to
//! be at the container's root: one that itself moved into another root before rodiff reads it
//! names that root instead.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::mountinfo::{self, Device, Mount};
use crate::resolve::Processes;

/// What the kernel appends to the path of a file that has no name any more.
const DELETED: &[u8] = b" (deleted)";

/// A file a process holds open that has no name any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenDeleted {
    /// Its former path inside the container (`/tmp/#6970` for an `O_TMPFILE` file), whatever root
    /// the process holding it sees: the parent is the directory that was written.
    pub path: PathBuf,
    /// The process holding it (host pid).
    pub pid: u32,
    /// The descriptor number.
    pub fd: u32,
}

/// The container's root filesystem, as its init process's `/` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct RootFs {
    device: Device,
    /// The directory of the filesystem that is the container's `/` (a path inside the filesystem).
    root: PathBuf,
}

/// The deleted files on the container's root filesystem that its processes hold open, read from
/// `processes.proc_root` (the host's `/proc`); see the module documentation for what counts.
/// Nothing when the container has no init process (it is not running).
pub fn open_deleted(processes: &Processes) -> Result<Vec<OpenDeleted>> {
    let Some(init) = processes.init else { return Ok(Vec::new()) };
    let own_namespace = std::fs::read_link("/proc/self/ns/mnt").ok();
    let mut reader = Reader { proc_root: &processes.proc_root, own_namespace, namespaces: HashMap::new() };
    let container = match reader.container_root(init) {
        Ok(Some(container)) => container,
        Ok(None) => return Ok(Vec::new()),
        Err((_, e)) if skipped(&e) => return Ok(Vec::new()),
        Err((path, e)) => return Err(Error::io(path, e)),
    };
    let mut found = Vec::new();
    for &pid in &processes.pids {
        match reader.process(pid, &container, &mut found) {
            Ok(()) => {}
            Err((_, e)) if skipped(&e) => {}
            Err((path, e)) => return Err(Error::io(path, e)),
        }
    }
    Ok(found)
}

/// Whether an error means "skip this process": it exited (its `/proc` entries are gone, or
/// `mountinfo` refuses a process without a mount namespace), or we may not inspect it.
fn skipped(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ESRCH | libc::EINVAL | libc::EACCES | libc::EPERM))
}

/// An error and the `/proc` path it is about.
type ProcError = (PathBuf, io::Error);

/// Reads processes, remembering the mounts of each mount namespace.
struct Reader<'a> {
    proc_root: &'a Path,
    own_namespace: Option<PathBuf>,
    /// Mount namespace (`mnt:[4026532177]`) → its mounts as read so far.
    namespaces: HashMap<PathBuf, Namespace>,
}

/// The mounts of one mount namespace, merged from the `mountinfo` of its processes.
#[derive(Debug, Default)]
struct Namespace {
    /// Mount id → the mount, its mount point spelled from the root of the namespace.
    mounts: HashMap<u64, Mount>,
    /// The process roots (spelled from the root of the namespace) whose views are merged in.
    roots: HashSet<PathBuf>,
}

impl Namespace {
    /// Merges in the view of the process at `dir` (`/proc/<pid>`), unless one from the same root
    /// is merged already.
    fn merge_view_of(&mut self, dir: &Path) -> std::result::Result<(), ProcError> {
        let root_link = dir.join("root");
        let root = std::fs::read_link(&root_link).map_err(|e| (root_link, e))?;
        if self.roots.contains(&root) {
            return Ok(());
        }
        let path = dir.join("mountinfo");
        let mounts = mountinfo::read(&path).map_err(|e| (path, e))?;
        self.merge(&root, mounts);
        Ok(())
    }

    /// Merges in `mounts`, as a process whose root is `root` (spelled from the root of the
    /// namespace) sees them. A root that was deleted (`… (deleted)`) cannot re-spell anything: its
    /// view adds nothing.
    fn merge(&mut self, root: &Path, mounts: Vec<Mount>) {
        self.roots.insert(root.to_path_buf());
        if !root.has_root() || root.as_os_str().as_bytes().ends_with(DELETED) {
            return;
        }
        for mut mount in mounts {
            let Ok(below) = mount.mount_point.strip_prefix("/") else { continue };
            mount.mount_point = if below.as_os_str().is_empty() { root.to_path_buf() } else { root.join(below) };
            self.mounts.entry(mount.id).or_insert(mount);
        }
    }

    /// The container's root filesystem: the mount at `/` (the lowest, if several are stacked),
    /// unless its directory was deleted.
    fn root_fs(&self) -> Option<RootFs> {
        let at_root: Vec<&Mount> = self.mounts.values().filter(|m| m.mount_point == Path::new("/")).collect();
        let lowest = at_root.iter().filter(|m| !at_root.iter().any(|p| p.id == m.parent)).min_by_key(|m| m.id)?;
        (!lowest.root_is_deleted()).then(|| RootFs { device: lowest.device, root: lowest.root.clone() })
    }
}

impl Reader<'_> {
    /// The container's root filesystem, from its init process `init`; `None` when the init is in
    /// our own mount namespace or has no mount at `/`.
    fn container_root(&mut self, init: u32) -> std::result::Result<Option<RootFs>, ProcError> {
        let dir = self.proc_root.join(init.to_string());
        let ns_link = dir.join("ns/mnt");
        let namespace = std::fs::read_link(&ns_link).map_err(|e| (ns_link, e))?;
        if self.own_namespace.as_deref() == Some(namespace.as_path()) {
            return Ok(None);
        }
        let ns = self.namespaces.entry(namespace).or_default();
        ns.merge_view_of(&dir)?;
        Ok(ns.root_fs())
    }

    /// Adds the deleted files process `pid` holds open on the container's root filesystem.
    fn process(&mut self, pid: u32, container: &RootFs, found: &mut Vec<OpenDeleted>) -> std::result::Result<(), ProcError> {
        let dir = self.proc_root.join(pid.to_string());
        let fd_dir = dir.join("fd");
        let mut candidates = Vec::new();
        for entry in std::fs::read_dir(&fd_dir).map_err(|e| (fd_dir.clone(), e))? {
            let entry = entry.map_err(|e| (fd_dir.clone(), e))?;
            let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            // A descriptor closed since the listing is simply not there any more.
            let Some(target) = link(&entry.path()).map_err(|e| (entry.path(), e))? else { continue };
            let bytes = target.as_os_str().as_bytes();
            if bytes.starts_with(b"/") && bytes.ends_with(DELETED) {
                candidates.push((fd, target));
            }
        }
        if candidates.is_empty() {
            return Ok(());
        }
        let ns_link = dir.join("ns/mnt");
        let namespace = std::fs::read_link(&ns_link).map_err(|e| (ns_link, e))?;
        if self.own_namespace.as_deref() == Some(namespace.as_path()) {
            return Ok(());
        }
        let ns = self.namespaces.entry(namespace).or_default();
        let mut merged = false;

        for (fd, target) in candidates {
            let fdinfo = dir.join(format!("fdinfo/{fd}"));
            let Some(Some(id)) = present(fdinfo_mount_id(&fdinfo)).map_err(|e| (fdinfo, e))? else { continue };
            if !merged && !ns.mounts.contains_key(&id) {
                // A mount no process read so far sees: this one's view may show it.
                ns.merge_view_of(&dir)?;
                merged = true;
            }
            let Some(mount) = ns.mounts.get(&id) else { continue };
            let bytes = target.as_os_str().as_bytes();
            let former = Path::new(OsStr::from_bytes(&bytes[..bytes.len() - DELETED.len()]));
            let Some(path) = container_path(former, mount, container) else { continue };
            let magic = fd_dir.join(fd.to_string());
            // `metadata` follows the magic link to the inode: a stat, not an open.
            let Some(st) = present(std::fs::metadata(&magic)).map_err(|e| (magic.clone(), e))? else { continue };
            if st.nlink() != 0 {
                continue;
            }
            if link(&magic).map_err(|e| (magic.clone(), e))?.as_ref() != Some(&target) {
                continue;
            }
            found.push(OpenDeleted { path, pid, fd });
        }
        Ok(())
    }
}

/// The container path of a file at `former` (spelled from the root of its mount namespace) on
/// `mount` (mount point spelled the same way): the mount's root joined with `former` below the
/// mount point is the path inside the filesystem, and the container path is that below the
/// container's root. `None` when the file is on another filesystem, outside the container's root,
/// not below the mount point, or the mount's directory was deleted.
fn container_path(former: &Path, mount: &Mount, container: &RootFs) -> Option<PathBuf> {
    if mount.device != container.device || mount.root_is_deleted() {
        return None;
    }
    let below_mount_point = former.strip_prefix(&mount.mount_point).ok()?;
    let in_filesystem = mount.root.join(below_mount_point);
    let below_root = in_filesystem.strip_prefix(&container.root).ok()?;
    Some(Path::new("/").join(below_root))
}

/// The target of a symlink; `None` when it is gone.
fn link(path: &Path) -> io::Result<Option<PathBuf>> {
    present(std::fs::read_link(path))
}

/// `None` for "not found" (a descriptor closed meanwhile), the value otherwise.
fn present<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The `mnt_id:` field of an fdinfo file (`None` if it has none).
fn fdinfo_mount_id(path: &Path) -> io::Result<Option<u64>> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.lines().find_map(|l| l.strip_prefix("mnt_id:")).and_then(|v| v.trim().parse().ok()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The container's overlayfs root as its init sees it, with a tmpfs and a volume below.
    const CONTAINER: &[u8] = b"142 69 0:65 / / rw,relatime master:3 - overlay overlay rw,lowerdir=/l/A,upperdir=/c/diff\n\
        144 142 0:69 / /dev rw,nosuid - tmpfs tmpfs rw\n\
        159 142 254:0 /data/containers/c0ffee/hosts /etc/hosts rw - ext4 /dev/vda rw\n\
        160 142 0:80 / /scratch rw - tmpfs tmpfs rw\n";

    /// A namespace with the views `(root, mountinfo)` merged in.
    fn namespace(views: &[(&str, &[u8])]) -> Namespace {
        let mut ns = Namespace::default();
        for (root, text) in views {
            ns.merge(Path::new(root), mountinfo::parse(text));
        }
        ns
    }

    /// The container path of `former` held on mount `id` of `ns`, the container being `container`.
    fn place(ns: &Namespace, id: u64, former: &str, container: &RootFs) -> Option<String> {
        container_path(Path::new(former), ns.mounts.get(&id)?, container).map(|p| p.display().to_string())
    }

    fn overlay_root() -> RootFs {
        RootFs { device: Device { major: 0, minor: 65 }, root: "/".into() }
    }

    #[test]
    fn the_container_root_is_the_lowest_mount_at_slash() {
        assert_eq!(namespace(&[("/", CONTAINER)]).root_fs(), Some(overlay_root()));
        let stacked = b"142 69 0:65 / / rw - overlay overlay rw\n300 142 0:90 / / rw - tmpfs tmpfs rw\n";
        assert_eq!(namespace(&[("/", stacked)]).root_fs(), Some(overlay_root()), "a tmpfs put over / later is not it");
        assert_eq!(namespace(&[("/", b"5 1 0:2 / /elsewhere rw - y y rw\n")]).root_fs(), None);
        assert_eq!(namespace(&[("/", b"7 1 0:65 /gone//deleted / rw - overlay overlay rw\n")]).root_fs(), None);
        let chrooted_init = namespace(&[("/var", b"")]);
        assert_eq!(chrooted_init.root_fs(), None, "a chrooted init does not see the container's root mount");
        let btrfs = b"200 180 0:46 /btrfs/subvolumes/abc / rw,relatime - btrfs /dev/loop3 rw,subvolid=258\n";
        let fs = namespace(&[("/", btrfs)]).root_fs().unwrap();
        assert_eq!((fs.device, fs.root), (Device { major: 0, minor: 46 }, PathBuf::from("/btrfs/subvolumes/abc")));
    }

    /// Files on the container's root mount keep their path; on a tmpfs, a bind from the host or a
    /// memfd's mount (not listed) they are no evidence.
    #[test]
    fn paths_in_the_containers_own_namespace() {
        let ns = namespace(&[("/", CONTAINER)]);
        let c = overlay_root();
        assert_eq!(place(&ns, 142, "/tmp/#6970", &c).as_deref(), Some("/tmp/#6970"));
        assert_eq!(place(&ns, 160, "/scratch/#12", &c), None, "tmpfs");
        assert_eq!(place(&ns, 159, "/etc/hosts", &c), None, "another filesystem");
        assert_eq!(place(&ns, 1, "/memfd:x", &c), None, "not a listed mount");
    }

    /// `unshare -m` + `pivot_root` into a bind of the container's `/var`: the link target
    /// (`/tmp/#12`) is spelled from the new root; the write is in the container's `/var/tmp`. The
    /// container's old root, still mounted at `/old` in that namespace, places its files too.
    #[test]
    fn a_nested_root_bound_from_the_container() {
        let nested = b"171 90 0:65 /var / rw,relatime - overlay overlay rw\n\
            100 171 0:65 / /old rw,relatime - overlay overlay rw\n\
            101 100 0:68 / /old/proc rw - proc proc rw\n";
        let ns = namespace(&[("/", nested)]);
        let c = overlay_root();
        assert_eq!(place(&ns, 171, "/tmp/#12", &c).as_deref(), Some("/var/tmp/#12"));
        assert_eq!(place(&ns, 100, "/old/tmp/#13", &c).as_deref(), Some("/tmp/#13"));
        assert_eq!(place(&ns, 100, "/elsewhere/#14", &c), None, "not below the mount point");
    }

    /// `pivot_root` into a tmpfs: the nested `/tmp` is that tmpfs, not the container's.
    #[test]
    fn a_nested_root_on_a_tmpfs() {
        let nested = b"180 90 0:99 / / rw - tmpfs none rw\n181 180 0:65 / /old rw - overlay overlay rw\n";
        let ns = namespace(&[("/", nested)]);
        assert_eq!(place(&ns, 180, "/tmp/#12", &overlay_root()), None);
        assert_eq!(place(&ns, 181, "/old/tmp/#12", &overlay_root()).as_deref(), Some("/tmp/#12"));
    }

    /// `chroot /var` in the container's namespace: the link target is spelled from the namespace's
    /// root (`/var/tmp/#12`), and the process's own view lists nothing; its namespace's other view
    /// places it. A chroot that sees mounts below it re-spells them from the namespace's root.
    #[test]
    fn chrooted_processes_are_placed_through_their_namespace() {
        let c = overlay_root();
        let ns = namespace(&[("/", CONTAINER), ("/var", b"")]);
        assert_eq!(place(&ns, 142, "/var/tmp/#12", &c).as_deref(), Some("/var/tmp/#12"));
        let jail = b"300 142 0:99 / / rw - tmpfs none rw\n301 300 0:65 /srv /data rw - overlay overlay rw\n";
        let ns = namespace(&[("/", CONTAINER), ("/jail", jail)]);
        assert_eq!(ns.mounts[&301].mount_point, Path::new("/jail/data"));
        assert_eq!(place(&ns, 301, "/jail/data/tmp/#3", &c).as_deref(), Some("/srv/tmp/#3"));
        assert_eq!(place(&ns, 300, "/jail/tmp/#4", &c), None, "the jail's tmpfs");
        let gone = namespace(&[("/jail (deleted)", jail)]);
        assert!(gone.mounts.is_empty(), "a deleted root re-spells nothing");
    }

    /// Docker's btrfs driver: the container's `/` is a subvolume of a btrfs filesystem that also
    /// holds the other containers' subvolumes and the volumes.
    #[test]
    fn btrfs_subvolume_roots() {
        let c = RootFs { device: Device { major: 0, minor: 46 }, root: "/btrfs/subvolumes/abc".into() };
        let own = b"200 180 0:46 /btrfs/subvolumes/abc / rw - btrfs /dev/loop3 rw\n\
            210 200 0:46 /volumes/v/_data /data rw - btrfs /dev/loop3 rw\n\
            211 200 0:46 /btrfs/subvolumes/abcdef /other rw - btrfs /dev/loop3 rw\n";
        let ns = namespace(&[("/", own)]);
        assert_eq!(place(&ns, 200, "/tmp/#5", &c).as_deref(), Some("/tmp/#5"));
        assert_eq!(place(&ns, 210, "/data/#6", &c), None, "a volume on the same filesystem");
        assert_eq!(place(&ns, 211, "/other/#7", &c), None, "a subvolume whose name only starts the same");
        let nested = b"230 90 0:46 /btrfs/subvolumes/abc/var / rw - btrfs /dev/loop3 rw\n";
        let ns = namespace(&[("/", nested)]);
        assert_eq!(place(&ns, 230, "/tmp/#8", &c).as_deref(), Some("/var/tmp/#8"));
    }

    /// Mount points and roots with space, tab, newline and backslash come escaped; link targets
    /// are raw bytes.
    #[test]
    fn escaped_mountinfo_names() {
        let text = b"142 69 0:65 / / rw - overlay overlay rw\n\
            240 142 0:65 /my\\040dir/a\\134b /mnt/new\\012line\\011x rw - overlay overlay rw\n";
        let ns = namespace(&[("/", text)]);
        let former = OsStr::from_bytes(b"/mnt/new\nline\tx/sub dir/#9");
        let got = container_path(Path::new(former), &ns.mounts[&240], &overlay_root()).unwrap();
        assert_eq!(got.as_os_str().as_bytes(), b"/my dir/a\\b/sub dir/#9");
    }

    #[test]
    fn a_mount_of_a_deleted_directory_places_nothing() {
        let ns = namespace(&[("/", b"250 142 0:65 /gone//deleted /mnt rw - overlay overlay rw\n")]);
        assert_eq!(place(&ns, 250, "/mnt/#1", &overlay_root()), None);
    }

    #[test]
    fn fdinfo_mount_id_field() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("3");
        std::fs::write(&path, "pos:\t26\nflags:\t020300002\nmnt_id:\t74\nino:\t10011378\n").unwrap();
        assert_eq!(fdinfo_mount_id(&path).unwrap(), Some(74));
        std::fs::write(&path, "pos:\t0\n").unwrap();
        assert_eq!(fdinfo_mount_id(&path).unwrap(), None);
    }

    /// Our own processes are in our mount namespace: never evidence, even when they hold deleted
    /// files (as init or not); processes that do not exist are skipped, and so is an init that
    /// does not exist; no init, no evidence.
    #[test]
    fn own_namespace_missing_processes_and_no_init_give_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("held");
        let file = std::fs::File::create(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        let me = std::process::id();
        let processes = |init, pids: &[u32]| Processes { proc_root: "/proc".into(), init, pids: pids.to_vec() };
        assert_eq!(open_deleted(&processes(Some(me), &[me, u32::MAX])).unwrap(), Vec::new());
        assert_eq!(open_deleted(&processes(Some(u32::MAX), &[me, u32::MAX])).unwrap(), Vec::new());
        assert_eq!(open_deleted(&processes(None, &[me])).unwrap(), Vec::new());
        drop(file);
    }
}
