//! The processes of a container's cgroup, read from the host's cgroup filesystem: how a resolver
//! whose runtime names only the container's first process (Docker's `State.Pid`) finds the others
//! (`docker exec` sessions, children that left the process tree).
//!
//! `<host-root>/proc/<pid>/cgroup` names the process's cgroup in each hierarchy (`0::<path>` on
//! cgroup v2, `<n>:<controllers>:<path>` on v1). Read from the host's cgroup namespace, the path
//! is relative to the root of the hierarchy, which is mounted at `<host-root>/sys/fs/cgroup`
//! (cgroup v2), `<host-root>/sys/fs/cgroup/unified` (v2 in a hybrid layout) or
//! `<host-root>/sys/fs/cgroup/<controller>` (v1). The container's processes are those listed in
//! `cgroup.procs` there and in every cgroup below it.
//!
//! The caller says which cgroup is the container's own (Docker's paths end in the container id:
//! `/docker/<id>`, `/system.slice/docker-<id>.scope`): a process that shares a cgroup with the
//! host (`0::/` in a hybrid layout, where only v1 is managed) must never pull in every process
//! of the host.

use std::path::{Component, Path, PathBuf};

use super::ClientOptions;

/// Every pid in the cgroup of `pid` and the cgroups below it, in the first hierarchy whose path
/// `is_own` accepts and whose directory can be read; `None` when there is no such hierarchy (the
/// process is gone, the cgroup filesystem is not visible, no path is the container's own).
pub fn members(options: &ClientOptions, pid: u32, is_own: impl Fn(&Path) -> bool) -> Option<Vec<u32>> {
    let text = std::fs::read_to_string(options.host_path(format!("/proc/{pid}/cgroup"))).ok()?;
    let root = options.host_path("/sys/fs/cgroup");
    text.lines().filter_map(parse_line).filter(|(_, _, path)| is_own(path)).find_map(|(hierarchy, controllers, path)| {
        let relative = path.strip_prefix("/").ok()?;
        hierarchy_dirs(&root, hierarchy, controllers).into_iter().find_map(|dir| {
            let mut pids = Vec::new();
            collect(&dir.join(relative), &mut pids).ok()?;
            Some(pids)
        })
    })
}

/// One line of `/proc/<pid>/cgroup`: hierarchy id, controllers, path. Paths that are not plain
/// absolute paths (`/../..` outside the reader's cgroup namespace) are left out.
pub(crate) fn parse_line(line: &str) -> Option<(&str, &str, &Path)> {
    let mut fields = line.splitn(3, ':');
    let (hierarchy, controllers, path) = (fields.next()?, fields.next()?, Path::new(fields.next()?));
    let plain = path.has_root() && path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    plain.then_some((hierarchy, controllers, path))
}

/// Where a hierarchy may be mounted below the cgroup root, most likely first.
fn hierarchy_dirs(root: &Path, hierarchy: &str, controllers: &str) -> Vec<PathBuf> {
    if hierarchy == "0" && controllers.is_empty() {
        return vec![root.join("unified"), root.to_path_buf()];
    }
    let names: Vec<&str> = controllers.split(',').map(|c| c.strip_prefix("name=").unwrap_or(c)).filter(|c| !c.is_empty()).collect();
    let mut dirs = vec![root.join(names.join(","))];
    if names.len() > 1 {
        dirs.extend(names.iter().map(|n| root.join(n)));
    }
    dirs
}

/// Adds the pids of `cgroup.procs` in `dir` and in every cgroup below it.
fn collect(dir: &Path, pids: &mut Vec<u32>) -> std::io::Result<()> {
    let procs = std::fs::read_to_string(dir.join("cgroup.procs"))?;
    pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            // A sub-cgroup removed meanwhile had no processes left to find.
            let _ = collect(&entry.path(), pids);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_of_both_versions() {
        assert_eq!(parse_line("0::/docker/abc"), Some(("0", "", Path::new("/docker/abc"))));
        assert_eq!(parse_line("3:cpu,cpuacct:/x"), Some(("3", "cpu,cpuacct", Path::new("/x"))));
        assert_eq!(parse_line("1:name=systemd:/a:b"), Some(("1", "name=systemd", Path::new("/a:b"))));
        assert_eq!(parse_line("0::/../../docker/abc"), None, "outside our cgroup namespace");
        assert_eq!(parse_line("garbage"), None);
    }

    #[test]
    fn where_hierarchies_are_mounted() {
        let root = Path::new("/h/sys/fs/cgroup");
        assert_eq!(hierarchy_dirs(root, "0", ""), vec![root.join("unified"), root.to_path_buf()]);
        assert_eq!(hierarchy_dirs(root, "8", "pids"), vec![root.join("pids")]);
        assert_eq!(hierarchy_dirs(root, "9", "name=systemd"), vec![root.join("systemd")]);
        assert_eq!(hierarchy_dirs(root, "2", "cpu,cpuacct"), vec![root.join("cpu,cpuacct"), root.join("cpu"), root.join("cpuacct")]);
    }

    #[test]
    fn members_of_a_cgroup_tree_only_when_it_is_the_containers() {
        let host = tempfile::tempdir().unwrap();
        let at = |p: &str| host.path().join(p);
        std::fs::create_dir_all(at("proc/42")).unwrap();
        std::fs::write(at("proc/42/cgroup"), "1:pids:/docker/c0ffee\n0::/\n").unwrap();
        std::fs::create_dir_all(at("sys/fs/cgroup/pids/docker/c0ffee/sub")).unwrap();
        std::fs::write(at("sys/fs/cgroup/pids/docker/c0ffee/cgroup.procs"), "42\n43\n").unwrap();
        std::fs::write(at("sys/fs/cgroup/pids/docker/c0ffee/sub/cgroup.procs"), "50\n").unwrap();
        std::fs::create_dir_all(at("sys/fs/cgroup/unified")).unwrap();
        std::fs::write(at("sys/fs/cgroup/unified/cgroup.procs"), "1\n2\n42\n").unwrap();
        let options = ClientOptions { host_root: host.path().to_path_buf(), ..Default::default() };

        let mut got = members(&options, 42, |p| p.ends_with("c0ffee")).unwrap();
        got.sort();
        assert_eq!(got, vec![42, 43, 50]);
        assert_eq!(members(&options, 42, |p| p == Path::new("/")), Some(vec![1, 2, 42]), "what is_own accepts");
        assert_eq!(members(&options, 42, |p| p.ends_with("other")), None);
        assert_eq!(members(&options, 7, |_| true), None, "no such process");
    }
}
