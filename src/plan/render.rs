//! A plan in the forms people apply it in: `docker run` flags, a compose service fragment, a
//! Kubernetes strategic-merge patch, and JSON with every reason.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::names::docker_volume;
use super::yaml::Node;
use super::{MountKind, Plan, PlannedMount};
use crate::dialect::Dialect;
use crate::error::{Error, Result};

/// How to render a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlanFormat {
    /// One shell-quoted line of flags for `docker run`, starting with `--read-only`.
    Docker,
    /// A compose service fragment (`read_only: true`, `tmpfs:`, `volumes:`).
    Compose,
    /// A Kubernetes strategic-merge patch for the pod template.
    K8s,
    /// The plan itself, with reasons.
    Json,
}

/// Where Kubernetes init containers mount the volumes they seed.
const SEED_DIR: &str = "/rodiff-seed";

/// Renders plans (one per container; several for a pod) as text ending in a newline.
pub fn render(plans: &[Plan], format: PlanFormat) -> Result<String> {
    match format {
        PlanFormat::Docker => distinct_volumes(plans, "docker").and_then(|()| docker(plans)),
        PlanFormat::Compose => distinct_volumes(plans, "compose").and_then(|()| compose(plans)),
        PlanFormat::K8s => distinct_volumes(plans, "k8s").and_then(|()| k8s(plans)),
        PlanFormat::Json => json(plans),
    }
}

/// Several plans (a pod's containers) whose volume names coincide — names are derived from the
/// container's name and the mount's, with what a name cannot carry replaced (`a` + `b-c` and
/// `a-b` + `c`, or `a b` and `a:b`) — would share one volume between containers: an error rather
/// than a rendering that mixes their data (found by the `plan_render` fuzz target).
fn distinct_volumes(plans: &[Plan], format: &'static str) -> Result<()> {
    if plans.len() < 2 {
        return Ok(());
    }
    let mut seen = std::collections::HashSet::new();
    let mut labels = std::collections::HashSet::new();
    for plan in plans {
        for m in &plan.mounts {
            let label = super::names::label(Path::new(&format!("{}-{}", plan.container, m.name)));
            if !seen.insert(volume_name(plan, m)) || !labels.insert(label) {
                let detail = format!("its volume name for container {:?} is also another container's", plan.container);
                return Err(unrepresentable(&m.path, format, &detail));
            }
        }
    }
    Ok(())
}

/// The options of a tmpfs mount: `uid=U,gid=G,mode=M` (mode in octal), as `--tmpfs PATH:OPTIONS`
/// and compose take them.
pub fn tmpfs_options(mount: &PlannedMount) -> String {
    format!("uid={},gid={},mode={:o}", mount.uid, mount.gid, mount.mode)
}

/// The options of a tmpfs mount for `runtime`: Docker's [`tmpfs_options`]; for Podman, whose
/// tmpfs mounts refuse `uid=` and `gid=` (Podman 4.3: "unknown mount option"), `mode=M`, plus
/// `U` (owned by the container's user and its primary group) when the owner is not root.
pub fn tmpfs_options_for(mount: &PlannedMount, runtime: Dialect) -> String {
    match runtime {
        Dialect::Docker => tmpfs_options(mount),
        Dialect::Podman if mount.uid == 0 && mount.gid == 0 => format!("mode={:o}", mount.mode),
        Dialect::Podman => format!("mode={:o},U", mount.mode),
    }
}

/// The Docker volume name of a plan's mount: `<container>-<mount name>`.
pub fn volume_name(plan: &Plan, mount: &PlannedMount) -> String {
    docker_volume(&plan.container, &mount.name)
}

/// The `docker run` arguments of a plan, unquoted: `--read-only`, then `--tmpfs PATH:OPTIONS` and
/// `--volume NAME:PATH` per mount.
///
/// For Podman (`podman run`), `--read-only` is followed by `--read-only-tmpfs=false`: Podman's
/// `--read-only` otherwise adds tmpfs mounts on `/run`, `/tmp` and `/var/tmp`, which Docker's does
/// not; without them the flags mean the same on both (the plan relies on its own mounts only).
/// Its tmpfs options are Podman's ([`tmpfs_options_for`]).
pub fn docker_args(plan: &Plan) -> Result<Vec<Vec<u8>>> {
    let mut args = vec![b"--read-only".to_vec()];
    if plan.runtime == Dialect::Podman {
        args.push(b"--read-only-tmpfs=false".to_vec());
    }
    for m in &plan.mounts {
        let path = docker_path(m, "docker")?;
        match m.kind {
            MountKind::Tmpfs => {
                args.push(b"--tmpfs".to_vec());
                args.push([path, b":", tmpfs_options_for(m, plan.runtime).as_bytes()].concat());
            }
            MountKind::Volume => {
                args.push(b"--volume".to_vec());
                args.push([volume_name(plan, m).as_bytes(), b":", path].concat());
            }
        }
    }
    Ok(args)
}

