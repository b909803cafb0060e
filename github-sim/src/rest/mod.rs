//! GitHub's REST endpoints an autoscaler uses, with GitHub's paths, status codes and bodies.
//! `layer` is what every call goes through (faults, latency, rate limits, ETag/304, counters);
//! `scope` reads whose runners a call is about from its path; `runners`, `runs` and `apps` hold
//! the handlers; `manifests` is the App manifest flow; `paging` is GitHub's list paging.

mod apps;
mod layer;
pub mod manifests;
mod paging;
mod runners;
mod runs;
mod scope;

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::Value;

use crate::error::ApiError;
use crate::shared::Shared;

type S = State<Arc<Shared>>;
type ApiResult = Result<Response, ApiError>;

/// Every REST route. Runner endpoints exist in an organization and a repository form; both
/// forms route to the same handler.
pub fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    let mut router = Router::new();
    for scope in ["/orgs/{org}", "/repos/{owner}/{repo}"] {
        router = router
            .route(
                &format!("{scope}/actions/runners/generate-jitconfig"),
                post(runners::jit),
            )
            .route(&format!("{scope}/actions/runners"), get(runners::list))
            .route(
                &format!("{scope}/actions/runners/{{runner_id}}"),
                get(runners::get_one).delete(runners::delete),
            )
            .route(
                &format!("{scope}/actions/runners/registration-token"),
                post(runners::registration_token),
            )
            .route(&format!("{scope}/installation"), get(apps::installation));
    }
    router
        .route(
            "/repos/{owner}/{repo}/actions/jobs/{job_id}",
            get(runs::get_job),
        )
        .route("/repos/{owner}/{repo}/actions/runs", get(runs::list_runs))
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}",
            get(runs::get_run),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            get(runs::run_jobs),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
            post(runs::cancel_run),
        )
        .route(
            "/orgs/{org}/actions/runner-groups",
            get(runners::runner_groups),
        )
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(apps::access_token),
        )
        .route("/app/hook/deliveries", get(apps::hook_deliveries))
        .route(
            "/app/hook/deliveries/{delivery_id}/attempts",
            post(apps::hook_redeliver),
        )
        .route("/rate_limit", get(apps::rate_limit))
        .route(
            "/actions/runner-registration",
            post(crate::scaleset::bootstrap::runner_registration),
        )
        .route(
            "/app-manifests/{code}/conversions",
            post(manifests::conversion),
        )
        .route_layer(middleware::from_fn_with_state(shared, layer::api_layer))
}

fn ok(body: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(body)).into_response())
}
