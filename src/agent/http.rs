//! The agent's HTTP API (axum): health, the followed containers, and each one's live diff, write
//! profile and plan, in the CLI's formats. Errors are JSON `{"error": …, "kind": …}` with a status
//! that means something: 404 an unknown container, 409 an ambiguous one, 503 a runtime that does
//! not answer, 400 a bad query.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use rodiff::plan::render::PlanFormat;
use rodiff::render::{self, Format};
use rodiff::{Change, ErrorKind, Rules, ScanOptions, Target};
use serde_json::json;

use super::registry::Lookup;
use super::store::millis;
use super::Agent;

/// The routes.
pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/containers", get(containers))
        .route("/v1/containers/{id}/diff", get(diff))
        .route("/v1/containers/{id}/profile", get(profile))
        .route("/v1/containers/{id}/plan", get(plan))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not_found", "no such endpoint: see /v1/containers, /metrics, /livez, /readyz".into()) })
        .with_state(agent)
}

fn error(status: StatusCode, kind: &str, message: String) -> Response {
    (status, Json(json!({ "error": message, "kind": kind }))).into_response()
}

/// A library error as a response: its kind decides the status.
fn failure(e: rodiff::Error) -> Response {
    let status = match e.kind() {
        ErrorKind::ContainerNotFound | ErrorKind::LayerVanished => StatusCode::NOT_FOUND,
        ErrorKind::RuntimeUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::UnsupportedStorage | ErrorKind::Unrepresentable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    error(status, &super::kind_name(e.kind()), e.to_string())
}

async fn readyz(State(agent): State<Arc<Agent>>) -> Response {
    let runtimes = agent.runtime_states();
    let down: Vec<String> = runtimes.iter().filter_map(|(r, s)| s.as_ref().err().map(|e| format!("{r}: {e}"))).collect();
    let detail: serde_json::Map<String, serde_json::Value> =
        runtimes.iter().map(|(r, s)| (r.to_string(), s.as_ref().map_or_else(|e| json!({"up": false, "error": e}), |_| json!({"up": true})))).collect();
    if down.is_empty() {
        (StatusCode::OK, Json(json!({ "ready": true, "runtimes": detail }))).into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "ready": false, "error": down.join("; "), "kind": "runtime_unavailable", "runtimes": detail }))).into_response()
    }
}

/// Runs a handler's work on a blocking thread: the registry lock and the library's calls are
/// never waited for on the async threads, so `/livez` and `/readyz` answer during any scan.
async fn off_async(work: impl FnOnce() -> Response + Send + 'static) -> Response {
    tokio::task::spawn_blocking(work).await.unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "panic", "the request's work panicked".into()))
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    off_async(move || {
        let text = agent.metrics.render(&agent.registry());
        ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
    })
    .await
}

async fn containers(State(agent): State<Arc<Agent>>) -> Response {
    off_async(move || list(&agent)).await
}

fn list(agent: &Agent) -> Response {
    let registry = agent.registry();
    let list: Vec<serde_json::Value> = registry
        .containers
        .iter()
        .map(|(key, t)| {
            let s = &t.stored;
            let l = &s.listed;
            let ([a, c, d, touched], bytes) = t.counts();
            json!({
                "key": key,
                "id": l.id,
                "name": l.name,
                "runtime": l.runtime,
                "namespace": l.namespace,
                "image": l.image,
                "running": l.running,
                "pod": l.pod.as_ref().map(|(ns, name)| json!({"namespace": ns, "name": name})),
                "container_name": l.pod_container,
                "counts": {"A": a, "C": c, "D": d, "T": touched},
                "written_bytes": bytes,
                "diffs": s.profile.diffs(),
                "first_seen": millis(s.first_seen) as f64 / 1000.0,
                "last_seen": millis(s.last_seen) as f64 / 1000.0,
                "last_scan": s.last_scan.map(|t| millis(t) as f64 / 1000.0),
                "removed_at": s.removed_at.map(|t| millis(t) as f64 / 1000.0),
                "last_error": t.last_error,
                "drift": { "executables": s.executables.iter().map(|p| path_json(p)).collect::<Vec<_>>() },
            })
        })
        .collect();
    drop(registry);
    Json(json!({ "containers": list })).into_response()
}

/// A path as rodiff's JSON carries paths: a string when UTF-8, else an array of byte values.
fn path_json(path: &std::path::Path) -> serde_json::Value {
    let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str());
    match std::str::from_utf8(bytes) {
        Ok(text) => json!(text),
        Err(_) => json!(bytes),
    }
}

/// The key of the container `reference` names, or the response saying why there is none.
fn lookup(agent: &Agent, reference: &str) -> Result<String, Box<Response>> {
    match agent.registry().find(reference) {
        Ok(key) => Ok(key.to_string()),
        Err(Lookup::Unknown) => Err(Box::new(error(StatusCode::NOT_FOUND, "container_not_found", format!("no followed container is named {reference:?} (a key, id, name or id prefix)")))),
        Err(Lookup::Ambiguous(n)) => Err(Box::new(error(StatusCode::CONFLICT, "ambiguous", format!("{n} followed containers match {reference:?}: give its full id or key")))),
    }
}

/// The container `reference` names: its key, what it was listed as, and the client to ask.
fn target(agent: &Agent, reference: &str) -> Result<(String, rodiff::ListedContainer, rodiff::Client), Box<Response>> {
    let key = lookup(agent, reference)?;
    let (listed, client) = agent
        .scan_target(&key)
        .ok_or_else(|| Box::new(error(StatusCode::NOT_FOUND, "container_not_found", format!("container {reference} was forgotten"))))?;
    Ok((key, listed, client))
}