/// The mount's path, if Docker's `--tmpfs`/`--volume` syntax can carry it: no `:` or `,`, and
/// UTF-8, since the Docker API (and Kubernetes') carries paths as JSON text, where a byte that is
/// not UTF-8 would arrive as U+FFFD and the mount land on another path.
fn docker_path<'a>(mount: &'a PlannedMount, format: &'static str) -> Result<&'a [u8]> {
    let path = mount.path.as_os_str().as_bytes();
    if path.iter().any(|b| matches!(b, b':' | b',')) {
        return Err(unrepresentable(&mount.path, format, "Docker's mount syntax cannot carry `:` or `,` in a path"));
    }
    if std::str::from_utf8(path).is_err() {
        return Err(unrepresentable(&mount.path, format, "the path is not UTF-8, and the runtime's API carries paths as UTF-8 text"));
    }
    Ok(path)
}

fn unrepresentable(path: &Path, format: &'static str, detail: &str) -> Error {
    Error::Unrepresentable { path: path.to_path_buf(), format, detail: detail.to_string() }
}

/// The mount's path as text, for the YAML formats.
fn text_path<'a>(mount: &'a PlannedMount, format: &'static str) -> Result<&'a str> {
    let path = docker_path(mount, format)?;
    Ok(std::str::from_utf8(path).expect("docker_path checked it"))
}

fn docker(plans: &[Plan]) -> Result<String> {
    let mut out = String::new();
    for plan in plans {
        if plans.len() > 1 {
            out.push_str(&format!("# container {}\n", super::yaml::comment(&plan.container)));
        }
        let words: Vec<String> = docker_args(plan)?.iter().map(|a| shell_quote(a)).collect();
        out.push_str(&words.join(" "));
        out.push('\n');
    }
    Ok(out)
}

fn compose(plans: &[Plan]) -> Result<String> {
    let mut services = Vec::new();
    let mut volumes = Vec::new();
    for plan in plans {
        let mut service = vec![("read_only", Node::Bool(true))];
        let mut tmpfs = Vec::new();
        let mut mounts = Vec::new();
        for m in &plan.mounts {
            let path = text_path(m, "compose")?;
            match m.kind {
                MountKind::Tmpfs => tmpfs.push(Node::str(format!("{path}:{}", tmpfs_options(m)))),
                MountKind::Volume => {
                    let name = volume_name(plan, m);
                    mounts.push(Node::str(format!("{name}:{path}")));
                    volumes.push((name, Node::map(Vec::<(String, Node)>::new())));
                }
            }
        }
        if !tmpfs.is_empty() {
            service.push(("tmpfs", Node::List(tmpfs)));
        }
        if !mounts.is_empty() {
            service.push(("volumes", Node::List(mounts)));
        }
        services.push((plan.container.clone(), Node::map(service)));
    }
    let mut doc = vec![("services".to_string(), Node::Map(services))];
    if !volumes.is_empty() {
        doc.push(("volumes".to_string(), Node::Map(volumes)));
    }
    let names: Vec<String> = plans.iter().map(|p| super::yaml::comment(&p.container)).collect();
    Ok(format!("# rodiff plan for {}: merge into the compose file\n{}{}", names.join(", "), anticipated_comments(plans), Node::Map(doc).to_yaml()))
}

/// The shell command that gives the mount root `dir` (quoted) the owner and mode of the directory
/// the mount replaces: `chown U:G DIR && chmod 0MMMM DIR`. The mode has five octal digits, so
/// that GNU chmod also clears set-id bits on a directory (busybox takes it as it is).
pub fn ownership_command(mount: &PlannedMount, dir: &str) -> String {
    format!("chown {}:{} {dir} && chmod {:05o} {dir}", mount.uid, mount.gid, mount.mode)
}

/// YAML comment lines for the mounts planned on ownership evidence (empty when none is).
fn anticipated_comments(plans: &[Plan]) -> String {
    let mut out = String::new();
    for plan in plans {
        for m in &plan.mounts {
            let Some(evidence) = &m.evidence else { continue };
            let who = if plans.len() > 1 { format!("{}: ", plan.container) } else { String::new() };
            let what = if m.anticipated { "anticipated, no write seen yet" } else { "also anticipated" };
            let line = format!("{who}{}: {what}: {evidence}", m.path.to_string_lossy());
            out.push_str(&format!("# {}\n", super::yaml::comment(&line)));
        }
    }
    out
}

