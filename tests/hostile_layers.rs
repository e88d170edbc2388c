//! Layers a hostile (or merely odd) container makes, on the sandbox's dockerd (overlay2, and btrfs
//! with `RODIFF_STORAGE_DRIVER=btrfs`): rodiff reports exactly what the Docker API's own diff of the
//! same container says, never a path outside the layer, loses no entry, and does not hang.
//!
//! - markers forged from inside: `mknod c 0 0` (a whiteout's shape), `trusted.overlay.*` and
//!   `user.overlay.*` xattrs set through the container's root (what reaches the upper directory is
//!   printed: the kernel escapes its own namespace to `trusted.overlay.overlay.*`; the other
//!   namespace lands as it is and is not a marker for this mount);
//! - a directory swapped for a symlink to `/` and to `/etc/shadow` in a tight loop during scans;
//! - names with a newline, bytes that are not UTF-8, 255 bytes; fifos, sockets, device nodes;
//!   a directory of mode 000; an immutable file;
//! - files appearing and vanishing while the walk runs: the stable ones are in every scan;
//! - a chain 5,000 directories deep (paths far beyond `PATH_MAX`);
//! - one directory with 1,000,000 entries: time and peak memory of the `docker` format, printed
//!   (under 96 MiB on overlay2; on btrfs memory grows with the
//!   changed inodes, about 600 bytes each: under 1 GiB); with `RODIFF_FULL_FIGURES=1` also the jsonl
//!   and json formats and Docker's own diff of them, compared.
//!
//! Run: `scripts/sandbox.sh run -- cargo test --test hostile_layers -- --nocapture`; the README's
//! figures: `RODIFF_FULL_FIGURES=1 RODIFF_BIN=$PWD/target/release/rodiff` in front.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::docker::*;

/// What `rodiff diff` (docker format) says, as `(kind, path bytes)`.
fn rodiff_set(name: &str) -> BTreeSet<(char, Vec<u8>)> {
    let out = rodiff(&["diff", name]);
    assert!(out.status.success(), "rodiff diff {name}: {}", String::from_utf8_lossy(&out.stderr));
    parse_docker_lines(&out.stdout)
}

/// rodiff's diff equals the Docker API's (compared as Docker renders names: invalid UTF-8
/// replaced), and its JSON carries the exact bytes given in `exact`.
fn assert_docker_parity(c: &Container, exact: &[&[u8]]) {
    let ours = rodiff_set(&c.name);
    assert_eq!(lossy(&ours), c.docker_changes(), "rodiff diff against docker diff of {}", c.name);
    let json: BTreeSet<Vec<u8>> = rodiff_json(&c.name).iter().map(json_path).collect();
    for path in exact {
        assert!(json.contains(*path), "{:?} missing from the JSON diff", String::from_utf8_lossy(path));
    }
}

/// Sets `name` on `path` (through the container's root, as its own root user with CAP_SYS_ADMIN
/// could); the error, if the kernel refuses.
fn set_xattr(path: &Path, name: &str, value: &[u8]) -> Result<(), String> {
    let name = std::ffi::CString::new(name).unwrap();
    rustix::fs::lsetxattr(path, name.as_c_str(), value, rustix::fs::XattrFlags::empty()).map_err(|e| e.to_string())
}

#[test]
fn forged_whiteouts_and_overlay_markers_are_not_markers() {
    if !sandbox() {
        return;
    }
    let c = Container::run("forge", &["--cap-add", "SYS_ADMIN", "--cap-add", "MKNOD"], BUSYBOX, &["sleep", "3600"]);
    // A whiteout's shape, made from inside: overlayfs refuses it (EPERM); on btrfs it is a plain
    // character device, which both diffs list as added.
    let mknod = c.sh("mkdir -p /forged/sub && echo a > /forged/sub/x && mkdir /bin/newd && \
                      (mknod /wo c 0 0 && echo made || echo refused)");
    eprintln!("mknod c 0 0 from inside on {}: {}", storage_driver(), mknod.trim());
    let root = |p: &str| c.host_path(p);
    for (path, name, value) in [
        ("/forged", "trusted.overlay.opaque", &b"y"[..]),
        ("/forged", "user.overlay.opaque", b"y"),
        ("/bin/newd", "trusted.overlay.redirect", b"/etc"),
        ("/bin/newd", "user.overlay.redirect", b"/etc"),
        ("/forged/sub/x", "trusted.overlay.metacopy", b""),
        ("/forged/sub/x", "user.overlay.metacopy", b""),
    ] {
        eprintln!("setxattr {name} on {path}: {:?}", set_xattr(&root(path), name, value));
    }
    // What the merged view shows is what must be reported: the forged opaque directory keeps its
    // entry, the forged redirect shows nothing of /etc.
    assert_eq!(c.sh("ls /forged").trim(), "sub");
    assert_eq!(c.sh("ls -A /bin/newd").trim(), "");
    assert_docker_parity(&c, &[b"/forged/sub/x", b"/bin/newd"]);
    let ours = rodiff_set(&c.name);
    assert!(ours.contains(&('A', b"/forged/sub/x".to_vec())), "{ours:?}");
    assert!(!ours.iter().any(|(_, p)| p.starts_with(b"/bin/newd/")), "the redirect was followed: {ours:?}");
}

