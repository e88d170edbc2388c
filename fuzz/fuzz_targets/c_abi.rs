//! The C ABI (`include/rodiff.h`, bindings/c), called as a hostile or buggy C caller may call it
//! within the header's contract: every `const char *` any bytes up to a NUL (not UTF-8, cut by an
//! early NUL with bytes after it, tens of kilobytes long), NULL wherever the header allows it,
//! option and enum values out of range, clients and cancel tokens made, used, cancelled and freed
//! in any order (each freed once), error pointers given or not.
//!
//! Hermetic: a client that is called has its Docker and containerd endpoints under
//! `/nonexistent/`, or at one of two sockets of this process — a stand-in Docker API that answers
//! `/_ping` and says "no such container" (echoing the request's path) to everything else, and a
//! socket that accepts and closes at once (containerd's gRPC meets it) — so every call fails fast
//! without a daemon, after its request was built and sent; a client with arbitrary endpoints (or
//! the defaults, which name the host's real sockets) is made and freed, never called.
//!
//! Invariants: nothing panics or crashes (a panic caught at the boundary, RODIFF_PANIC, fails
//! too); the result is one of the header's values; a NULL required argument is
//! RODIFF_NULL_ARGUMENT; on failure the error (when asked for) has that code and a non-NULL,
//! non-empty, one-line, UTF-8 message, and no out-parameter is written; on success `*error` is
//! NULL; every result is freed with its _free function.
#![no_main]

use std::ffi::{c_char, c_void, CStr};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::ptr::{null, null_mut};
use std::sync::OnceLock;

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use rodiff_c::*;

/// What the fuzzer makes C strings of: pieces a hostile caller would reach for.
const PIECES: &[&[u8]] = &[
    b"a", b"/", b"..", b".", b":", b"@", b"%", b"\n", b"\r", b"\t", b"\\", b"\"", b"\xff", b"\xc3", b"\xc2\x85", b"\xe2\x80\xa8",
    b"unix://", b"tcp://", b"k8s.io", b"default", b"moby", b"sha256:", b"web", b"pod/", b"ns/name", b" ", b"\x1b[",
];

/// A C string: its bytes up to the first NUL are the string; what follows the NUL stays in the
/// buffer (a caller's stale bytes), which rodiff must not read.
struct CBuf(Vec<u8>);

impl CBuf {
    fn new(u: &mut Unstructured) -> Result<CBuf> {
        let mut bytes = match u.int_in_range(0..=9)? {
            // Any bytes.
            0..=3 => u.arbitrary::<&[u8]>()?.to_vec(),
            // Hostile pieces.
            4..=7 => {
                let mut s = Vec::new();
                for _ in 0..u.int_in_range(0..=8)? {
                    s.extend_from_slice(u.choose(PIECES)?);
                }
                s
            }
            // Very long: a piece repeated up to 64 KiB.
            _ => u.choose(PIECES)?.repeat(u.int_in_range(1..=65536 / 2)?),
        };
        bytes.push(0);
        if u.arbitrary()? {
            bytes.extend_from_slice(u.arbitrary::<&[u8]>()?);
            bytes.push(0);
        }
        Ok(CBuf(bytes))
    }

    /// A string under a directory that does not exist: never a reachable endpoint.
    fn nonexistent(u: &mut Unstructured, prefix: &str) -> Result<CBuf> {
        let mut s = CBuf::new(u)?;
        s.0.splice(0..0, prefix.bytes());
        Ok(s)
    }

    /// `s` as it is.
    fn exactly(s: &str) -> CBuf {
        CBuf([s.as_bytes(), b"\0"].concat())
    }

    fn ptr(&self) -> *const c_char {
        self.0.as_ptr().cast()
    }
}

/// This process's endpoints: a stand-in Docker API and a socket that closes every connection.
struct Endpoints {
    docker: String,
    closer: String,
}

/// Starts the endpoints once, in `/tmp/rodiff-c-abi.<pid>/` (the directories of ended runs are
/// removed first).
fn endpoints() -> &'static Endpoints {
    static ENDPOINTS: OnceLock<Endpoints> = OnceLock::new();
    ENDPOINTS.get_or_init(|| {
        sigpipe_is_a_crash();
        remove_stale_dirs();
        let dir = PathBuf::from(format!("/tmp/rodiff-c-abi.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("a directory for the fuzz target's sockets");
        let docker = listen(&dir.join("docker.sock"), stand_in_docker);
        let closer = listen(&dir.join("closer.sock"), drop);
        Endpoints { docker: format!("unix://{}", docker.display()), closer: closer.display().to_string() }
    })
}

fn remove_stale_dirs() {
    for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("rodiff-c-abi.")) else { continue };
        if !Path::new("/proc").join(pid).exists() {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Binds `socket` and serves each connection with `serve` on a thread of its own.
fn listen(socket: &Path, serve: fn(UnixStream)) -> PathBuf {
    let listener = UnixListener::bind(socket).expect("bind a socket of the fuzz target");
    std::thread::spawn(move || {
        // This process is a C program as far as signals go (libFuzzer's main leaves SIGPIPE at
        // its default): the stand-ins' own writes to a client that left must not end it. Threads
        // inherit the mask.
        block_sigpipe();
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve(stream));
        }
    });
    socket.to_path_buf()
}

