//! Planner tests on synthetic diffs and an in-memory image.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::render::{render, PlanFormat};
use super::*;
use crate::model::{ChangeKind, FileType, Metadata};

/// An image as a map of paths (every ancestor is a directory).
#[derive(Default)]
struct FakeImage(BTreeMap<PathBuf, (FileType, Metadata)>);

fn meta(mode: u32, uid: u32, gid: u32) -> Metadata {
    Metadata { mode, uid, gid, size: 0, mtime_sec: 1000, mtime_nsec: 0 }
}

impl FakeImage {
    fn with(mut self, path: &str, t: FileType, m: Metadata) -> Self {
        for a in Path::new(path).ancestors().skip(1) {
            self.0.entry(a.to_path_buf()).or_insert((FileType::Dir, meta(0o755, 0, 0)));
        }
        self.0.insert(path.into(), (t, m));
        self
    }
    fn dir(self, path: &str, mode: u32, uid: u32, gid: u32) -> Self {
        self.with(path, FileType::Dir, meta(mode, uid, gid))
    }
    fn file(self, path: &str) -> Self {
        self.with(path, FileType::File, meta(0o644, 0, 0))
    }
}

impl ImageView for FakeImage {
    fn stat(&self, path: &Path) -> Result<Option<(FileType, Metadata)>> {
        Ok(self.0.get(path).copied())
    }
    fn has_entries(&self, dir: &Path) -> Result<bool> {
        Ok(self.0.keys().any(|p| p.parent() == Some(dir)))
    }
    fn subdirs(&self, dir: &Path) -> Result<Vec<(PathBuf, Metadata)>> {
        Ok(self.0.iter().filter(|(p, (t, _))| p.parent() == Some(dir) && *t == FileType::Dir).map(|(p, (_, m))| (p.clone(), *m)).collect())
    }
}

/// A change with metadata; directories keep the image's mtime unless `written`.
fn change(path: &str, kind: ChangeKind, t: FileType, m: Metadata) -> Change {
    Change { metadata: Some(m), ..Change::new(path.into(), kind, t) }
}

fn a_dir(path: &str, mode: u32, uid: u32, gid: u32) -> Change {
    change(path, ChangeKind::Added, FileType::Dir, meta(mode, uid, gid))
}
fn a_file(path: &str) -> Change {
    change(path, ChangeKind::Added, FileType::File, meta(0o600, 100, 102))
}
fn c_dir(path: &str, image: &FakeImage) -> Change {
    let m = image.0[Path::new(path)].1;
    change(path, ChangeKind::Changed, FileType::Dir, m)
}

fn plan_of(changes: &[Change], image: &FakeImage, rules: &Rules) -> Plan {
    let mut changes = changes.to_vec();
    changes.sort_by(|a, b| crate::model::path_order(a.path_bytes(), b.path_bytes()));
    let input = PlanInput { container: "pg".into(), image: Some("postgres:15".into()), ..Default::default() };
    plan(&changes, image, &input, rules).unwrap()
}

fn summary(plan: &Plan) -> Vec<String> {
    plan.mounts
        .iter()
        .map(|m| format!("{} {} {}:{} {:o}{}", m.kind.name(), m.path.display(), m.uid, m.gid, m.mode, if m.seed { " seed" } else { "" }))
        .collect()
}

fn postgres_image() -> FakeImage {
    FakeImage::default()
        .dir("/run/lock", 0o1777, 0, 0)
        .dir("/run/postgresql", 0o2775, 100, 102)
        .dir("/var/lib/postgresql", 0o755, 100, 102)
        .dir("/tmp", 0o1777, 0, 0)
        .file("/etc/passwd")
}

fn postgres_changes(image: &FakeImage) -> Vec<Change> {
    let mut touched_tmp = c_dir("/tmp", image);
    touched_tmp.kind = ChangeKind::Touched;
    touched_tmp.metadata.as_mut().unwrap().mtime_sec = 2000;
    vec![
        c_dir("/run", image),
        c_dir("/run/postgresql", image),
        change("/run/postgresql/.s.PGSQL.5432", ChangeKind::Added, FileType::Socket, meta(0o777, 100, 102)),
        a_file("/run/postgresql/.s.PGSQL.5432.lock"),
        c_dir("/var", image),
        c_dir("/var/lib", image),
        c_dir("/var/lib/postgresql", image),
        a_dir("/var/lib/postgresql/data", 0o700, 100, 102),
        a_file("/var/lib/postgresql/data/PG_VERSION"),
        a_dir("/var/lib/postgresql/data/base", 0o700, 100, 102),
        a_file("/var/lib/postgresql/data/base/1"),
        touched_tmp,
    ]
}

