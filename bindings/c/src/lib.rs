//! The C ABI of rodiff: a thin adapter over [`core_lib::Client`], generated into `include/rodiff.h`
//! by cbindgen. Nothing here diffs, plans or verifies: every function converts its arguments,
//! calls the client, and converts the answer.
//!
//! - [`error`]: result codes, error objects, and the panic boundary every export goes through;
//! - [`options`]: client options, per-call options (pod, cancel token, deadline);
//! - [`changes`]: the change list and the streaming callback;
//! - this file: the exported functions.

#![allow(non_camel_case_types)]

mod changes;
mod error;
mod options;
mod signals;

use std::ffi::{c_char, c_void, CString};
use std::time::Duration;

use core_lib::plan::render::PlanFormat;
use core_lib::verify::VerifyOptions;
use core_lib::{Client, Rules};

// Every export is reachable from Rust too (the `c_abi` fuzz target builds these files as an rlib).
pub use changes::{rodiff_change, rodiff_change_callback, rodiff_changes, rodiff_changes_free, rodiff_changes_get, rodiff_changes_len, rodiff_file_type};
pub use error::{rodiff_error, rodiff_error_code, rodiff_error_free, rodiff_error_message, rodiff_result};
pub use options::{
    rodiff_call, rodiff_cancel, rodiff_cancel_cancel, rodiff_cancel_free, rodiff_cancel_new, rodiff_options, rodiff_runtime, RODIFF_MAX_WALKERS,
    RODIFF_RUNTIME_CONTAINERD, RODIFF_RUNTIME_DOCKER,
};

use error::{boundary, null_check, write_out, FfiError};

/// The major version of this library (and of the ABI: it changes only with it).
pub const RODIFF_VERSION_MAJOR: u32 = 0;
/// The minor version of this library.
pub const RODIFF_VERSION_MINOR: u32 = 1;
/// The patch version of this library.
pub const RODIFF_VERSION_PATCH: u32 = 0;

/// A connection to a container runtime with its own threads (see rodiff_client_new).
pub struct rodiff_client(Client);

/// How rodiff_plan renders a plan: one of the RODIFF_PLAN_ values (a plain integer, so that a
/// value this library does not know is an invalid argument, not undefined behaviour).
pub type rodiff_plan_format = u32;
/// One shell-quoted line of flags for `docker run`, starting with `--read-only`.
pub const RODIFF_PLAN_DOCKER: rodiff_plan_format = 0;
/// A compose service fragment.
pub const RODIFF_PLAN_COMPOSE: rodiff_plan_format = 1;
/// A Kubernetes strategic-merge patch for the pod template.
pub const RODIFF_PLAN_K8S: rodiff_plan_format = 2;
/// The plan as JSON, with the reason for every mount.
pub const RODIFF_PLAN_JSON: rodiff_plan_format = 3;

/// The library's version, `MAJOR.MINOR.PATCH` (static; do not free).
#[no_mangle]
pub extern "C" fn rodiff_version() -> *const c_char {
    static VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
    VERSION.as_ptr().cast()
}

/// Makes a client from `options` (NULL: Docker at /var/run/docker.sock, every default). The
/// client owns one I/O thread and a pool of walker threads; it connects on first use. Any number
/// of threads may use one client at once. Free it with rodiff_client_free. Its threads block
/// SIGPIPE (a connection the runtime closed is an error, not the end of your process); the
/// callback of rodiff_diff_stream runs on them, so a write of yours to a closed pipe there fails
/// with EPIPE rather than raising SIGPIPE.
///
/// # Safety
/// `options`, when not NULL, points to a valid rodiff_options whose strings are NUL-terminated or
/// NULL; `out` points to writable storage for a pointer.
#[no_mangle]
pub unsafe extern "C" fn rodiff_client_new(options: *const rodiff_options, out: *mut *mut rodiff_client, error: *mut *mut rodiff_error) -> rodiff_result {
    boundary(error, || {
        null_check(out, "out")?;
        let options = options::client_options(options.as_ref())?;
        let client = signals::with_sigpipe_blocked(|| Client::new(options))?;
        write_out(out, Box::into_raw(Box::new(rodiff_client(client))));
        Ok(())
    })
}

/// Frees a client (NULL is fine), ending its threads. No call may be using it: cancel the calls
/// still running on other threads (their rodiff_call's cancel token) and wait for them to return
/// first.
///
/// # Safety
/// `client` is NULL or was returned by rodiff_client_new, no call is using it, and it is not used
/// after this call.
#[no_mangle]
pub unsafe extern "C" fn rodiff_client_free(client: *mut rodiff_client) {
    if !client.is_null() {
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| drop(Box::from_raw(client))));
    }
}

/// Diffs a container (or a pod's containers, see rodiff_call) into a change list with metadata,
/// sorted by path. Free the list with rodiff_changes_free.
///
/// # Safety
/// `client` comes from rodiff_client_new; `container` is NUL-terminated (NULL allowed only with a
/// pod); `call` is NULL or valid; `out` is writable.
#[no_mangle]
pub unsafe extern "C" fn rodiff_diff(
    client: *const rodiff_client,
    container: *const c_char,
    call: *const rodiff_call,
    out: *mut *mut rodiff_changes,
    error: *mut *mut rodiff_error,
) -> rodiff_result {
    boundary(error, || {
        let client = &null_check(client, "client")?.0;
        null_check(out, "out")?;
        let call = options::Call::read(container, call.as_ref())?;
        let list = client.changes_with(&call.target, &call.scan()).map_err(|e| call.context(e))?;
        write_out(out, Box::into_raw(Box::new(rodiff_changes::new(list))));
        Ok(())
    })
}

