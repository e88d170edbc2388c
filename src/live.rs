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
//! up among the mounts of the mount namespaces read (mount ids are unique on the system while
//! mounted: one table serves them all); a mount of another filesystem (tmpfs mounts, `/dev/shm`,
//! volumes, the runtime's binds of `/etc/hosts`, memfds' internal mount) is not evidence; on the
//! container's filesystem, the file's path inside the filesystem is the mount's root joined with
//! the link target below the mount point, and its container path is that path below the
//! container's root (a directory of the same filesystem outside it, such as a volume on Docker's
//! btrfs data root, is not evidence).
//!
//! **How the kernel spells both.** A link target read from another mount namespace is spelled
//! from the root of the mount tree the file's mount is in (`d_path` walks up the file's mounts and
//! never meets the reader's root): for a process that pivot_rooted, its own root; for a chrooted
//! one not (`chroot /var`, then an `O_TMPFILE` in `/tmp`: `/var/tmp/#12 (deleted)`); for a
//! descriptor inherited across `unshare -m`, the root of the namespace it was opened in, not the
//! holder's. `mountinfo` spells mount points from the reading process's root and lists only the
//! mounts below it (a chrooted process's may not list the container's root mount at all). So a
//! namespace's table is read in the link targets' frame, from the namespace's root: a short-lived
//! thread of rodiff's own unshares its filesystem attributes (a thread sharing them may not
//! join), joins the namespace (`setns`, which puts it at the namespace's root), opens its own
//! `mountinfo` through rodiff's `/proc` (opened before; `mountinfo` shows the namespace and root the
//! thread has at the open), reads it and ends.
//!
//! **Which tables.** For a descriptor, until one has its mount: the table of the holder's
//! namespace; the holder's own view (its `mountinfo`, re-spelled from the namespace's root by
//! prefixing its root as `/proc/<pid>/root` reads, spelled from there too: it still lists the
//! container's root mount when something was mounted over the namespace's `/` later, which the
//! table, starting at the top of that stack, does not); then the table and view of each of the
//! container's other processes in turn (an inherited descriptor). Each is read once; only processes
//! holding a candidate descriptor cause any to be read, and a mount no table has (a memfd's, a
//! detached one: the descriptor is skipped) causes all of them to be read, once. When joining is
//! refused (`EPERM`: rodiff without `CAP_SYS_ADMIN` or under a seccomp filter, a user namespace it
//! has no rights in), only the views remain: a process alone in its namespace and chrooted is
//! then missed. Paths in `mountinfo` are unescaped ([`crate::mountinfo`]).
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
//! access, i.e. root): the evidence is what the processes hold at this instant, a lower bound.
//! Processes in rodiff's own mount namespace are skipped too, as holders and as tables (rodiff
//! never reads its own namespace's): they are not in a container, and their paths would not be
//! container paths; a container whose init is in rodiff's namespace, has exited, or has no mount
//! at `/` (its init chrooted) gives no evidence. The init is trusted to be at the container's
//! root: one that itself moved into another root before rodiff reads it names that root instead.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::io::{self, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};
use rustix::thread::{LinkNameSpaceType, UnshareFlags};

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
    let own_namespace = std::fs::read_link("/proc/self/ns/mnt").ok().and_then(|l| namespace_inode(&l));
    let mut reader = Reader {
        proc_root: &processes.proc_root,
        pids: &processes.pids,
        own_namespace,
        mounts: HashMap::new(),
        namespaces: HashSet::new(),
        views: HashSet::new(),
        searched: 0,
    };
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

/// Reads processes, remembering every mount table read.
struct Reader<'a> {
    proc_root: &'a Path,
    /// The container's processes: where a mount no table read so far has is looked for.
    pids: &'a [u32],
    /// Our own mount namespace (its inode number).
    own_namespace: Option<u64>,
    /// Mount id → the mount, its mount point spelled from the root of its mount namespace: every
    /// mount of every table read so far, whatever its namespace (mount ids are unique on the
    /// system while mounted).
    mounts: HashMap<u64, Mount>,
    /// The mount namespaces whose table was read from their root, or refused.
    namespaces: HashSet<u64>,
    /// The process views merged in: mount namespace and process root (spelled from the root of
    /// the namespace).
    views: HashSet<(u64, PathBuf)>,
    /// How many of `pids` had their tables read while looking for a mount (in order, once each).
    searched: usize,
}

