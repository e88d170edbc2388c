//! Drift: executable files a container added or changed since its image. An unexpected binary in
//! a running container is the first thing a security team asks an agent that sees the writable
//! layer about; the layer shows it without a syscall tracer.

use rodiff::{Change, ChangeKind, FileType, Layer};

/// How many bytes of a file tell whether it is a program: `\x7fELF`, or `#!` for a script.
const HEAD: usize = 4;

/// Whether `change` (of a container whose layer is `layer`) is an executable the container
/// added or changed: a regular file with any execute bit, or whose first bytes are an ELF or
/// script header. A file that cannot be read (gone since the diff, not a regular file any more)
/// counts by its mode alone.
pub fn is_executable(layer: &Layer, change: &Change) -> bool {
    if change.file_type != FileType::File || !matches!(change.kind, ChangeKind::Added | ChangeKind::Changed) || change.evidence.is_some() {
        return false;
    }
    if change.metadata.is_some_and(|m| m.mode & 0o111 != 0) {
        return true;
    }
    layer.read_head(&change.path, HEAD).is_ok_and(|head| is_program(&head))
}

/// Whether a file starting with `head` is a program (ELF, or a script with `#!`).
pub fn is_program(head: &[u8]) -> bool {
    head.starts_with(b"\x7fELF") || head.starts_with(b"#!")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_and_scripts_are_programs_and_text_is_not() {
        assert!(is_program(b"\x7fELF"));
        assert!(is_program(b"#!/b"));
        assert!(!is_program(b"#!"[..1].as_ref()));
        assert!(!is_program(b"hell"));
        assert!(!is_program(b""));
    }
}
