//! The library changes no process-wide setting: a program that embeds it keeps its own open-file
//! limit (the CLI raises it; embedders decide). One test in its own binary, so that no other test
//! of the same process touches the limit meanwhile. Needs root (a real overlay mount).

mod common;

use std::fs;

use common::*;

fn soft_limit() -> (u64, u64) {
    let mut lim = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit only writes the struct we pass.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) }, 0);
    (lim.rlim_cur, lim.rlim_max)
}

#[test]
fn a_diff_leaves_the_open_file_limit_alone() {
    if !require(is_root(), "root (to mount overlayfs)") {
        return;
    }
    let (_, hard) = soft_limit();
    assert!(hard > 256, "a hard limit to stay below: {hard}");
    let lowered = libc::rlimit { rlim_cur: 256, rlim_max: hard };
    // SAFETY: setrlimit only reads the struct we pass.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lowered) }, 0);

    let mut m = OverlayMount::new(1, |l| fs::create_dir(l[0].join("etc")).unwrap());
    m.mount("");
    fs::write(m.at("etc/new"), "x").unwrap();
    m.unmount();
    let changes = engine_diff(&m.layer());
    assert!(changes.iter().any(|c| c.path_bytes() == b"/etc/new"));

    assert_eq!(soft_limit(), (256, hard), "the diff changed the process's open-file limit");
}
