//! `docker diff`'s notion of "this entry differs", shared by every diff engine.
//!
//! moby compares the type and permission bits, owner, group and device number of every entry, and
//! size and modification time of non-directories only: a directory's size and mtime change when
//! entries come and go below it, and that is reported through the entries themselves. It also
//! compares every entry's file capabilities (`security.capability`): `setcap` changes no stat
//! field, yet `docker diff` reports it. Reading them costs two `getxattr`, so the kind functions
//! below ask for them (`caps_differ`) only about an entry whose stat is otherwise identical.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd};

use crate::fs::{self, Stat};
use crate::model::ChangeKind;

/// The extended attribute that holds a file's capabilities.
pub const CAPABILITY: &CStr = c"security.capability";

/// Whether entry `name` has different capabilities in the container's directory `own` and the
/// image's directory `image` (`None`: the entry is not there). moby compares the raw values, an
/// unset one as empty.
pub fn capabilities_differ(own: Option<BorrowedFd<'_>>, image: Option<BorrowedFd<'_>>, name: &CStr) -> io::Result<bool> {
    let read = |dir: Option<BorrowedFd<'_>>| match dir {
        Some(dir) => fs::get_xattr_at(dir, name, CAPABILITY).map(Option::unwrap_or_default),
        None => Ok(Vec::new()),
    };
    Ok(read(own)? != read(image)?)
}

/// Whether entry `name` has different bytes in the container's directory `own` and the image's
/// directory `image`: for a regular file written in the container whose metadata equals the
/// image's (a same-size rewrite with its mtime restored is no `T`). Both must be regular files;
/// anything else (swapped in since the stat) counts as different, and is never opened.
pub fn contents_differ(own: BorrowedFd<'_>, image: BorrowedFd<'_>, name: &CStr) -> io::Result<bool> {
    let open = |dir| match fs::open_regular_at(dir, name) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::InvalidInput || fs::is_vanished(&e) => Ok(None),
        Err(e) => Err(e),
    };
    match (open(own)?, open(image)?) {
        (Some(a), Some(b)) => fs::contents_differ(a.as_fd(), b.as_fd()),
        _ => Ok(true),
    }
}

/// Whether `new` (the container's entry) differs from `old` (the image's entry at the same path)
/// in a way `docker diff` reports as `C`.
pub fn differs(new: &Stat, old: &Stat) -> bool {
    if new.st_mode != old.st_mode || new.st_uid != old.st_uid || new.st_gid != old.st_gid {
        return true;
    }
    if is_dir(new) {
        return false;
    }
    new.st_rdev != old.st_rdev || new.st_size != old.st_size || mtime_differs(new, old)
}

/// Whether the modification times differ, treating a zero nanosecond part as "unknown" the way
/// moby does (tar archives and some filesystems drop sub-second precision).
pub fn mtime_differs(new: &Stat, old: &Stat) -> bool {
    new.st_mtime != old.st_mtime
        || (new.st_mtime_nsec != old.st_mtime_nsec && new.st_mtime_nsec != 0 && old.st_mtime_nsec != 0)
}

/// Whether a stat result is a directory.
pub fn is_dir(st: &Stat) -> bool {
    st.st_mode & libc::S_IFMT == libc::S_IFDIR
}

/// The kind of a non-directory present in the container: `A` when the image lacks the path, `C`
/// when it differs (stat, or what `caps_differ` says — capabilities, and for a written regular file
/// its bytes — asked only when the stat is identical),
/// `T` when it is identical but the container wrote it (`written`: an overlay copy-up); `None`
/// when it is identical and untouched.
pub fn entry_kind(
    own: Option<&Stat>,
    image: Option<&Stat>,
    written: bool,
    caps_differ: impl FnOnce() -> io::Result<bool>,
) -> io::Result<Option<ChangeKind>> {
    Ok(match (own, image) {
        (_, None) => Some(ChangeKind::Added),
        (Some(own), Some(image)) if differs(own, image) || caps_differ()? => Some(ChangeKind::Changed),
        (Some(_), Some(_)) if written => Some(ChangeKind::Touched),
        _ => None,
    })
}

/// The kind of a directory both the image and the container have, once its subtree is known:
/// `C` when its mode/owner (or capabilities: `caps_differ`, asked last) changed or anything below
/// changed (`docker diff`'s rule), `T` when the container wrote it (`written`) and only its mtime
/// differs, else `None`.
pub fn dir_kind(
    own: &Stat,
    image: &Stat,
    changed_below: bool,
    written: bool,
    caps_differ: impl FnOnce() -> io::Result<bool>,
) -> io::Result<Option<ChangeKind>> {
    Ok(if changed_below || differs(own, image) || caps_differ()? {
        Some(ChangeKind::Changed)
    } else if written && mtime_differs(own, image) {
        Some(ChangeKind::Touched)
    } else {
        None
    })
}

