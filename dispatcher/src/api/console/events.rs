//! `GET /console/api/events`: one server-sent event stream per open page. Every
//! [`TICK`] the daemon builds the snapshot the session may see and sends it (`event:
//! snapshot`) only when it changed, so the page never polls the API; the stream ends with
//! `event: expired` when the session does (re-checked on every tick), and at once when the
//! daemon stops.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, Stream};
use tokio::sync::OwnedSemaphorePermit;

use super::guard;
use super::snapshot::{self, Snapshot};
use super::ConsoleState;
use crate::api::auth::{err, ApiError};

/// How often a stream looks for changes.
pub const TICK: Duration = Duration::from_secs(1);
/// Most nodes asked of Slurm per tick (each is one `squeue`).
const NODE_LOOKUPS_PER_TICK: usize = 4;
/// Bound of the node cache; past it, it starts over (running jobs are asked again).
const MAX_REMEMBERED_NODES: usize = 4096;

struct Cursor {
    app: ConsoleState,
    session_id: String,
    last: Option<String>,
    first: bool,
    ended: bool,
    _permit: OwnedSemaphorePermit,
}

pub async fn stream(State(app): State<ConsoleState>, headers: HeaderMap) -> Response {
    match open(app, &headers) {
        Ok(sse) => sse.into_response(),
        Err(e) => e.into_response(),
    }
}

fn open(
    app: ConsoleState,
    headers: &HeaderMap,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let (session_id, _) = guard::session(&app.sessions, headers)?;
    let permit = app.streams.clone().try_acquire_owned().map_err(|_| {
        err(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many console streams are open; try again",
        )
    })?;
    let cursor = Cursor {
        app,
        session_id,
        last: None,
        first: true,
        ended: false,
        _permit: permit,
    };
    Ok(Sse::new(stream::unfold(cursor, next_event)).keep_alive(KeepAlive::default()))
}

/// Wait for the next snapshot that differs from the last one sent (or the session's end).
async fn next_event(mut cursor: Cursor) -> Option<(Result<Event, Infallible>, Cursor)> {
    if cursor.ended {
        return None;
    }
    loop {
        if !std::mem::take(&mut cursor.first) {
            tokio::select! {
                () = tokio::time::sleep(TICK) => {}
                () = stopping(&mut cursor.app.stopping) => return None,
            }
        }
        let Some(session) = cursor.app.sessions.get(&cursor.session_id) else {
            cursor.ended = true;
            return Some((Ok(Event::default().event("expired").data("{}")), cursor));
        };
        let built = match snapshot::build(&cursor.app).await {
            Ok(s) => snapshot::for_role(s, &session.role),
            Err(e) => {
                tracing::warn!(error = %e, "console snapshot failed");
                continue;
            }
        };
        let built = with_nodes(&cursor.app, built).await;
        let Ok(json) = serde_json::to_string(&built) else {
            continue;
        };
        if cursor.last.as_deref() != Some(json.as_str()) {
            cursor.last = Some(json.clone());
            return Some((Ok(Event::default().event("snapshot").data(json)), cursor));
        }
    }
}

/// Completes when the daemon stops (never, if nothing will ever tell).
async fn stopping(rx: &mut tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Fill in each running runner's node, asking Slurm only about jobs not seen before.
async fn with_nodes(app: &ConsoleState, mut snapshot: Snapshot) -> Snapshot {
    let unknown: Vec<u64> = {
        let nodes = app.nodes.lock().unwrap_or_else(|p| p.into_inner());
        snapshot
            .runners
            .iter()
            .filter(|r| matches!(r.state.as_str(), "starting" | "idle" | "busy"))
            .filter_map(|r| r.slurm_job_id)
            .filter(|id| !nodes.contains_key(id))
            .take(NODE_LOOKUPS_PER_TICK)
            .collect()
    };
    for job_id in unknown {
        if let Ok(Some(placement)) = app.slurm.job(job_id).await {
            if let Some(node) = placement.node {
                let mut nodes = app.nodes.lock().unwrap_or_else(|p| p.into_inner());
                if nodes.len() >= MAX_REMEMBERED_NODES {
                    nodes.clear();
                }
                nodes.insert(job_id, node);
            }
        }
    }
    let nodes = app.nodes.lock().unwrap_or_else(|p| p.into_inner());
    for runner in &mut snapshot.runners {
        runner.node = runner.slurm_job_id.and_then(|id| nodes.get(&id).cloned());
    }
    snapshot
}
