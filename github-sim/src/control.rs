//! The control API under `/_sim/` that tests, benchmarks and the demo use to set up the world,
//! enqueue work, inject faults and read state, counters and the delivery log.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use crate::error::SimError;
use crate::faults::{Faults, ScaleSetFaults};
use crate::model::*;
use crate::scenario::Scenario;
use crate::shared::Shared;

type S = State<Arc<Shared>>;

pub fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/_sim/orgs", post(add_org))
        .route("/_sim/repos", post(add_repo))
        .route("/_sim/apps", post(add_app))
        .route("/_sim/installations", post(add_installation))
        .route("/_sim/app-manifests", post(submit_manifest))
        .route("/_sim/pats", post(add_pat))
        .route("/_sim/webhook", put(set_webhook))
        .route("/_sim/workflows", post(enqueue))
        .route("/_sim/runs/{run_id}/cancel", post(cancel))
        .route("/_sim/jobs/{job_id}/approve", post(approve))
        .route("/_sim/state", get(state))
        .route("/_sim/counters", get(counters))
        .route("/_sim/deliveries", get(deliveries))
        .route("/_sim/deliveries/{id}/redeliver", post(redeliver))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .route(
            "/_sim/scaleset/faults",
            get(get_scaleset_faults).put(put_scaleset_faults),
        )
        .route("/_sim/scenario", post(scenario))
}

fn bad(e: SimError) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"message": e.to_string()})),
    )
        .into_response()
}

#[derive(Deserialize)]
struct OrgBody {
    login: String,
}

async fn add_org(State(s): S, Json(b): Json<OrgBody>) -> Response {
    let id = s.mutate(|w| w.add_org(&b.login));
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

#[derive(Deserialize)]
struct RepoBody {
    owner: String,
    name: String,
}

async fn add_repo(State(s): S, Json(b): Json<RepoBody>) -> Response {
    let id = s.mutate(|w| w.add_repo(&b.owner, &b.name));
    (StatusCode::CREATED, Json(json!({"id": id}))).into_response()
}

async fn add_app(State(s): S, Json(b): Json<AppSpec>) -> Response {
    match s.mutate(|w| w.add_app(&b)) {
        Ok(()) => (StatusCode::CREATED, Json(json!({"id": b.id}))).into_response(),
        Err(e) => bad(e),
    }
}

async fn add_installation(State(s): S, Json(b): Json<InstallationSpec>) -> Response {
    match s.mutate(|w| w.add_installation(&b)) {
        Ok(id) => (StatusCode::CREATED, Json(json!({"id": id}))).into_response(),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
struct ManifestBody {
    owner: String,
    manifest: serde_json::Value,
}

/// The browser step of the App manifest flow: `{code}` for `POST /app-manifests/{code}/conversions`.
async fn submit_manifest(State(s): S, Json(b): Json<ManifestBody>) -> Response {
    match s.mutate(|w| crate::rest::manifests::submit(w, &b.owner, b.manifest)) {
        Ok(code) => (StatusCode::CREATED, Json(json!({"code": code}))).into_response(),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
struct PatBody {
    token: String,
    scopes: Vec<String>,
}

async fn add_pat(State(s): S, Json(b): Json<PatBody>) -> Response {
    s.mutate(|w| w.pats.insert(b.token, b.scopes));
    StatusCode::CREATED.into_response()
}

async fn set_webhook(State(s): S, Json(b): Json<WebhookTarget>) -> Response {
    s.mutate(|w| w.webhook = Some(b));
    StatusCode::NO_CONTENT.into_response()
}

async fn enqueue(State(s): S, Json(b): Json<WorkflowSpec>) -> Response {
    let spec = crate::scenario::expand_counts(b);
    match s.mutate(|w| w.enqueue_workflow(&spec)) {
        Ok(r) => (StatusCode::CREATED, Json(r)).into_response(),
        Err(e) => bad(e),
    }
}

async fn cancel(State(s): S, Path(run_id): Path<u64>) -> Response {
    match s.mutate(|w| w.cancel_run(run_id)) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e) => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": e.to_string()})),
        )
            .into_response(),
    }
}

async fn approve(State(s): S, Path(job_id): Path<u64>) -> Response {
    match s.mutate(|w| w.approve_job(job_id)) {
        Ok(()) => StatusCode::ACCEPTED.into_response(),
        Err(e @ SimError::UnknownJob(_)) => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": e.to_string()})),
        )
            .into_response(),
        Err(e) => bad(e),
    }
}

async fn state(State(s): S) -> Json<SimSnapshot> {
    Json(s.lock().snapshot())
}

async fn counters(State(s): S) -> Json<Counters> {
    Json(s.lock().counters.clone())
}

async fn deliveries(State(s): S) -> Json<Vec<DeliveryRecord>> {
    Json(s.lock().deliveries.clone())
}

async fn redeliver(State(s): S, Path(id): Path<u64>) -> Response {
    match crate::webhooks::redeliver(&s, id) {
        Ok(id) => (StatusCode::ACCEPTED, Json(json!({"id": id}))).into_response(),
        Err(e) => (
            StatusCode::NOT_FOUND,
            Json(json!({"message": e.to_string()})),
        )
            .into_response(),
    }
}

async fn get_faults(State(s): S) -> Json<Faults> {
    Json(s.lock().faults.clone())
}

async fn put_faults(State(s): S, Json(f): Json<Faults>) -> StatusCode {
    s.mutate(|w| w.faults = f);
    StatusCode::NO_CONTENT
}

async fn get_scaleset_faults(State(s): S) -> Json<ScaleSetFaults> {
    Json(s.lock().scale.faults.clone())
}

async fn put_scaleset_faults(State(s): S, Json(f): Json<ScaleSetFaults>) -> StatusCode {
    s.mutate(|w| w.scale.faults = f);
    StatusCode::NO_CONTENT
}

async fn scenario(State(s): S, Json(sc): Json<Scenario>) -> Response {
    match crate::scenario::apply(&s, sc, None) {
        Ok(runs) => (StatusCode::CREATED, Json(json!({"runs": runs}))).into_response(),
        Err(e) => bad(e),
    }
}
