//! [`Change`]: the core's change as an immutable, hashable Python object. Paths stay bytes until
//! Python asks for them (`path` decodes them as `os.fsdecode` does, surrogate escapes for bytes
//! that are not UTF-8).

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use std::ffi::OsStr;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

/// One change of a container's root filesystem relative to its image.
#[pyclass(module = "rodiff", frozen, eq)]
pub(crate) struct Change(pub(crate) core_lib::Change);

impl PartialEq for Change {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

#[pymethods]
impl Change {
    /// The absolute path in the container, bytes that are not UTF-8 as surrogate escapes.
    #[getter]
    fn path(&self) -> &OsStr {
        self.0.path.as_os_str()
    }

    /// The path as bytes.
    #[getter]
    fn path_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.0.path_bytes())
    }

    /// `A`, `C`, `D` or `T`.
    #[getter]
    fn kind(&self) -> char {
        self.0.kind.letter()
    }

    /// `file`, `dir`, `symlink`, `fifo`, `socket`, `char` or `block`.
    #[getter]
    fn r#type(&self) -> &'static str {
        self.0.file_type.name()
    }

    /// Permission bits, or None without metadata.
    #[getter]
    fn mode(&self) -> Option<u32> {
        self.0.metadata.map(|m| m.mode)
    }

    /// Owner uid as stored in the layer.
    #[getter]
    fn uid(&self) -> Option<u32> {
        self.0.metadata.map(|m| m.uid)
    }

    /// Owner gid as stored in the layer.
    #[getter]
    fn gid(&self) -> Option<u32> {
        self.0.metadata.map(|m| m.gid)
    }

    /// Size in bytes.
    #[getter]
    fn size(&self) -> Option<u64> {
        self.0.metadata.map(|m| m.size)
    }

    /// Modification time, seconds since the epoch.
    #[getter]
    fn mtime(&self) -> Option<f64> {
        self.0.metadata.map(|m| m.mtime_sec as f64 + f64::from(m.mtime_nsec) / 1e9)
    }

    /// Modification time, nanoseconds since the epoch (exact).
    #[getter]
    fn mtime_ns(&self) -> Option<i128> {
        self.0.metadata.map(|m| i128::from(m.mtime_sec) * 1_000_000_000 + i128::from(m.mtime_nsec))
    }

    /// The entry exists because the runtime made a mount point there.
    #[getter]
    fn mountpoint(&self) -> bool {
        self.0.mountpoint
    }

    /// The runtime, not the application, made this entry: a mount point, or a file or tree the
    /// runtime manages (`/etc/hosts`, `/etc/hostname`, `/etc/resolv.conf`, `/etc/mtab`,
    /// `/.dockerenv`, `/.containerenv`, `/dev`, `/proc`, `/sys`). A plan gives it no mount.
    #[getter]
    fn runtime_made(&self) -> bool {
        self.0.runtime_made()
    }

    /// The container's name, in a pod's diff.
    #[getter]
    fn container(&self) -> Option<&str> {
        self.0.container.as_deref()
    }

    /// Why a change the layer does not show is reported.
    #[getter]
    fn evidence(&self) -> Option<&'static str> {
        self.0.evidence.map(|e| e.name())
    }

    /// The change as one object of `rodiff diff --format json`.
    fn json(&self) -> PyResult<String> {
        serde_json::to_string(&self.0).map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))
    }

    /// A change is immutable: a copy is the change itself.
    fn __copy__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    /// A change is immutable: a deep copy (`copy.deepcopy`, `dataclasses.asdict`) is the change.
    fn __deepcopy__(slf: Py<Self>, _memo: &Bound<'_, PyAny>) -> Py<Self> {
        slf
    }

    fn __hash__(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.0.hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        let c = &self.0;
        let path = String::from_utf8_lossy(c.path_bytes());
        let mut repr = format!("Change({} {:?} {}", c.kind.letter(), path, c.file_type.name());
        if let Some(m) = c.metadata {
            repr += &format!(" mode=0o{:o} uid={} gid={} size={}", m.mode, m.uid, m.gid, m.size);
        }
        if c.mountpoint {
            repr += " mountpoint";
        }
        if let Some(container) = &c.container {
            repr += &format!(" container={container:?}");
        }
        if let Some(e) = c.evidence {
            repr += &format!(" evidence={}", e.name());
        }
        repr + ")"
    }
}
