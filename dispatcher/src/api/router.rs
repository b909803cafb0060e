//! The routes, their body limits, and the two smallest endpoints (`/healthz`, `/metrics`).

use std::time::Duration;

use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use axum::routing::{get, post};
use axum::BoxError;
use axum::{Json, Router};
use redeem_contract::{RefusalBody, RefusalCode, JOB_ENDED_PATH, MAX_REQUEST_BYTES, REDEEM_PATH};
use tower::limit::GlobalConcurrencyLimitLayer;
use tower::load_shed::LoadShedLayer;
use tower::ServiceBuilder;
use tower_http::timeout::{RequestBodyTimeoutLayer, TimeoutLayer};

use super::auth::{authenticate, err};
use super::repositories;
use super::state::AppState;
use super::status::{self, StatusState};
use crate::{ended, intake, redeem};

/// Most requests each endpoint serves at once; one more is answered 503 at once (never
/// queued): a flood of one kind cannot starve the others nor grow memory without bound.
pub const MAX_CONCURRENT_WEBHOOKS: usize = 64;
pub const MAX_CONCURRENT_REDEMPTIONS: usize = 32;
/// A burst of runner jobs ending together sends as many notices; more wait for the Slurm poll.
pub const MAX_CONCURRENT_END_NOTICES: usize = 32;
pub const MAX_CONCURRENT_REPOSITORIES: usize = 8;
pub const MAX_CONCURRENT_READS: usize = 8;
/// The console's requests together (assets, login, edits; an event stream counts only while
/// it opens, then [`super::console::MAX_STREAMS`] bounds it).
pub const MAX_CONCURRENT_CONSOLE: usize = 32;
/// A body must arrive within this (idle between its parts, and in total with the handler's
/// work within [`REQUEST_TIMEOUT`]).
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);
/// A whole request, body and answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// `POST /webhook`, `GET /healthz`, `GET /metrics`, `GET /status`,
/// `GET/POST /repositories/{username}`, `POST /tickets/redeem`, `POST /runners/job-ended` and the console's `/console/`, each with its own limit
/// on concurrent requests, and timeouts on bodies and whole requests.
pub fn router(state: AppState) -> Router {
    let console = super::console::routes(&state.config.console_dir).layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_CONSOLE)),
    );
    Router::new()
        .route(
            "/webhook",
            limited(post(intake::handle), MAX_CONCURRENT_WEBHOOKS),
        )
        .route("/healthz", limited(get(healthz), MAX_CONCURRENT_READS))
        .route("/metrics", limited(get(metrics), MAX_CONCURRENT_READS))
        .route("/status", limited(get(status_json), MAX_CONCURRENT_READS))
        .route(
            "/repositories/{username}",
            limited(
                get(repositories::get)
                    .post(repositories::post)
                    .layer(DefaultBodyLimit::max(repositories::MAX_BODY_BYTES)),
                MAX_CONCURRENT_REPOSITORIES,
            ),
        )
        .route(
            REDEEM_PATH,
            limited(
                post(redeem::redeem).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
                MAX_CONCURRENT_REDEMPTIONS,
            ),
        )
        .route(
            JOB_ENDED_PATH,
            limited(
                post(ended::job_ended).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
                MAX_CONCURRENT_END_NOTICES,
            ),
        )
        .merge(console)
        .layer(DefaultBodyLimit::max(intake::MAX_BODY_BYTES))
        .layer(RequestBodyTimeoutLayer::new(BODY_TIMEOUT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            REQUEST_TIMEOUT,
        ))
        .with_state(state)
}

/// `route` serving at most `max` requests at once, all its methods together (one semaphore);
/// the next is answered 503 right away.
fn limited(route: MethodRouter<AppState>, max: usize) -> MethodRouter<AppState> {
    route.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .layer(LoadShedLayer::new())
            .layer(GlobalConcurrencyLimitLayer::new(max)),
    )
}

async fn overloaded(_: BoxError) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, "1")],
        Json(RefusalBody::new(
            RefusalCode::Busy,
            "too many requests; try again",
        )),
    )
        .into_response()
}

async fn healthz(State(app): State<AppState>) -> impl IntoResponse {
    match app.db.ping().await {
        Ok(()) => (StatusCode::OK, "ok\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
    }
}

async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

/// `GET /status`: repository names, job ids and errors, for an admin only (the admin token
/// or root's MUNGE credential).
async fn status_json(State(app): State<StatusState>, headers: HeaderMap) -> Response {
    match authenticate(&app.config, app.admin_token.as_deref(), &headers).await {
        Ok(caller) if caller.is_admin() => {}
        Ok(_) => {
            return err(
                StatusCode::FORBIDDEN,
                "/status needs the admin token or root's MUNGE credential",
            )
            .into_response()
        }
        Err(e) => return e.into_response(),
    }
    match status::build(&app).await {
        Ok(s) => (
            StatusCode::OK,
            Json(serde_json::to_value(s).unwrap_or_default()),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