/// A SIGPIPE that reaches this process (rodiff wrote to a closed connection from a thread that
/// does not block it) aborts it, so that libFuzzer keeps the input; by default it would end the
/// process without a word, as it ends a C program.
fn sigpipe_is_a_crash() {
    extern "C" fn abort_on_sigpipe(_: libc::c_int) {
        const MESSAGE: &[u8] = b"c_abi: SIGPIPE raised in a thread that does not block it\n";
        // SAFETY: write(2) and abort(3) are async-signal-safe.
        unsafe {
            libc::write(2, MESSAGE.as_ptr().cast(), MESSAGE.len());
            libc::abort();
        }
    }
    // SAFETY: installs a handler that only calls async-signal-safe functions.
    unsafe { libc::signal(libc::SIGPIPE, abort_on_sigpipe as *const () as libc::sighandler_t) };
}

/// Blocks SIGPIPE in the calling thread.
fn block_sigpipe() {
    // SAFETY: plain calls on a local signal set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        assert_eq!(libc::pthread_sigmask(libc::SIG_BLOCK, &set, null_mut()), 0);
    }
}

/// One connection to the stand-in Docker API: `/_ping` is answered, anything else is 404 with
/// the request's path in the message (text from the runtime that rodiff's messages carry).
fn stand_in_docker(stream: UnixStream) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone a stream"));
    let mut out = stream;
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        let path = line.split_whitespace().nth(1).unwrap_or("/").to_string();
        let mut header = String::new();
        while reader.read_line(&mut header).unwrap_or(0) > 0 && header != "\r\n" {
            header.clear();
        }
        let (status, body) = if path.ends_with("/_ping") {
            ("200 OK", "OK".to_string())
        } else {
            ("404 Not Found", serde_json::json!({ "message": format!("No such container: {path}") }).to_string())
        };
        // An HTTP/1.0 request (rodiff's own `/_ping`) reads the answer to the end of the
        // connection, as dockerd closes it.
        let http10 = line.trim_end().ends_with("HTTP/1.0");
        let close = if http10 { "Connection: close\r\n" } else { "" };
        let response = format!(
            "HTTP/1.1 {status}\r\nApi-Version: 1.41\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{close}\r\n{body}",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() || http10 {
            return;
        }
        line.clear();
    }
}

/// An optional C string: NULL or a string.
fn optional(u: &mut Unstructured) -> Result<Option<CBuf>> {
    Ok(if u.arbitrary()? { Some(CBuf::new(u)?) } else { None })
}

fn ptr_of(s: &Option<CBuf>) -> *const c_char {
    s.as_ref().map_or(null(), CBuf::ptr)
}

/// Client options and the strings they point to.
struct Options {
    options: rodiff_options,
    _strings: [Option<CBuf>; 4],
}

impl Options {
    /// Options whose endpoints fail fast (`hermetic`), or arbitrary ones.
    fn new(u: &mut Unstructured, hermetic: bool) -> Result<Options> {
        let (docker, containerd) = if hermetic {
            let docker = match u.int_in_range(0..=3)? {
                0 => CBuf::nonexistent(u, "unix:///nonexistent/")?,
                1 => CBuf::nonexistent(u, "/nonexistent/")?,
                2 => CBuf::exactly(&endpoints().closer),
                _ => CBuf::exactly(&endpoints().docker),
            };
            let containerd = match u.int_in_range(0..=2)? {
                0 => CBuf::nonexistent(u, "/nonexistent/")?,
                1 => CBuf::nonexistent(u, "unix:///nonexistent/")?,
                _ => CBuf::exactly(&endpoints().closer),
            };
            (Some(docker), Some(containerd))
        } else {
            (optional(u)?, optional(u)?)
        };
        let strings = [docker, containerd, optional(u)?, optional(u)?];
        let runtime = match u.int_in_range(0..=3)? {
            0 => RODIFF_RUNTIME_DOCKER,
            1 => RODIFF_RUNTIME_CONTAINERD,
            _ => u.arbitrary()?,
        };
        // Few walker threads (each client starts its pool), or a count out of range.
        let walkers = if u.arbitrary()? { u.int_in_range(0..=2)? } else { u.int_in_range(RODIFF_MAX_WALKERS + 1..=u32::MAX)? };
        let timeout_ms = if hermetic { u.int_in_range(0..=200)? } else { u.arbitrary()? };
        let options = rodiff_options {
            runtime,
            docker_host: ptr_of(&strings[0]),
            containerd_address: ptr_of(&strings[1]),
            containerd_namespace: ptr_of(&strings[2]),
            host_root: ptr_of(&strings[3]),
            timeout_ms,
            walkers,
        };
        Ok(Options { options, _strings: strings })
    }
}

