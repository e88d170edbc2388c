//! The overlay engine on real overlayfs mounts made by the test (needs root), including what
//! Docker never produces by default: `redirect_dir=on,metacopy=on` and `userxattr` mounts.
//!
//! Each test builds an image from two lower layers (with a lower whiteout and a lower opaque
//! directory), mounts it, changes files through the mount like a container would, and compares
//! the engine's answer with an independent two-tree comparison of the mounted image and container
//! views (`common::naive`), plus explicit checks of what only rodiff sees (kind `T`).

mod common;

use std::fs;
use std::path::Path;

use common::*;
use rodiff::model::{ChangeKind, FileType};

/// Two lower layers: l0 (top) deletes `/gone` and makes `/opq` opaque over l1's content.
fn image(lowers: &[std::path::PathBuf], ns: &str) {
    let (top, base) = (&lowers[0], &lowers[1]);
    ops::base_tree(base);
    // The top layer: a whiteout for /gone, an opaque /opq with new content, a changed file.
    whiteout(&top.join("gone"));
    fs::create_dir(top.join("opq")).unwrap();
    set_xattr(&top.join("opq"), &format!("{ns}.overlay.opaque"), b"y");
    fs::write(top.join("opq/visible"), "top\n").unwrap();
    fs::create_dir_all(top.join("srv/data")).unwrap();
    fs::write(top.join("srv/data/c"), "top c\n").unwrap();
    ops::set_old_mtimes(base);
    ops::set_old_mtimes(top);
}

fn check_against_naive(m: &mut OverlayMount) -> Vec<rodiff::Change> {
    let expected = naive::diff(&m.merged, &m.image);
    let changes = engine_diff(&m.layer());
    let got = docker_visible(&changes);
    let show = |s: &std::collections::BTreeSet<(char, Vec<u8>)>| {
        s.iter().map(|(k, p)| format!("{k} {}", String::from_utf8_lossy(p))).collect::<Vec<_>>().join("\n")
    };
    assert_eq!(got, expected, "engine:\n{}\n\nnaive oracle:\n{}", show(&got), show(&expected));
    // The engine reads the upper directory only; it must give the same answer unmounted.
    m.unmount();
    assert_eq!(docker_visible(&engine_diff(&m.layer())), expected);
    changes
}

fn touched(changes: &[rodiff::Change]) -> Vec<String> {
    paths_of(changes, ChangeKind::Touched)
}

#[test]
fn default_mount_matches_the_naive_oracle() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let mut m = OverlayMount::new(2, |l| image(l, "trusted"));
    m.mount("redirect_dir=off,index=off,metacopy=off");
    ops::container_writes(&m.merged, false);
    let changes = check_against_naive(&mut m);
    // The hard link copied its target up unchanged; so did setting capabilities to what they were.
    assert_eq!(touched(&changes), vec!["/srv/caps/same", "/srv/data/c", "/tmp", "/var/log/old.log"]);
    // setcap and setcap -r change no stat field: `docker diff` compares capabilities too.
    for path in ["/srv/caps/bind", "/srv/caps/raw"] {
        assert_eq!(changes.iter().find(|c| c.path == Path::new(path)).map(|c| c.kind), Some(ChangeKind::Changed), "{path}");
    }
    let fifo = changes.iter().find(|c| c.path == Path::new("/srv/fifo")).unwrap();
    assert_eq!(fifo.file_type, FileType::Fifo);
}

#[test]
fn redirect_dir_and_metacopy_mount_matches_the_naive_oracle() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let mut m = OverlayMount::new(2, |l| image(l, "trusted"));
    m.mount("redirect_dir=on,metacopy=on,index=off");
    ops::container_writes(&m.merged, true);
    // The renames must really have produced redirects and metacopy files, or this test tests
    // nothing new.
    let redirect = rustix::fs::lgetxattr(m.upper.join("srv/renamed"), "trusted.overlay.redirect", &mut [0u8; 256][..]);
    assert!(redirect.is_ok(), "no redirect xattr on the renamed directory");
    let metacopy = rustix::fs::lgetxattr(m.upper.join("etc/conf"), "trusted.overlay.metacopy", &mut [0u8; 256][..]);
    assert!(metacopy.is_ok(), "chmod did not make a metacopy file");
    let changes = check_against_naive(&mut m);
    // The renamed directory carries the lower content: reported as added, with its content.
    let added = paths_of(&changes, ChangeKind::Added);
    assert!(added.contains(&"/srv/renamed/inner/f".to_string()), "{added:?}");
    assert!(added.contains(&"/srv/x-top/y/z".to_string()), "{added:?}");
    assert!(paths_of(&changes, ChangeKind::Deleted).contains(&"/srv/ren".to_string()));
}