/// The kind of a directory the container copied up (an overlay upper directory) that the image
/// also has: [`dir_kind`] of a written directory — and `T` when nothing below it is reported
/// either, for then the copy-up itself is the only trace of a write in it that left no name (an
/// `O_TMPFILE` file, an extended attribute set, a whiteout of a name the image lacks).
pub fn copied_up_dir_kind(
    own: &Stat,
    image: &Stat,
    below: Below,
    caps_differ: impl FnOnce() -> io::Result<bool>,
) -> io::Result<Option<ChangeKind>> {
    Ok(dir_kind(own, image, below.changed, true, caps_differ)?.or((!below.reported).then_some(ChangeKind::Touched)))
}

/// What a walk found below a directory, for the directory's own verdict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Below {
    /// A change that makes the directory `C` under `docker diff`'s rule (`A`, `C` or `D`).
    pub changed: bool,
    /// Anything reported at all, `T` included.
    pub reported: bool,
}

impl Below {
    /// What one entry reported as `kind` (or nothing) contributes to its parent.
    pub fn of(kind: Option<ChangeKind>) -> Below {
        Below { changed: kind.is_some_and(counts_for_parent), reported: kind.is_some() }
    }
}

impl std::ops::BitOr for Below {
    type Output = Below;
    fn bitor(self, other: Below) -> Below {
        Below { changed: self.changed | other.changed, reported: self.reported | other.reported }
    }
}

impl std::ops::BitOrAssign for Below {
    fn bitor_assign(&mut self, other: Below) {
        *self = *self | other;
    }
}

/// Whether a change of this kind makes its parent directory `C` under `docker diff`'s rule.
pub fn counts_for_parent(kind: ChangeKind) -> bool {
    kind != ChangeKind::Touched
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir(mode: u32, mtime: i64) -> Stat {
        // SAFETY: `stat` is plain old data; all-zero is a valid value.
        let mut st: Stat = unsafe { std::mem::zeroed() };
        st.st_mode = libc::S_IFDIR | mode;
        st.st_mtime = mtime;
        st
    }

    #[test]
    fn a_copied_up_directory_is_touched_only_when_nothing_else_explains_it() {
        let image = dir(0o755, 1);
        let nothing = Below::default();
        let touched_below = Below::of(Some(ChangeKind::Touched));
        let added_below = Below::of(Some(ChangeKind::Added));
        let kind = |own: &Stat, below| copied_up_dir_kind(own, &image, below, || Ok(false)).unwrap();
        assert_eq!(kind(&image, nothing), Some(ChangeKind::Touched));
        assert_eq!(kind(&image, touched_below), None, "explained by the child");
        assert_eq!(kind(&dir(0o755, 2), touched_below), Some(ChangeKind::Touched), "own mtime");
        assert_eq!(kind(&image, added_below), Some(ChangeKind::Changed));
        assert_eq!(kind(&dir(0o700, 1), nothing), Some(ChangeKind::Changed));
        let caps = copied_up_dir_kind(&image, &image, nothing, || Ok(true)).unwrap();
        assert_eq!(caps, Some(ChangeKind::Changed), "capabilities differ");
        let plain = dir_kind(&image, &image, false, true, || Ok(false)).unwrap();
        assert_eq!(plain, None, "outside overlayfs, an identical directory is no trace");
    }

    #[test]
    fn capabilities_are_read_only_when_the_stat_is_identical() {
        let image = dir(0o755, 1);
        let never = || -> io::Result<bool> { panic!("capabilities read for an entry already C") };
        assert_eq!(entry_kind(Some(&dir(0o700, 1)), Some(&image), true, never).unwrap(), Some(ChangeKind::Changed));
        assert_eq!(entry_kind(Some(&image), None, true, never).unwrap(), Some(ChangeKind::Added));
        assert_eq!(dir_kind(&image, &image, true, true, never).unwrap(), Some(ChangeKind::Changed));
        assert_eq!(entry_kind(Some(&image), Some(&image), true, || Ok(true)).unwrap(), Some(ChangeKind::Changed));
        assert_eq!(entry_kind(Some(&image), Some(&image), true, || Ok(false)).unwrap(), Some(ChangeKind::Touched));
    }
}