fn k8s(plans: &[Plan]) -> Result<String> {
    let several = plans.len() > 1;
    let mut containers = Vec::new();
    let mut init = Vec::new();
    let mut volumes = Vec::new();
    let mut claims = Vec::new();
    let mut placeholders = false;
    for plan in plans {
        let volume = |m: &PlannedMount| if several { super::names::label(Path::new(&format!("{}-{}", plan.container, m.name))) } else { m.name.clone() };
        let mut mounts = Vec::new();
        let mut seeds = Vec::new();
        let mut script = vec!["set -e".to_string()];
        for m in &plan.mounts {
            let path = text_path(m, "k8s")?;
            let name = volume(m);
            mounts.push(Node::map([("name", Node::str(&name)), ("mountPath", Node::str(path))]));
            let source = if m.persistent {
                let claim = volume_name(plan, m);
                claims.push(claim.clone());
                ("persistentVolumeClaim", Node::map([("claimName", Node::str(claim))]))
            } else {
                ("emptyDir", Node::map([("medium", Node::str("Memory"))]))
            };
            volumes.push(Node::map([("name", Node::str(&name)), source]));
            // A PVC or an emptyDir starts empty and root-owned (Docker fills a new volume from
            // the image and gives it the directory's owner): the init container does both, for
            // every mount, seeded or not.
            let seed = format!("{SEED_DIR}/{name}");
            let quoted = shell_quote(seed.as_bytes());
            if m.seed {
                script.push(format!("if [ -z \"$(ls -A {quoted})\" ]; then cp -a {src}/. {quoted}/; fi", src = shell_quote(path.as_bytes())));
            }
            script.push(ownership_command(m, &quoted));
            seeds.push(Node::map([("name", Node::str(&name)), ("mountPath", Node::str(seed))]));
        }
        if !seeds.is_empty() {
            let image = plan.image.clone().unwrap_or_else(|| {
                placeholders = true;
                "IMAGE".to_string()
            });
            init.push(Node::map([
                ("name", Node::str(if several { format!("rodiff-seed-{}", plan.container) } else { "rodiff-seed".into() })),
                ("image", Node::str(image)),
                ("command", Node::List(vec![Node::str("sh"), Node::str("-c"), Node::str(script.join("\n"))])),
                ("securityContext", Node::map([("runAsUser", Node::Int(0))])),
                ("volumeMounts", Node::List(seeds)),
            ]));
        }
        let mut container = vec![
            ("name", Node::str(&plan.container)),
            ("securityContext", Node::map([("readOnlyRootFilesystem", Node::Bool(true))])),
        ];
        if !mounts.is_empty() {
            container.push(("volumeMounts", Node::List(mounts)));
        }
        containers.push(Node::map(container));
    }
    let seeding = !init.is_empty();
    let mut pod = Vec::new();
    if seeding {
        pod.push(("initContainers", Node::List(init)));
    }
    pod.push(("containers", Node::List(containers)));
    if !volumes.is_empty() {
        pod.push(("volumes", Node::List(volumes)));
    }
    let doc = Node::map([("spec", Node::map([("template", Node::map([("spec", Node::map(pod))]))]))]);
    let mut head = String::from(
        "# rodiff plan: a strategic-merge patch for the pod template, e.g.\n#   kubectl patch deployment NAME --patch-file plan.yaml\n",
    );
    if !claims.is_empty() {
        head.push_str(&format!("# placeholders: create the PersistentVolumeClaims {}\n", claims.join(", ")));
    }
    if placeholders {
        head.push_str("# placeholders: IMAGE is the container's image (the runtime did not say)\n");
    }
    if seeding {
        head.push_str(
            "# the init container gives each volume the owner and mode of the directory it replaces and copies what\n\
             # the image ships into an empty one, as Docker does with a new volume (a PVC or emptyDir starts empty, root's)\n",
        );
    }
    head.push_str(&anticipated_comments(plans));
    Ok(head + &doc.to_yaml())
}

fn json(plans: &[Plan]) -> Result<String> {
    let text = match plans {
        [one] => serde_json::to_string_pretty(one),
        several => serde_json::to_string_pretty(several),
    };
    Ok(text.expect("a plan serializes") + "\n")
}