/// Changes as `rodiff diff --format json` prints them.
fn json_changes(changes: &[Change]) -> Response {
    let mut body = Vec::new();
    match render::write_all(&mut body, Format::Json, changes) {
        Ok(()) => ([(header::CONTENT_TYPE, "application/json")], body).into_response(),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "render", e.to_string()),
    }
}

async fn diff(State(agent): State<Arc<Agent>>, Path(reference): Path<String>) -> Response {
    off_async(move || {
        let (_, listed, client) = match target(&agent, &reference) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let scan = ScanOptions { metadata: true, stop: agent.stop.clone(), ..Default::default() };
        match client.changes_with(&Target::Container(listed.id.clone()), &scan) {
            Ok(changes) => json_changes(&changes),
            Err(e) => failure(e),
        }
    })
    .await
}

async fn profile(State(agent): State<Arc<Agent>>, Path(reference): Path<String>) -> Response {
    off_async(move || {
        let key = match lookup(&agent, &reference) {
            Ok(key) => key,
            Err(response) => return *response,
        };
        let changes = agent.registry().containers.get(&key).map(|t| t.stored.profile.changes()).unwrap_or_default();
        json_changes(&changes)
    })
    .await
}

/// `?format=docker|compose|k8s|json` (default json).
#[derive(serde::Deserialize)]
struct PlanQuery {
    format: Option<String>,
}

async fn plan(State(agent): State<Arc<Agent>>, Path(reference): Path<String>, Query(query): Query<PlanQuery>) -> Response {
    let format = match query.format.as_deref().unwrap_or("json") {
        "docker" => PlanFormat::Docker,
        "compose" => PlanFormat::Compose,
        "k8s" => PlanFormat::K8s,
        "json" => PlanFormat::Json,
        other => return error(StatusCode::BAD_REQUEST, "bad_request", format!("unknown plan format {other:?}: docker, compose, k8s or json")),
    };
    off_async(move || {
        let (key, listed, client) = match target(&agent, &reference) {
            Ok(found) => found,
            Err(response) => return *response,
        };
        let changes = agent.registry().containers.get(&key).map(|t| t.stored.profile.changes()).unwrap_or_default();
        let rendered = client.resolve(&Target::Container(listed.id.clone()), &agent.stop).and_then(|resolved| {
            let plan = client.plan_changes(&resolved[0], &changes, &Rules::default())?;
            rodiff::plan::render::render(&[plan], format)
        });
        match rendered {
            Ok(text) => {
                let kind = if format == PlanFormat::Json { "application/json" } else { "text/plain; charset=utf-8" };
                ([(header::CONTENT_TYPE, kind)], text).into_response()
            }
            Err(e) => failure(e),
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io::{Read, Write};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    use clap::Parser;

    use super::super::{Agent, AgentArgs, Metrics, Registry, Store};

    #[derive(Parser)]
    struct Args {
        #[command(flatten)]
        agent: AgentArgs,
    }

    /// `GET path` on `port`: the status line's code (0 for no answer within 10 s) and how long
    /// the answer took.
    fn get(port: u16, path: &str) -> (u16, Duration) {
        let started = Instant::now();
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n").unwrap();
        let mut answer = String::new();
        let _ = stream.read_to_string(&mut answer);
        let code = answer.split(' ').nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
        (code, started.elapsed())
    }

    /// The registry lock held (as a scan's bookkeeping or a big listing holds it): `/livez`,
    /// `/readyz` and `/metrics` answer at once, and the handlers that need the lock wait on
    /// blocking threads, never on the async workers (two, as the agent runs them).
    #[test]
    fn a_held_registry_lock_stalls_no_probe() {
        let state = tempfile::tempdir().unwrap();
        let args = Args::parse_from(["agent", "--state", state.path().to_str().unwrap(), "--runtimes", "docker"]).agent;
        let agent = Arc::new(Agent {
            runtimes: Mutex::new(BTreeMap::new()),
            args,
            clients: BTreeMap::new(),
            store: Store::open(state.path()).unwrap(),
            registry: Mutex::new(Registry::default()),
            metrics: Metrics::new(),
            stop: rodiff::Stop::default(),
        });
        let io = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = io.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = agent.clone();
        io.spawn(async move { axum::serve(listener, super::router(server)).await });
        assert_eq!(get(port, "/livez").0, 200);

        const HOLD: Duration = Duration::from_secs(3);
        let guard = agent.registry();
        // Two requests that need the lock: with them waiting on the two async workers, nothing
        // else would be answered until the lock is released.
        let waiting: Vec<_> = (0..2).map(|_| std::thread::spawn(move || get(port, "/v1/containers"))).collect();
        std::thread::sleep(Duration::from_millis(300));
        let probes: Vec<(&str, u16, Duration)> = ["/livez", "/readyz", "/livez"].into_iter().map(|path| (path, get(port, path))).map(|(p, (c, t))| (p, c, t)).collect();
        std::thread::sleep(HOLD);
        drop(guard);
        for (path, code, took) in probes {
            assert!(code == 200 && took < HOLD / 2, "{path}: {code} after {took:?} while the registry lock was held");
        }
        for w in waiting {
            let (code, took) = w.join().unwrap();
            assert_eq!(code, 200);
            assert!(took >= HOLD, "/v1/containers answered in {took:?}: the lock was not held, and this test proved nothing");
        }
    }
}
