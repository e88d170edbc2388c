//! Helpers for the adversarial probes of issue 9 (the embeddable `Client`): plain-directory
//! overlay layers (`common::plain`, re-exported), and a fake Docker daemon on a unix socket whose behaviour can be switched.
#![allow(dead_code)]

pub use crate::common::plain::{resolved, tree};

use std::fs;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;


/// How the fake daemon behaves for requests that arrive now.
pub const SILENT: u8 = 0;
/// `/_ping` answers `Api-Version: 1.41`; every container is unknown (404).
pub const ANSWER: u8 = 1;
/// `/_ping` answers; a container inspect gets its headers and the start of a body, then nothing.
pub const STALL_BODY: u8 = 2;

/// A fake Docker Engine on a unix socket.
pub struct FakeDocker {
    pub path: PathBuf,
    pub mode: Arc<AtomicU8>,
    /// Requests seen (request lines).
    pub requests: Arc<Mutex<Vec<String>>>,
    held: Arc<Mutex<Vec<UnixStream>>>,
    closed: Arc<AtomicBool>,
    pub accepted: Arc<AtomicUsize>,
    /// Containers the fake knows: name → the overlay2 layer (upper, lower) it reports.
    pub containers: Arc<Mutex<std::collections::HashMap<String, (PathBuf, PathBuf)>>>,
}

impl FakeDocker {
    /// Listens at `path` in `mode`.
    pub fn start(path: &Path, mode: u8) -> FakeDocker {
        let fake = FakeDocker {
            path: path.to_path_buf(),
            mode: Arc::new(AtomicU8::new(mode)),
            requests: Arc::default(),
            held: Arc::default(),
            closed: Arc::default(),
            accepted: Arc::default(),
            containers: Arc::default(),
        };
        fake.listen();
        fake
    }

    fn listen(&self) {
        let _ = fs::remove_file(&self.path);
        let listener = UnixListener::bind(&self.path).unwrap();
        let (mode, requests, held, closed, accepted, containers) =
            (self.mode.clone(), self.requests.clone(), self.held.clone(), self.closed.clone(), self.accepted.clone(), self.containers.clone());
        closed.store(false, Ordering::SeqCst);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if closed.load(Ordering::SeqCst) {
                    return; // the listener is dropped: "the daemon is gone"
                }
                let Ok(stream) = stream else { continue };
                accepted.fetch_add(1, Ordering::SeqCst);
                held.lock().unwrap().push(stream.try_clone().unwrap());
                let (mode, requests, containers) = (mode.clone(), requests.clone(), containers.clone());
                std::thread::spawn(move || serve(stream, &mode, &requests, &containers));
            }
        });
    }

    pub fn endpoint(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Makes the fake know container `name`, an overlay2 container whose layer is the tree at
    /// `root` (`upper`, `lower`, as [`tree`] makes it).
    pub fn add(&self, name: &str, root: &Path) {
        self.containers.lock().unwrap().insert(name.to_string(), (root.join("upper"), root.join("lower")));
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// "The daemon restarts": every connection is closed, the socket is removed and made anew.
    pub fn restart(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _ = UnixStream::connect(&self.path); // wake the old accept loop so it exits
        for s in self.held.lock().unwrap().drain(..) {
            let _ = s.shutdown(std::net::Shutdown::Both);
        }
        std::thread::sleep(Duration::from_millis(50));
        self.listen();
    }
}

type Known = Mutex<std::collections::HashMap<String, (PathBuf, PathBuf)>>;

/// The id the fake gives container `name`: its bytes in hex, padded to Docker's 64 digits.
fn fake_id(name: &str) -> String {
    format!("{:0>64}", name.bytes().map(|b| format!("{b:02x}")).collect::<String>())
}

fn inspect_body(name: &str, upper: &Path, lower: &Path) -> String {
    serde_json::json!({
        "Id": fake_id(name),
        "Name": format!("/{name}"),
        "GraphDriver": {"Name": "overlay2", "Data": {"UpperDir": upper, "LowerDir": lower}},
        "State": {"Pid": 0, "Running": false},
        "Config": {"Image": "fake"},
        "Mounts": []
    })
    .to_string()
}

/// The inspect answer for a container the fake knows (by name or id), if the request line asks
/// for one.
fn known_inspect(line: &str, containers: &Known) -> Option<String> {
    let (_, rest) = line.split_once("/containers/")?;
    let (asked, _) = rest.split_once("/json")?;
    let known = containers.lock().unwrap();
    let (name, (upper, lower)) = known.iter().find(|(name, _)| name.as_str() == asked || fake_id(name) == asked)?;
    Some(inspect_body(name, upper, lower))
}

fn serve(mut stream: UnixStream, mode: &AtomicU8, requests: &Mutex<Vec<String>>, containers: &Known) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // One request: up to the blank line (GET/DELETE only, no bodies).
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match stream.read(&mut chunk) {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        buf.drain(..end);
        let line = head.lines().next().unwrap_or_default().to_string();
        requests.lock().unwrap().push(line.clone());
        let http10 = line.ends_with("HTTP/1.0");
        match mode.load(Ordering::SeqCst) {
            SILENT => {
                std::thread::sleep(Duration::from_secs(3600));
                return;
            }
            m => {
                if line.contains("/_ping") {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nApi-Version: 1.41\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nOK");
                } else if m == STALL_BODY && line.contains("/containers/") {
                    let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n{\"Id\":");
                    std::thread::sleep(Duration::from_secs(3600));
                    return;
                } else if let Some(body) = known_inspect(&line, containers) {
                    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(body.as_bytes());
                } else {
                    let body = b"{\"message\":\"No such container\"}";
                    let head = format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len());
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(body);
                }
                if http10 {
                    // A clone is held for restart(): close explicitly so the client sees EOF.
                    let _ = stream.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        }
    }
}
