//! The overlayfs engine: reads the upper directory, and looks names up in the lower stack only
//! where the upper directory has something.
//!
//! What the upper directory encodes (kernel `Documentation/filesystems/overlayfs.rst`):
//! - a character device 0/0 is a whiteout: the name was deleted;
//! - a directory with `<ns>.overlay.opaque = y` hides everything the lower layers have below it;
//! - a directory with `<ns>.overlay.redirect` was renamed: its content is the lower directory the
//!   redirect names (absolute from the layer root, or relative to the parent) plus its own entries;
//! - a file with `<ns>.overlay.metacopy` had only its metadata copied up; its stat is still right,
//!   and its data is the image's: a copy-up whose metadata equals the image's has its bytes
//!   compared with the image's file (same size, mtime restored, other content is `C`, not `T`),
//!   except a metacopy one.
//!
//! `<ns>` is `trusted` for a normal mount and `user` for a `userxattr` (rootless) mount.

pub mod image;
mod lower;
pub(crate) mod redirect;
mod walk;

use std::path::PathBuf;

use crate::error::Result;
use crate::layer::{ChangeSink, ScanOptions};

/// An overlayfs layer: the container's upper directory over the image's lower directories.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OverlayLayer {
    /// The upper (writable) directory.
    pub upper: PathBuf,
    /// Lower directories, topmost first, as in the `lowerdir=` mount option.
    pub lowers: Vec<PathBuf>,
    /// Which xattr namespace the mount uses for its markers.
    pub xattr: XattrNamespace,
}

/// The extended-attribute namespace an overlay mount keeps its markers in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum XattrNamespace {
    /// `trusted.overlay.*`: the default, for mounts made by root.
    #[default]
    Trusted,
    /// `user.overlay.*`: mounts with the `userxattr` option (rootless runtimes).
    User,
}

impl XattrNamespace {
    /// The opaque-directory marker's name in this namespace.
    pub(crate) fn opaque(self) -> &'static std::ffi::CStr {
        match self {
            XattrNamespace::Trusted => c"trusted.overlay.opaque",
            XattrNamespace::User => c"user.overlay.opaque",
        }
    }

    fn metacopy(self) -> &'static std::ffi::CStr {
        match self {
            XattrNamespace::Trusted => c"trusted.overlay.metacopy",
            XattrNamespace::User => c"user.overlay.metacopy",
        }
    }

    fn redirect(self) -> &'static std::ffi::CStr {
        match self {
            XattrNamespace::Trusted => c"trusted.overlay.redirect",
            XattrNamespace::User => c"user.overlay.redirect",
        }
    }
}

/// Diffs an overlay layer against its lower stack.
pub fn diff(layer: &OverlayLayer, walkers: &super::Walkers, options: &ScanOptions, sink: &dyn ChangeSink) -> Result<()> {
    if layer.xattr == XattrNamespace::Trusted && !can_read_trusted_xattrs() {
        let cause = "reading overlayfs's trusted.overlay.* markers (opaque and redirected directories) needs CAP_SYS_ADMIN: \
            without it the kernel hides them and deleted directories would be missing from the diff";
        return Err(crate::error::Error::io(&layer.upper, std::io::Error::new(std::io::ErrorKind::PermissionDenied, cause)));
    }
    walk::Walker::new(layer, options, sink)?.run(walkers)
}

/// Whether this process may read `trusted.*` extended attributes: the kernel lists and returns
/// them only to a caller with CAP_SYS_ADMIN, and answers "no such attribute" to anyone else —
/// which would read as "not opaque", silently.
fn can_read_trusted_xattrs() -> bool {
    use rustix::thread::{capabilities, CapabilitySet};
    capabilities(None).map_or(true, |caps| caps.effective.contains(CapabilitySet::SYS_ADMIN))
}
