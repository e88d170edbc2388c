//! The one table that decides where mounts go and what they hold.
//!
//! A [`Rule`] matches either a place (`/var/lib/*`: a mount at `/var/lib/<name>` covers every write
//! below it) or a kind of file (`*.pid`, sockets: runtime state wherever it is). Place rules put
//! mounts and classify them; file rules only classify writes no place rule claims. Users extend the
//! table with `--tmpfs PATH` and `--volume PATH`, which win over every built-in rule and fix the
//! mount's kind.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use super::MountKind;
use crate::model::{Change, FileType};

/// What a mount holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    /// Runtime state, caches, temporary files: may start empty at every start (a tmpfs).
    State,
    /// Data that must outlive the container (a volume).
    Data,
}

/// What a rule matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Matcher {
    /// A place: an absolute path whose components may be globs (`*`, `?`); the mount goes at the
    /// matched path and covers every write below it.
    Path(PathBuf),
    /// A file name glob (`*.pid`): classifies the file's writes, wherever they are.
    Name(String),
    /// A file type (sockets): classifies the file's writes, wherever they are.
    Type(FileType),
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Matcher::Path(p) => write!(f, "{}", p.display()),
            Matcher::Name(n) => f.write_str(n),
            Matcher::Type(t) => write!(f, "any {t}"),
        }
    }
}

/// One row of the table.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// What it matches.
    pub matcher: Matcher,
    /// What the matched writes are.
    pub class: Class,
    /// A kind the user asked for (`--tmpfs`, `--volume`); `None` lets the planner choose, so that
    /// a tmpfs never hides files the image ships.
    pub kind: Option<MountKind>,
    /// Why, in words, for the plan's `reason`.
    pub reason: String,
}

impl Rule {
    /// A place rule.
    pub fn path(path: &str, class: Class, reason: &str) -> Rule {
        Rule { matcher: Matcher::Path(path.into()), class, kind: None, reason: reason.into() }
    }

    /// A file-name rule.
    pub fn name(glob: &str, class: Class, reason: &str) -> Rule {
        Rule { matcher: Matcher::Name(glob.into()), class, kind: None, reason: reason.into() }
    }

    /// A file-type rule.
    pub fn file_type(file_type: FileType, class: Class, reason: &str) -> Rule {
        Rule { matcher: Matcher::Type(file_type), class, kind: None, reason: reason.into() }
    }

    /// The user's `--tmpfs PATH` or `--volume PATH`: a mount of that kind at PATH, whatever else
    /// the table says.
    pub fn forced(path: impl Into<PathBuf>, kind: MountKind) -> Rule {
        let (class, reason) = match kind {
            MountKind::Tmpfs => (Class::State, "asked for with --tmpfs"),
            MountKind::Volume => (Class::Data, "asked for with --volume"),
        };
        Rule { matcher: Matcher::Path(path.into()), class, kind: Some(kind), reason: reason.into() }
    }

    /// How the plan names this rule (`/var/lib/*`, `--tmpfs /cache`).
    pub fn label(&self) -> String {
        match self.kind {
            Some(kind) => format!("--{} {}", kind.name(), self.matcher),
            None => self.matcher.to_string(),
        }
    }

    /// For a place rule: the path in `target`'s ancestry (itself included) that the rule matches.
    fn place(&self, target: &Path) -> Option<PathBuf> {
        let Matcher::Path(pattern) = &self.matcher else { return None };
        let pattern: Vec<&[u8]> = normal_components(pattern).collect();
        let target_parts: Vec<&[u8]> = normal_components(target).collect();
        if target_parts.len() < pattern.len() || pattern.is_empty() {
            return None;
        }
        if !pattern.iter().zip(&target_parts).all(|(p, t)| glob(p, t)) {
            return None;
        }
        let mut place = PathBuf::from("/");
        for part in &target_parts[..pattern.len()] {
            place.push(std::ffi::OsStr::from_bytes(part));
        }
        Some(place)
    }

    /// For a file rule: whether it matches the change.
    fn classifies(&self, change: &Change) -> bool {
        match &self.matcher {
            Matcher::Path(_) => false,
            Matcher::Name(pattern) => {
                change.path.file_name().is_some_and(|n| glob(pattern.as_bytes(), n.as_bytes()))
            }
            Matcher::Type(t) => change.file_type == *t,
        }
    }
}

/// The rule table: the built-in rules and what the user added.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    rules: Vec<Rule>,
    /// Cover directories the container's user owns although no write showed there (ownership
    /// evidence); on unless [`Rules::observed_only`].
    anticipate: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules::builtin()
    }
}

