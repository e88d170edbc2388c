//! Plans and verification reports as Python objects: [`Plan`] (with its [`Mount`]s and the core's
//! renderers), [`Report`] and its [`Probe`].

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use core_lib::plan::render::{self, PlanFormat};
use core_lib::plan::PlannedMount;

use crate::errors;

/// A path argument from Python: `str` (encoded as `os.fsencode` does) or `bytes`.
fn path_arg(path: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    if let Ok(bytes) = path.downcast::<PyBytes>() {
        return Ok(PathBuf::from(OsStr::from_bytes(bytes.as_bytes())));
    }
    path.extract::<PathBuf>()
}

/// A plan's rendering, or its error as a Python exception.
fn rendered<T>(py: Python<'_>, plan: &core_lib::Plan, result: core_lib::Result<T>) -> PyResult<T> {
    result.map_err(|e| errors::to_py(py, e, Some(&format!("container {}", plan.container))))
}

/// `docker run` arguments as `str`s (`os.fsdecode` of the core's bytes).
fn decode_args(args: Vec<Vec<u8>>) -> Vec<OsString> {
    args.into_iter().map(OsString::from_vec).collect()
}

/// The mounts a container needs to run with a read-only root filesystem.
#[pyclass(module = "rodiff", frozen)]
pub(crate) struct Plan(pub(crate) Arc<core_lib::Plan>);

#[pymethods]
impl Plan {
    /// The container the plan is for.
    #[getter]
    fn container(&self) -> &str {
        &self.0.container
    }

    /// The container's image, when the runtime told.
    #[getter]
    fn image(&self) -> Option<&str> {
        self.0.image.as_deref()
    }

    /// The mounts, in path order.
    #[getter]
    fn mounts(&self) -> Vec<Mount> {
        (0..self.0.mounts.len()).map(|index| Mount { plan: self.0.clone(), index }).collect()
    }

    /// Changes that need no mount: `(path, reason)`.
    #[getter]
    fn ignored(&self) -> Vec<(&OsStr, &str)> {
        self.0.ignored.iter().map(|i| (i.path.as_os_str(), i.reason.as_str())).collect()
    }

    /// Writes no mount can cover: `(path, reason)`.
    #[getter]
    fn uncovered(&self) -> Vec<(&OsStr, &str)> {
        self.0.uncovered.iter().map(|u| (u.path.as_os_str(), u.reason.as_str())).collect()
    }

    /// `docker run` arguments, starting with `--read-only`.
    fn docker_args(&self, py: Python<'_>) -> PyResult<Vec<OsString>> {
        rendered(py, &self.0, render::docker_args(&self.0)).map(decode_args)
    }

    /// A compose service fragment.
    fn compose(&self, py: Python<'_>) -> PyResult<String> {
        self.render(py, PlanFormat::Compose)
    }

    /// A Kubernetes strategic-merge patch for the pod template.
    fn k8s(&self, py: Python<'_>) -> PyResult<String> {
        self.render(py, PlanFormat::K8s)
    }

    /// The plan as `rodiff plan --format json` prints it.
    fn json(&self, py: Python<'_>) -> PyResult<String> {
        self.render(py, PlanFormat::Json)
    }

    /// The plan reduced to what concerns `paths` (a path, or an iterable of paths): the mounts at
    /// or above one of them, and the `ignored` and `uncovered` entries for exactly those paths.
    fn covering(&self, paths: &Bound<'_, PyAny>) -> PyResult<Plan> {
        // One path alone is one path, not the characters of one.
        let one = paths.is_instance_of::<PyString>() || paths.is_instance_of::<PyBytes>();
        let paths: Vec<PathBuf> = match one {
            true => vec![path_arg(paths)?],
            false => paths.try_iter()?.map(|p| path_arg(&p?)).collect::<PyResult<_>>()?,
        };
        Ok(Plan(Arc::new(self.0.covering(&paths))))
    }

    fn __repr__(&self) -> String {
        let mounts: Vec<String> =
            self.0.mounts.iter().map(|m| format!("{} {}", m.kind.name(), String::from_utf8_lossy(m.path.as_os_str().as_bytes()))).collect();
        format!("Plan(container={:?}, mounts=[{}])", self.0.container, mounts.join(", "))
    }
}

impl Plan {
    fn render(&self, py: Python<'_>, format: PlanFormat) -> PyResult<String> {
        rendered(py, &self.0, render::render(std::slice::from_ref(&self.0), format))
    }
}

/// One mount of a plan.
#[pyclass(module = "rodiff", frozen)]
pub(crate) struct Mount {
    plan: Arc<core_lib::Plan>,
    index: usize,
}

impl Mount {
    fn get(&self) -> &PlannedMount {
        &self.plan.mounts[self.index]
    }
}

#[pymethods]
impl Mount {
    /// Where it is mounted in the container.
    #[getter]
    fn path(&self) -> &OsStr {
        self.get().path.as_os_str()
    }