#[test]
fn userxattr_mount_matches_the_naive_oracle() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let mut m = OverlayMount::new(2, |l| image(l, "user"));
    m.mount("userxattr");
    ops::container_writes(&m.merged, false);
    let opaque = rustix::fs::lgetxattr(m.upper.join("opq"), "user.overlay.opaque", &mut [0u8; 8][..]);
    assert!(opaque.is_ok(), "re-created directory is not opaque in the user namespace");
    let changes = check_against_naive(&mut m);
    assert_eq!(touched(&changes), vec!["/srv/caps/same", "/srv/data/c", "/tmp", "/var/log/old.log"]);
}

#[test]
fn deeper_than_path_max() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    // A descriptor per level is open during the walk: as an embedder must, raise the limit.
    rodiff::raise_fd_limit();
    let mut m = OverlayMount::new(1, |l| fs::create_dir(l[0].join("deep")).unwrap());
    m.mount("");
    // 3000 levels of 2-byte names: 6000 bytes, more than PATH_MAX; built with relative steps.
    let name = std::ffi::CString::new("dd").unwrap();
    let mut fd = rustix::fs::open(m.at("deep"), rustix::fs::OFlags::DIRECTORY, 0.into()).unwrap();
    for _ in 0..3000 {
        rustix::fs::mkdirat(&fd, name.as_c_str(), 0o755.into()).unwrap();
        fd = rustix::fs::openat(&fd, name.as_c_str(), rustix::fs::OFlags::DIRECTORY, 0.into()).unwrap();
    }
    let f = rustix::fs::openat(&fd, c"leaf", rustix::fs::OFlags::CREATE | rustix::fs::OFlags::WRONLY, 0o644.into()).unwrap();
    drop((f, fd));
    m.unmount();
    let changes = engine_diff(&m.layer());
    assert_eq!(changes.len(), 3002, "3000 dirs, the leaf and C /deep");
    let leaf = changes.iter().find(|c| c.path_bytes().ends_with(b"/leaf")).unwrap();
    assert_eq!(leaf.path_bytes().len(), "/deep".len() + 3000 * 3 + "/leaf".len());
    assert_eq!(leaf.kind, ChangeKind::Added);
}

/// An inotify watch for opens and reads of a directory and the files in it.
struct Watch(std::os::fd::OwnedFd);

impl Watch {
    fn new(dir: &Path) -> Watch {
        use std::os::fd::FromRawFd;
        let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: plain syscalls on a descriptor we own.
        unsafe {
            let fd = libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC);
            assert!(fd >= 0, "inotify_init1");
            assert!(libc::inotify_add_watch(fd, path.as_ptr(), libc::IN_OPEN | libc::IN_ACCESS) >= 0, "inotify_add_watch");
            Watch(std::os::fd::OwnedFd::from_raw_fd(fd))
        }
    }

    /// Whether anything opened or read the watched directory since the watch began.
    fn touched(&self) -> bool {
        let mut buf = [0u8; 4096];
        // SAFETY: reads into a buffer we own.
        let n = unsafe { libc::read(std::os::fd::AsRawFd::as_raw_fd(&self.0), buf.as_mut_ptr().cast(), buf.len()) };
        n > 0
    }
}

