//! Names as one line can carry them: the escaping of `docker diff` lines, also used for every
//! container name and path an error message shows, so that a name with a newline cannot split a
//! message (or forge a second one) and bytes that are not UTF-8 are shown, not replaced.

use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Displays bytes C-style escaped: bytes that are not UTF-8 as `\xff`, control characters other
/// than tab as `\n`, `\r` or `\xNN` (each byte of a C1 control's UTF-8); everything else,
/// backslashes included, as it is (as `docker diff` prints names). Printable ASCII passes through
/// untouched.
#[derive(Clone, Copy, Debug)]
pub struct Escaped<'a>(pub &'a [u8]);

impl<'a> Escaped<'a> {
    /// A path's bytes, escaped.
    pub fn path(path: &'a Path) -> Self {
        Escaped(path.as_os_str().as_bytes())
    }

    /// A string (a container reference, an endpoint), escaped.
    pub fn str(s: &'a str) -> Self {
        Escaped(s.as_bytes())
    }
}

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The common case: printable ASCII, nothing to escape.
        if self.0.iter().all(|&b| (0x20..0x7f).contains(&b)) {
            // Printable ASCII is UTF-8.
            return f.write_str(std::str::from_utf8(self.0).map_err(|_| fmt::Error)?);
        }
        for chunk in self.0.utf8_chunks() {
            for ch in chunk.valid().chars() {
                match ch {
                    '\n' => f.write_str("\\n")?,
                    '\r' => f.write_str("\\r")?,
                    // C0, DEL and C1 (U+0080–U+009F: NEL, CSI …): each byte of its UTF-8 as `\xNN`.
                    c if c != '\t' && c.is_control() => {
                        let mut buf = [0u8; 4];
                        for b in c.encode_utf8(&mut buf).bytes() {
                            write!(f, "\\x{b:02x}")?;
                        }
                    }
                    c => fmt::Write::write_char(f, c)?,
                }
            }
            for b in chunk.invalid() {
                write!(f, "\\x{b:02x}")?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_line_cannot_carry_and_nothing_else() {
        let cases: [(&[u8], &str); 7] = [
            (b"/etc/passwd", "/etc/passwd"),
            (b"a\nb", "a\\nb"),
            (b"cr\r", "cr\\r"),
            (b"tab\tkept", "tab\tkept"),
            (b"bell\x07 del\x7f", "bell\\x07 del\\x7f"),
            (b"latin1 \xe9t\xe9", "latin1 \\xe9t\\xe9"),
            ("caf\u{e9} \\n".as_bytes(), "caf\u{e9} \\n"),
        ];
        for (bytes, shown) in cases {
            assert_eq!(Escaped(bytes).to_string(), shown, "{bytes:?}");
        }
    }

    /// C1 controls are valid UTF-8 but no less control characters (NEL ends a line for some
    /// readers, CSI starts a terminal escape); they were shown as they are (found by the
    /// `diff_render` fuzz target).
    #[test]
    fn c1_controls_are_escaped_as_their_bytes() {
        assert_eq!(Escaped("a\u{85}b\u{9b}c\u{a0}".as_bytes()).to_string(), "a\\xc2\\x85b\\xc2\\x9bc\u{a0}");
    }

    #[test]
    fn the_output_is_always_one_line() {
        for b in 0u8..=255 {
            let shown = Escaped(&[b'x', b, b'y']).to_string();
            assert!(!shown.contains('\n') && !shown.contains('\r'), "{b:#x}: {shown:?}");
        }
    }
}