#[test]
fn postgres_gets_tmpfs_for_state_and_a_volume_for_data() {
    let image = postgres_image();
    let plan = plan_of(&postgres_changes(&image), &image, &Rules::builtin());
    assert_eq!(
        summary(&plan),
        ["tmpfs /run/postgresql 100:102 2775", "tmpfs /tmp 0:0 1777", "volume /var/lib/postgresql 100:102 755"]
    );
    let data = plan.mount(Path::new("/var/lib/postgresql")).unwrap();
    assert!(data.persistent && !data.seed);
    assert_eq!(data.rule, "/var/lib/*");
    assert_eq!(data.covers, [PathBuf::from("/var/lib/postgresql/data")]);
    assert_eq!(plan.mount(Path::new("/run/postgresql")).unwrap().name, "run-postgresql");
    assert!(plan.uncovered.is_empty());

    let docker = render(std::slice::from_ref(&plan), PlanFormat::Docker).unwrap();
    assert_eq!(
        docker,
        "--read-only --tmpfs /run/postgresql:uid=100,gid=102,mode=2775 --tmpfs /tmp:uid=0,gid=0,mode=1777 \
         --volume pg-var-lib-postgresql:/var/lib/postgresql\n"
    );
}

#[test]
fn a_file_in_a_populated_directory_gets_a_seeded_volume_never_a_tmpfs() {
    // nginx writes /run/nginx.pid; the image has /run/lock.
    let image = FakeImage::default().dir("/run/lock", 0o1777, 0, 0);
    let changes = [c_dir("/run", &image), a_file("/run/nginx.pid")];
    let plan = plan_of(&changes, &image, &Rules::builtin());
    assert_eq!(summary(&plan), ["volume /run 0:0 755 seed"]);
    let m = &plan.mounts[0];
    assert!(!m.persistent, "runtime state: an emptyDir in Kubernetes");
    assert!(m.reason.contains("would hide"), "{}", m.reason);

    let k8s = render(std::slice::from_ref(&plan), PlanFormat::K8s).unwrap();
    assert!(k8s.contains("readOnlyRootFilesystem: true"), "{k8s}");
    assert!(k8s.contains("medium: Memory"), "{k8s}");
    assert!(k8s.contains("initContainers:"), "{k8s}");
    assert!(k8s.contains("cp -a /run/. /rodiff-seed/run/"), "{k8s}");
    assert!(k8s.contains("image: \"postgres:15\""), "{k8s}");
}

#[test]
fn a_changed_file_is_covered_at_its_directory_and_root_writes_are_uncovered() {
    let image = FakeImage::default().file("/etc/passwd").file("/app.conf").dir("/opt/app", 0o755, 0, 0).file("/opt/app/bin");
    let mut passwd = change("/etc/passwd", ChangeKind::Changed, FileType::File, meta(0o644, 0, 0));
    passwd.metadata.as_mut().unwrap().size = 10;
    let changes = [
        c_dir("/etc", &image),
        passwd,
        change("/app.conf", ChangeKind::Changed, FileType::File, meta(0o644, 0, 0)),
        c_dir("/opt/app", &image),
        a_file("/opt/app/app.pid"),
    ];
    let plan = plan_of(&changes, &image, &Rules::builtin());
    assert_eq!(summary(&plan), ["volume /etc 0:0 755 seed", "volume /opt/app 0:0 755 seed"]);
    // A pid file is runtime state, but /opt/app ships files: a volume, seeded, not persistent.
    let app = plan.mount(Path::new("/opt/app")).unwrap();
    assert!(!app.persistent && app.rule == "*.pid", "{app:?}");
    assert_eq!(plan.uncovered.len(), 1);
    assert_eq!(plan.uncovered[0].path, Path::new("/app.conf"));
}

