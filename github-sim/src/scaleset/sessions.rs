//! Message sessions and their queue: create (409 while one is alive), refresh (PATCH: a new
//! queue token), delete; the long poll of `messageQueueUrl` (200 a message, 202 nothing
//! before `message_poll_timeout`, 401 token expired), its acknowledgement (DELETE, 204), and
//! `acquirejobs` (authenticated by the queue token, as the reference client sends it).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::bearer;
use super::bootstrap::Admin;
use crate::shared::Shared;
use crate::state::{ScaleSetError, World};

type S = State<Arc<Shared>>;
type Answer = Result<Response, ScaleSetError>;

/// The session as the service shows it to its owner (with the queue URL and token).
fn session_json(w: &World, tenant: u64, id: u64) -> Result<Value, ScaleSetError> {
    let set = w.scale_set(tenant, id)?;
    let session = set.session.as_ref().ok_or(ScaleSetError::SessionNotFound)?;
    let url = w.scale.service_url(tenant);
    Ok(json!({
        "sessionId": session.id,
        "ownerName": session.owner,
        "runnerScaleSet": w.scale_set_json(set, &url),
        "messageQueueUrl": format!("{url}_queue/{id}/{}/messages", session.id),
        "messageQueueAccessToken": session.queue_token,
        "statistics": w.scale_set_statistics(id),
    }))
}

/// `POST .../runnerscalesets/{id}/sessions` `{ownerName}`: 200 the session.
pub(super) async fn create(
    State(s): S,
    admin: Admin,
    Path((_, id)): Path<(u64, u64)>,
    body: Bytes,
) -> Answer {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let owner = v["ownerName"].as_str().unwrap_or_default().to_string();
    s.mutate(|w| {
        w.create_session(admin.tenant, id, &owner)?;
        Ok(Json(session_json(w, admin.tenant, id)?).into_response())
    })
}

/// `PATCH .../sessions/{sid}`: 200 the session with a new queue token.
pub(super) async fn refresh(
    State(s): S,
    admin: Admin,
    Path((_, id, sid)): Path<(u64, u64, String)>,
) -> Answer {
    s.mutate(|w| {
        w.refresh_session(admin.tenant, id, &sid)?;
        Ok(Json(session_json(w, admin.tenant, id)?).into_response())
    })
}

/// `DELETE .../sessions/{sid}`: 204.
pub(super) async fn delete(
    State(s): S,
    admin: Admin,
    Path((_, id, sid)): Path<(u64, u64, String)>,
) -> Answer {
    s.mutate(|w| w.delete_session(admin.tenant, id, &sid))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize)]
pub(super) struct PollQuery {
    #[serde(rename = "lastMessageId")]
    last_message_id: Option<u64>,
}

fn capacity(headers: &HeaderMap) -> Option<u32> {
    headers
        .get("x-scalesetmaxcapacity")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// `GET {messageQueueUrl}?lastMessageId=`: the long poll.
pub(super) async fn poll(
    State(s): S,
    Path((tenant, id, sid)): Path<(u64, u64, String)>,
    Query(q): Query<PollQuery>,
    headers: HeaderMap,
) -> Answer {
    let delay = s.lock().scale.faults.poll_delay_ms;
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let token = bearer(&headers).unwrap_or_default().to_string();
    let capacity = capacity(&headers);
    let deadline = tokio::time::Instant::now() + s.config.message_poll_timeout;
    loop {
        // Register interest before looking, so a change between the look and the wait counts.
        let notified = s.changed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let look =
            |w: &mut World| w.poll_queue((tenant, id), &sid, &token, q.last_message_id, capacity);
        if let Some(message) = s.mutate_quiet(look)? {
            return Ok((StatusCode::OK, Json(message)).into_response());
        }
        if tokio::time::timeout_at(deadline, notified).await.is_err() {
            s.mutate_quiet(|w| w.touch_session(tenant, id, &sid));
            return Ok(StatusCode::ACCEPTED.into_response());
        }
    }
}

/// `DELETE {messageQueueUrl}/{messageId}`: 204 (an id already gone too).
pub(super) async fn ack(
    State(s): S,
    Path((tenant, id, sid, message_id)): Path<(u64, u64, String, u64)>,
    headers: HeaderMap,
) -> Answer {
    let token = bearer(&headers).unwrap_or_default().to_string();
    s.mutate(|w| w.ack_message((tenant, id), &sid, &token, message_id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST .../runnerscalesets/{id}/acquirejobs` `[requestId, ...]`: 200 `{count, value}`.
pub(super) async fn acquire(
    State(s): S,
    Path((tenant, id)): Path<(u64, u64)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let token = bearer(&headers).unwrap_or_default().to_string();
    let ids: Vec<u64> = serde_json::from_slice(&body)
        .map_err(|e| ScaleSetError::Invalid(format!("expected an array of request ids: {e}")))?;
    let acquired = s.mutate(|w| w.acquire_jobs((tenant, id), &token, &ids))?;
    Ok(Json(json!({"count": acquired.len(), "value": acquired})).into_response())
}
