//! The btrfs engine after reads, on real subvolumes (needs root): what reads do to the b-tree
//! (access times rewrite inode items) must change neither the answer nor, beyond a bound per
//! candidate, the cost. Found by an adversarial review; kept as regression tests.

mod common;

use std::fs;
use std::io::Write;
use std::process::Command;

use common::btrfs::{read_everything, search_stats, BtrfsFs};
use common::*;
use rodiff::layer::{BtrfsLayer, Collect, Layer, ScanOptions};

fn engine(layer: &BtrfsLayer) -> (Vec<rodiff::Change>, u64) {
    let collect = Collect::default();
    let scan = ScanOptions::default();
    Layer::Btrfs(layer.clone()).diff(common::walkers(), &scan, &collect).expect("btrfs diff");
    (collect.into_sorted(), scan.progress.get())
}

/// Lists every directory below `dir` (what `find` and `docker diff` do): each first listing
/// rewrites the directory's inode item (relatime).
fn list_everything(dir: &std::path::Path) {
    for entry in fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_dir() {
            list_everything(&entry.path());
        }
    }
}

/// An image of `dirs` × `files` empty files, made either directory by directory (each directory's
/// files follow it in inode order, as a tar extraction does) or all directories first (as
/// `RUN mkdir -p /data/a /data/b … && populate` in a build, a snapshot-based btrfs layer keeps
/// creation order). Returns the layer after `find` walked the container and 6 changes were made.
fn image(fs: &BtrfsFs, name: &str, dirs_first: bool, dirs: usize, files: usize) -> BtrfsLayer {
    let image = fs.subvolume(&format!("{name}-image"));
    let dir = |d: usize| image.join(format!("data/d{d:03}"));
    fs::create_dir(image.join("data")).unwrap();
    if dirs_first {
        for d in 0..dirs {
            fs::create_dir(dir(d)).unwrap();
        }
    }
    for d in 0..dirs {
        if !dirs_first {
            fs::create_dir(dir(d)).unwrap();
        }
        for f in 0..files {
            fs::write(dir(d).join(format!("file-with-a-typical-name-{f:05}.conf")), "").unwrap();
        }
    }
    run(Command::new("touch").args(["-h", "-d", "2001-01-01"]).arg(image.join("data")));
    let init = fs.snapshot(&image, &format!("{name}-init"), false);
    let container = fs.snapshot(&init, &format!("{name}-container"), false);
    list_everything(&container);
    // Six changes in a small directory of their own: the walk itself is tiny.
    fs::create_dir(container.join("app")).unwrap();
    for i in 0..6 {
        fs::write(container.join(format!("app/new-{i}")), "x").unwrap();
    }
    run(&mut Command::new("sync"));
    BtrfsLayer { subvolume: container, parent: init }
}

/// "Batch the parent look-ups so their cost follows the number of candidates": after `find`,
/// every directory is a candidate (its access time changed). A search over a range of inode
/// numbers returns every item of every inode inside it — for directories, all their entries — so
/// when directory inodes are neighbours (made before their files) a ranged look-up read the whole
/// image's listings. Counted in items (deterministic), the look-ups must cost about as much for
/// both layouts, and a bounded number of items per candidate.
#[test]
fn parent_lookups_follow_the_candidates_not_the_entries_of_adjacent_directories() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let (dirs, files) = (40, 2_000);
    let interleaved = image(&fs, "a", false, dirs, files);
    let adjacent = image(&fs, "b", true, dirs, files);
    let (ca, va) = engine(&interleaved);
    let (cb, vb) = engine(&adjacent);
    assert_eq!(ca.len(), cb.len(), "same changes");
    assert_eq!(va, vb, "same walk");
    let (sa, sb) = (search_stats(&interleaved), search_stats(&adjacent));
    eprintln!("directory by directory: {sa:?}; directories first: {sb:?}");
    for stats in [sa, sb] {
        assert!(stats.access_only >= dirs as u64, "every listed directory is an access-only candidate: {stats:?}");
        // A handful of items per candidate: never a directory's listing.
        assert!(stats.parent_items <= stats.candidates * 40, "look-ups read {} items for {} candidates", stats.parent_items, stats.candidates);
    }
    assert!(sb.parent_items <= sa.parent_items * 3 + 1_000, "directories first: {sb:?}; directory by directory: {sa:?}");
    assert!(sb.parent_items < (dirs * files) as u64 / 4, "the look-ups read the directories' listings: {sb:?}");
}

fn kinds_visible(layer: &BtrfsLayer) -> std::collections::BTreeSet<(char, Vec<u8>)> {
    docker_visible(&engine(layer).0)
}

