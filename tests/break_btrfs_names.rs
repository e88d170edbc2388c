//! Adversarial probes of the btrfs engine's memory cuts (changed inodes compared with the parent
//! 4,096 at a time, names in one buffer, a directory with more than `MAX_NAMES_PER_DIR` changed
//! names read whole): each scenario on a fresh container snapshot of one image, after reads, must
//! match the naive two-tree comparison. Needs root (a loop btrfs).

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::btrfs::{read_everything, BtrfsFs};
use common::*;
use rodiff::layer::btrfs::changed::MAX_NAMES_PER_DIR;
use rodiff::layer::{BtrfsLayer, Collect, Layer, ScanOptions};

const BIG: usize = MAX_NAMES_PER_DIR + 1200;

fn engine(layer: &BtrfsLayer) -> std::collections::BTreeSet<(char, Vec<u8>)> {
    let collect = Collect::default();
    Layer::Btrfs(layer.clone()).diff(common::walkers(), &ScanOptions::default(), &collect).expect("btrfs diff");
    docker_visible(&collect.into_sorted())
}

/// The image: big/ (BIG files), big2/ (BIG files), big/sub/x/y/z/deep, ext/ (one file with 300
/// long-named hard links, EXTREFs), small/ with a few files; every time fixed.
fn image(fs: &BtrfsFs) -> std::path::PathBuf {
    let image = fs.subvolume("image");
    for d in ["big", "big2", "big/sub/x/y/z", "ext", "small", "links"] {
        fs::create_dir_all(image.join(d)).unwrap();
    }
    for i in 0..BIG {
        fs::write(image.join(format!("big/f{i:05}")), "content").unwrap();
        fs::write(image.join(format!("big2/g{i:05}")), "content").unwrap();
    }
    fs::write(image.join("big/sub/x/y/z/deep"), "deep").unwrap();
    fs::write(image.join("ext/f"), "linked").unwrap();
    for i in 0..300 {
        fs::hard_link(image.join("ext/f"), image.join(format!("ext/{i:0>240}"))).unwrap();
    }
    for f in ["a", "b", "c"] {
        fs::write(image.join("small").join(f), "content").unwrap();
    }
    run(Command::new("sh").arg("-c").arg(format!("find {} -exec touch -h -d 2001-01-01 {{}} +", image.display())));
    image
}

