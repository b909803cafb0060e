//! The simulator's private runner protocol under `/_runner/` (the fake runner's stand-in for the
//! Actions broker): open a session, long-poll for a job, heartbeat (learns cancellation), report
//! the result, close the session. Authenticated by the token in the JIT config's `.credentials`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::model::TimelineKind;
use crate::shared::Shared;

type S = State<Arc<Shared>>;

#[derive(Debug, Serialize, Deserialize)]
pub struct SessionCreated {
    pub session_id: String,
    pub runner_id: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Heartbeat {
    pub cancel: bool,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct JobResult {
    /// `succeeded`, `failed` or `cancelled`.
    pub result: String,
}

#[derive(Deserialize)]
struct PollQuery {
    wait_ms: Option<u64>,
}

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_runner/sessions", post(create_session))
        .route("/_runner/sessions/{sid}", delete(delete_session))
        .route("/_runner/sessions/{sid}/job", get(poll_job))
        .route("/_runner/jobs/{job_id}/heartbeat", post(heartbeat))
        .route("/_runner/jobs/{job_id}/result", post(result))
}

fn err(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({"message": message}))).into_response()
}

fn secret(headers: &HeaderMap) -> Option<String> {
    let v = headers.get("authorization")?.to_str().ok()?;
    v.strip_prefix("Bearer ").map(|s| s.trim().to_string())
}

/// The runner id for the caller's credentials, if its registration still exists.
fn runner_id(s: &Shared, headers: &HeaderMap) -> Option<u64> {
    let secret = secret(headers)?;
    let w = s.lock();
    w.runner_by_secret(&secret).map(|r| r.id)
}

const DELETED: &str =
    "The runner registration has been deleted from the server, please re-configure.";

async fn create_session(State(s): S, headers: HeaderMap) -> Response {
    let ttl = s.config.jit_config_ttl;
    s.mutate(|w| {
        w.expire_unused_jit(ttl);
        let Some(secret) = secret(&headers) else {
            return err(StatusCode::UNAUTHORIZED, "missing runner credentials");
        };
        let Some(id) = w.runner_by_secret(&secret).map(|r| r.id) else {
            return err(StatusCode::UNAUTHORIZED, DELETED);
        };
        let Some(r) = w.runners.get_mut(&id) else {
            return err(StatusCode::UNAUTHORIZED, DELETED);
        };
        if r.session.is_some() {
            return err(
                StatusCode::CONFLICT,
                &format!(
                    "A session for this runner already exists. (runner {})",
                    r.name
                ),
            );
        }
        let sid = uuid::Uuid::new_v4().to_string();
        r.session = Some(sid.clone());
        r.ever_connected = true;
        r.last_seen = std::time::Instant::now();
        let name = r.name.clone();
        w.counters.runner_sessions += 1;
        w.mark(TimelineKind::RunnerOnline, None, Some(&name));
        (
            StatusCode::OK,
            Json(SessionCreated {
                session_id: sid,
                runner_id: id,
            }),
        )
            .into_response()
    })
}

async fn delete_session(State(s): S, Path(sid): Path<String>, headers: HeaderMap) -> Response {
    let Some(id) = runner_id(&s, &headers) else {
        return err(StatusCode::UNAUTHORIZED, DELETED);
    };
    s.mutate(|w| {
        if let Some(r) = w.runners.get_mut(&id) {
            if r.session.as_deref() == Some(sid.as_str()) {
                r.session = None;
                let name = r.name.clone();
                w.mark(TimelineKind::RunnerOffline, None, Some(&name));
            }
        }
    });
    StatusCode::NO_CONTENT.into_response()
}

async fn poll_job(
    State(s): S,
    Path(sid): Path<String>,
    headers: HeaderMap,
    Query(q): Query<PollQuery>,
) -> Response {
    let wait = q
        .wait_ms
        .map(Duration::from_millis)
        .unwrap_or(s.config.runner_poll_timeout)
        .min(s.config.runner_poll_timeout)
        // A runner in a long-poll must not look lost.
        .min(s.config.runner_offline_after / 2);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        // Register interest before looking, so a change between the look and the wait is not lost.
        let notified = s.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let Some(id) = runner_id(&s, &headers) else {
            return err(StatusCode::UNAUTHORIZED, DELETED);
        };
        let assigned = s.mutate_quiet(|w| {
            match w.runners.get(&id) {
                Some(r) if r.session.as_deref() == Some(sid.as_str()) => {}
                _ => return Err(()),
            }
            w.touch_runner(id);
            Ok(w.try_assign(id))
        });
        match assigned {
            Err(()) => return err(StatusCode::NOT_FOUND, "session not found"),
            Ok(Some(job)) => return (StatusCode::OK, Json(job)).into_response(),
            Ok(None) => {}
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            s.mutate_quiet(|w| w.touch_runner(id));
            return StatusCode::NO_CONTENT.into_response();
        }
    }
}

async fn heartbeat(State(s): S, Path(job_id): Path<u64>, headers: HeaderMap) -> Response {
    let Some(id) = runner_id(&s, &headers) else {
        return err(StatusCode::UNAUTHORIZED, DELETED);
    };
    let mut w = s.lock();
    w.touch_runner(id);
    match w.jobs.get(&job_id) {
        Some(j) if j.runner_id == Some(id) => (
            StatusCode::OK,
            Json(Heartbeat {
                cancel: j.cancel_requested,
            }),
        )
            .into_response(),
        _ => err(StatusCode::NOT_FOUND, "job not found"),
    }
}

async fn result(
    State(s): S,
    Path(job_id): Path<u64>,
    headers: HeaderMap,
    Json(r): Json<JobResult>,
) -> Response {
    let Some(id) = runner_id(&s, &headers) else {
        return err(StatusCode::UNAUTHORIZED, DELETED);
    };
    let conclusion = match r.result.as_str() {
        "succeeded" => "success",
        "failed" => "failure",
        "cancelled" | "canceled" => "cancelled",
        _ => {
            return err(
                StatusCode::UNPROCESSABLE_ENTITY,
                "result must be succeeded, failed or cancelled",
            )
        }
    };
    if s.mutate(|w| w.complete_job(id, job_id, conclusion)) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        err(
            StatusCode::CONFLICT,
            "job is not in progress on this runner",
        )
    }
}