/// Changes the access-time filter could mistake for reads, after the container read everything,
/// and files deleted (or directories removed) while held open when the helper snapshot is taken
/// (orphan inodes in the frozen tree): the engine must match the naive two-tree comparison and
/// must not fail.
#[test]
fn tricky_changes_after_reads_match_the_naive_oracle() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let fs = BtrfsFs::new();
    let image = fs.subvolume("image");
    for d in ["caps", "x", "r", "h", "gone-dir", "ext", "tmp", "same"] {
        fs::create_dir(image.join(d)).unwrap();
    }
    for f in ["caps/f", "x/a", "r/a", "h/f", "rootfile", "same/f"] {
        fs::write(image.join(f), "content").unwrap();
    }
    fs::write(image.join("ext/f"), "linked").unwrap();
    for i in 0..200 {
        // Long names in one directory: the INODE_REF item overflows into INODE_EXTREFs.
        fs::hard_link(image.join("ext/f"), image.join(format!("ext/{:0>200}", i))).unwrap();
    }
    run(Command::new("sh").arg("-c").arg(format!("find {} -exec touch -h -d 2001-01-01 {{}} +", image.display())));
    let init = fs.snapshot(&image, "init", false);
    let container = fs.snapshot(&init, "container", false);
    let layer = BtrfsLayer { subvolume: container.clone(), parent: init.clone() };
    read_everything(&container);
    assert!(kinds_visible(&layer).is_empty(), "reads only");

    run(Command::new("setcap").arg("cap_net_raw+ep").arg(container.join("caps/f")));
    fs::hard_link(container.join("x/a"), container.join("x/b")).unwrap();
    fs::remove_file(container.join("x/b")).unwrap();
    fs::rename(container.join("r/a"), container.join("r/b")).unwrap();
    fs::rename(container.join("r/b"), container.join("r/a")).unwrap();
    fs::set_permissions(container.join("rootfile"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::set_permissions(container.join("ext/f"), fs::Permissions::from_mode(0o600)).unwrap();
    // Other bytes, same size, mtime put back: only ctime tells the search, and the bytes the
    // engine (C, as the oracle says).
    fs::write(container.join("same/f"), "CONTENT").unwrap();
    run(Command::new("touch").args(["-h", "-d", "2001-01-01"]).arg(container.join("same/f")));
    // Held open while deleted, during the diff.
    let held_file = fs::File::open(container.join("h/f")).unwrap();
    fs::remove_file(container.join("h/f")).unwrap();
    let held_dir = fs::File::open(container.join("gone-dir")).unwrap();
    fs::remove_dir(container.join("gone-dir")).unwrap();
    let tmpfile = rustix::fs::openat(
        rustix::fs::CWD,
        container.join("tmp"),
        rustix::fs::OFlags::TMPFILE | rustix::fs::OFlags::RDWR,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .unwrap();
    rustix::io::write(&tmpfile, b"scratch").unwrap();
    read_everything(&container);

    let got = kinds_visible(&layer);
    let expected = common::naive::diff(&container, &init);
    let show = |s: &std::collections::BTreeSet<(char, Vec<u8>)>| {
        s.iter().map(|(k, p)| format!("{k} {}", String::from_utf8_lossy(p).chars().take(40).collect::<String>())).collect::<Vec<_>>()
    };
    assert_eq!(show(&got), show(&expected));
    assert!(got.len() >= 200 + 6, "{:?}", show(&got));
    eprintln!("{} changes: {:?}", got.len(), show(&got).iter().take(8).collect::<Vec<_>>());
    drop((held_file, held_dir, tmpfile));
}

/// A directory of the image with more changed entries than the engine checks one by one
/// (`MAX_NAMES_PER_DIR`), left untouched itself (mode and bytes changed in place do not rewrite a
/// directory): the engine reads it whole instead, and must still match the naive two-tree
/// comparison — changes in it, below it and beside it.
#[test]
fn a_directory_with_more_changed_entries_than_names_kept_matches_the_naive_oracle() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    use rodiff::layer::btrfs::changed::MAX_NAMES_PER_DIR;
    use std::os::unix::fs::PermissionsExt;
    let fs = BtrfsFs::new();
    let image = fs.subvolume("image");
    let entries = MAX_NAMES_PER_DIR + 1000;
    for d in ["big", "big/sub", "small"] {
        fs::create_dir(image.join(d)).unwrap();
    }
    for i in 0..entries {
        fs::write(image.join(format!("big/f{i:05}")), "content").unwrap();
    }
    for f in ["big/sub/a", "small/a", "small/b"] {
        fs::write(image.join(f), "content").unwrap();
    }
    run(Command::new("sh").arg("-c").arg(format!("find {} -exec touch -h -d 2001-01-01 {{}} +", image.display())));
    let init = fs.snapshot(&image, "init", false);
    let container = fs.snapshot(&init, "container", false);
    let layer = BtrfsLayer { subvolume: container.clone(), parent: init.clone() };
    read_everything(&container);

    // Nine in ten files of big get another mode, every third other bytes; one below it and one
    // beside it change too.
    for i in (0..entries).filter(|i| i % 10 != 0) {
        fs::set_permissions(container.join(format!("big/f{i:05}")), fs::Permissions::from_mode(0o600)).unwrap();
    }
    for i in (0..entries).step_by(3) {
        fs::OpenOptions::new().write(true).open(container.join(format!("big/f{i:05}"))).unwrap().write_all(b"CONTENT").unwrap();
    }
    fs::set_permissions(container.join("big/sub/a"), fs::Permissions::from_mode(0o600)).unwrap();
    fs::write(container.join("small/b"), "other").unwrap();
    assert_eq!(
        fs::metadata(container.join("big")).unwrap().modified().unwrap(),
        fs::metadata(init.join("big")).unwrap().modified().unwrap(),
        "big itself is unchanged"
    );

    let got = kinds_visible(&layer);
    let expected = common::naive::diff(&container, &init);
    assert_eq!(got, expected);
    let changed_in_big = got.iter().filter(|(_, p)| p.starts_with(b"/big/f")).count();
    assert!(changed_in_big > MAX_NAMES_PER_DIR, "{changed_in_big} changes in /big");
    assert!(got.contains(&('C', b"/big/sub/a".to_vec())) && got.contains(&('C', b"/small/b".to_vec())), "{} changes", got.len());
}
