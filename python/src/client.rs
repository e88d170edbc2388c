//! [`Client`]: the core's [`core_lib::Client`] for Python. Each call reads its arguments with the
//! GIL, runs the core's blocking call without it ([`crate::call::run`]), and converts the result.

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use core_lib::{Cancel, ClientOptions, PodSelector, Runtime, ScanOptions, Stop, Target};

use crate::call;
use crate::change::Change;
use crate::errors;
use crate::plan::{Plan, Report};

/// A connection to one runtime, shared by any number of threads.
#[pyclass(module = "rodiff._rodiff", frozen)]
pub(crate) struct Client {
    core: core_lib::Client,
    /// The process that made it: a forked child has none of its threads.
    pid: u32,
}

/// What a call is about, and how it names it in errors (`container web`).
fn target(container: Option<String>, pod: Option<&str>) -> PyResult<Target> {
    match (pod, container) {
        (Some(pod), container) => {
            let pod: PodSelector = pod.parse().map_err(|e: String| PyValueError::new_err(format!("pod: {e}")))?;
            Ok(Target::pod(pod, container.as_deref()))
        }
        (None, Some(c)) if !c.is_empty() => Ok(Target::Container(c)),
        (None, Some(_)) => Err(PyValueError::new_err("container is empty")),
        (None, None) => Err(PyValueError::new_err("name a container (or a pod)")),
    }
}

impl Client {
    /// The core client, unless this process is a fork of the one that made it.
    fn core(&self, py: Python<'_>) -> PyResult<&core_lib::Client> {
        match std::process::id() == self.pid {
            true => Ok(&self.core),
            false => Err(errors::forked(py, self.pid)),
        }
    }
}

#[pymethods]
impl Client {
    #[new]
    #[pyo3(signature = (runtime = "docker", host = None, address = None, namespace = None, host_root = None, timeout = None, walkers = 0))]
    fn new(
        py: Python<'_>,
        runtime: &str,
        host: Option<String>,
        address: Option<String>,
        namespace: Option<String>,
        host_root: Option<PathBuf>,
        timeout: Option<f64>,
        walkers: usize,
    ) -> PyResult<Client> {
        let mut options = ClientOptions {
            runtime: match runtime {
                "docker" => Runtime::Docker,
                "containerd" => Runtime::Containerd,
                other => return Err(PyValueError::new_err(format!("runtime must be \"docker\" or \"containerd\", not {other:?}"))),
            },
            namespace,
            walkers,
            ..ClientOptions::default()
        };
        if let Some(host) = host {
            options.docker_host = host;
        }
        if let Some(address) = address {
            options.containerd_address = address;
        }
        if let Some(root) = host_root {
            options.host_root = root;
        }
        if let Some(seconds) = timeout {
            options.timeout = Duration::try_from_secs_f64(seconds)
                .ok()
                .filter(|d| !d.is_zero())
                .ok_or_else(|| PyValueError::new_err(format!("timeout must be a positive number of seconds, not {seconds}")))?;
        }
        let core = core_lib::Client::new(options).map_err(|e| errors::to_py(py, e, None))?;
        Ok(Client { core, pid: std::process::id() })
    }

    /// `docker` or `containerd`.
    #[getter]
    fn runtime(&self) -> &'static str {
        match self.core.options().runtime {
            Runtime::Docker => "docker",
            Runtime::Containerd => "containerd",
        }
    }

    /// The changes of a container (or a pod's containers), sorted by path.
    #[pyo3(signature = (container, *, pod = None, metadata = true))]
    fn diff(&self, py: Python<'_>, container: Option<String>, pod: Option<&str>, metadata: bool) -> PyResult<Vec<Change>> {
        let target = target(container, pod)?;
        let cancel = Cancel::new();
        let scan = ScanOptions { metadata, stop: Stop { cancel: cancel.clone(), deadline: None }, ..Default::default() };
        let core = self.core(py)?;
        let changes = call::run(py, &cancel, || core.changes_with(&target, &scan))?;
        let changes = changes.map_err(|e| errors::to_py(py, e, Some(&target.to_string())))?;
        Ok(changes.into_iter().map(Change).collect())
    }

    /// The plans of a container (one) or a pod's containers (one each).
    #[pyo3(signature = (container, *, pod = None))]
    fn plan(&self, py: Python<'_>, container: Option<String>, pod: Option<&str>) -> PyResult<Vec<Plan>> {
        let target = target(container, pod)?;
        let cancel = Cancel::new();
        let stop = Stop { cancel: cancel.clone(), deadline: None };
        let rules = core_lib::Rules::builtin();
        let core = self.core(py)?;
        let plans = call::run(py, &cancel, || core.plan(&target, &rules, &stop))?;
        let plans = plans.map_err(|e| errors::to_py(py, e, Some(&target.to_string())))?;
        Ok(plans.into_iter().map(|p| Plan(p.into())).collect())
    }

    /// Verifies `plan` by running the container again read-only with its mounts (Docker).
    #[pyo3(signature = (container, plan, *, probe = None, wait = 5.0))]
    fn verify(&self, py: Python<'_>, container: String, plan: &Plan, probe: Option<String>, wait: f64) -> PyResult<Report> {
        let wait = Duration::try_from_secs_f64(wait)
            .map_err(|_| PyValueError::new_err(format!("wait must be a number of seconds, not {wait}")))?;
        let options = core_lib::verify::VerifyOptions { probe, wait, ..Default::default() };
        let cancel = Cancel::new();
        let stop = Stop { cancel: cancel.clone(), deadline: None };
        let core = self.core(py)?;
        let report = call::run(py, &cancel, || core.verify(&container, &plan.0, &options, &stop))?;
        let report = report.map_err(|e| errors::to_py(py, e, Some(&format!("container {container}"))))?;
        Ok(Report(report))
    }

    fn __repr__(&self) -> String {
        let o = self.core.options();
        match o.runtime {
            Runtime::Docker => format!("Client(runtime=\"docker\", host={:?})", o.docker_endpoint()),
            Runtime::Containerd => {
                format!("Client(runtime=\"containerd\", address={:?}, namespace={:?})", o.containerd_socket(), o.containerd_namespace())
            }
        }
    }
}