#[test]
fn covering_keeps_the_mounts_above_the_paths_and_their_own_entries() {
    let image = FakeImage::default().file("/etc/hostname").file("/app.conf").dir("/opt/app", 0o755, 0, 0).file("/opt/app/bin");
    let changes = [
        change("/app.conf", ChangeKind::Changed, FileType::File, meta(0o644, 0, 0)),
        c_dir("/etc", &image),
        change("/etc/hostname", ChangeKind::Changed, FileType::File, meta(0o644, 0, 0)),
        c_dir("/opt/app", &image),
        a_file("/opt/app/app.pid"),
    ];
    let plan = plan_of(&changes, &image, &Rules::builtin());
    assert_eq!((plan.mounts.len(), plan.ignored.len(), plan.uncovered.len()), (1, 1, 1), "{plan:?}");
    let pid = plan.covering(&["/opt/app/app.pid".into()]);
    assert_eq!(summary(&pid), ["volume /opt/app 0:0 755 seed"]);
    assert!(pid.ignored.is_empty() && pid.uncovered.is_empty() && pid.container == plan.container);
    let rest = plan.covering(&["/etc/hostname".into(), "/app.conf".into(), "/opt".into()]);
    assert!(rest.mounts.is_empty(), "a mount below a path does not cover it: {:?}", rest.mounts);
    assert_eq!((rest.ignored, rest.uncovered), (plan.ignored.clone(), plan.uncovered.clone()));
    assert_eq!(plan.covering(&[]), Plan { mounts: vec![], ignored: vec![], uncovered: vec![], ..plan.clone() });
}

#[test]
fn runtime_files_mount_points_and_existing_mounts_are_ignored() {
    let image = FakeImage::default().file("/etc/hostname").dir("/srv", 0o755, 0, 0);
    let mut vol = a_dir("/srv/vol", 0o755, 0, 0);
    vol.mountpoint = true;
    let mut srv = c_dir("/srv", &image);
    srv.metadata.as_mut().unwrap().mtime_sec = 5000; // the runtime made /srv/vol in it
    let changes = [
        c_dir("/etc", &image),
        change("/etc/hostname", ChangeKind::Changed, FileType::File, meta(0o644, 0, 0)),
        srv,
        vol,
        a_file("/data/x"),
    ];
    let mut input = PlanInput { container: "c".into(), ..Default::default() };
    input.mount_destinations.push("/data".into());
    let plan = plan(&changes, &image, &input, &Rules::builtin()).unwrap();
    assert!(plan.mounts.is_empty(), "{:?}", plan.mounts);
    let ignored: Vec<_> = plan.ignored.iter().map(|i| i.path.display().to_string()).collect();
    assert_eq!(ignored, ["/etc/hostname", "/srv/vol", "/data/x"]);
    assert_eq!(render(&[plan], PlanFormat::Docker).unwrap(), "--read-only\n");
}

#[test]
fn transient_writes_and_chmod_count_as_writes_in_the_directory() {
    let image = FakeImage::default().dir("/var/cache/app", 0o755, 0, 0).file("/var/cache/app/keep").dir("/opt/x", 0o755, 0, 0);
    let mut cache = c_dir("/var/cache/app", &image);
    cache.metadata.as_mut().unwrap().mtime_sec = 3000; // a file made and removed, nothing else
    let mut chmod = c_dir("/opt/x", &image);
    chmod.metadata.as_mut().unwrap().mode = 0o700;
    let changes = [c_dir("/var", &image), c_dir("/var/cache", &image), cache, c_dir("/opt", &image), chmod];
    let plan = plan_of(&changes, &image, &Rules::builtin());
    assert_eq!(summary(&plan), ["volume /opt/x 0:0 700", "volume /var/cache/app 0:0 755 seed"]);
}

#[test]
fn added_directories_become_mount_points_unless_docker_would_get_the_owner_wrong() {
    let image = FakeImage::default().dir("/opt/app", 0o755, 0, 0).dir("/opt/svc", 0o755, 0, 0);
    let changes = [
        c_dir("/opt", &image),
        c_dir("/opt/app", &image),
        a_dir("/opt/app/state", 0o755, 0, 0),
        a_file("/opt/app/state/db"),
        c_dir("/opt/svc", &image),
        a_dir("/opt/svc/db", 0o700, 999, 999),
        a_dir("/run/app", 0o750, 999, 999),
        a_file("/run/app/app.pid"),
    ];
    let plan = plan_of(&changes, &image, &Rules::builtin());
    // root-owned new directory: a volume right there (Docker makes it 0:0 755 too); a new directory
    // owned by 999: Docker would make the volume root-owned, so the parent (which the image has).
    // /run/app is runtime state: a tmpfs keeps the owner and mode the container gave it.
    assert_eq!(summary(&plan), ["volume /opt/app/state 0:0 755", "volume /opt/svc 0:0 755", "tmpfs /run/app 999:999 750"]);
}

