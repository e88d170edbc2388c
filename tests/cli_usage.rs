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

/// Every argument given wrong, as a new user would: the exit code and the exact first line of
/// stderr. None of these may reach a runtime (the socket does not exist: reaching it would be
/// exit 3 and a different message), except where the row says so.
#[test]
fn bad_input_table() {
    const SOCK: &str = "unix:///nonexistent/rodiff-usage.sock";
    let rows: &[(&[&str], i32, &str)] = &[
        (&["diff"], 2, "error: CONTAINER is required (or --pod NAMESPACE/NAME)"),
        (&["diff", "x", "y"], 2, "error: unexpected argument 'y' found"),
        (&["diff", "x", "--format", "yaml"], 2, "error: invalid value 'yaml' for '--format <FORMAT>'"),
        (&["--timeout", "0", "diff", "x"], 2, "error: invalid value '0' for '--timeout <SECONDS>': must be more than 0 seconds"),
        (&["--timeout", "soon", "diff", "x"], 2, "error: invalid value 'soon' for '--timeout <SECONDS>': soon is not a number of seconds"),
        (&["--runtime", "podman", "diff", "x"], 2, "error: invalid value 'podman' for '--runtime <RUNTIME>'"),
        (&["--pod", "web", "diff"], 2, "error: invalid value 'web' for '--pod <NAMESPACE/NAME>': expected NAMESPACE/NAME, got \"web\""),
        (&["--container", "app", "diff", "x"], 2, "error: the following required arguments were not provided:"),
        (&["-H", "bogus://x", "diff", "x"], 2, "error: invalid value 'bogus://x' for '--host <URI>': bogus://x is not a Docker endpoint: use unix:///path/docker.sock or tcp://host:port"),
        (&["plan", "x", "--format", "helm"], 2, "error: invalid value 'helm' for '--format <FORMAT>'"),
        (&["plan", "x", "--tmpfs", "var/cache"], 2, "error: invalid value 'var/cache' for '--tmpfs <PATH>': var/cache is not an absolute path in the container"),
        (&["plan", "x", "--volume", "/"], 2, "error: invalid value '/' for '--volume <PATH>': the root itself cannot be a mount: a read-only root is the point"),
        (&["verify", "x", "--wait", "-1"], 2, "error: invalid value '-1' for '--wait <SECONDS>': must be a number of seconds, 0 or more"),
        (&["verify", "x", "--wait", "abc"], 2, "error: invalid value 'abc' for '--wait <SECONDS>': abc is not a number of seconds"),
        (&["verify", "x", "--plan", "p.json", "--tmpfs", "/tmp"], 2, "error: the argument '--plan <FILE>' cannot be used with '--tmpfs <PATH>'"),
        (&["verify", "x", "--plan", "/nonexistent/plan.json"], 1, "rodiff: plan /nonexistent/plan.json: No such file or directory (os error 2)"),
        (&["watch", "x", "--interval", "0"], 2, "error: invalid value '0' for '--interval <SECONDS>': must be more than 0 seconds"),
        (&["watch", "x", "--duration", "-5"], 2, "error: invalid value '-5' for '--duration <SECONDS>': must be more than 0 seconds"),
        (&["watch", "x", "--duration", "5", "--until-exit"], 2, "error: the argument '--duration <SECONDS>' cannot be used with '--until-exit'"),
        (&["agent", "--listen", "localhost"], 2, "error: invalid value 'localhost' for '--listen <ADDR>': invalid socket address syntax"),
        (&["agent", "--interval", "0"], 2, "error: invalid value '0' for '--interval <SECONDS>': must be more than 0 seconds"),
        (&["agent", "--runtimes", "cri-o"], 2, "error: invalid value 'cri-o' for '--runtimes <LIST>'"),
        // Reaching the (missing) runtime: exit 3, the endpoint named, the name escaped.
        (&["diff", "a\nb"], 3, "rodiff: container a\\nb: cannot reach docker at unix:///nonexistent/rodiff-usage.sock: No such file or directory (os error 2)"),
        (&["--runtime", "containerd", "--address", "/nonexistent/ctrd.sock", "diff", "x"], 3, "rodiff: container x: cannot reach containerd at /nonexistent/ctrd.sock: No such file or directory (os error 2)"),
    ];
    let mut wrong = Vec::new();
    for (args, code, line) in rows {
        let endpoint: &[&str] = if args.contains(&"-H") { &[] } else { &["-H", SOCK] };
        let out = Command::new(env!("CARGO_BIN_EXE_rodiff"))
            .args(endpoint)
            .args(*args)
            .env_remove("DOCKER_HOST")
            .env_remove("CONTAINERD_ADDRESS")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        if out.status.code() != Some(*code) || first != *line {
            wrong.push(format!("{args:?}: exit {:?}, {first:?}\n   want exit {code}, {line:?}", out.status.code()));
        }
        if *code == 3 || *code == 1 {
            assert_eq!(stderr.lines().count(), 1, "{args:?}: one line: {stderr}");
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