impl Rules {
    /// The built-in table.
    pub fn builtin() -> Rules {
        use Class::{Data, State};
        let temp = "temporary files";
        let run = "runtime state (pid, lock and socket files)";
        let logs = "log files (kept for the container's life; log to stdout, or --volume PATH to keep them)";
        let rules = vec![
            Rule::path("/tmp", State, temp),
            Rule::path("/var/tmp", State, temp),
            Rule::path("/run", State, run),
            Rule::path("/run/*", State, run),
            Rule::path("/var/run", State, run),
            Rule::path("/var/run/*", State, run),
            Rule::path("/var/lock", State, "lock files"),
            Rule::path("/var/cache/*", State, "a cache, rebuilt when missing"),
            Rule::path("/var/log", State, logs),
            Rule::path("/var/log/*", State, logs),
            Rule::path("/var/lib/*", Data, "a service's data (/var/lib/<service>)"),
            Rule::path("/var/spool/*", Data, "queued work (/var/spool/<service>)"),
            Rule::path("/data", Data, "application data"),
            Rule::path("/srv/*", Data, "data the container serves (/srv/<name>)"),
            Rule::path("/home/*", Data, "a home directory"),
            Rule::path("/root", Data, "root's home directory"),
            Rule::name("*.pid", State, "a pid file"),
            Rule::name("*.lock", State, "a lock file"),
            Rule::name("*.sock", State, "a socket"),
            Rule::file_type(FileType::Socket, State, "a socket"),
        ];
        Rules { rules, anticipate: true }
    }

    /// Plans from observed writes only (`--observed-only`) when `on`: no mount on ownership
    /// evidence alone ([`crate::plan::RunAs`]).
    pub fn observed_only(&mut self, on: bool) -> &mut Rules {
        self.anticipate = !on;
        self
    }

    /// Whether directories the container's user owns are covered without an observed write.
    pub fn anticipates(&self) -> bool {
        self.anticipate
    }

    /// Adds a rule that wins over the built-in ones (and over rules added before it).
    pub fn add(&mut self, rule: Rule) -> &mut Rules {
        self.rules.insert(0, rule);
        self
    }

    /// Every rule, the user's first.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    /// The place where writes in directory `target` go, and the rule that says so: the user's rules
    /// first, then the most specific built-in match (`/run/*` before `/run`).
    pub fn place(&self, target: &Path) -> Option<(PathBuf, &Rule)> {
        let best = |forced: bool| {
            self.rules
                .iter()
                .filter(|r| r.kind.is_some() == forced)
                .filter_map(|r| r.place(target).map(|p| (p, r)))
                // Most components wins; the first rule wins ties.
                .fold(None, |best: Option<(PathBuf, &Rule)>, (p, r)| match &best {
                    Some((b, _)) if b.components().count() >= p.components().count() => best,
                    _ => Some((p, r)),
                })
        };
        best(true).or_else(|| best(false))
    }

    /// The class the file rules give a change, if one matches.
    pub fn classify(&self, change: &Change) -> Option<&Rule> {
        self.rules.iter().find(|r| r.classifies(change))
    }

    /// The user's mounts (`--tmpfs`, `--volume`) whose path has no glob: these are planned even
    /// when no write shows there.
    pub fn forced_places(&self) -> impl Iterator<Item = (&Path, &Rule)> {
        self.rules.iter().filter(|r| r.kind.is_some()).filter_map(|r| match &r.matcher {
            Matcher::Path(p) if !p.as_os_str().as_bytes().iter().any(|b| matches!(b, b'*' | b'?')) => Some((p.as_path(), r)),
            _ => None,
        })
    }
}

fn normal_components(path: &Path) -> impl Iterator<Item = &[u8]> {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.as_bytes()),
        _ => None,
    })
}

/// Shell-style glob over bytes: `*` any run, `?` any one byte, everything else itself.
fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    p = sp + 1;
                    n = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::ChangeKind;

    #[test]
    fn globs() {
        assert!(glob(b"*.pid", b"nginx.pid"));
        assert!(!glob(b"*.pid", b"nginx.pidx"));
        assert!(glob(b"*", b"anything"));
        assert!(glob(b"a?c", b"abc"));
        assert!(glob(b"*a*b", b"xxaxxb"));
        assert!(!glob(b"", b"x"));
    }

    #[test]
    fn most_specific_place_wins_and_user_rules_first() {
        let mut rules = Rules::builtin();
        let place = |rules: &Rules, p: &str| rules.place(Path::new(p)).map(|(p, r)| (p.display().to_string(), r.label()));
        assert_eq!(place(&rules, "/run/postgresql"), Some(("/run/postgresql".into(), "/run/*".into())));
        assert_eq!(place(&rules, "/run"), Some(("/run".into(), "/run".into())));
        assert_eq!(place(&rules, "/var/lib/postgresql/data/base"), Some(("/var/lib/postgresql".into(), "/var/lib/*".into())));
        assert_eq!(place(&rules, "/var/lib"), None);
        assert_eq!(place(&rules, "/opt/app"), None);
        rules.add(Rule::forced("/var", MountKind::Volume));
        assert_eq!(place(&rules, "/var/lib/postgresql/data"), Some(("/var".into(), "--volume /var".into())));
        assert_eq!(rules.forced_places().count(), 1);
    }

    #[test]
    fn file_rules_classify() {
        let rules = Rules::builtin();
        let pid = Change::new("/opt/app/app.pid".into(), ChangeKind::Added, FileType::File);
        assert_eq!(rules.classify(&pid).map(|r| r.class), Some(Class::State));
        let sock = Change::new("/opt/app/.s.PGSQL.5432".into(), ChangeKind::Added, FileType::Socket);
        assert_eq!(rules.classify(&sock).map(|r| r.class), Some(Class::State));
        let data = Change::new("/opt/app/db".into(), ChangeKind::Added, FileType::File);
        assert!(rules.classify(&data).is_none());
    }
}