/// A call's options and what they point to.
struct Call {
    call: rodiff_call,
    _pod: Option<CBuf>,
}

impl Call {
    fn new(u: &mut Unstructured, cancels: &[*mut rodiff_cancel]) -> Result<Call> {
        let pod = optional(u)?;
        let cancel = if !cancels.is_empty() && u.arbitrary()? { *u.choose(cancels)? as *const rodiff_cancel } else { null() };
        let deadline_ms = match u.int_in_range(0..=2)? {
            0 => 0,
            1 => u.int_in_range(1..=100)?,
            // Far beyond any clock: must not overflow.
            _ => u.int_in_range(u64::MAX / 2..=u64::MAX)?,
        };
        Ok(Call { call: rodiff_call { pod: ptr_of(&pod), cancel, deadline_ms, paths_only: u.arbitrary()? }, _pod: pod })
    }
}

/// The values rodiff.h defines for rodiff_result.
fn known(code: rodiff_result) -> bool {
    matches!(code as u32, 0..=15 | 100..=103)
}

/// A slot for an out-parameter, pre-filled with a marker that tells whether it was written.
struct Out<T> {
    slot: T,
    given: bool,
}

/// A pointer value no allocation has: written only by rodiff.
fn marker<T>() -> *mut T {
    std::ptr::dangling_mut::<u64>().cast()
}

impl<T> Out<*mut T> {
    fn new(u: &mut Unstructured) -> Result<Out<*mut T>> {
        Ok(Out { slot: marker(), given: u.int_in_range(0..=7)? != 0 })
    }

    fn ptr(&mut self) -> *mut *mut T {
        if self.given {
            &mut self.slot
        } else {
            null_mut()
        }
    }

    /// What rodiff wrote: asserts nothing was written on failure, something on success.
    fn written(&self, code: rodiff_result) -> Option<*mut T> {
        if code != rodiff_result::RODIFF_OK || !self.given {
            assert!(self.slot == marker(), "an out-parameter written by a call that failed ({code:?})");
            return None;
        }
        assert!(self.slot != marker(), "an out-parameter left unwritten by a call that succeeded");
        Some(self.slot)
    }
}

/// Checks a call's result and its error, and frees the error.
fn check(code: rodiff_result, error: &Out<*mut rodiff_error>) {
    assert!(known(code), "result {} is not in rodiff.h", code as u32);
    assert_ne!(code, rodiff_result::RODIFF_PANIC, "a panic reached the boundary: {}", message(error.slot));
    if !error.given {
        return;
    }
    if code == rodiff_result::RODIFF_OK {
        assert!(error.slot.is_null(), "*error not NULL after RODIFF_OK");
        return;
    }
    let e = error.slot;
    assert!(!e.is_null() && e != marker(), "no error object for {code:?}");
    // SAFETY: an error rodiff returned.
    unsafe {
        assert_eq!(rodiff_error_code(e), code);
        let text = message(e);
        assert!(!text.is_empty(), "an empty message for {code:?}");
        assert!(!text.contains(['\n', '\r']), "a message of more than one line: {text:?}");
        rodiff_error_free(e);
    }
}

/// An error's message, checked to be non-NULL UTF-8.
fn message(e: *const rodiff_error) -> String {
    if e.is_null() || e == marker::<rodiff_error>() {
        return String::new();
    }
    // SAFETY: an error rodiff returned; the message lives as long as it.
    let text = unsafe { rodiff_error_message(e) };
    assert!(!text.is_null(), "an error without a message");
    unsafe { CStr::from_ptr(text) }.to_str().expect("a message that is not UTF-8").to_string()
}

/// What the stream callback is told to answer, and what it saw.
struct Stream {
    answer: i32,
    calls: usize,
}

