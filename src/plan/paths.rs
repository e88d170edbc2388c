//! Paths in a plan's JSON, with the diff's convention: a string when the path is UTF-8, otherwise
//! an array of its byte values; lossless either way.

use std::ffi::OsString;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A path as it appears in JSON.
#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum JsonPath<'a> {
    Text(std::borrow::Cow<'a, str>),
    Bytes(Vec<u8>),
}

impl<'a> JsonPath<'a> {
    fn of(path: &'a Path) -> JsonPath<'a> {
        match std::str::from_utf8(path.as_os_str().as_bytes()) {
            Ok(s) => JsonPath::Text(s.into()),
            Err(_) => JsonPath::Bytes(path.as_os_str().as_bytes().to_vec()),
        }
    }

    fn into_path(self) -> PathBuf {
        match self {
            JsonPath::Text(s) => PathBuf::from(s.into_owned()),
            JsonPath::Bytes(b) => PathBuf::from(OsString::from_vec(b)),
        }
    }
}

/// `#[serde(with = "paths::one")]` for a `PathBuf`.
pub mod one {
    use super::*;

    /// Writes the path as a string or byte array.
    pub fn serialize<S: Serializer>(path: &Path, s: S) -> Result<S::Ok, S::Error> {
        JsonPath::of(path).serialize(s)
    }

    /// Reads a string or byte array.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<PathBuf, D::Error> {
        Ok(JsonPath::deserialize(d)?.into_path())
    }
}

/// `#[serde(with = "paths::many")]` for a `Vec<PathBuf>`.
pub mod many {
    use super::*;

    /// Writes each path as a string or byte array.
    pub fn serialize<S: Serializer>(paths: &[PathBuf], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(paths.iter().map(|p| JsonPath::of(p)))
    }

    /// Reads a list of strings or byte arrays.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<PathBuf>, D::Error> {
        Ok(Vec::<JsonPath>::deserialize(d)?.into_iter().map(JsonPath::into_path).collect())
    }
}