fn chmod(p: &Path, mode: u32) {
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Runs `change` on a fresh container of `image` (after a full read) and compares with the
/// naive oracle.
fn scenario(fs: &BtrfsFs, image: &Path, name: &str, change: impl FnOnce(&Path)) {
    let init = fs.snapshot(image, &format!("{name}-init"), false);
    let container = fs.snapshot(&init, &format!("{name}-ctr"), false);
    read_everything(&container);
    change(&container);
    run(&mut Command::new("sync"));
    let layer = BtrfsLayer { subvolume: container.clone(), parent: init.clone() };
    let got = engine(&layer);
    let expected = common::naive::diff(&container, &init);
    let only_engine: Vec<_> = got.difference(&expected).map(|(k, p)| (*k, String::from_utf8_lossy(p).into_owned())).take(20).collect();
    let only_naive: Vec<_> = expected.difference(&got).map(|(k, p)| (*k, String::from_utf8_lossy(p).into_owned())).take(20).collect();
    assert!(only_engine.is_empty() && only_naive.is_empty(), "{name}: only the engine: {only_engine:?}\nonly the naive oracle: {only_naive:?} ({} vs {} changes)", got.len(), expected.len());
}

#[test]
fn names_past_the_limit_match_the_naive_oracle() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let image = image(&fs);

    // Exactly the limit, and one more, of in-place changes in an unchanged directory.
    for (name, n) in [("exact", MAX_NAMES_PER_DIR), ("one-more", MAX_NAMES_PER_DIR + 1)] {
        scenario(&fs, &image, name, |c| {
            for i in 0..n {
                chmod(&c.join(format!("big/f{i:05}")), 0o600);
            }
        });
    }

    // A promoted directory, with changes deep below it and in a sibling directory that also
    // crosses the limit.
    scenario(&fs, &image, "deep", |c| {
        for i in 0..BIG {
            chmod(&c.join(format!("big/f{i:05}")), 0o600);
            if i % 2 == 0 {
                chmod(&c.join(format!("big2/g{i:05}")), 0o640);
            }
        }
        fs::write(c.join("big/sub/x/y/z/deep"), "changed").unwrap();
        chmod(&c.join("big/sub/x"), 0o700);
    });

    // Hard links: more than the limit of new names for files of big, made in links/ (changed,
    // read whole); big itself is unchanged, but each linked file gains a name there.
    scenario(&fs, &image, "links", |c| {
        for i in 0..BIG {
            fs::hard_link(c.join(format!("big/f{i:05}")), c.join(format!("links/l{i:05}"))).unwrap();
        }
    });

    // Hard links from big2 (changed) to big's files, and big's files also changed in content:
    // a file's names split across a promoted and a changed directory.
    scenario(&fs, &image, "cross-links", |c| {
        for i in (0..BIG).step_by(1) {
            fs::hard_link(c.join(format!("big/f{i:05}")), c.join(format!("big2/h{i:05}"))).unwrap();
        }
        for i in (0..BIG).step_by(7) {
            fs::OpenOptions::new().append(true).open(c.join(format!("big/f{i:05}"))).unwrap().write_all(b"!").unwrap();
        }
    });

    // Renames across two big directories, and one back, plus a deletion and a re-creation with
    // the same name in each.
    scenario(&fs, &image, "renames", |c| {
        for i in (0..BIG).step_by(2) {
            fs::rename(c.join(format!("big/f{i:05}")), c.join(format!("big2/f{i:05}"))).unwrap();
        }
        fs::rename(c.join("big2/f00000"), c.join("big/f00000")).unwrap();
        fs::remove_file(c.join("big/f00001")).unwrap();
        fs::write(c.join("big/f00001"), "content").unwrap();
        fs::remove_file(c.join("big2/g00001")).unwrap();
    });

    // The EXTREF file: a mode change (every one of its 301 names is a change), new long-named
    // links, and one of its names removed.
    scenario(&fs, &image, "extrefs", |c| {
        chmod(&c.join("ext/f"), 0o600);
        for i in 0..50 {
            fs::hard_link(c.join("ext/f"), c.join(format!("small/{i:0>250}"))).unwrap();
        }
        fs::remove_file(c.join(format!("ext/{:0>240}", 7))).unwrap();
    });

    // The EXTREF file changed alone (its directory untouched), its links all in ext/ and
    // beyond the limit with big's changes in the same walk.
    scenario(&fs, &image, "extrefs-only", |c| {
        chmod(&c.join("ext/f"), 0o600);
        for i in 0..BIG {
            chmod(&c.join(format!("big/f{i:05}")), 0o600);
        }
    });
}

/// More than 4,096 candidates in one search part, with access-only candidates among them (reads
/// before and between the changes): the comparison in chunks must neither lose nor invent
/// changes.
#[test]
fn candidate_chunks_match_the_naive_oracle() {
    if !require(is_root(), "root (to make a btrfs filesystem)") {
        return;
    }
    let fs = BtrfsFs::new();
    let image = fs.subvolume("image");
    let n = 40_000;
    fs::create_dir(image.join("d")).unwrap();
    for i in 0..n {
        if i % 1000 == 0 {
            fs::create_dir(image.join(format!("d/s{:03}", i / 1000))).unwrap();
        }
        fs::write(image.join(format!("d/s{:03}/f{i:05}", i / 1000)), "x").unwrap();
    }
    run(Command::new("sh").arg("-c").arg(format!("find {} -exec touch -h -d 2001-01-01 {{}} +", image.display())));
    scenario(&fs, &image, "chunks", |c| {
        // Every other file changes its mode; the others were read (access-only candidates);
        // inode 4096 places apart change too (chunk boundaries wherever they fall).
        for i in (0..n).step_by(2) {
            chmod(&c.join(format!("d/s{:03}/f{i:05}", i / 1000)), 0o600);
        }
        for i in (1..n).step_by(4095) {
            fs::write(c.join(format!("d/s{:03}/f{i:05}", i / 1000)), "y").unwrap();
        }
    });
}
