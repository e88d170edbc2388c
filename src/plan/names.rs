//! Names for mounts: short, unique in a plan, and valid where they are used — a Kubernetes volume
//! name (DNS label: `a-z`, `0-9`, `-`, at most 63 bytes) and, behind the container's name, a Docker
//! volume name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`).

use std::collections::HashSet;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use super::PlannedMount;

/// Longest Kubernetes volume name.
const MAX_LABEL: usize = 63;

/// Gives every mount a unique name derived from its path (`/var/lib/postgresql` →
/// `var-lib-postgresql`; a clash gets `-2`, `-3` …).
pub fn assign(mounts: &mut [PlannedMount]) {
    let mut taken = HashSet::new();
    for mount in mounts {
        let base = label(&mount.path);
        let mut name = base.clone();
        let mut n = 2;
        while !taken.insert(name.clone()) {
            let suffix = format!("-{n}");
            name = format!("{}{suffix}", truncate(&base, MAX_LABEL - suffix.len()));
            n += 1;
        }
        mount.name = name;
    }
}

/// A DNS label for a container path: lower-case letters and digits, other runs of bytes as `-`.
pub fn label(path: &Path) -> String {
    let mut out = String::new();
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() {
            out.push(b.to_ascii_lowercase() as char);
        } else if !out.is_empty() && !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = truncate(out.trim_end_matches('-'), MAX_LABEL).to_string();
    if out.is_empty() {
        "mount".to_string()
    } else {
        out
    }
}

/// A name Docker accepts for a container's volume: `<container>-<mount name>`, with any byte
/// Docker refuses replaced by `-`.
pub fn docker_volume(container: &str, mount: &str) -> String {
    let mut out: String = container
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphanumeric()) {
        out.insert(0, 'v');
    }
    format!("{out}-{mount}")
}

fn truncate(s: &str, max: usize) -> &str {
    // Labels are ASCII: any byte index is a char boundary.
    s[..s.len().min(max)].trim_end_matches('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_and_volume_names() {
        assert_eq!(label(Path::new("/var/lib/postgresql")), "var-lib-postgresql");
        assert_eq!(label(Path::new("/run/Redis_x.d/")), "run-redis-x-d");
        assert_eq!(label(Path::new("/\u{e9}t\u{e9}")), "t");
        assert_eq!(label(Path::new("/\u{e9}")), "mount");
        assert_eq!(label(&Path::new("/").join("a".repeat(100))).len(), 63);
        assert_eq!(docker_volume("web", "tmp"), "web-tmp");
        assert_eq!(docker_volume("/odd name", "run"), "v-odd-name-run");
    }
}
