//! Usage errors of the CLI that need no runtime: exit code 2 and a message that says what to give.
//!
//! Run: `cargo test --test cli_usage`

use std::process::Command;

/// An empty container name is a usage error for every command, never a request to the runtime
/// (Docker answered `''` with a redirect, reported as "cannot reach docker … status code 301").
#[test]
fn an_empty_container_name_is_a_usage_error() {
    for command in ["diff", "plan", "verify", "watch"] {
        // A socket that does not exist: were the runtime asked, the exit code would be 3.
        let out = Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["-H", "unix:///nonexistent/rodiff-usage.sock", command, ""])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("the container name is empty") && !stderr.contains("nonexistent"), "{command}: {stderr}");
    }
}

/// `verify`'s options that go together: `--format` is the final plan's of `--fix`; `--fix` plans
/// anew, so it takes no `--plan FILE`; `--stop-timeout` is whole seconds. Each is a usage error
/// (exit 2) naming the option, and no runtime is asked.
#[test]
fn verify_fix_options_are_checked_before_any_runtime_is_asked() {
    let cases: &[(&[&str], &str)] = &[
        (&["verify", "c", "--format", "json"], "--fix"),
        (&["verify", "c", "--fix", "--plan", "/nonexistent/plan.json"], "--plan"),
        (&["verify", "c", "--stop-timeout", "soon"], "--stop-timeout"),
        (&["verify", "c", "--fix", "--format", "yaml"], "--format"),
    ];
    for (args, named) in cases {
        let out = Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(["-H", "unix:///nonexistent/rodiff-usage.sock"])
            .args(*args)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(named) && !stderr.contains("rodiff-usage.sock"), "{args:?}: {stderr}");
    }
    // And --help says what --fix does.
    let out = Command::new(env!("CARGO_BIN_EXE_rodiff")).args(["verify", "--help"]).output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    assert!(help.contains("--fix") && help.contains("--stop-timeout") && help.contains("shadow"), "{help}");
}
