//! The windowed parent look-ups of the btrfs engine, on real subvolumes (needs root; found by an
//! adversarial review, kept as regression tests): every candidate whose access time alone was
//! rewritten must be answered (a skipped one would count as changed, silently widening the walk),
//! with items far larger than a window assumes; and the cost stays a handful of items per
//! candidate however reads and directory listings alternate.

mod common;

use std::fs;
use std::process::Command;

use common::btrfs::{search_stats, BtrfsFs};
use common::*;
use rodiff::layer::{BtrfsLayer, Collect, Layer, ScanOptions};

fn xattr(path: &std::path::Path, name: &str, len: usize, fill: u8) {
    set_xattr(path, name, &vec![fill; len]);
}

struct Lcg(u64);
impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
}

#[test]
fn lookups_answer_every_read_only_candidate() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let bfs = BtrfsFs::new();
    let image = bfs.subvolume("image");
    let mut rng = Lcg(42);
    let mut files = Vec::new();
    // A mix, in inode order: files with xattrs of 0..15 KB (a leaf holds one), inline extents up
    // to 2 KB, big directories, small directories.
    for d in 0..30 {
        let dir = image.join(format!("d{d:02}"));
        fs::create_dir(&dir).unwrap();
        let n = if d % 5 == 0 { 1500 } else { 40 };
        for f in 0..n {
            let p = dir.join(format!("f{f:05}"));
            let size = (rng.next() % 2048) as usize;
            fs::write(&p, vec![b'x'; size]).unwrap();
            match rng.next() % 4 {
                0 => xattr(&p, "user.big", 14_000 + (rng.next() % 1500) as usize, b'a'),
                1 => xattr(&p, "user.mid", 3_000, b'b'),
                _ => {}
            }
            files.push(p);
        }
    }
    run(Command::new("sh").arg("-c").arg(format!("find {} -exec touch -h -d 2001-01-01 {{}} +", image.display())));
    let init = bfs.snapshot(&image, "init", false);
    let container = bfs.snapshot(&init, "container", false);
    let layer = BtrfsLayer { subvolume: container.clone(), parent: init.clone() };
    // Read a random subset of files (relatime rewrites their inode items) and list some dirs.
    let mut read = 0u64;
    for p in &files {
        if rng.next() % 3 == 0 {
            let rel = p.strip_prefix(&image).unwrap();
            fs::read(container.join(rel)).unwrap();
            read += 1;
        }
    }
    for d in (0..30).step_by(2) {
        fs::read_dir(container.join(format!("d{d:02}"))).unwrap().count();
    }
    run(&mut Command::new("sync"));
    let s = search_stats(&layer);
    eprintln!("reads only: {read} files read: {s:?}");
    assert_eq!(s.access_only, s.candidates, "every candidate is access-only: {s:?}");
    let collect = Collect::default();
    Layer::Btrfs(layer.clone()).diff(common::walkers(), &ScanOptions::default(), &collect).unwrap();
    assert!(collect.into_sorted().is_empty());

    // Now new inodes after the parent's last one, interleaved with more reads.
    fs::create_dir(container.join("new")).unwrap();
    for i in 0..500 {
        fs::write(container.join(format!("new/{i}")), "n").unwrap();
    }
    run(&mut Command::new("sync"));
    let s2 = search_stats(&layer);
    eprintln!("with 501 new inodes: {s2:?}");
    // new dir + 500 files + root (a new entry) are not access-only.
    assert_eq!(s2.access_only, s2.candidates - 502, "{s2:?}");
    let collect = Collect::default();
    Layer::Btrfs(layer.clone()).diff(common::walkers(), &ScanOptions::default(), &collect).unwrap();
    let got = docker_visible(&collect.into_sorted());
    assert_eq!(got, naive::diff(&layer.subvolume, &layer.parent));
    assert!(s.parent_items <= s.candidates * 40, "cost {s:?}");
}

/// Runs of `k` read files, each followed by a listed directory of 3,000 entries: the window grown
/// by a run reads into the listing, then shrinks. The cost stays bounded per candidate.
#[test]
fn a_window_that_grows_and_shrinks_costs_a_handful_of_items_a_candidate() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    for k in [2usize, 30, 400] {
        let bfs = BtrfsFs::new();
        let image = bfs.subvolume("image");
        let groups = 12;
        for g in 0..groups {
            let run_dir = image.join(format!("r{g:02}"));
            fs::create_dir(&run_dir).unwrap();
            for f in 0..k {
                fs::write(run_dir.join(format!("{f}")), "x").unwrap();
            }
            let big = image.join(format!("big{g:02}"));
            fs::create_dir(&big).unwrap();
            for f in 0..3000 {
                fs::write(big.join(format!("entry-with-a-name-{f:05}")), "").unwrap();
            }
        }
        run(Command::new("sh").arg("-c").arg(format!("find {} -exec touch -h -d 2001-01-01 {{}} +", image.display())));
        let init = bfs.snapshot(&image, "init", false);
        let container = bfs.snapshot(&init, "container", false);
        for g in 0..groups {
            for f in 0..k {
                fs::read(container.join(format!("r{g:02}/{f}"))).unwrap();
            }
            // listing reads only the directory, not its files' inodes
            fs::read_dir(container.join(format!("big{g:02}"))).unwrap().count();
        }
        run(&mut Command::new("sync"));
        let s = search_stats(&BtrfsLayer { subvolume: container, parent: init });
        eprintln!("k={k}: {s:?}; {:.1} items/candidate", s.parent_items as f64 / s.candidates as f64);
        assert_eq!(s.access_only, s.candidates, "reads only: {s:?}");
        assert!(s.parent_items <= s.candidates * 20, "k={k}: {s:?}");
    }
}
