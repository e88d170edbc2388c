//! The core's errors as Python exceptions: [`RodiffError`] and its subclasses, each instance
//! carrying what it is about (container, runtime, endpoint, detail) as attributes, and the core's
//! stable kind and code.

use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

use core_lib::{Error, ErrorKind};

create_exception!(rodiff, RodiffError, PyException, "Any error rodiff reports; `kind` and `code` classify it.");
create_exception!(rodiff, ContainerNotFound, RodiffError, "The runtime answered but has no such container.");
create_exception!(rodiff, RuntimeUnavailable, RodiffError, "The runtime cannot be reached, or did not answer in time.");
create_exception!(rodiff, UnsupportedStorage, RodiffError, "The container's storage is not something rodiff can read.");

/// Adds the exception classes to the module.
pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("RodiffError", py.get_type::<RodiffError>())?;
    m.add("ContainerNotFound", py.get_type::<ContainerNotFound>())?;
    m.add("RuntimeUnavailable", py.get_type::<RuntimeUnavailable>())?;
    m.add("UnsupportedStorage", py.get_type::<UnsupportedStorage>())?;
    // Defaults for instances made by hand (in a test's mock): every attribute the stub declares.
    let base = py.get_type::<RodiffError>();
    base.setattr("kind", "other")?;
    base.setattr("code", 0)?;
    base.setattr("container", py.None())?;
    for class in [py.get_type::<ContainerNotFound>(), py.get_type::<RuntimeUnavailable>()] {
        class.setattr("runtime", "")?;
        class.setattr("endpoint", "")?;
    }
    py.get_type::<UnsupportedStorage>().setattr("detail", "")?;
    Ok(())
}

/// The error for a [`crate::client::Client`] used in a process forked after it was made: its
/// threads did not survive the fork, and a call would wait for them forever.
pub(crate) fn forked(py: Python<'_>, made_in: u32) -> PyErr {
    let message = format!(
        "this rodiff.Client was made in process {made_in}, and its threads do not survive a fork: \
         make a new Client in process {} (rodiff.diff() and the other functions do)",
        std::process::id()
    );
    let err = RodiffError::new_err(message);
    let _ = err.value(py).setattr("kind", "forked");
    err
}

/// The kind's name as Python sees it (`container-not-found`): stable, like its code.
fn kind_name(kind: ErrorKind) -> &'static str {
    match kind {
        ErrorKind::RuntimeUnavailable => "runtime-unavailable",
        ErrorKind::ContainerNotFound => "container-not-found",
        ErrorKind::UnsupportedStorage => "unsupported-storage",
        ErrorKind::Protocol => "protocol",
        ErrorKind::LayerVanished => "layer-vanished",
        ErrorKind::SnapshotVanished => "snapshot-vanished",
        ErrorKind::HostileLayer => "hostile-layer",
        ErrorKind::Io => "io",
        ErrorKind::Unrepresentable => "unrepresentable",
        ErrorKind::InvalidPlan => "invalid-plan",
        ErrorKind::RuntimeCall => "runtime-call",
        ErrorKind::Cancelled => "cancelled",
        ErrorKind::Sink => "sink",
        ErrorKind::Timeout => "timeout",
        ErrorKind::Stopped => "stopped",
        _ => "other",
    }
}

/// The Python exception for a core error about `target` (`container web`, `pod shop/web-0`):
/// its message is the core's, prefixed with the target when the core's does not name it.
pub(crate) fn to_py(py: Python<'_>, error: Error, target: Option<&str>) -> PyErr {
    let kind = error.kind();
    let (class, container): (Bound<'_, pyo3::types::PyType>, Option<String>) = match &error {
        Error::ContainerNotFound { container, .. } => (py.get_type::<ContainerNotFound>(), Some(container.clone())),
        Error::RuntimeUnavailable { .. } => (py.get_type::<RuntimeUnavailable>(), None),
        Error::UnsupportedStorage { container, .. } => (py.get_type::<UnsupportedStorage>(), Some(container.clone())),
        Error::Protocol { container, .. } | Error::RuntimeCall { container, .. } => {
            (py.get_type::<RodiffError>(), Some(container.clone()))
        }
        _ => (py.get_type::<RodiffError>(), None),
    };
    let message = error.to_string();
    let message = match target {
        Some(t) if !names_target(&error) => format!("{t}: {message}"),
        _ => message,
    };
    let err = PyErr::from_type(class, (message,));
    let value = err.value(py);
    let set = |name: &str, v: Option<&str>| value.setattr(name, v);
    let attributes = (|| -> PyResult<()> {
        value.setattr("kind", kind_name(kind))?;
        value.setattr("code", kind.code())?;
        set("container", container.as_deref().or(target))?;
        match &error {
            Error::ContainerNotFound { runtime, endpoint, .. } | Error::RuntimeUnavailable { runtime, endpoint, .. } => {
                set("runtime", Some(runtime))?;
                set("endpoint", Some(endpoint))?;
            }
            Error::UnsupportedStorage { detail, .. } => set("detail", Some(detail))?,
            _ => {}
        }
        Ok(())
    })();
    match attributes {
        Ok(()) => err,
        Err(e) => e,
    }
}

/// Whether the core's message already names the container.
fn names_target(error: &Error) -> bool {
    matches!(
        error,
        Error::ContainerNotFound { .. } | Error::UnsupportedStorage { .. } | Error::Protocol { .. } | Error::RuntimeCall { .. }
    )
}