impl Reader<'_> {
    /// The container's root filesystem, from its init process `init`; `None` when the init is in
    /// our own mount namespace or has no mount at `/`.
    fn container_root(&self, init: u32) -> std::result::Result<Option<RootFs>, ProcError> {
        let dir = self.proc_root.join(init.to_string());
        if self.namespace_of(&dir)?.is_none() {
            return Ok(None);
        }
        let path = dir.join("mountinfo");
        let mounts = mountinfo::read(&path).map_err(|e| (path, e))?;
        Ok(root_fs(&mounts))
    }

    /// The mount namespace of the process at `dir` (`/proc/<pid>`); `None` when it is ours.
    fn namespace_of(&self, dir: &Path) -> std::result::Result<Option<u64>, ProcError> {
        let link = dir.join("ns/mnt");
        let target = std::fs::read_link(&link).map_err(|e| (link.clone(), e))?;
        let ns = namespace_inode(&target).ok_or_else(|| (link, io::Error::from(io::ErrorKind::InvalidData)))?;
        Ok((self.own_namespace != Some(ns)).then_some(ns))
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
        let Some(ns) = self.namespace_of(&dir)? else { return Ok(()) };

        for (fd, target) in candidates {
            let fdinfo = dir.join(format!("fdinfo/{fd}"));
            let Some(Some(id)) = present(fdinfo_mount_id(&fdinfo)).map_err(|e| (fdinfo, e))? else { continue };
            if !self.find(id, &dir, ns)? {
                continue;
            }
            let bytes = target.as_os_str().as_bytes();
            let former = Path::new(OsStr::from_bytes(&bytes[..bytes.len() - DELETED.len()]));
            let Some(path) = container_path(former, &self.mounts[&id], container) else { continue };
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

    /// Whether mount `id` is known, reading tables until one has it: those of the holder (at
    /// `dir`, in namespace `ns`), then those of the container's other processes, in turn (a
    /// descriptor inherited across `unshare -m` is on a mount of the namespace it was opened in).
    /// Each table is read once; a mount no table has (a memfd's, a detached one) reads them all,
    /// once.
    fn find(&mut self, id: u64, dir: &Path, ns: u64) -> std::result::Result<bool, ProcError> {
        if self.tables(id, dir, ns)? {
            return Ok(true);
        }
        while self.searched < self.pids.len() {
            let dir = self.proc_root.join(self.pids[self.searched].to_string());
            self.searched += 1;
            let read = match self.namespace_of(&dir) {
                Ok(Some(ns)) => self.tables(id, &dir, ns),
                Ok(None) => Ok(false),
                Err(e) => Err(e),
            };
            match read {
                Ok(true) => return Ok(true),
                Ok(false) => {}
                Err((_, e)) if skipped(&e) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    /// Whether mount `id` is known, reading, until it is, the table of namespace `ns` (the
    /// process at `dir`'s) from its root, then the process's own view.
    fn tables(&mut self, id: u64, dir: &Path, ns: u64) -> std::result::Result<bool, ProcError> {
        if !self.mounts.contains_key(&id) {
            self.read_namespace(dir, ns)?;
        }
        if !self.mounts.contains_key(&id) {
            self.merge_view(dir, ns)?;
        }
        Ok(self.mounts.contains_key(&id))
    }

    /// Reads the whole table of mount namespace `ns`, through the process at `dir`, from the root
    /// of the namespace, unless it was read (or refused) already. When joining the namespace is
    /// refused, nothing is added: the processes' own views remain.
    fn read_namespace(&mut self, dir: &Path, ns: u64) -> std::result::Result<(), ProcError> {
        if self.namespaces.contains(&ns) {
            return Ok(());
        }
        let link = dir.join("ns/mnt");
        let file = std::fs::File::open(&link).map_err(|e| (link.clone(), e))?;
        // The pid may name another process by now: then this one is gone.
        if file.metadata().map_err(|e| (link.clone(), e))?.ino() != ns {
            return Err((link, io::Error::from_raw_os_error(libc::ESRCH)));
        }
        self.namespaces.insert(ns);
        if let Ok(text) = namespace_mountinfo(file.into()) {
            add_view(&mut self.mounts, Path::new("/"), mountinfo::parse(&text));
        }
        Ok(())
    }

    /// Merges in the view of the process at `dir` (its `mountinfo`, spelled from its root),
    /// in namespace `ns`, unless one from the same root was merged already.
    fn merge_view(&mut self, dir: &Path, ns: u64) -> std::result::Result<(), ProcError> {
        let root_link = dir.join("root");
        let root = std::fs::read_link(&root_link).map_err(|e| (root_link, e))?;
        if !self.views.insert((ns, root.clone())) {
            return Ok(());
        }
        let path = dir.join("mountinfo");
        let mounts = mountinfo::read(&path).map_err(|e| (path, e))?;
        add_view(&mut self.mounts, &root, mounts);
        Ok(())
    }
}

/// The `mountinfo` of mount namespace `ns` (an open `/proc/<pid>/ns/mnt`), as a thread at the
/// namespace's root sees it: its mount points spelled from that root, as the kernel spells the
/// link targets of the namespace's descriptors.
///
/// A short-lived thread of its own joins the namespace (`setns` puts it at the namespace's root;
/// a thread that shares its filesystem attributes with others may not, so it unshares them
/// first), opens its own `mountinfo` through our `/proc` (opened before, so the path does not
/// depend on the namespace: `mountinfo` shows the namespace and root of the thread at the open),
/// reads it and ends. Fails when joining is refused (`EPERM`: not root, no `CAP_SYS_ADMIN`, a
/// seccomp filter, a user namespace we have no rights in).
fn namespace_mountinfo(ns: OwnedFd) -> io::Result<Vec<u8>> {
    let proc = rustix::fs::open("/proc", OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
    let thread = std::thread::Builder::new().name("rodiff-mountns".into()).spawn(move || -> io::Result<Vec<u8>> {
        // SAFETY: only this thread's filesystem attributes (root, working directory, umask) are
        // unshared; its descriptor table stays shared.
        unsafe { rustix::thread::unshare_unsafe(UnshareFlags::FS) }?;
        rustix::thread::move_into_link_name_space(ns.as_fd(), Some(LinkNameSpaceType::Mount))?;
        let file = rustix::fs::openat(&proc, "thread-self/mountinfo", OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
        let mut text = Vec::new();
        std::fs::File::from(file).read_to_end(&mut text)?;
        Ok(text)
    })?;
    thread.join().map_err(|_| io::Error::other("the mount namespace reader panicked"))?
}

/// Adds to `table` the mounts a process whose root is `root` (spelled from the root of its mount
/// namespace; `/` for a namespace's whole table) sees, their mount points re-spelled from the
/// namespace's root. A root that was deleted (`… (deleted)`) cannot re-spell anything: its view
/// adds nothing. A mount already known keeps its entry.
fn add_view(table: &mut HashMap<u64, Mount>, root: &Path, mounts: Vec<Mount>) {
    if !root.has_root() || root.as_os_str().as_bytes().ends_with(DELETED) {
        return;
    }
    for mut mount in mounts {
        let Ok(below) = mount.mount_point.strip_prefix("/") else { continue };
        mount.mount_point = if below.as_os_str().is_empty() { root.to_path_buf() } else { root.join(below) };
        table.entry(mount.id).or_insert(mount);
    }
}

/// The container's root filesystem in its init's view `mounts`: the mount at `/` (the lowest, if
/// several are stacked), unless its directory was deleted.
fn root_fs(mounts: &[Mount]) -> Option<RootFs> {
    let at_root: Vec<&Mount> = mounts.iter().filter(|m| m.mount_point == Path::new("/")).collect();
    let lowest = at_root.iter().filter(|m| !at_root.iter().any(|p| p.id == m.parent)).min_by_key(|m| m.id)?;
    (!lowest.root_is_deleted()).then(|| RootFs { device: lowest.device, root: lowest.root.clone() })
}

/// The inode number of a mount namespace from its `ns/mnt` link (`mnt:[4026532177]`).
fn namespace_inode(link: &Path) -> Option<u64> {
    let bytes = link.as_os_str().as_bytes();
    std::str::from_utf8(bytes.strip_prefix(b"mnt:[")?.strip_suffix(b"]")?).ok()?.parse().ok()
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

    /// A mount table with the views `(root, mountinfo)` added (`/` for a namespace's whole table).
    fn table(views: &[(&str, &[u8])]) -> HashMap<u64, Mount> {
        let mut table = HashMap::new();
        for (root, text) in views {
            add_view(&mut table, Path::new(root), mountinfo::parse(text));
        }
        table
    }

    /// The container path of `former` held on mount `id` of `table`, the container being `container`.
    fn place(table: &HashMap<u64, Mount>, id: u64, former: &str, container: &RootFs) -> Option<String> {
        container_path(Path::new(former), table.get(&id)?, container).map(|p| p.display().to_string())
    }

    fn overlay_root() -> RootFs {
        RootFs { device: Device { major: 0, minor: 65 }, root: "/".into() }
    }

    #[test]
    fn the_container_root_is_the_lowest_mount_at_slash() {
        let root = |text: &[u8]| root_fs(&mountinfo::parse(text));
        assert_eq!(root(CONTAINER), Some(overlay_root()));
        let stacked = b"142 69 0:65 / / rw - overlay overlay rw\n300 142 0:90 / / rw - tmpfs tmpfs rw\n";
        assert_eq!(root(stacked), Some(overlay_root()), "a tmpfs put over / later is not it");
        assert_eq!(root(b"5 1 0:2 / /elsewhere rw - y y rw\n"), None);
        assert_eq!(root(b"7 1 0:65 /gone//deleted / rw - overlay overlay rw\n"), None);
        assert_eq!(root(b""), None, "a chrooted init does not see the container's root mount");
        let btrfs = b"200 180 0:46 /btrfs/subvolumes/abc / rw,relatime - btrfs /dev/loop3 rw,subvolid=258\n";
        let fs = root(btrfs).unwrap();
        assert_eq!((fs.device, fs.root), (Device { major: 0, minor: 46 }, PathBuf::from("/btrfs/subvolumes/abc")));
    }

    /// Files on the container's root mount keep their path; on a tmpfs, a bind from the host or a
    /// memfd's mount (not listed) they are no evidence.
    #[test]
    fn paths_in_the_containers_own_namespace() {
        let t = table(&[("/", CONTAINER)]);
        let c = overlay_root();
        assert_eq!(place(&t, 142, "/tmp/#6970", &c).as_deref(), Some("/tmp/#6970"));
        assert_eq!(place(&t, 160, "/scratch/#12", &c), None, "tmpfs");
        assert_eq!(place(&t, 159, "/etc/hosts", &c), None, "another filesystem");
        assert_eq!(place(&t, 1, "/memfd:x", &c), None, "not a listed mount");
    }

    /// `unshare -m` + `pivot_root` into a bind of the container's `/var`: the link target
    /// (`/tmp/#12`) is spelled from the new root; the write is in the container's `/var/tmp`. The
    /// container's old root, still mounted at `/old` in that namespace, places its files too.
    #[test]
    fn a_nested_root_bound_from_the_container() {
        let nested = b"171 90 0:65 /var / rw,relatime - overlay overlay rw\n\
            100 171 0:65 / /old rw,relatime - overlay overlay rw\n\
            101 100 0:68 / /old/proc rw - proc proc rw\n";
        let t = table(&[("/", nested)]);
        let c = overlay_root();
        assert_eq!(place(&t, 171, "/tmp/#12", &c).as_deref(), Some("/var/tmp/#12"));
        assert_eq!(place(&t, 100, "/old/tmp/#13", &c).as_deref(), Some("/tmp/#13"));
        assert_eq!(place(&t, 100, "/elsewhere/#14", &c), None, "not below the mount point");
    }

    /// `pivot_root` into a tmpfs: the nested `/tmp` is that tmpfs, not the container's.
    #[test]
    fn a_nested_root_on_a_tmpfs() {
        let nested = b"180 90 0:99 / / rw - tmpfs none rw\n181 180 0:65 / /old rw - overlay overlay rw\n";
        let t = table(&[("/", nested)]);
        assert_eq!(place(&t, 180, "/tmp/#12", &overlay_root()), None);
        assert_eq!(place(&t, 181, "/old/tmp/#12", &overlay_root()).as_deref(), Some("/tmp/#12"));
    }

    /// `chroot /var` in the container's namespace: the link target is spelled from the namespace's
    /// root (`/var/tmp/#12`), and the process's own view lists nothing; the namespace's table,
    /// read from its root (or another process's view from there), places it. A chroot that sees
    /// mounts below it re-spells them from the namespace's root.
    #[test]
    fn chrooted_processes_are_placed_through_their_namespace() {
        let c = overlay_root();
        let t = table(&[("/", CONTAINER), ("/var", b"")]);
        assert_eq!(place(&t, 142, "/var/tmp/#12", &c).as_deref(), Some("/var/tmp/#12"));
        let jail = b"300 142 0:99 / / rw - tmpfs none rw\n301 300 0:65 /srv /data rw - overlay overlay rw\n";
        let t = table(&[("/", CONTAINER), ("/jail", jail)]);
        assert_eq!(t[&301].mount_point, Path::new("/jail/data"));
        assert_eq!(place(&t, 301, "/jail/data/tmp/#3", &c).as_deref(), Some("/srv/tmp/#3"));
        assert_eq!(place(&t, 300, "/jail/tmp/#4", &c), None, "the jail's tmpfs");
        let gone = table(&[("/jail (deleted)", jail)]);
        assert!(gone.is_empty(), "a deleted root re-spells nothing");
    }

    /// `unshare -m` then `chroot /var`: the holder is alone in a copy of the container's namespace
    /// (new mount ids), its own view lists nothing, but that namespace's table read from its root
    /// does. A descriptor it inherited from before the `unshare` is on the container namespace's
    /// mount, spelled from that namespace's root: found in that namespace's table (one table for
    /// all namespaces, by mount id).
    #[test]
    fn mounts_of_several_namespaces_in_one_table() {
        let c = overlay_root();
        let copy = b"500 480 0:65 / / rw - overlay overlay rw\n501 500 0:80 / /scratch rw - tmpfs tmpfs rw\n";
        let t = table(&[("/var", b""), ("/", copy), ("/", CONTAINER)]);
        assert_eq!(place(&t, 500, "/var/tmp/#3", &c).as_deref(), Some("/var/tmp/#3"));
        assert_eq!(place(&t, 142, "/tmp/#4", &c).as_deref(), Some("/tmp/#4"), "inherited across unshare -m");
        assert_eq!(place(&t, 501, "/scratch/#5", &c), None, "the copy's tmpfs");
    }

    /// A tmpfs mounted over `/` in the container's namespace after the holder opened its file: the
    /// namespace's table read from its root starts at the top of that stack and lists neither the
    /// container's root mount nor what is below it; the holder's own view (its root stays below)
    /// adds them, without changing what the table has.
    #[test]
    fn a_mount_stacked_on_the_root_hides_nothing_from_the_holders_view() {
        let from_top = b"300 142 0:90 / / rw - tmpfs tmpfs rw\n";
        let mut t = table(&[("/", from_top)]);
        assert!(!t.contains_key(&142));
        add_view(&mut t, Path::new("/"), mountinfo::parse(CONTAINER));
        add_view(&mut t, Path::new("/"), mountinfo::parse(from_top));
        assert_eq!(place(&t, 142, "/tmp/#6", &overlay_root()).as_deref(), Some("/tmp/#6"));
        assert_eq!(place(&t, 300, "/tmp/#7", &overlay_root()), None);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn mount_namespace_inode_numbers() {
        assert_eq!(namespace_inode(Path::new("mnt:[4026532177]")), Some(4026532177));
        for bad in ["net:[4026532177]", "mnt:[]", "mnt:[12", "mnt:[x]", "/proc/1/ns/mnt"] {
            assert_eq!(namespace_inode(Path::new(bad)), None, "{bad}");
        }
    }

    /// A thread of its own joins another mount namespace and reads its table from the namespace's
    /// root (a tmpfs mounted only there is listed, at its path); the calling thread stays in ours.
    /// Needs root (`CAP_SYS_ADMIN`) and util-linux `unshare`; skipped otherwise.
    #[test]
    fn a_namespace_table_is_read_by_a_thread_that_joins_it() {
        use std::io::BufRead;
        // Under CI=true every test runs: a missing prerequisite fails instead of skipping.
        let skip = |why: &str| assert!(std::env::var("CI").as_deref() != Ok("true"), "{why} is required under CI=true");
        if !rustix::process::geteuid().is_root() {
            return skip("root");
        }
        let dir = tempfile::tempdir().unwrap();
        let script = format!("mount -t tmpfs rodiff-probe '{}' && echo ready && exec sleep 60", dir.path().display());
        let spawned = std::process::Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdout(std::process::Stdio::piped())
            .spawn();
        let Ok(mut child) = spawned else { return skip("util-linux unshare") };
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let ours = std::fs::read_link("/proc/thread-self/ns/mnt").unwrap();
        let ns = std::fs::File::open(format!("/proc/{}/ns/mnt", child.id()));
        let text = ns.and_then(|ns| namespace_mountinfo(ns.into()));
        child.kill().unwrap();
        child.wait().unwrap();
        if line != "ready\n" {
            return skip("a mount namespace from unshare");
        }
        let probe = |m: &Mount| m.source == "rodiff-probe" && m.fs_type == "tmpfs";
        let theirs = mountinfo::parse(&text.unwrap());
        assert!(theirs.iter().any(|m| probe(m) && m.mount_point == dir.path()), "{theirs:#?}");
        assert!(theirs.iter().any(|m| m.mount_point == Path::new("/")));
        assert!(!mountinfo::read(Path::new("/proc/self/mountinfo")).unwrap().iter().any(probe));
        assert_eq!(std::fs::read_link("/proc/thread-self/ns/mnt").unwrap(), ours);
    }

    /// Docker's btrfs driver: the container's `/` is a subvolume of a btrfs filesystem that also
    /// holds the other containers' subvolumes and the volumes.
    #[test]
    fn btrfs_subvolume_roots() {
        let c = RootFs { device: Device { major: 0, minor: 46 }, root: "/btrfs/subvolumes/abc".into() };
        let own = b"200 180 0:46 /btrfs/subvolumes/abc / rw - btrfs /dev/loop3 rw\n\
            210 200 0:46 /volumes/v/_data /data rw - btrfs /dev/loop3 rw\n\
            211 200 0:46 /btrfs/subvolumes/abcdef /other rw - btrfs /dev/loop3 rw\n";
        let t = table(&[("/", own)]);
        assert_eq!(place(&t, 200, "/tmp/#5", &c).as_deref(), Some("/tmp/#5"));
        assert_eq!(place(&t, 210, "/data/#6", &c), None, "a volume on the same filesystem");
        assert_eq!(place(&t, 211, "/other/#7", &c), None, "a subvolume whose name only starts the same");
        let nested = b"230 90 0:46 /btrfs/subvolumes/abc/var / rw - btrfs /dev/loop3 rw\n";
        let t = table(&[("/", nested)]);
        assert_eq!(place(&t, 230, "/tmp/#8", &c).as_deref(), Some("/var/tmp/#8"));
    }

    /// Mount points and roots with space, tab, newline and backslash come escaped; link targets
    /// are raw bytes.
    #[test]
    fn escaped_mountinfo_names() {
        let text = b"142 69 0:65 / / rw - overlay overlay rw\n\
            240 142 0:65 /my\\040dir/a\\134b /mnt/new\\012line\\011x rw - overlay overlay rw\n";
        let t = table(&[("/", text)]);
        let former = OsStr::from_bytes(b"/mnt/new\nline\tx/sub dir/#9");
        let got = container_path(Path::new(former), &t[&240], &overlay_root()).unwrap();
        assert_eq!(got.as_os_str().as_bytes(), b"/my dir/a\\b/sub dir/#9");
    }

    #[test]
    fn a_mount_of_a_deleted_directory_places_nothing() {
        let t = table(&[("/", b"250 142 0:65 /gone//deleted /mnt rw - overlay overlay rw\n")]);
        assert_eq!(place(&t, 250, "/mnt/#1", &overlay_root()), None);
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
