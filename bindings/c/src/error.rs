//! Result codes, error objects, and the panic boundary.
//!
//! Codes 1–99 are the core's [`core_lib::ErrorKind`] codes, one for one; 100 and up are the ABI's
//! own (an argument C got wrong, a panic). A value, once given, keeps its meaning and is never
//! reused.

use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use core_lib::{Error, ErrorKind};

/// What a function did: RODIFF_OK, or why it failed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum rodiff_result {
    /// Success.
    RODIFF_OK = 0,
    /// The runtime cannot be reached, or did not answer in time.
    RODIFF_RUNTIME_UNAVAILABLE = 1,
    /// The runtime has no such container (or pod).
    RODIFF_CONTAINER_NOT_FOUND = 2,
    /// The container's storage is not something rodiff can read.
    RODIFF_UNSUPPORTED_STORAGE = 3,
    /// The runtime answered something rodiff does not understand.
    RODIFF_PROTOCOL = 4,
    /// The container's layer disappeared during the scan (the container was removed).
    RODIFF_LAYER_VANISHED = 5,
    /// The frozen copy of a btrfs layer was deleted during the scan.
    RODIFF_SNAPSHOT_VANISHED = 6,
    /// The layer holds a marker the kernel would refuse; the diff stopped.
    RODIFF_HOSTILE_LAYER = 7,
    /// A filesystem operation failed.
    RODIFF_IO = 8,
    /// A plan cannot be written in the requested format.
    RODIFF_UNREPRESENTABLE = 9,
    /// A plan could not be read.
    RODIFF_INVALID_PLAN = 10,
    /// A runtime call made for the container (create, start, inspect …) failed.
    RODIFF_RUNTIME_CALL = 11,
    /// The call was cancelled (rodiff_cancel_cancel).
    RODIFF_CANCELLED = 12,
    /// The receiver of the changes failed.
    RODIFF_SINK = 13,
    /// The call's deadline passed.
    RODIFF_TIMEOUT = 14,
    /// The receiver of the changes stopped the scan (not returned by rodiff_diff_stream, which
    /// reports it through `complete`).
    RODIFF_STOPPED = 15,
    /// A required pointer argument was NULL.
    RODIFF_NULL_ARGUMENT = 100,
    /// An argument is not valid (not UTF-8, a malformed pod, an unknown enum value …).
    RODIFF_INVALID_ARGUMENT = 101,
    /// rodiff failed internally (a panic, caught before it reached C).
    RODIFF_PANIC = 102,
    /// An error of a kind newer than this ABI.
    RODIFF_OTHER = 103,
}

impl rodiff_result {
    fn of(kind: ErrorKind) -> rodiff_result {
        use rodiff_result::*;
        match kind {
            ErrorKind::RuntimeUnavailable => RODIFF_RUNTIME_UNAVAILABLE,
            ErrorKind::ContainerNotFound => RODIFF_CONTAINER_NOT_FOUND,
            ErrorKind::UnsupportedStorage => RODIFF_UNSUPPORTED_STORAGE,
            ErrorKind::Protocol => RODIFF_PROTOCOL,
            ErrorKind::LayerVanished => RODIFF_LAYER_VANISHED,
            ErrorKind::SnapshotVanished => RODIFF_SNAPSHOT_VANISHED,
            ErrorKind::HostileLayer => RODIFF_HOSTILE_LAYER,
            ErrorKind::Io => RODIFF_IO,
            ErrorKind::Unrepresentable => RODIFF_UNREPRESENTABLE,
            ErrorKind::InvalidPlan => RODIFF_INVALID_PLAN,
            ErrorKind::RuntimeCall => RODIFF_RUNTIME_CALL,
            ErrorKind::Cancelled => RODIFF_CANCELLED,
            ErrorKind::Sink => RODIFF_SINK,
            ErrorKind::Timeout => RODIFF_TIMEOUT,
            ErrorKind::Stopped => RODIFF_STOPPED,
            _ => RODIFF_OTHER,
        }
    }
}