#[test]
fn a_directory_swapped_for_symlinks_to_root_and_shadow_is_never_followed() {
    if !sandbox() {
        return;
    }
    let c = Container::run("swap2", &[], BUSYBOX, &["sh", "-c", r#"
        mkdir -p /sw/sub && echo 1 > /sw/f1 && echo 3 > /sw/sub/f3 && echo secret > /etc/shadow
        while :; do
            mv /sw /sw.d; ln -s / /sw; rm /sw; ln -s /etc/shadow /sw; rm /sw; mv /sw.d /sw
        done"#]);
    let allowed: [&[u8]; 4] = [b"", b"/f1", b"/sub", b"/sub/f3"];
    let mut seen = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    for _ in 0..40 {
        for format in ["jsonl", "docker"] {
            let out = rodiff(&["diff", &c.name, "--format", format]);
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            let paths: Vec<Vec<u8>> = match format {
                "jsonl" => out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| json_path(&serde_json::from_slice(l).unwrap())).collect(),
                _ => parse_docker_lines(&out.stdout).into_iter().map(|(_, p)| p).collect(),
            };
            for path in paths {
                assert!(
                    [&b"/sw"[..], b"/sw.d", b"/etc", b"/etc/shadow"].iter().any(|top| path.starts_with(top)),
                    "reported {}: not something the container made",
                    String::from_utf8_lossy(&path)
                );
                for top in [&b"/sw.d"[..], b"/sw"] {
                    if let Some(rest) = path.strip_prefix(top) {
                        if rest.is_empty() || rest.starts_with(b"/") {
                            assert!(allowed.contains(&rest), "reported {}: outside the layer", String::from_utf8_lossy(&path));
                            seen += 1;
                            break;
                        }
                    }
                }
            }
        }
        assert!(Instant::now() < deadline, "scans of a swapping directory took over a minute");
    }
    assert!(seen > 0, "the swapping directory was never seen");
}

#[test]
fn odd_names_and_special_files_match_docker_diff() {
    if !sandbox() {
        return;
    }
    let c = Container::run("odd", &["--cap-add", "MKNOD"], BUSYBOX, &["sleep", "3600"]);
    let long = "n".repeat(255);
    c.sh(&format!(
        "mkdir -p /odd /locked/inner && echo x > /locked/inner/f && chmod 000 /locked /locked/inner && \
         : > /odd/{long} && mkdir /odd/d{long_dir} && : > /odd/d{long_dir}/{long} && \
         printf x > \"$(printf '/odd/new\\nline')\" && printf x > \"$(printf '/odd/bad\\377byte')\" && \
         printf x > \"$(printf '/odd/back\\\\slash')\" && printf x > \"$(printf '/odd/tab\\tand\\rcr')\" && \
         mkfifo /odd/fifo && mknod /odd/null c 1 3 && mknod /odd/loop b 7 200 && \
         echo imm > /odd/immutable",
        long_dir = &long[1..]
    ));
    // A socket, bound from the host through the container's root.
    let socket = c.host_path("/odd/socket");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).expect("bind a socket in the container");
    // An immutable file (chattr +i), where the filesystem has the flag.
    let immutable = c.host_path("/odd/immutable");
    let chattr = Command::new("chattr").arg("+i").arg(&immutable).output();
    let made_immutable = chattr.as_ref().is_ok_and(|o| o.status.success());
    eprintln!("chattr +i: {}", if made_immutable { "set" } else { "not available here" });

    let exact: Vec<Vec<u8>> = vec![
        format!("/odd/{long}").into_bytes(),
        format!("/odd/d{}/{long}", &long[1..]).into_bytes(),
        b"/odd/new\nline".to_vec(),
        b"/odd/bad\xffbyte".to_vec(),
        b"/odd/back\\slash".to_vec(),
        b"/odd/tab\tand\rcr".to_vec(),
        b"/odd/fifo".to_vec(),
        b"/odd/socket".to_vec(),
        b"/odd/null".to_vec(),
        b"/odd/loop".to_vec(),
        b"/locked/inner/f".to_vec(),
    ];
    let exact_refs: Vec<&[u8]> = exact.iter().map(|p| p.as_slice()).collect();
    assert_docker_parity(&c, &exact_refs);
    // Types as they are, and nothing opened: the fifo has no reader, so an open would hang.
    let types: std::collections::HashMap<Vec<u8>, String> =
        rodiff_json(&c.name).iter().map(|v| (json_path(v), v["type"].as_str().unwrap_or_default().to_string())).collect();
    for (path, want) in [(&b"/odd/fifo"[..], "fifo"), (b"/odd/socket", "socket"), (b"/odd/null", "char"), (b"/odd/loop", "block")] {
        assert_eq!(types.get(path).map(String::as_str), Some(want), "{}", String::from_utf8_lossy(path));
    }
    if made_immutable {
        let _ = Command::new("chattr").arg("-i").arg(&immutable).output();
    }
}

