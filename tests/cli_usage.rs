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