#[test]
fn user_rules_win_and_are_planned_even_without_writes() {
    let image = postgres_image();
    let mut rules = Rules::builtin();
    rules.add(Rule::forced("/var/lib/postgresql/data", MountKind::Tmpfs));
    rules.add(Rule::forced("/cache", MountKind::Volume));
    let plan = plan_of(&postgres_changes(&image), &image, &rules);
    assert_eq!(
        summary(&plan),
        ["volume /cache 0:0 755", "tmpfs /run/postgresql 100:102 2775", "tmpfs /tmp 0:0 1777", "tmpfs /var/lib/postgresql/data 100:102 700"]
    );
    assert_eq!(plan.mount(Path::new("/var/lib/postgresql/data")).unwrap().rule, "--tmpfs /var/lib/postgresql/data");
}

#[test]
fn renders_compose_and_json_round_trip() {
    let image = postgres_image();
    let plan = plan_of(&postgres_changes(&image), &image, &Rules::builtin());
    let compose = render(std::slice::from_ref(&plan), PlanFormat::Compose).unwrap();
    assert!(compose.contains(
        "services:\n  pg:\n    read_only: true\n    tmpfs:\n      - \"/run/postgresql:uid=100,gid=102,mode=2775\"\n"
    ), "{compose}");
    assert!(compose.contains("    volumes:\n      - \"pg-var-lib-postgresql:/var/lib/postgresql\"\nvolumes:\n  pg-var-lib-postgresql: {}\n"), "{compose}");

    let json = render(std::slice::from_ref(&plan), PlanFormat::Json).unwrap();
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back, plan);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["mounts"][0]["kind"], "tmpfs");
    assert!(value["mounts"][0]["reason"].as_str().unwrap().contains("tmpfs owned by 100:102, mode 2775"));
}

#[test]
fn non_utf8_paths_stay_lossless_in_json_and_are_refused_where_the_runtime_needs_text() {
    use std::os::unix::ffi::OsStrExt;
    let image = FakeImage::default();
    let odd = PathBuf::from(std::ffi::OsStr::from_bytes(b"/srv/d\xff"));
    let changes = [Change { path: odd.clone(), ..change("/", ChangeKind::Added, FileType::Dir, meta(0o755, 0, 0)) }];
    let plan = plan_of(&changes, &image, &Rules::builtin());
    assert_eq!(plan.mounts[0].path, odd);
    let json = render(std::slice::from_ref(&plan), PlanFormat::Json).unwrap();
    assert!(json.contains("[\n        47,"), "{json}");
    let back: Plan = serde_json::from_str(&json).unwrap();
    assert_eq!(back.mounts[0].path, odd);
    // `docker run` sends its arguments to the API as JSON: the byte would arrive as U+FFFD.
    for format in [PlanFormat::Docker, PlanFormat::Compose, PlanFormat::K8s] {
        let err = render(std::slice::from_ref(&plan), format).unwrap_err();
        assert!(matches!(err, crate::Error::Unrepresentable { .. }) && err.to_string().contains("not UTF-8"), "{format:?}: {err}");
    }
}

/// A broker's image: Debian's mosquitto gives /var/lib/mosquitto (empty: it saves its state there
/// only when it stops), /var/log/mosquitto and /etc/mosquitto to user mosquitto (100:101).
fn broker_image() -> FakeImage {
    FakeImage::default()
        .dir("/run/lock", 0o1777, 0, 0)
        .dir("/run/mosquitto", 0o755, 100, 101)
        .dir("/var/lib/mosquitto", 0o750, 100, 101)
        .dir("/var/lib/dpkg", 0o755, 0, 0)
        .file("/var/lib/dpkg/status")
        .dir("/var/lib/misc", 0o750, 0, 101) // the broker's group, but it cannot write
        .dir("/var/log/mosquitto", 0o750, 100, 4)
        .dir("/var/cache/man", 0o755, 6, 12) // another user's
        .dir("/var/spool/queue", 0o2770, 0, 101) // root's, group-writable for the broker's group
        .dir("/etc/mosquitto", 0o755, 100, 101) // configuration
        .dir("/etc/mosquitto/conf.d", 0o755, 100, 101)
        .dir("/tmp", 0o1777, 0, 0)
        .dir("/srv/mirror/pool", 0o755, 100, 101) // depth 2 below /srv
}

