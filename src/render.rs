//! Output formats for changes: `docker diff`'s lines, a JSON array, and JSON lines.

use std::io::{self, Write};
use std::sync::Mutex;

use crate::layer::ChangeSink;
use crate::model::Change;

/// An output format for a diff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `A /path` lines, exactly as `docker diff` prints them; `T` changes are left out.
    Docker,
    /// One JSON array of change objects.
    Json,
    /// One JSON change object per line, streamed as the scan finds them.
    Jsonl,
}

/// Writes one change as a `docker diff` line (nothing for kind `T`, which docker cannot see).
///
/// Names a line cannot carry are escaped C-style: bytes that are not UTF-8 as `\xff`, control
/// characters other than tab (newline, carriage return, …) as `\n`, `\r` or `\xNN`. Everything else,
/// backslashes included, is printed as it is, as `docker diff` does.
pub fn write_docker_line(out: &mut impl Write, change: &Change) -> io::Result<()> {
    if !change.kind.visible_to_docker() {
        return Ok(());
    }
    out.write_all(&[change.kind.letter() as u8, b' '])?;
    write_escaped(out, change.path_bytes())?;
    out.write_all(b"\n")
}

/// Writes one change as a JSON object (no trailing newline).
///
/// `path` is a string when the path is UTF-8, otherwise an array of its byte values (the
/// convention of `journalctl -o json`), so that every name survives the round trip.
pub fn write_json_object(out: &mut impl Write, change: &Change) -> io::Result<()> {
    out.write_all(b"{\"path\":")?;
    write_json_path(out, change.path_bytes())?;
    write!(out, ",\"kind\":\"{}\",\"type\":\"{}\"", change.kind.letter(), change.file_type.name())?;
    if let Some(m) = &change.metadata {
        write!(
            out,
            ",\"mode\":{},\"uid\":{},\"gid\":{},\"size\":{},\"mtime\":{}.{:09}",
            m.mode, m.uid, m.gid, m.size, m.mtime_sec, m.mtime_nsec
        )?;
    }
    if change.mountpoint {
        out.write_all(b",\"mountpoint\":true")?;
    }
    if let Some(container) = &change.container {
        out.write_all(b",\"container\":")?;
        write_json_path(out, container.as_bytes())?;
    }
    if let Some(evidence) = change.evidence {
        write!(out, ",\"evidence\":\"{}\"", evidence.name())?;
    }
    out.write_all(b"}")
}

/// Writes changes in `format` (a whole document: the JSON array is opened and closed).
pub fn write_all(out: &mut impl Write, format: Format, changes: &[Change]) -> io::Result<()> {
    match format {
        Format::Docker => changes.iter().try_for_each(|c| write_docker_line(out, c)),
        Format::Jsonl => changes.iter().try_for_each(|c| {
            write_json_object(out, c)?;
            out.write_all(b"\n")
        }),
        Format::Json => {
            out.write_all(b"[")?;
            for (i, c) in changes.iter().enumerate() {
                out.write_all(if i == 0 { b"\n  " } else { b",\n  " })?;
                write_json_object(out, c)?;
            }
            out.write_all(if changes.is_empty() { b"]\n" } else { b"\n]\n" })
        }
    }
}

/// A sink that writes each batch as it arrives, in a line-oriented format.
pub struct Streaming<W: Write + Send> {
    format: Format,
    out: Mutex<W>,
}

impl<W: Write + Send> Streaming<W> {
    /// Streams `format` (docker or jsonl) to `out`.
    pub fn new(format: Format, out: W) -> Streaming<W> {
        assert!(format != Format::Json, "a JSON array is not streamed line by line");
        Streaming { format, out: Mutex::new(out) }
    }

    /// Flushes and returns the writer.
    pub fn finish(self) -> io::Result<W> {
        let mut out = self.out.into_inner().unwrap_or_else(|e| e.into_inner());
        out.flush()?;
        Ok(out)
    }
}

impl<W: Write + Send> ChangeSink for Streaming<W> {
    fn emit(&self, batch: Vec<Change>) -> io::Result<()> {
        // Format outside the lock; the lock only guards the copy into the writer.
        let mut text = Vec::with_capacity(batch.len() * 48);
        write_all(&mut text, self.format, &batch)?;
        self.out.lock().unwrap_or_else(|e| e.into_inner()).write_all(&text)
    }
}