/// Quotes a word for a POSIX shell: bare when it is plainly safe, in single quotes otherwise, and
/// as `$'…'` with `\xNN` escapes when it is not UTF-8 or has control characters.
pub fn shell_quote(word: &[u8]) -> String {
    let safe = |b: &u8| b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(b);
    if !word.is_empty() && word.iter().all(safe) {
        return String::from_utf8(word.to_vec()).expect("ASCII");
    }
    match std::str::from_utf8(word) {
        Ok(s) if !s.chars().any(char::is_control) => format!("'{}'", s.replace('\'', r"'\''")),
        _ => {
            let mut out = String::from("$'");
            for &b in word {
                match b {
                    b'\'' | b'\\' => {
                        out.push('\\');
                        out.push(b as char);
                    }
                    0x20..=0x7e => out.push(b as char),
                    _ => out.push_str(&format!("\\x{b:02x}")),
                }
            }
            out.push('\'');
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote(b"/run/postgresql:uid=100,gid=102,mode=2775"), "/run/postgresql:uid=100,gid=102,mode=2775");
        assert_eq!(shell_quote(b"a b"), "'a b'");
        assert_eq!(shell_quote(b"it's"), r"'it'\''s'");
        assert_eq!(shell_quote(b"x\xffy"), r"$'x\xffy'");
        assert_eq!(shell_quote(b""), "''");
    }

    /// Two containers whose volume names coincide cannot be rendered together.
    #[test]
    fn volumes_are_never_shared_between_containers() {
        let mount = |name: &str| PlannedMount {
            path: format!("/{name}").into(),
            kind: super::MountKind::Volume,
            name: name.into(),
            persistent: true,
            seed: false,
            uid: 0,
            gid: 0,
            mode: 0o755,
            rule: "default".into(),
            reason: String::new(),
            covers: Vec::new(),
            anticipated: false,
            anticipates: Vec::new(),
            evidence: None,
        };
        let plans = [
            Plan { container: "a".into(), mounts: vec![mount("b-c")], ..Plan::default() },
            Plan { container: "a-b".into(), mounts: vec![mount("c")], ..Plan::default() },
        ];
        for format in [PlanFormat::Docker, PlanFormat::Compose, PlanFormat::K8s] {
            assert!(matches!(render(&plans, format), Err(Error::Unrepresentable { .. })), "{format:?}");
        }
        assert!(render(&plans, PlanFormat::Json).is_ok());
        assert!(render(&plans[..1], PlanFormat::Compose).is_ok());
    }

    /// A plan for a Podman container renders Podman's flags: no tmpfs on /run, /tmp, /var/tmp
    /// besides the plan's, and tmpfs owners as `U` (Podman refuses `uid=`/`gid=`).
    #[test]
    fn podman_plans_say_the_same_in_podman_flags() {
        let tmpfs = |path: &str, uid: u32| PlannedMount {
            path: path.into(),
            kind: super::MountKind::Tmpfs,
            name: path.trim_start_matches('/').replace('/', "-"),
            persistent: false,
            seed: false,
            uid,
            gid: uid,
            mode: 0o2755,
            rule: "default".into(),
            reason: String::new(),
            covers: Vec::new(),
            anticipated: false,
            anticipates: Vec::new(),
            evidence: None,
        };
        let mut plan = Plan { container: "r".into(), mounts: vec![tmpfs("/run/app", 100), tmpfs("/cache", 0)], ..Plan::default() };
        assert_eq!(render(std::slice::from_ref(&plan), PlanFormat::Docker).unwrap(), "--read-only --tmpfs /run/app:uid=100,gid=100,mode=2755 --tmpfs /cache:uid=0,gid=0,mode=2755\n");
        plan.runtime = Dialect::Podman;
        assert_eq!(
            render(std::slice::from_ref(&plan), PlanFormat::Docker).unwrap(),
            "--read-only --read-only-tmpfs=false --tmpfs /run/app:mode=2755,U --tmpfs /cache:mode=2755\n"
        );
        let json = render(std::slice::from_ref(&plan), PlanFormat::Json).unwrap();
        assert!(json.contains(r#""runtime": "podman""#), "{json}");
    }

    /// A container name with a line break stays in its comment line: it was copied as it is, and
    /// what followed the break became a shell line of its own (or YAML content).
    #[test]
    fn names_in_comments_cannot_start_lines() {
        let plans = [
            Plan { container: "x\nrm -rf /".into(), ..Plan::default() },
            Plan { container: "y\u{85}".into(), ..Plan::default() },
        ];
        assert_eq!(render(&plans, PlanFormat::Docker).unwrap(), "# container x\\nrm -rf /\n--read-only\n# container y\\u{85}\n--read-only\n");
        let compose = render(&plans, PlanFormat::Compose).unwrap();
        assert!(compose.starts_with("# rodiff plan for x\\nrm -rf /, y\\u{85}: merge into the compose file\nservices:\n"), "{compose}");
    }
}
