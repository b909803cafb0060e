//! The HTTP side: router and shared state for `POST /webhook`, `GET /healthz`,
//! `GET /metrics`, `GET /status`, `GET/POST /repositories/{username}` and
//! `POST /tickets/redeem`.

use std::sync::{Arc, Mutex};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::Notify;

use crate::config::Config;
use crate::db::{Db, JobUpdate};
use crate::github::GithubClient;
use crate::metrics::Metrics;
use crate::slurm::Slurm;
use crate::status::{self, SharedStatus};
use crate::{pools, repositories, tickets, webhook};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub webhook_secret: Arc<Vec<u8>>,
    pub metrics: Arc<Metrics>,
    /// Wakes the control loop when a delivery changed demand.
    pub wake: Arc<Notify>,
    pub shared: Arc<Mutex<SharedStatus>>,
    /// Needed by `POST /repositories/{username}`; `None`: the mapping is read-only.
    pub admin_token: Option<Arc<String>>,
    /// Ticket redemption mints JIT configs and asks Slurm about the redeeming job.
    pub github: Arc<GithubClient>,
    pub slurm: Slurm,
}

impl AppState {
    /// A job is ours when its repository is under a target and its labels match a pool.
    pub fn is_ours(&self, job: &JobUpdate) -> bool {
        self.config.github.scope_for_repo(&job.repo).is_some()
            && pools::select(&self.config.pools, &job.labels).is_some()
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/webhook", post(webhook::handle))
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
            "/tickets/redeem",
            post(tickets::redeem).layer(DefaultBodyLimit::max(tickets::MAX_BODY_BYTES)),
        )
        .layer(DefaultBodyLimit::max(webhook::MAX_BODY_BYTES))
        .with_state(state)
}

async fn healthz(State(app): State<AppState>) -> impl IntoResponse {
    match app
        .db
        .call(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
        .await
    {
        Ok(_) => (StatusCode::OK, "ok\n"),
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

async fn status_json(State(app): State<AppState>) -> impl IntoResponse {
    match status::build(&app).await {
        Ok(s) => (
            StatusCode::OK,
            Json(serde_json::to_value(s).unwrap_or_default()),
        )
            .into_response(),
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response(),
    }
}