unsafe extern "C" fn callback(userdata: *mut c_void, changes: *const rodiff_change, len: usize) -> i32 {
    let stream = &mut *userdata.cast::<Stream>();
    stream.calls += 1;
    for c in std::slice::from_raw_parts(changes, len) {
        let path = std::slice::from_raw_parts(c.path, c.path_len);
        assert!(path.starts_with(b"/"));
    }
    stream.answer
}

/// The live objects of one run; each freed exactly once.
#[derive(Default)]
struct World {
    clients: Vec<*mut rodiff_client>,
    cancels: Vec<*mut rodiff_cancel>,
}

/// A client to call: NULL, or one of the live clients (all hermetic).
fn client(u: &mut Unstructured, world: &World) -> Result<*const rodiff_client> {
    Ok(if world.clients.is_empty() || u.int_in_range(0..=7)? == 0 { null() } else { *u.choose(&world.clients)? })
}

/// A NULL required argument is RODIFF_NULL_ARGUMENT.
fn null_means_null_argument(code: rodiff_result, required: &[bool]) {
    if required.iter().any(|given| !given) {
        assert_eq!(code, rodiff_result::RODIFF_NULL_ARGUMENT);
    }
}

unsafe fn new_client(u: &mut Unstructured, world: &mut World) -> Result<()> {
    let hermetic = u.int_in_range(0..=3)? != 0;
    let options = if hermetic || u.arbitrary()? { Some(Options::new(u, hermetic)?) } else { None };
    let mut out = Out::new(u)?;
    let mut error = Out::new(u)?;
    let code = rodiff_client_new(options.as_ref().map_or(null(), |o| &o.options), out.ptr(), error.ptr());
    check(code, &error);
    null_means_null_argument(code, &[out.given]);
    if let Some(client) = out.written(code) {
        assert!(!client.is_null());
        if hermetic && world.clients.len() < 2 {
            world.clients.push(client);
        } else {
            // Endpoints that may be real (or too many threads): made and freed, never called.
            rodiff_client_free(client);
        }
    }
    Ok(())
}

unsafe fn diff(u: &mut Unstructured, world: &World) -> Result<()> {
    let client = client(u, world)?;
    let container = optional(u)?;
    let call = if u.arbitrary()? { Some(Call::new(u, &world.cancels)?) } else { None };
    let mut out = Out::<*mut rodiff_changes>::new(u)?;
    let mut error = Out::new(u)?;
    let code = rodiff_diff(client, ptr_of(&container), call.as_ref().map_or(null(), |c| &c.call), out.ptr(), error.ptr());
    check(code, &error);
    null_means_null_argument(code, &[!client.is_null(), out.given]);
    if let Some(list) = out.written(code) {
        for i in 0..=rodiff_changes_len(list) {
            let change = rodiff_changes_get(list, i);
            assert_eq!(change.is_null(), i == rodiff_changes_len(list));
        }
        rodiff_changes_free(list);
    }
    Ok(())
}

unsafe fn diff_stream(u: &mut Unstructured, world: &World) -> Result<()> {
    let client = client(u, world)?;
    let container = optional(u)?;
    let call = if u.arbitrary()? { Some(Call::new(u, &world.cancels)?) } else { None };
    let mut stream = Stream { answer: u.arbitrary()?, calls: 0 };
    let given_callback = u.int_in_range(0..=7)? != 0;
    let mut complete = u.arbitrary::<bool>()?;
    let complete_given = u.arbitrary()?;
    let mut error = Out::new(u)?;
    let code = rodiff_diff_stream(
        client,
        ptr_of(&container),
        call.as_ref().map_or(null(), |c| &c.call),
        if given_callback { Some(callback) } else { None },
        (&mut stream as *mut Stream).cast(),
        if complete_given { &mut complete } else { null_mut() },
        error.ptr(),
    );
    check(code, &error);
    null_means_null_argument(code, &[!client.is_null(), given_callback]);
    if code != rodiff_result::RODIFF_OK {
        assert_eq!(stream.calls, 0, "the callback was called by a call that failed before any scan");
    }
    Ok(())
}