    /// The path as bytes.
    #[getter]
    fn path_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.get().path.as_os_str().as_bytes())
    }

    /// `tmpfs` or `volume`.
    #[getter]
    fn kind(&self) -> &'static str {
        self.get().kind.name()
    }

    /// A short name derived from the path.
    #[getter]
    fn name(&self) -> &str {
        &self.get().name
    }

    /// The content must outlive the container.
    #[getter]
    fn persistent(&self) -> bool {
        self.get().persistent
    }

    /// The image ships entries here that the mount must start with.
    #[getter]
    fn seed(&self) -> bool {
        self.get().seed
    }

    /// Owner of the mount's root.
    #[getter]
    fn uid(&self) -> u32 {
        self.get().uid
    }

    /// Group of the mount's root.
    #[getter]
    fn gid(&self) -> u32 {
        self.get().gid
    }

    /// `uid:gid`.
    #[getter]
    fn owner(&self) -> String {
        format!("{}:{}", self.get().uid, self.get().gid)
    }

    /// Permission bits of the mount's root.
    #[getter]
    fn mode(&self) -> u32 {
        self.get().mode
    }

    /// The rule that placed the mount.
    #[getter]
    fn rule(&self) -> &str {
        &self.get().rule
    }

    /// No change needs it: it is planned on ownership evidence alone.
    #[getter]
    fn anticipated(&self) -> bool {
        self.get().anticipated
    }

    /// Why directories the container's user owns are covered although no write showed there
    /// (`owned by uid 100, which the container's processes run as`), or `None`.
    #[getter]
    fn evidence(&self) -> Option<&str> {
        self.get().evidence.as_deref()
    }

    /// Why this mount, and why this kind.
    #[getter]
    fn reason(&self) -> &str {
        &self.get().reason
    }

    /// The changed paths that need it.
    #[getter]
    fn covers(&self) -> Vec<&OsStr> {
        self.get().covers.iter().map(|p| p.as_os_str()).collect()
    }

    /// This mount alone as `docker run` arguments (`["--tmpfs", "/run:..."]`).
    fn docker_args(&self, py: Python<'_>) -> PyResult<Vec<OsString>> {
        let mut alone = (*self.plan).clone();
        alone.mounts = vec![self.get().clone()];
        let args = rendered(py, &self.plan, render::docker_args(&alone))?;
        // The first argument is the plan's `--read-only`.
        Ok(decode_args(args.into_iter().skip(1).collect()))
    }

    fn __repr__(&self) -> String {
        let m = self.get();
        format!("Mount({} {:?} owner={}:{} mode=0o{:o})", m.kind.name(), String::from_utf8_lossy(m.path.as_os_str().as_bytes()), m.uid, m.gid, m.mode)
    }
}

/// What a verification found.
#[pyclass(module = "rodiff", frozen)]
pub(crate) struct Report(pub(crate) core_lib::verify::Report);

#[pymethods]
impl Report {
    /// The plan held: the read-only container kept running, the probe passed before the graceful
    /// stop and after the restart, it stopped cleanly, no read-only error was logged, and the
    /// writable shadow copy wrote nothing outside the plan's mounts (details in `json()`).
    #[getter]
    fn passed(&self) -> bool {
        self.0.passed()
    }

    /// The verification container's name (removed by now).
    #[getter]
    fn container(&self) -> &str {
        &self.0.container
    }

    /// Docker refused to start it.
    #[getter]
    fn start_error(&self) -> Option<&str> {
        self.0.start_error.as_deref()
    }

    /// It was still running after the wait and the probe.
    #[getter]
    fn running(&self) -> bool {
        self.0.running
    }

    /// Seconds it ran before it was found stopped, or the whole wait.
    #[getter]
    fn ran_for(&self) -> f64 {
        self.0.ran_for.as_secs_f64()
    }

    /// Its exit code, if it stopped.
    #[getter]
    fn exit_code(&self) -> Option<i64> {
        self.0.exit_code
    }

    /// The probe's outcome.
    #[getter]
    fn probe(&self) -> Option<Probe> {
        self.0.probe.clone().map(Probe)
    }

    /// Log lines about the read-only root filesystem, with the path each names.
    #[getter]
    fn failures(&self) -> Vec<(&str, Option<&str>)> {
        self.0.failures.iter().map(|f| (f.line.as_str(), f.path.as_deref())).collect()
    }

    /// Its last log lines (for a container that stopped).
    #[getter]
    fn log_tail(&self) -> Vec<String> {
        self.0.log_tail.clone()
    }

    /// What could not be removed afterwards (normally empty).
    #[getter]
    fn leftovers(&self) -> Vec<String> {
        self.0.leftovers.clone()
    }

    /// The report as a JSON object (durations in seconds), with the graceful stop, the restart,
    /// the shadow run and its `uncovered` writes (`path`, `kind`, `type`, `when`).
    fn json(&self) -> PyResult<String> {
        serde_json::to_string(&self.0).map_err(|e| PyValueError::new_err(e.to_string()))
    }

    fn __repr__(&self) -> String {
        format!("Report(passed={}, container={:?})", if self.0.passed() { "True" } else { "False" }, self.0.container)
    }
}

/// The outcome of a verification's probe.
#[pyclass(module = "rodiff", frozen)]
pub(crate) struct Probe(core_lib::verify::ProbeOutcome);

#[pymethods]
impl Probe {
    /// The command (`sh -c COMMAND`).
    #[getter]
    fn command(&self) -> &str {
        &self.0.command
    }

    /// Its exit code (None when it timed out).
    #[getter]
    fn exit_code(&self) -> Option<i64> {
        self.0.exit_code
    }

    /// stdout and stderr, interleaved.
    #[getter]
    fn output(&self) -> &str {
        &self.0.output
    }

    /// It exited 0.
    #[getter]
    fn passed(&self) -> bool {
        self.0.passed()
    }
}