/// An error: its code and a one-line message that names the container, endpoint or path.
pub struct rodiff_error {
    code: rodiff_result,
    message: CString,
}

/// The error's code.
///
/// # Safety
/// `error` is NULL (then RODIFF_NULL_ARGUMENT) or an error rodiff returned.
#[no_mangle]
pub unsafe extern "C" fn rodiff_error_code(error: *const rodiff_error) -> rodiff_result {
    error.as_ref().map_or(rodiff_result::RODIFF_NULL_ARGUMENT, |e| e.code)
}

/// The error's message, valid until the error is freed (NULL for a NULL error).
///
/// # Safety
/// `error` is NULL or an error rodiff returned.
#[no_mangle]
pub unsafe extern "C" fn rodiff_error_message(error: *const rodiff_error) -> *const c_char {
    error.as_ref().map_or(std::ptr::null(), |e| e.message.as_ptr())
}

/// Frees an error (NULL is fine).
///
/// # Safety
/// `error` is NULL or an error rodiff returned, not freed before.
#[no_mangle]
pub unsafe extern "C" fn rodiff_error_free(error: *mut rodiff_error) {
    if !error.is_null() {
        drop(Box::from_raw(error));
    }
}

/// A failure on its way to C.
#[derive(Debug)]
pub(crate) struct FfiError {
    code: rodiff_result,
    message: String,
}

impl FfiError {
    pub(crate) fn null(what: &str) -> FfiError {
        FfiError { code: rodiff_result::RODIFF_NULL_ARGUMENT, message: format!("{what} is NULL") }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> FfiError {
        FfiError { code: rodiff_result::RODIFF_INVALID_ARGUMENT, message: message.into() }
    }

    pub(crate) fn internal(message: String) -> FfiError {
        FfiError { code: rodiff_result::RODIFF_PANIC, message }
    }

    /// The core's error under `context` (`container web: …`).
    pub(crate) fn core(error: Error, context: Option<&str>) -> FfiError {
        let code = rodiff_result::of(error.kind());
        let message = match context {
            Some(context) => format!("{context}: {error}"),
            None => error.to_string(),
        };
        FfiError { code, message }
    }
}

impl From<Error> for FfiError {
    fn from(error: Error) -> FfiError {
        FfiError::core(error, None)
    }
}

/// Runs an export's body: a panic becomes RODIFF_PANIC, a failure its code, and either is written
/// to `*error` when `error` is not NULL (and `*error` is set to NULL on success).
pub(crate) fn boundary(error: *mut *mut rodiff_error, body: impl FnOnce() -> Result<(), FfiError>) -> rodiff_result {
    let failure = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e),
        Err(panic) => {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown".into());
            Some(FfiError::internal(format!("internal error (panic: {what})")))
        }
    };
    let Some(failure) = failure else {
        if !error.is_null() {
            // SAFETY: the caller passes NULL or a writable pointer slot.
            unsafe { *error = std::ptr::null_mut() };
        }
        return rodiff_result::RODIFF_OK;
    };
    let code = failure.code;
    if !error.is_null() {
        let message = CString::new(failure.message.replace('\0', "\\0")).unwrap_or_default();
        // SAFETY: as above.
        unsafe { *error = Box::into_raw(Box::new(rodiff_error { code, message })) };
    }
    code
}

/// `Err(RODIFF_NULL_ARGUMENT)` naming `what` when `ptr` is NULL, else the reference.
pub(crate) fn null_check<'a, T>(ptr: *const T, what: &str) -> Result<&'a T, FfiError> {
    // SAFETY: the caller guarantees a non-NULL pointer is valid for the call.
    unsafe { ptr.as_ref() }.ok_or_else(|| FfiError::null(what))
}

/// Writes an out-parameter (ignored when NULL: optional outputs).
pub(crate) fn write_out<T>(out: *mut T, value: T) {
    if !out.is_null() {
        // SAFETY: the caller passes a writable slot.
        unsafe { out.write(value) };
    }
}