#[test]
fn files_appearing_and_vanishing_during_the_walk_lose_no_stable_entry() {
    if !sandbox() {
        return;
    }
    let c = Container::run("churn", &[], BUSYBOX, &["sh", "-c", r#"
        mkdir -p /stable /churn && i=0; while [ $i -lt 200 ]; do echo $i > /stable/s$i; i=$((i+1)); done
        touch /ready
        while :; do
            mkdir -p /churn/d && : > /churn/d/a && : > /churn/b && rm -rf /churn/d /churn/b
        done"#]);
    while c.sh("test -e /ready && echo y || echo n").trim() != "y" {
        std::thread::sleep(Duration::from_millis(50));
    }
    let stable: BTreeSet<Vec<u8>> = (0..200).map(|i| format!("/stable/s{i}").into_bytes()).collect();
    for _ in 0..30 {
        let out = rodiff(&["diff", &c.name, "--format", "jsonl"]);
        assert!(out.status.success(), "a scan under churn failed: {}", String::from_utf8_lossy(&out.stderr));
        let paths: BTreeSet<Vec<u8>> =
            out.stdout.split(|&b| b == b'\n').filter(|l| !l.is_empty()).map(|l| json_path(&serde_json::from_slice(l).unwrap())).collect();
        let lost: Vec<_> = stable.difference(&paths).collect();
        assert!(lost.is_empty(), "stable entries lost under churn: {} of 200", lost.len());
        for p in &paths {
            assert!(p.starts_with(b"/stable") || p.starts_with(b"/churn") || p == b"/ready", "{}", String::from_utf8_lossy(p));
        }
    }
}

/// Makes `depth` nested directories `d` below `top` (a path in the container's root seen from the
/// host), one `mkdirat` at a time (the full path is far beyond PATH_MAX), and a file at the bottom.
fn deep_chain(top: &Path, depth: usize) {
    use rustix::fs::{Mode, OFlags};
    std::fs::create_dir(top).unwrap();
    let mut dir = rustix::fs::open(top, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    for _ in 0..depth {
        rustix::fs::mkdirat(&dir, "d", Mode::from_raw_mode(0o755)).unwrap();
        dir = rustix::fs::openat(&dir, "d", OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW, Mode::empty()).unwrap();
    }
    rustix::fs::openat(&dir, "leaf", OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o644)).unwrap();
}

#[test]
fn a_chain_5000_directories_deep_is_reported_whole() {
    if !sandbox() {
        return;
    }
    const DEPTH: usize = 5000;
    let c = Container::run("deep", &[], BUSYBOX, &["sleep", "3600"]);
    deep_chain(&c.host_path("/deep"), DEPTH);
    let start = Instant::now();
    let json = rodiff_json(&c.name);
    eprintln!("{DEPTH} directories deep: rodiff diff --format json in {:.2} s", start.elapsed().as_secs_f64());
    let paths: BTreeSet<Vec<u8>> = json.iter().map(json_path).collect();
    let mut want = b"/deep".to_vec();
    assert!(paths.contains(&want));
    for _ in 0..DEPTH {
        want.extend_from_slice(b"/d");
        assert!(paths.contains(&want), "missing a directory {} deep", want.len() / 2);
    }
    want.extend_from_slice(b"/leaf");
    assert!(paths.contains(&want), "the leaf {} bytes deep is missing", want.len());
    assert_eq!(paths.len(), DEPTH + 2, "nothing else: the chain and its leaf");
    // The docker format streams the same lines (its escaping round-trips).
    assert_eq!(rodiff_set(&c.name).len(), DEPTH + 2);
    // Docker's own diff cannot go this deep (it fails: `lstat …: file name too long`); where it
    // can, it agrees.
    match c.try_docker_changes() {
        Ok(docker) => assert_eq!(lossy(&rodiff_set(&c.name)), docker),
        Err(e) => eprintln!("docker diff of the chain fails: {}", e.chars().take(120).collect::<String>()),
    }
}

/// Whether to measure everything (`RODIFF_FULL_FIGURES=1`): every format, and Docker's own diff of
/// the million entries (about a minute); `make test` measures the streaming formats only.
fn full_figures() -> bool {
    std::env::var("RODIFF_FULL_FIGURES").is_ok_and(|v| v == "1")
}

/// `rodiff diff NAME --format FORMAT > /dev/null` under `/usr/bin/time`: (seconds, peak RSS in
/// KiB). `$RODIFF_BIN` picks the binary (the release build, for figures), else the test build's.
fn timed(name: &str, format: &str) -> (f64, u64) {
    let bin = std::env::var("RODIFF_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_rodiff").to_string());
    let out = Command::new("/usr/bin/time")
        .args(["-f", "%e %M", &bin, "diff", name, "--format", format])
        .stdout(std::process::Stdio::null())
        .output()
        .expect("/usr/bin/time (Debian's package `time`)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "rodiff diff --format {format}: {err}");
    let last = err.lines().last().unwrap_or_default();
    let mut fields = last.split_whitespace();
    let secs = fields.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("time said {err}"));
    let kib = fields.next().and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("time said {err}"));
    (secs, kib)
}

