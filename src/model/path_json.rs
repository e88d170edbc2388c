//! The one serde encoding of paths (and other byte strings) in rodiff's data: a string when the
//! bytes are UTF-8, otherwise an array of the byte values (the convention of `journalctl -o json`).
//!
//! Lossless either way: Linux file names are bytes, not text, and a JSON string cannot carry bytes
//! that are not UTF-8. Strings are escaped as JSON escapes them (`"`, `\`, and control characters
//! such as newline as `\n` or `\u0001`); nothing is replaced. This is the interface contract of
//! `--format json`/`jsonl` and of the plan's JSON; every type that serializes a path goes through
//! here — `#[serde(with = "path_json")]` for a `PathBuf`, `#[serde(with = "path_json::many")]` for a
//! `Vec<PathBuf>`, or [`Bytes`] in a hand-written `Serialize`.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Writes `bytes` as a string when they are UTF-8, otherwise as a sequence of byte values.
pub(crate) fn serialize_bytes<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
    match std::str::from_utf8(bytes) {
        Ok(text) => s.serialize_str(text),
        Err(_) => s.collect_seq(bytes),
    }
}

/// Writes a path as a string or byte array (see the module doc).
pub(crate) fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
    serialize_bytes(path.as_os_str().as_bytes(), s)
}

/// Reads a path written by [`serialize`]: a string or an array of byte values.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
    Ok(JsonPath::deserialize(d)?.into_path())
}

/// A path as it is read back.
#[derive(Deserialize)]
#[serde(untagged)]
enum JsonPath {
    Text(String),
    Bytes(Vec<u8>),
}

impl JsonPath {
    fn into_path(self) -> PathBuf {
        match self {
            JsonPath::Text(s) => PathBuf::from(s),
            JsonPath::Bytes(b) => PathBuf::from(OsString::from_vec(b)),
        }
    }
}

/// Bytes (a path's) that serialize with [`serialize_bytes`]: a value to hand to
/// `serialize_field` or to put in sequences.
pub(crate) struct Bytes<'a>(pub(crate) &'a [u8]);

impl Serialize for Bytes<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        serialize_bytes(self.0, s)
    }
}

/// `#[serde(with = "path_json::many")]` for a `Vec<PathBuf>`: a sequence of paths, each encoded as
/// the module doc says.
pub(crate) mod many {
    use super::*;

    /// Writes each path as a string or byte array.
    pub(crate) fn serialize<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(paths.iter().map(|p| Bytes(p.as_os_str().as_bytes())))
    }

    /// Reads a sequence of strings or byte arrays.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        Ok(Vec::<JsonPath>::deserialize(d)?.into_iter().map(JsonPath::into_path).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[derive(Serialize, Deserialize, Debug, PartialEq)]
    struct One {
        #[serde(with = "super")]
        path: PathBuf,
        #[serde(with = "super::many")]
        paths: Vec<PathBuf>,
    }

    fn path(bytes: &[u8]) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(bytes))
    }

    fn json(bytes: &[u8]) -> String {
        let mut out = Vec::new();
        serialize(&path(bytes), &mut serde_json::Serializer::new(&mut out)).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn utf8_paths_are_strings() {
        assert_eq!(json(b"/etc/passwd"), r#""/etc/passwd""#);
        assert_eq!(json("/tmp/caf\u{e9} x".as_bytes()), "\"/tmp/caf\u{e9} x\"");
        assert_eq!(json(b""), r#""""#);
    }

    #[test]
    fn other_paths_are_byte_arrays() {
        assert_eq!(json(b"/x\xffy"), "[47,120,255,121]");
        assert_eq!(json(b"\xc3"), "[195]", "a truncated sequence is not UTF-8");
    }

    #[test]
    fn control_characters_are_escaped_as_json_does() {
        assert_eq!(json(b"/a\nb"), r#""/a\nb""#);
        assert_eq!(json(b"/a\"q\"\\\r\t"), r#""/a\"q\"\\\r\t""#);
        assert_eq!(json(b"/\x01\x1f"), r#""/\u0001\u001f""#);
        let back: String = serde_json::from_str(&json(b"/a\n\x01\x7f")).unwrap();
        assert_eq!(back, "/a\n\x01\x7f");
    }

    #[test]
    fn round_trips_strings_and_bytes() {
        let one = One { path: path(b"/x\xffy"), paths: vec![path(b"/a"), path(b"/b\xfe"), path(b"/c\nd")] };
        let text = serde_json::to_string(&one).unwrap();
        assert_eq!(text, r#"{"path":[47,120,255,121],"paths":["/a",[47,98,254],"/c\nd"]}"#);
        assert_eq!(serde_json::from_str::<One>(&text).unwrap(), one);
    }
}