/// `overlay.redirect` values the kernel refuses (fs/overlayfs: empty components, `.`/`..`
/// components, a relative redirect with a `/`) must make the diff fail, naming the directory and
/// the value, without opening anything outside the layer — in both xattr namespaces. The kernel
/// follows markers only when they are valid; rodiff runs as root over directories that, with
/// `userxattr`, an unprivileged user controls.
#[test]
fn hostile_redirects_fail_closed_without_looking_outside_the_layer() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    for ns in ["trusted", "user"] {
        let mut m = OverlayMount::new(1, |l| {
            fs::create_dir_all(l[0].join("srv/kept")).unwrap();
            fs::write(l[0].join("srv/kept/f"), "image\n").unwrap();
        });
        let outside = m.dir.path().join("OUTSIDE");
        fs::create_dir(&outside).unwrap();
        fs::write(outside.join("secret-host-file"), "host\n").unwrap();
        let tmp_name = m.dir.path().file_name().unwrap().to_str().unwrap().to_string();
        // Every one resolves, naively, to a directory outside the lower layer (or to nothing).
        let values = [format!("/../../{tmp_name}/OUTSIDE"), "/../OUTSIDE".into(), "..".into(), "a/b".into(), "//x".into(), "/srv/kept/".into()];
        m.mount(if ns == "user" { "userxattr" } else { "redirect_dir=on" });
        fs::create_dir(m.at("srv/evil")).unwrap();
        m.unmount();
        let evil = m.upper.join("srv/evil");
        // The kernel may have made the new directory opaque, and never reads an opaque one's
        // redirect.
        let _ = rustix::fs::lremovexattr(&evil, format!("{ns}.overlay.opaque").as_str());
        for value in &values {
            set_xattr(&evil, &format!("{ns}.overlay.redirect"), value.as_bytes());
            if ns == "trusted" {
                // The kernel refuses to look the directory up (with `userxattr` it follows no
                // redirect at all).
                m.mount("redirect_dir=on");
                assert!(fs::symlink_metadata(m.at("srv/evil")).is_err(), "the kernel followed redirect {value:?}");
                m.unmount();
            }
            let watch = Watch::new(&outside);
            let collect = rodiff::layer::Collect::default();
            let result = rodiff::layer::Layer::Overlay(m.layer()).diff(common::walkers(), &Default::default(), &collect);
            let reported = collect.into_sorted();
            let leaked: Vec<_> = reported.iter().filter(|c| c.path_bytes().starts_with(b"/srv/evil/")).collect();
            assert!(leaked.is_empty(), "{ns} redirect {value:?}: reported {leaked:?}");
            assert!(!watch.touched(), "{ns} redirect {value:?}: opened a directory outside the layer");
            let err = result.expect_err(&format!("{ns} redirect {value:?} must fail the diff"));
            assert!(matches!(&err, rodiff::Error::HostileLayer { path, .. } if *path == evil), "{err}");
            let message = err.to_string();
            assert!(message.contains(&evil.display().to_string()) && message.contains(value.as_str()), "{message}");
        }
        // On an opaque directory the kernel never reads the redirect: neither does rodiff.
        set_xattr(&evil, &format!("{ns}.overlay.opaque"), b"y");
        let watch = Watch::new(&outside);
        let changes = engine_diff(&m.layer());
        assert!(!watch.touched(), "{ns}: opened a directory outside the layer");
        assert_eq!(changes.iter().map(|c| c.path.to_string_lossy().into_owned()).collect::<Vec<_>>(), ["/srv", "/srv/evil"]);
        if ns == "trusted" {
            m.mount("redirect_dir=on");
            assert!(fs::symlink_metadata(m.at("srv/evil")).is_ok(), "the kernel refused an opaque directory");
        }
    }
}

/// Makes an `O_TMPFILE` file in `dir` and closes it: a write that leaves no name.
fn tmpfile_in(dir: &Path) {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: open/close of a descriptor we own.
    unsafe {
        let fd = libc::open(path.as_ptr(), libc::O_TMPFILE | libc::O_RDWR, 0o600);
        assert!(fd >= 0, "O_TMPFILE in {}: {}", dir.display(), std::io::Error::last_os_error());
        assert_eq!(libc::write(fd, b"x".as_ptr().cast(), 1), 1);
        libc::close(fd);
    }
}

/// Writes that leave no name in a directory the image has — an `O_TMPFILE` file, an extended
/// attribute set on the directory, a whiteout of a name the image lacks — leave only the copied-up
/// directory, identical to the image's: kind `T`, while untouched directories and the parents
/// whose copy-up a reported child explains stay silent.
#[test]
fn writes_that_leave_no_name_leave_a_touched_directory() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let mut m = OverlayMount::new(2, |l| {
        image(l, "trusted");
        for d in ["spool", "attr", "quiet", "var/cache"] {
            fs::create_dir_all(l[0].join(d)).unwrap();
        }
        fs::write(l[0].join("spool/queued"), "q\n").unwrap();
        ops::set_old_mtimes(&l[0]);
    });
    m.mount("redirect_dir=off,index=off,metacopy=off");
    tmpfile_in(&m.at("tmp"));
    tmpfile_in(&m.at("spool"));
    tmpfile_in(&m.at("var/cache"));
    set_xattr(&m.at("attr"), "user.note", b"set by the container");
    check_against_naive(&mut m);
    // A whiteout of a name the image does not have (the kernel makes none; a layer may hold one).
    let quiet = m.upper.join("quiet");
    fs::create_dir(&quiet).unwrap();
    whiteout(&quiet.join("never-in-the-image"));
    let image_quiet = fs::metadata(m.lowers[0].join("quiet")).unwrap();
    fs::set_permissions(&quiet, image_quiet.permissions()).unwrap();
    let t = rustix::fs::Timespec { tv_sec: std::os::unix::fs::MetadataExt::mtime(&image_quiet), tv_nsec: 0 };
    rustix::fs::utimensat(rustix::fs::CWD, &quiet, &rustix::fs::Timestamps { last_access: t, last_modification: t }, rustix::fs::AtFlags::empty()).unwrap();

    let changes = engine_diff(&m.layer());
    let all: Vec<_> = changes.iter().map(|c| format!("{} {}", c.kind.letter(), c.path.display())).collect();
    assert_eq!(all, ["T /attr", "T /quiet", "T /spool", "T /tmp", "T /var/cache"], "/var's copy-up is explained by /var/cache");
}
