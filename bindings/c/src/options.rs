//! Options from C: the client's ([`rodiff_options`]) and a call's ([`rodiff_call`]: a pod, a
//! cancel token, a deadline), and the cancel token itself.

use std::ffi::{c_char, CStr};
use std::path::PathBuf;
use std::time::Duration;

use core_lib::escape::Escaped;
use core_lib::{Cancel, ClientOptions, Deadline, PodSelector, Runtime, Stop, Target};

use crate::error::FfiError;

/// Which container runtime a client asks: one of the RODIFF_RUNTIME_ values.
pub type rodiff_runtime = u32;
/// The Docker Engine API (also Podman's compatible service).
pub const RODIFF_RUNTIME_DOCKER: rodiff_runtime = 0;
/// containerd's gRPC API.
pub const RODIFF_RUNTIME_CONTAINERD: rodiff_runtime = 1;

/// How a client reaches its runtime. Zero-initialize it (`rodiff_options o = {0};`) and set what
/// you need: NULL strings and zero numbers mean the defaults. rodiff reads no environment
/// variable: pass `getenv("DOCKER_HOST")` yourself if you want it honoured.
#[repr(C)]
pub struct rodiff_options {
    /// The runtime to ask (default Docker).
    pub runtime: rodiff_runtime,
    /// Docker endpoint, `unix:///path` or `tcp://host:port` (default unix:///var/run/docker.sock).
    pub docker_host: *const c_char,
    /// containerd socket (default /run/containerd/containerd.sock).
    pub containerd_address: *const c_char,
    /// containerd namespace (default `default`; `k8s.io` for pods).
    pub containerd_namespace: *const c_char,
    /// Where the host's `/` is visible (default `/`).
    pub host_root: *const c_char,
    /// How long each request to the runtime may take, in milliseconds (default 30000).
    pub timeout_ms: u64,
    /// Walker threads shared by the client's scans (default: one per CPU; at most
    /// RODIFF_MAX_WALKERS).
    pub walkers: u32,
}

/// The most walker threads a client may have (rodiff_options.walkers).
pub const RODIFF_MAX_WALKERS: u32 = 1024;

/// Per-call options. NULL, or a zero-initialized struct, means: `container` names one container,
/// no cancel token, no deadline.
#[repr(C)]
pub struct rodiff_call {
    /// A Kubernetes pod, `NAMESPACE/NAME` (containerd, CRI labels): the call covers its containers
    /// and `container`, when not NULL, names one of them. NULL: `container` is a container.
    pub pod: *const c_char,
    /// Cancels the call from another thread (NULL: none).
    pub cancel: *const rodiff_cancel,
    /// The call fails with RODIFF_TIMEOUT when not done within this many milliseconds (0: no
    /// deadline).
    pub deadline_ms: u64,
    /// rodiff_diff and rodiff_diff_stream: path, kind, type and mount point only, without the
    /// `stat` of every entry that mode, uid, gid, size and mtime take (`has_metadata` false) —
    /// several times faster on layers of many new files. false: with metadata.
    pub paths_only: bool,
}

/// A cancel token: rodiff_cancel_cancel, from any thread, makes the calls given it stop at their
/// next check (between directories, around runtime calls) with RODIFF_CANCELLED, after removing
/// what they made.
pub struct rodiff_cancel(Cancel);

/// A new cancel token (free it with rodiff_cancel_free once no call uses it).
#[no_mangle]
pub extern "C" fn rodiff_cancel_new() -> *mut rodiff_cancel {
    Box::into_raw(Box::new(rodiff_cancel(Cancel::new())))
}

/// Cancels every call given this token (NULL is ignored). Safe from any thread, any number of times.
///
/// # Safety
/// `cancel` is NULL or a token from rodiff_cancel_new, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn rodiff_cancel_cancel(cancel: *const rodiff_cancel) {
    if let Some(c) = cancel.as_ref() {
        c.0.cancel();
    }
}

/// Frees a cancel token (NULL is fine). No call may still be using it.
///
/// # Safety
/// `cancel` is NULL or a token from rodiff_cancel_new, not freed before.
#[no_mangle]
pub unsafe extern "C" fn rodiff_cancel_free(cancel: *mut rodiff_cancel) {
    if !cancel.is_null() {
        drop(Box::from_raw(cancel));
    }
}