#[test]
fn a_million_entries_in_one_directory() {
    if !sandbox() {
        return;
    }
    const ENTRIES: usize = 1_000_000;
    let c = Container::run("million", &[], BUSYBOX, &["sleep", "3600"]);
    let driver = storage_driver();
    let dir = c.host_path("/m");
    std::fs::create_dir(&dir).unwrap();
    {
        use rustix::fs::{Mode, OFlags};
        let d = rustix::fs::open(&dir, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
        for i in 0..ENTRIES {
            let fd = rustix::fs::openat(&d, format!("f{i:07}"), OFlags::CREATE | OFlags::WRONLY | OFlags::CLOEXEC, Mode::from_raw_mode(0o644)).unwrap();
            drop(fd);
        }
    }
    let mut figures = Vec::new();
    let formats: &[&str] = if full_figures() { &["docker", "jsonl", "json"] } else { &["docker"] };
    for &format in formats {
        let (secs, kib) = timed(&c.name, format);
        figures.push(format!("{format}: {secs:.2} s, peak RSS {:.0} MiB", kib as f64 / 1024.0));
        // Streaming formats hold no list of the changes on overlay2: far less than 1,000,000
        // changes would take (about 100 bytes each). The btrfs engine keeps what its b-tree search
        // found for each changed inode (its number, type, link count and names: about 100 bytes;
        // measured 117 MiB) until the walk is planned: memory in proportion to the changes,
        // bounded here against regressions (it was 612 MiB when whole inode items were kept).
        let bound = if driver == "btrfs" { 192 * 1024 } else { 96 * 1024 };
        if format != "json" {
            assert!(kib < bound, "{format}: peak RSS {kib} KiB for {ENTRIES} entries on {driver}: above {bound} KiB");
        }
    }
    eprintln!("{ENTRIES} entries in one directory ({driver}): {}", figures.join("; "));
    let ours = rodiff_set(&c.name);
    assert_eq!(ours.len(), ENTRIES + 1, "every entry and its directory");
    if full_figures() {
        let start = Instant::now();
        let docker = c.docker_changes();
        eprintln!("docker diff of the same: {:.2} s", start.elapsed().as_secs_f64());
        assert_eq!(lossy(&ours), docker);
    }
}
