//! Two sandboxes started at once (`make test` runs suites concurrently; two `RODIFF_PODMAN=1`
//! sandboxes, or the first Podman sandbox on a fresh machine beside another) both make the
//! rootless Podman user and its subordinate ids if missing (found by a review: check-then-create
//! without a lock gave a user two ranges about one run in 30; now under a lock). The probe runs the
//! sandbox's own function `make_podman_user` (cut from scripts/sandbox.sh) twice at the same
//! moment for a user that does not exist yet (a fresh name, removed afterwards), several rounds:
//! both must succeed (`set -e` ends a sandbox on the first failure) and each file must give the
//! user one range. Needs root (useradd).

mod common;

use std::process::Command;

#[test]
fn two_sandboxes_making_the_podman_user_at_once_both_succeed() {
    if !common::require(common::is_root(), "root (useradd)") {
        return;
    }
    let script = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/sandbox.sh")).unwrap();
    let start = script.find("make_podman_user() (").expect("the user creation in sandbox.sh");
    let end = start + script[start..].find(") 9>>/etc/subuid\n").expect("its end") + ") 9>>/etc/subuid\n".len();
    let snippet = &script[start..end];
    let mut failures = Vec::new();
    for round in 0..40 {
        let user = format!("rodiff-race-{}-{round}", std::process::id() % 100_000);
        let body = format!("set -euo pipefail\n{snippet}PODMAN_USER={user}\nmake_podman_user\n");
        let spawn = || Command::new("bash").arg("-c").arg(&body).stderr(std::process::Stdio::piped()).spawn().unwrap();
        let (a, b) = (spawn(), spawn());
        let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
        let lines = |file: &str| std::fs::read_to_string(file).unwrap().lines().filter(|l| l.starts_with(&format!("{user}:"))).count();
        let (uids, gids) = (lines("/etc/subuid"), lines("/etc/subgid"));
        let ranges: Vec<String> = ["/etc/subuid", "/etc/subgid"]
            .iter()
            .flat_map(|f| std::fs::read_to_string(f).unwrap().lines().filter(|l| l.starts_with(&format!("{user}:"))).map(|l| format!("{f}: {l}")).collect::<Vec<_>>())
            .collect();
        // Clean up: the user and its ranges.
        let _ = Command::new("userdel").arg(&user).output();
        for file in ["/etc/subuid", "/etc/subgid"] {
            let _ = Command::new("sed").args(["-i", &format!("/^{user}:/d"), file]).output();
        }
        for (what, out) in [("first", &a), ("second", &b)] {
            if !out.status.success() {
                failures.push(format!("round {round}: the {what} sandbox failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
            }
        }
        if uids != 1 || gids != 1 {
            failures.push(format!("round {round}: {uids} subuid and {gids} subgid ranges for {user}: {ranges:?}"));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
