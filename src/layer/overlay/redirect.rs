//! `overlay.redirect` values, checked the way the kernel checks them before following one
//! (fs/overlayfs: `ovl_get_redirect_xattr`, then `lookup_one_len` on every component).
//!
//! A redirect names the lower directory a renamed directory came from: absolute from the layer
//! roots (`/a/b`), or a single name relative to the parent (`b`). Whoever can write the marker
//! (root, or with `userxattr` the unprivileged owner of the upper directory) could otherwise point
//! rodiff at `/../../etc`; the kernel refuses such a value, and so does rodiff.

use std::ffi::CString;

/// A redirect the kernel would follow.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Redirect {
    /// From the lower layers' roots (`/a/b`), rather than from the parent directory.
    pub absolute: bool,
    /// The names to look up, in order; none is empty, `.` or `..`.
    pub components: Vec<CString>,
}

/// Parses a redirect value, or says why the kernel refuses it.
pub(crate) fn parse(value: &[u8]) -> Result<Redirect, &'static str> {
    if value.is_empty() {
        return Err("empty value");
    }
    if value.contains(&0) {
        return Err("NUL byte");
    }
    let (absolute, parts) = match value.strip_prefix(b"/") {
        Some(rest) => (true, rest),
        None if value.contains(&b'/') => return Err("a relative redirect with '/'"),
        None => (false, value),
    };
    let components = parts
        .split(|&b| b == b'/')
        .map(|part| match part {
            b"" => Err("empty path component"),
            b"." | b".." => Err("'.' or '..' component"),
            _ => Ok(CString::new(part).expect("NUL checked above")),
        })
        .collect::<Result<_, _>>()?;
    Ok(Redirect { absolute, components })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(value: &[u8]) -> (bool, Vec<String>) {
        let r = parse(value).unwrap();
        (r.absolute, r.components.iter().map(|c| c.to_str().unwrap().to_string()).collect())
    }

    #[test]
    fn accepts_what_the_kernel_follows() {
        assert_eq!(names(b"/a/b"), (true, vec!["a".into(), "b".into()]));
        assert_eq!(names(b"old"), (false, vec!["old".into()]));
        assert_eq!(names(b"..."), (false, vec!["...".into()]));
        assert_eq!(names(b"/.hidden/x.."), (true, vec![".hidden".into(), "x..".into()]));
    }

    #[test]
    fn refuses_what_the_kernel_refuses() {
        for bad in [&b""[..], b"/", b"//x", b"/a//b", b"/a/", b"..", b".", b"/../../OUTSIDE", b"/a/./b", b"a/b", b"a/", b"/a\0b", b"\0"] {
            assert!(parse(bad).is_err(), "{:?} accepted", bad.escape_ascii().to_string());
        }
    }
}