fn write_escaped(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    // The common case: printable ASCII, nothing to escape.
    if bytes.iter().all(|&b| (0x20..0x7f).contains(&b)) {
        return out.write_all(bytes);
    }
    let mut rest = bytes;
    while !rest.is_empty() {
        let (valid, bad) = match std::str::from_utf8(rest) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (good, tail) = rest.split_at(e.valid_up_to());
                // SAFETY-free: `valid_up_to` marks a UTF-8 prefix.
                let good = std::str::from_utf8(good).expect("valid prefix");
                let bad_len = e.error_len().unwrap_or(tail.len());
                (good, &tail[..bad_len])
            }
        };
        for ch in valid.chars() {
            match ch {
                '\n' => out.write_all(b"\\n")?,
                '\r' => out.write_all(b"\\r")?,
                c if c != '\t' && ((c as u32) < 0x20 || c as u32 == 0x7f) => write!(out, "\\x{:02x}", c as u32)?,
                c => {
                    let mut buf = [0u8; 4];
                    out.write_all(c.encode_utf8(&mut buf).as_bytes())?
                }
            }
        }
        for b in bad {
            write!(out, "\\x{b:02x}")?;
        }
        rest = &rest[valid.len() + bad.len()..];
    }
    Ok(())
}

fn write_json_path(out: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    let Ok(text) = std::str::from_utf8(bytes) else {
        out.write_all(b"[")?;
        for (i, b) in bytes.iter().enumerate() {
            if i > 0 {
                out.write_all(b",")?;
            }
            write!(out, "{b}")?;
        }
        return out.write_all(b"]");
    };
    out.write_all(b"\"")?;
    let mut start = 0;
    for (i, &b) in text.as_bytes().iter().enumerate() {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0..=0x1f | 0x7f => None,
            _ => continue,
        };
        out.write_all(&text.as_bytes()[start..i])?;
        match escape {
            Some(e) => out.write_all(e)?,
            None => write!(out, "\\u{b:04x}")?,
        }
        start = i + 1;
    }
    out.write_all(&text.as_bytes()[start..])?;
    out.write_all(b"\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ChangeKind, FileType};
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    fn change(path: &[u8], kind: ChangeKind) -> Change {
        Change::new(OsStr::from_bytes(path).into(), kind, FileType::File)
    }

    fn docker(path: &[u8], kind: ChangeKind) -> String {
        let mut out = Vec::new();
        write_docker_line(&mut out, &change(path, kind)).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn json(path: &[u8]) -> serde_json::Value {
        let mut out = Vec::new();
        write_json_object(&mut out, &change(path, ChangeKind::Added)).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn docker_lines_escape_what_a_line_cannot_carry() {
        assert_eq!(docker(b"/etc/passwd", ChangeKind::Changed), "C /etc/passwd\n");
        assert_eq!(docker("/tmp/caf\u{e9} x".as_bytes(), ChangeKind::Added), "A /tmp/caf\u{e9} x\n");
        assert_eq!(docker(b"/tmp/a\nb", ChangeKind::Added), "A /tmp/a\\nb\n");
        assert_eq!(docker(b"/tmp/\xff\xfe.bin", ChangeKind::Deleted), "D /tmp/\\xff\\xfe.bin\n");
        assert_eq!(docker(b"/tmp/x", ChangeKind::Touched), "");
    }

    #[test]
    fn json_paths_are_lossless() {
        assert_eq!(json(b"/a \"q\"\\\n\x01")["path"], "/a \"q\"\\\n\x01");
        let bytes: Vec<u64> = b"/x\xffy".iter().map(|&b| b as u64).collect();
        assert_eq!(json(b"/x\xffy")["path"], serde_json::json!(bytes));
        assert_eq!(json(b"/x")["kind"], "A");
        assert_eq!(json(b"/x")["type"], "file");
    }

    #[test]
    fn json_array_is_valid_when_empty_and_full() {
        let mut out = Vec::new();
        write_all(&mut out, Format::Json, &[]).unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap(), serde_json::json!([]));
        let mut out = Vec::new();
        write_all(&mut out, Format::Json, &[change(b"/a", ChangeKind::Added), change(b"/b", ChangeKind::Touched)]).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(v[1]["kind"], "T");
        assert!(v[1].get("evidence").is_none(), "only live evidence has the field");
    }

    #[test]
    fn json_names_live_evidence() {
        let mut touched = change(b"/tmp", ChangeKind::Touched);
        touched.evidence = Some(crate::model::Evidence::OpenDeleted);
        let mut out = Vec::new();
        write_json_object(&mut out, &touched).unwrap();
        assert_eq!(serde_json::from_slice::<serde_json::Value>(&out).unwrap()["evidence"], "open-deleted");
    }
}