unsafe fn plan(u: &mut Unstructured, world: &World) -> Result<()> {
    let client = client(u, world)?;
    let container = optional(u)?;
    let call = if u.arbitrary()? { Some(Call::new(u, &world.cancels)?) } else { None };
    let format: rodiff_plan_format = if u.arbitrary()? { u.int_in_range(RODIFF_PLAN_DOCKER..=RODIFF_PLAN_JSON)? } else { u.arbitrary()? };
    let mut out = Out::<*mut c_char>::new(u)?;
    let mut error = Out::new(u)?;
    let code = rodiff_plan(client, ptr_of(&container), call.as_ref().map_or(null(), |c| &c.call), format, out.ptr(), error.ptr());
    check(code, &error);
    null_means_null_argument(code, &[!client.is_null(), out.given]);
    if !client.is_null() && out.given && format > RODIFF_PLAN_JSON {
        assert_eq!(code, rodiff_result::RODIFF_INVALID_ARGUMENT, "an unknown plan format");
    }
    if let Some(text) = out.written(code) {
        CStr::from_ptr(text).to_str().expect("a plan that is not UTF-8");
        rodiff_string_free(text);
    }
    Ok(())
}

unsafe fn verify(u: &mut Unstructured, world: &World) -> Result<()> {
    let client = client(u, world)?;
    let container = optional(u)?;
    let probe = optional(u)?;
    let wait_ms = u.arbitrary()?;
    let call = if u.arbitrary()? { Some(Call::new(u, &world.cancels)?) } else { None };
    let mut passed = false;
    let passed_given = u.int_in_range(0..=7)? != 0;
    let mut report = Out::<*mut c_char>::new(u)?;
    let mut error = Out::new(u)?;
    let code = rodiff_verify(
        client,
        ptr_of(&container),
        ptr_of(&probe),
        wait_ms,
        call.as_ref().map_or(null(), |c| &c.call),
        if passed_given { &mut passed } else { null_mut() },
        report.ptr(),
        error.ptr(),
    );
    check(code, &error);
    null_means_null_argument(code, &[!client.is_null(), passed_given]);
    if let Some(text) = report.written(code) {
        rodiff_string_free(text);
    }
    Ok(())
}

/// Frees a client or a cancel token chosen by the input (or NULL).
unsafe fn free_one<T>(u: &mut Unstructured, pool: &mut Vec<*mut T>, free: unsafe extern "C" fn(*mut T)) -> Result<()> {
    if pool.is_empty() || u.int_in_range(0..=7)? == 0 {
        free(null_mut());
    } else {
        let i = u.choose_index(pool.len())?;
        free(pool.swap_remove(i));
    }
    Ok(())
}

/// The accessors with NULL, which the header allows.
unsafe fn nulls() {
    assert_eq!(rodiff_error_code(null()), rodiff_result::RODIFF_NULL_ARGUMENT);
    assert!(rodiff_error_message(null()).is_null());
    assert_eq!(rodiff_changes_len(null()), 0);
    assert!(rodiff_changes_get(null(), 0).is_null());
    rodiff_cancel_cancel(null());
    rodiff_error_free(null_mut());
    rodiff_changes_free(null_mut());
    rodiff_string_free(null_mut());
    let version = CStr::from_ptr(rodiff_version()).to_str().expect("version is UTF-8");
    assert!(version.split('.').count() == 3 && version.split('.').all(|n| n.parse::<u32>().is_ok()));
}

unsafe fn step(u: &mut Unstructured, world: &mut World) -> Result<()> {
    match u.int_in_range(0..=9)? {
        0 => new_client(u, world),
        1 => free_one(u, &mut world.clients, rodiff_client_free),
        2 => diff(u, world),
        3 => diff_stream(u, world),
        4 => plan(u, world),
        5 => verify(u, world),
        6 => {
            world.cancels.push(rodiff_cancel_new());
            Ok(())
        }
        7 => {
            if !world.cancels.is_empty() {
                rodiff_cancel_cancel(*u.choose(&world.cancels)?);
            }
            Ok(())
        }
        8 => free_one(u, &mut world.cancels, rodiff_cancel_free),
        _ => {
            nulls();
            Ok(())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let mut world = World::default();
    // SAFETY: every pointer passed is NULL where rodiff.h allows it, or valid: strings are
    // NUL-terminated buffers alive for the call, clients and tokens are live (each freed once,
    // tokens only after the calls that used them returned).
    unsafe {
        for _ in 0..16 {
            if step(&mut u, &mut world).is_err() {
                break;
            }
        }
        // What is left, freed in an order the input chose.
        while !world.clients.is_empty() || !world.cancels.is_empty() {
            let pool = if world.cancels.is_empty() || (!world.clients.is_empty() && u.arbitrary().unwrap_or(true)) { 0 } else { 1 };
            if pool == 0 {
                let i = u.choose_index(world.clients.len()).unwrap_or(0);
                rodiff_client_free(world.clients.swap_remove(i));
            } else {
                let i = u.choose_index(world.cancels.len()).unwrap_or(0);
                rodiff_cancel_free(world.cancels.swap_remove(i));
            }
        }
    }
});