/// A NUL-terminated UTF-8 string argument, or `None` for NULL.
pub(crate) fn optional_str<'a>(s: *const c_char, what: &str) -> Result<Option<&'a str>, FfiError> {
    if s.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let bytes = unsafe { CStr::from_ptr(s) };
    // The bytes shown escaped, as every name in a message is (not replaced by U+FFFD).
    bytes.to_str().map(Some).map_err(|_| FfiError::invalid(format!("{what} is not UTF-8: {}", Escaped(bytes.to_bytes()))))
}

/// The core's client options from C's (NULL: the defaults).
pub(crate) fn client_options(options: Option<&rodiff_options>) -> Result<ClientOptions, FfiError> {
    let mut out = ClientOptions::default();
    let Some(o) = options else { return Ok(out) };
    out.runtime = match o.runtime {
        RODIFF_RUNTIME_DOCKER => Runtime::Docker,
        RODIFF_RUNTIME_CONTAINERD => Runtime::Containerd,
        other => return Err(FfiError::invalid(format!("unknown runtime {other}"))),
    };
    if let Some(s) = optional_str(o.docker_host, "docker_host")? {
        out.docker_host = s.to_string();
    }
    if let Some(s) = optional_str(o.containerd_address, "containerd_address")? {
        out.containerd_address = s.to_string();
    }
    out.namespace = optional_str(o.containerd_namespace, "containerd_namespace")?.map(str::to_string);
    if let Some(s) = optional_str(o.host_root, "host_root")? {
        out.host_root = PathBuf::from(s);
    }
    if o.timeout_ms > 0 {
        out.timeout = Duration::from_millis(o.timeout_ms);
    }
    if o.walkers > RODIFF_MAX_WALKERS {
        return Err(FfiError::invalid(format!("walkers is {}: at most {RODIFF_MAX_WALKERS}", o.walkers)));
    }
    out.walkers = o.walkers as usize;
    Ok(out)
}

/// A call's target and stop, read from its arguments.
pub(crate) struct Call {
    pub target: Target,
    pub stop: Stop,
    /// Whether diffs collect metadata (not `paths_only`).
    pub metadata: bool,
}

impl Call {
    /// Reads `container` and `call` (NULL: defaults).
    pub(crate) fn read(container: *const c_char, call: Option<&rodiff_call>) -> Result<Call, FfiError> {
        let container = optional_str(container, "container")?;
        let pod = match call {
            Some(c) => optional_str(c.pod, "pod")?,
            None => None,
        };
        let target = match (pod, container) {
            (Some(pod), container) => {
                let pod: PodSelector = pod.parse().map_err(|e: String| FfiError::invalid(format!("pod: {e}")))?;
                Target::pod(pod, container)
            }
            (None, Some(container)) if !container.is_empty() => Target::from(container),
            (None, Some(_)) => return Err(FfiError::invalid("container is empty")),
            (None, None) => return Err(FfiError::null("container")),
        };
        let mut stop = Stop::default();
        if let Some(c) = call {
            // SAFETY: the caller guarantees a non-NULL token is live for the call.
            if let Some(token) = unsafe { c.cancel.as_ref() } {
                stop.cancel = token.0.clone();
            }
            if c.deadline_ms > 0 {
                stop.deadline = Some(Deadline::after(Duration::from_millis(c.deadline_ms)));
            }
        }
        let metadata = !call.is_some_and(|c| c.paths_only);
        Ok(Call { target, stop, metadata })
    }

    /// The scan options of a diff.
    pub(crate) fn scan(&self) -> core_lib::ScanOptions {
        core_lib::ScanOptions { metadata: self.metadata, stop: self.stop.clone(), ..Default::default() }
    }

    /// The core's error, prefixed with what the call was about (`container web: …`).
    pub(crate) fn context(&self, error: core_lib::Error) -> FfiError {
        FfiError::core(error, Some(&self.target.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::CStr;

    use super::*;
    use crate::error::boundary;
    use crate::{rodiff_error_free, rodiff_error_message, rodiff_result};

    #[test]
    fn a_string_that_is_not_utf8_is_named_with_its_bytes_escaped() {
        let s = c"web\xff\n1";
        let mut error = std::ptr::null_mut();
        let code = boundary(&mut error, || optional_str(s.as_ptr(), "container").map(drop));
        assert_eq!(code, rodiff_result::RODIFF_INVALID_ARGUMENT);
        // SAFETY: an error rodiff returned, freed once.
        unsafe {
            let message = CStr::from_ptr(rodiff_error_message(error)).to_str().unwrap();
            assert_eq!(message, r"container is not UTF-8: web\xff\n1");
            rodiff_error_free(error);
        }
    }
}