fn broker_plan(image: &FakeImage, rules: &Rules, run_as: Option<RunAs>, mounts: &[&str]) -> Plan {
    let changes = [
        c_dir("/var", image),
        c_dir("/var/log", image),
        c_dir("/var/log/mosquitto", image),
        change("/var/log/mosquitto/mosquitto.log", ChangeKind::Added, FileType::File, meta(0o644, 100, 101)),
    ];
    let input = PlanInput {
        container: "mq".into(),
        image: Some("mosquitto".into()),
        mount_destinations: mounts.iter().map(PathBuf::from).collect(),
        run_as,
        ..Default::default()
    };
    plan(&changes, image, &input, rules).unwrap()
}

/// The broker's processes, as /proc shows them: it started as root and dropped to mosquitto.
fn broker_processes() -> RunAs {
    RunAs { uids: [0, 100].into(), gids: [0, 101].into(), source: "the container's processes run as".into() }
}

#[test]
fn directories_the_service_owns_are_anticipated_where_the_rules_have_a_place() {
    let image = broker_image();
    let plan = broker_plan(&image, &Rules::builtin(), Some(broker_processes()), &[]);
    assert_eq!(
        summary(&plan),
        [
            "tmpfs /run/mosquitto 100:101 755",
            "volume /srv/mirror 0:0 755 seed",
            "volume /var/lib/mosquitto 100:101 750",
            "tmpfs /var/log/mosquitto 100:4 750",
            "volume /var/spool/queue 0:101 2770",
        ],
        "never root-owned /tmp, /run/lock, /var/lib/dpkg; never /var/lib/misc (its group cannot write), another user's \
         /var/cache/man, or /etc/mosquitto (configuration): {plan:#?}"
    );
    let data = plan.mount(Path::new("/var/lib/mosquitto")).unwrap();
    assert!(data.anticipated && data.covers.is_empty() && data.persistent && !data.seed, "{data:?}");
    assert_eq!(data.anticipates, [PathBuf::from("/var/lib/mosquitto")]);
    assert_eq!(data.evidence.as_deref(), Some("owned by uid 100, which the container's processes run as"));
    assert!(data.reason.contains("anticipated, no write seen yet"), "{}", data.reason);
    // The group case: root's directory, group-writable, the processes' group.
    let queue = plan.mount(Path::new("/var/spool/queue")).unwrap();
    assert_eq!(queue.evidence.as_deref(), Some("group-writable and owned by gid 101, which the container's processes run as"));
    // A place rule puts /srv/mirror/pool at /srv/mirror (root's, so it is seeded by the image).
    let mirror = plan.mount(Path::new("/srv/mirror")).unwrap();
    assert_eq!(mirror.anticipates, [PathBuf::from("/srv/mirror/pool")]);
    assert!(mirror.evidence.as_deref().unwrap().starts_with("/srv/mirror/pool: owned by uid 100"), "{mirror:?}");
    // Observed and owned: the write is what it covers; the evidence is noted.
    let log = plan.mount(Path::new("/var/log/mosquitto")).unwrap();
    assert!(!log.anticipated && log.covers == [PathBuf::from("/var/log/mosquitto/mosquitto.log")], "{log:?}");
    assert!(log.reason.contains("; also owned by uid 100"), "{}", log.reason);

    let json: serde_json::Value = serde_json::from_str(&render(std::slice::from_ref(&plan), PlanFormat::Json).unwrap()).unwrap();
    let m = json["mounts"].as_array().unwrap().iter().find(|m| m["path"] == "/var/lib/mosquitto").unwrap();
    assert_eq!(m["evidence"], "owned by uid 100, which the container's processes run as");
    assert_eq!(m["anticipated"], true);
    assert_eq!(m["covers"], serde_json::json!([]));
    let tmp = json["mounts"].as_array().unwrap().iter().find(|m| m["path"] == "/run/mosquitto").unwrap();
    assert!(tmp.get("evidence").is_some());
    let back: Plan = serde_json::from_value(json).unwrap();
    assert_eq!(back, plan);

    let comment = "# /var/lib/mosquitto: anticipated, no write seen yet: owned by uid 100, which the container's processes run as\n";
    for format in [PlanFormat::Compose, PlanFormat::K8s] {
        let text = render(std::slice::from_ref(&plan), format).unwrap();
        assert!(text.contains(comment), "{format:?}:\n{text}");
        assert!(text.contains("# /var/log/mosquitto: also anticipated: owned by uid 100"), "{format:?}:\n{text}");
    }
    let docker = render(std::slice::from_ref(&plan), PlanFormat::Docker).unwrap();
    assert!(docker.contains("--volume mq-var-lib-mosquitto:/var/lib/mosquitto"), "{docker}");
}

