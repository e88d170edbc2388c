//! `docker diff`'s notion of "this entry differs", shared by every diff engine.
//!
//! moby compares the type and permission bits, owner, group and device number of every entry, and
//! size and modification time of non-directories only: a directory's size and mtime change when
//! entries come and go below it, and that is reported through the entries themselves.

use crate::fs::Stat;
use crate::model::ChangeKind;

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
/// when it differs, `T` when it is identical but the container wrote it (`written`: an overlay
/// copy-up); `None` when it is identical and untouched.
pub fn entry_kind(own: Option<&Stat>, image: Option<&Stat>, written: bool) -> Option<ChangeKind> {
    match (own, image) {
        (_, None) => Some(ChangeKind::Added),
        (Some(own), Some(image)) if differs(own, image) => Some(ChangeKind::Changed),
        (Some(_), Some(_)) if written => Some(ChangeKind::Touched),
        _ => None,
    }
}

/// The kind of a directory both the image and the container have, once its subtree is known:
/// `C` when its mode/owner changed or anything below changed (`docker diff`'s rule), `T` when the
/// container wrote it (`written`) and only its mtime differs, else `None`.
pub fn dir_kind(own: &Stat, image: &Stat, changed_below: bool, written: bool) -> Option<ChangeKind> {
    if changed_below || differs(own, image) {
        Some(ChangeKind::Changed)
    } else if written && mtime_differs(own, image) {
        Some(ChangeKind::Touched)
    } else {
        None
    }
}

/// Whether a change of this kind makes its parent directory `C` under `docker diff`'s rule.
pub fn counts_for_parent(kind: ChangeKind) -> bool {
    kind != ChangeKind::Touched
}
