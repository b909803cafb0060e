//! The routes, their body limits, and the two smallest endpoints (`/healthz`, `/metrics`).

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use redeem_contract::{MAX_REQUEST_BYTES, REDEEM_PATH};

use super::auth::{authenticate, err};
use super::repositories;
use super::state::AppState;
use super::status::{self, StatusState};
use crate::{intake, redeem};

/// `POST /webhook`, `GET /healthz`, `GET /metrics`, `GET /status`,
/// `GET/POST /repositories/{username}` and `POST /tickets/redeem`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhook", post(intake::handle))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/status", get(status_json))
        .route(
            "/repositories/{username}",
            get(repositories::get)
                .post(repositories::post)
                .layer(DefaultBodyLimit::max(repositories::MAX_BODY_BYTES)),
        )
        .route(
            REDEEM_PATH,
            post(redeem::redeem).layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES)),
        )
        .layer(DefaultBodyLimit::max(intake::MAX_BODY_BYTES))
        .with_state(state)
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