#[test]
fn observed_only_covers_what_was_written_and_nothing_else() {
    let image = broker_image();
    let mut rules = Rules::builtin();
    rules.observed_only(true);
    assert!(!rules.anticipates());
    let plan = broker_plan(&image, &rules, Some(broker_processes()), &[]);
    assert_eq!(summary(&plan), ["tmpfs /var/log/mosquitto 100:4 750"]);
    assert!(plan.mounts.iter().all(|m| m.evidence.is_none() && !m.anticipated && m.anticipates.is_empty()));
    let json = render(std::slice::from_ref(&plan), PlanFormat::Json).unwrap();
    assert!(!json.contains("evidence") && !json.contains("anticipated"), "{json}");
    assert!(!render(std::slice::from_ref(&plan), PlanFormat::K8s).unwrap().contains("anticipated"));
    // Nobody known to run it (root, or no process and no user configured): the same.
    assert_eq!(summary(&broker_plan(&image, &Rules::builtin(), None, &[])), ["tmpfs /var/log/mosquitto 100:4 750"]);
    // Root only: root-owned directories never count.
    let root = RunAs { uids: [0].into(), gids: [0].into(), source: "the container's processes run as".into() };
    assert_eq!(summary(&broker_plan(&image, &Rules::builtin(), Some(root), &[])), ["tmpfs /var/log/mosquitto 100:4 750"]);
}

#[test]
fn owned_directories_below_the_containers_own_mounts_need_nothing() {
    let image = broker_image();
    let plan = broker_plan(&image, &Rules::builtin(), Some(broker_processes()), &["/var/lib/mosquitto", "/srv", "/run/mosquitto"]);
    assert_eq!(summary(&plan), ["tmpfs /var/log/mosquitto 100:4 750", "volume /var/spool/queue 0:101 2770"]);
}

#[test]
fn owned_by_group_only_the_configured_user_of_a_stopped_container() {
    // `USER 100:101` resolved: uid 100 does not own it, gid 101 does and may write.
    let image = FakeImage::default().dir("/var/lib/app", 0o770, 0, 101).dir("/var/lib/other", 0o755, 0, 101);
    let run_as = RunAs { uids: [100].into(), gids: [101].into(), source: "the container's configured user (100:101) is".into() };
    let input = PlanInput { container: "app".into(), run_as: Some(run_as), ..Default::default() };
    let plan = plan(&[], &image, &input, &Rules::builtin()).unwrap();
    assert_eq!(summary(&plan), ["volume /var/lib/app 0:101 770"]);
    assert_eq!(
        plan.mounts[0].evidence.as_deref(),
        Some("group-writable and owned by gid 101, which the container's configured user (100:101) is")
    );
}

#[test]
fn kubernetes_mount_roots_get_the_owner_and_mode_of_the_directory_they_replace() {
    let image = broker_image();
    let plan = broker_plan(&image, &Rules::builtin(), Some(broker_processes()), &[]);
    let k8s = render(std::slice::from_ref(&plan), PlanFormat::K8s).unwrap();
    // Not seeded (the image's directory is empty), yet owned and moded like it.
    assert!(k8s.contains("chown 100:101 /rodiff-seed/var-lib-mosquitto && chmod 00750 /rodiff-seed/var-lib-mosquitto"), "{k8s}");
    assert!(!k8s.contains("cp -a /var/lib/mosquitto"), "{k8s}");
    assert!(k8s.contains("chown 0:101 /rodiff-seed/var-spool-queue && chmod 02770 /rodiff-seed/var-spool-queue"), "{k8s}");
    assert!(k8s.contains("chown 100:4 /rodiff-seed/var-log-mosquitto && chmod 00750 /rodiff-seed/var-log-mosquitto"), "{k8s}");
    // Seeded, then owned.
    let seeded = k8s.find("cp -a /srv/mirror/. /rodiff-seed/srv-mirror/").expect(&k8s);
    assert!(k8s[seeded..].contains("chown 0:0 /rodiff-seed/srv-mirror && chmod 00755 /rodiff-seed/srv-mirror"), "{k8s}");
    for name in ["var-lib-mosquitto", "var-log-mosquitto", "run-mosquitto", "srv-mirror", "var-spool-queue"] {
        assert!(k8s.contains(&format!("mountPath: /rodiff-seed/{name}\n")), "{name}: {k8s}");
    }
}
