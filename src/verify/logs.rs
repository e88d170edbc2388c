//! Read-only failures in a container's log: the lines that mention `Read-only file system` (EROFS,
//! errno 30), and the path each names.

use serde::Serialize;

use super::Phase;

/// The phrase `strerror(EROFS)` gives.
const EROFS: &str = "Read-only file system";

/// A log line that shows a write the read-only root filesystem refused.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReadOnlyFailure {
    /// The log line, as the application wrote it.
    pub line: String,
    /// The path the line names, if it names one.
    pub path: Option<String>,
    /// When the line was written: during the run, at stop, after the restart.
    pub when: Phase,
}

/// Every line of `log` that mentions a read-only file system, with the path it names.
pub fn failures(log: &str) -> Vec<ReadOnlyFailure> {
    failures_in(log, 0, Phase::Run)
}

/// [`failures`] in the lines of `log` after the first `skip` (those are an earlier phase's), as
/// written `when`.
pub fn failures_in(log: &str, skip: usize, when: Phase) -> Vec<ReadOnlyFailure> {
    log.lines()
        .skip(skip)
        .filter(|l| l.contains(EROFS))
        .map(|l| ReadOnlyFailure { line: l.trim_end().to_string(), path: named_path(l), when })
        .collect()
}

/// The absolute path a line names: the last quoted one before the error phrase
/// (`mkdir() "/var/lib/nginx/body" failed (30: Read-only file system)`), else the last word that
/// is an absolute path (`touch: /x: Read-only file system`).
fn named_path(line: &str) -> Option<String> {
    let before = &line[..line.find(EROFS).unwrap_or(line.len())];
    quoted_paths(before).pop().or_else(|| {
        before
            .split_whitespace()
            .map(|w| w.trim_matches(|c: char| matches!(c, ':' | ',' | ';' | '(' | ')' | '[' | ']' | '"' | '\'' | '`')))
            .rfind(|w| w.starts_with('/') && w.len() > 1)
            .map(str::to_string)
    })
}

/// Absolute paths in quotes: "…", '…', `…', “…”, «…».
fn quoted_paths(text: &str) -> Vec<String> {
    let pairs = [('"', '"'), ('\'', '\''), ('`', '\''), ('“', '”'), ('«', '»')];
    let mut found = Vec::new();
    let mut rest = text;
    while let Some((start, open)) = rest.char_indices().find(|(_, c)| pairs.iter().any(|(o, _)| o == c)) {
        let close = pairs.iter().find(|(o, _)| *o == open).map(|(_, c)| *c).expect("an opening quote");
        let inner = &rest[start + open.len_utf8()..];
        match inner.find(close) {
            Some(end) => {
                let candidate = &inner[..end];
                if candidate.starts_with('/') {
                    found.push(candidate.to_string());
                }
                rest = &inner[end + close.len_utf8()..];
            }
            None => break,
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_lines_and_paths() {
        let log = "\
starting
mkdir: cannot create directory '/var/lib/postgresql/data': Read-only file system
2026/01/01 00:00:00 [emerg] 1#1: mkdir() \"/var/lib/nginx/body\" failed (30: Read-only file system)
FATAL:  could not create lock file \"/var/run/postgresql/.s.PGSQL.5432.lock\": Read-only file system
touch: /x/y: Read-only file system
sh: can't create /tmp/f: Read-only file system
Can't open the log file: Read-only file system
ok";
        let found = failures(log);
        let paths: Vec<Option<&str>> = found.iter().map(|f| f.path.as_deref()).collect();
        assert_eq!(
            paths,
            [
                Some("/var/lib/postgresql/data"),
                Some("/var/lib/nginx/body"),
                Some("/var/run/postgresql/.s.PGSQL.5432.lock"),
                Some("/x/y"),
                Some("/tmp/f"),
                None
            ]
        );
        assert!(found[0].line.starts_with("mkdir:"));
        let later = failures_in(log, 5, Phase::Stop);
        assert_eq!(later.len(), 2);
        assert_eq!((later[0].path.as_deref(), later[0].when), (Some("/tmp/f"), Phase::Stop));
    }
}
