//! `rodiff._rodiff`: the Python module of rodiff, a thin pyo3 adapter over [`core_lib::Client`].
//!
//! Nothing is re-implemented here: every diff, plan and verification is the core's, run with the
//! GIL released (see [`call`]). The pure-Python package `rodiff` (python/rodiff/) re-exports this
//! module and adds what only Python needs (container objects, environment defaults, `track`, the
//! pytest plugin); `rodiff/_rodiff.pyi` describes this module and is checked against it.

use pyo3::prelude::*;

mod call;
mod change;
mod client;
mod errors;
mod plan;

/// The module `rodiff._rodiff`.
#[pymodule]
fn _rodiff(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<client::Client>()?;
    m.add_class::<change::Change>()?;
    m.add_class::<plan::Plan>()?;
    m.add_class::<plan::Mount>()?;
    m.add_class::<plan::Report>()?;
    m.add_class::<plan::Probe>()?;
    errors::register(m)?;
    Ok(())
}
