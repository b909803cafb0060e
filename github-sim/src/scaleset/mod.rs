//! The runner scale set protocol over HTTP, as GitHub's `actions/scaleset` client speaks it:
//! `bootstrap` (registration token → `POST /actions/runner-registration` → the Actions service
//! URL and an admin token), and the Actions service itself under `/_actions/{tenant}/`
//! (`sets`: runner groups, scale sets, JIT configs, runners; `sessions`: message sessions, the
//! message queue, `acquirejobs`), behind `layer` (faults, counters). The world's side is
//! `crate::state` (`scale_sets`, `scale_jobs`).

pub mod bootstrap;
mod layer;
mod sessions;
mod sets;

use std::sync::Arc;

use axum::http::{HeaderMap, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::shared::Shared;
use crate::state::ScaleSetError;

const SETS: &str = "/_actions/{tenant}/_apis/runtime/runnerscalesets";
const AGENTS: &str = "/_actions/{tenant}/_apis/distributedtask/pools/0/agents";

/// Every Actions service route (and the message queue), behind the service's layer.
pub fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/_actions/{tenant}/_apis/runtime/runnergroups",
            get(sets::runner_groups),
        )
        .route(
            "/_actions/{tenant}/_apis/runtime/runnergroups/",
            get(sets::runner_groups),
        )
        .route(SETS, get(sets::list).post(sets::create))
        .route(
            &format!("{SETS}/{{id}}"),
            get(sets::get_one).patch(sets::update).delete(sets::delete),
        )
        .route(&format!("{SETS}/{{id}}/generatejitconfig"), post(sets::jit))
        .route(&format!("{SETS}/{{id}}/sessions"), post(sessions::create))
        .route(
            &format!("{SETS}/{{id}}/sessions/{{sid}}"),
            axum::routing::patch(sessions::refresh).delete(sessions::delete),
        )
        .route(
            &format!("{SETS}/{{id}}/acquirejobs"),
            post(sessions::acquire),
        )
        .route(AGENTS, get(sets::agents_by_name))
        .route(
            &format!("{AGENTS}/{{id}}"),
            get(sets::agent).delete(sets::remove_agent),
        )
        .route(
            "/_actions/{tenant}/_queue/{id}/{sid}/messages",
            get(sessions::poll),
        )
        .route(
            "/_actions/{tenant}/_queue/{id}/{sid}/messages/{message_id}",
            axum::routing::delete(sessions::ack),
        )
        .route_layer(middleware::from_fn_with_state(shared, layer::service_layer))
}

/// An Actions service error: `{typeName, message}` as the clients parse it.
fn exception(status: u16, type_name: &str, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"typeName": format!("GitHub.DistributedTask.WebApi.{type_name}"),
                      "message": message.into()});
    (status, Json(body)).into_response()
}

impl IntoResponse for ScaleSetError {
    fn into_response(self) -> Response {
        match self {
            ScaleSetError::NotFound(what) => exception(
                404,
                "RunnerScaleSetNotFoundException",
                format!("{what} not found"),
            ),
            ScaleSetError::SessionConflict(m) => {
                exception(409, "TaskAgentSessionConflictException", m)
            }
            ScaleSetError::SessionNotFound => exception(
                404,
                "TaskAgentSessionExpiredException",
                "The message session does not exist or has expired.",
            ),
            ScaleSetError::QueueTokenExpired => exception(
                401,
                "VssUnauthorizedException",
                "The message queue token has expired.",
            ),
            ScaleSetError::AgentExists(name) => exception(
                409,
                "AgentExistsException",
                format!("A runner with the name {name} already exists."),
            ),
            ScaleSetError::AgentNotFound(id) => exception(
                404,
                "AgentNotFoundException",
                format!("Runner {id} not found."),
            ),
            ScaleSetError::JobStillRunning(name) => exception(
                400,
                "JobStillRunningException",
                format!("Runner {name} is still running a job."),
            ),
            ScaleSetError::ScaleSetExists(name) => exception(
                409,
                "RunnerScaleSetExistsException",
                format!("A runner scale set named {name} already exists in the runner group."),
            ),
            ScaleSetError::GroupNotFound(id) => exception(
                404,
                "RunnerGroupNotFoundException",
                format!("Runner group {id} not found."),
            ),
            ScaleSetError::Invalid(m) => exception(400, "ArgumentException", m),
        }
    }
}

/// The token of `Authorization: Bearer <token>`.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}