/// Diffs a container (or a pod, see rodiff_call) and hands the changes to `callback` in batches
/// as the walk finds them (not sorted), for layers too large to hold. Calls come from rodiff's
/// threads, one at a time; the changes are valid only during the call. A non-zero return stops
/// the scan: the function then returns RODIFF_OK with `*complete` false, and `callback` is not
/// called again. `complete` (may be NULL) says whether every change was delivered.
///
/// # Safety
/// As rodiff_diff; `callback` is a valid function, `userdata` is passed to it untouched.
#[no_mangle]
pub unsafe extern "C" fn rodiff_diff_stream(
    client: *const rodiff_client,
    container: *const c_char,
    call: *const rodiff_call,
    callback: rodiff_change_callback,
    userdata: *mut c_void,
    complete: *mut bool,
    error: *mut *mut rodiff_error,
) -> rodiff_result {
    boundary(error, || {
        let client = &null_check(client, "client")?.0;
        let callback = callback.ok_or(FfiError::null("callback"))?;
        let call = options::Call::read(container, call.as_ref())?;
        let sink = changes::CallbackSink::new(callback, userdata);
        let outcome = client.diff_into(&call.target, &call.scan(), &sink).map_err(|e| call.context(e))?;
        write_out(complete, outcome.complete);
        Ok(())
    })
}

/// Plans the mounts a container (or each container of a pod) needs to run with a read-only root
/// filesystem, with the built-in rules, rendered in `format` into a NUL-terminated string (free
/// it with rodiff_string_free).
///
/// # Safety
/// As rodiff_diff.
#[no_mangle]
pub unsafe extern "C" fn rodiff_plan(
    client: *const rodiff_client,
    container: *const c_char,
    call: *const rodiff_call,
    format: rodiff_plan_format,
    out: *mut *mut c_char,
    error: *mut *mut rodiff_error,
) -> rodiff_result {
    boundary(error, || {
        let client = &null_check(client, "client")?.0;
        null_check(out, "out")?;
        // Every argument is checked before the runtime is asked anything.
        let format = match format {
            RODIFF_PLAN_DOCKER => PlanFormat::Docker,
            RODIFF_PLAN_COMPOSE => PlanFormat::Compose,
            RODIFF_PLAN_K8S => PlanFormat::K8s,
            RODIFF_PLAN_JSON => PlanFormat::Json,
            other => return Err(FfiError::invalid(format!("unknown plan format {other}"))),
        };
        let call = options::Call::read(container, call.as_ref())?;
        let plans = client.plan(&call.target, &Rules::builtin(), &call.stop).map_err(|e| call.context(e))?;
        let text = core_lib::plan::render::render(&plans, format).map_err(|e| call.context(e))?;
        write_out(out, owned_string(text)?);
        Ok(())
    })
}

/// Proves the plan of Docker container `container`: runs it again read-only with the plan's
/// mounts, waits `wait_ms`, runs `probe` (`sh -c PROBE`; NULL for none) in it, and removes what it
/// made. `*passed` says whether it held; `report` (may be NULL) receives the findings as JSON
/// (free with rodiff_string_free). A pod in `call` is an invalid argument.
///
/// # Safety
/// As rodiff_diff; `probe` is NULL or NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn rodiff_verify(
    client: *const rodiff_client,
    container: *const c_char,
    probe: *const c_char,
    wait_ms: u64,
    call: *const rodiff_call,
    passed: *mut bool,
    report: *mut *mut c_char,
    error: *mut *mut rodiff_error,
) -> rodiff_result {
    boundary(error, || {
        let client = &null_check(client, "client")?.0;
        null_check(passed, "passed")?;
        let call = options::Call::read(container, call.as_ref())?;
        let core_lib::Target::Container(name) = &call.target else {
            return Err(FfiError::invalid("verify runs one Docker container, not a pod"));
        };
        let probe = options::optional_str(probe, "probe")?.map(str::to_string);
        let verify = VerifyOptions { probe, wait: Duration::from_millis(wait_ms), ..Default::default() };
        let plans = client.plan(&call.target, &Rules::builtin(), &call.stop).map_err(|e| call.context(e))?;
        let plan = plans.into_iter().next().ok_or_else(|| FfiError::invalid("no container to verify"))?;
        let outcome = client.verify(name, &plan, &verify, &call.stop).map_err(|e| call.context(e))?;
        if !report.is_null() {
            let json = serde_json::to_string(&outcome).map_err(|e| FfiError::internal(e.to_string()))?;
            write_out(report, owned_string(json)?);
        }
        write_out(passed, outcome.passed());
        Ok(())
    })
}

/// Frees a string rodiff returned (NULL is fine).
///
/// # Safety
/// `s` is NULL or a string returned by rodiff, not freed before.
#[no_mangle]
pub unsafe extern "C" fn rodiff_string_free(s: *mut c_char) {
    if !s.is_null() {
        drop(CString::from_raw(s));
    }
}

/// A Rust string as a C string the caller frees with rodiff_string_free.
fn owned_string(text: String) -> Result<*mut c_char, FfiError> {
    CString::new(text).map(CString::into_raw).map_err(|_| FfiError::internal("a NUL byte in rodiff's output".into()))
}
