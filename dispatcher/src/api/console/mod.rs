//! The web console: its built assets under `/console/` (from `server.console_dir`, served as
//! files), and its API under `/console/api/`: log in with the admin token or a one-use login
//! link (sessions.rs), one server-sent event stream of snapshots (events.rs, snapshot.rs), and
//! the mapping edit (handlers.rs). Cookies, Origin and CSRF checks live in guard.rs.
//!
//! The console never answers with a secret: the admin token is only compared, session ids
//! travel only in the HttpOnly cookie, link codes only once.

mod events;
mod guard;
mod handlers;
pub mod sessions;
pub mod snapshot;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use axum::http::{header, HeaderValue};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::{watch, Semaphore};
use tower_http::services::{ServeDir, ServeFile};
use tower_http::set_header::SetResponseHeaderLayer;

use super::repositories::RepositoriesState;
use crate::clients::slurm::Slurm;
use crate::config::Config;
use crate::store::Db;
use crate::telemetry::SharedStatus;

pub use sessions::Sessions;

/// The console's pages load only their own scripts and styles, are never framed (no
/// clickjacking of the mapping editor) and send no Referer (a login link never leaks).
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// Most event streams open at once (each holds a connection and reads the database).
pub const MAX_STREAMS: usize = 32;

/// What the console needs (an `axum` sub-state).
#[derive(Clone)]
pub struct ConsoleState {
    pub config: Arc<Config>,
    pub db: Db,
    pub shared: Arc<Mutex<SharedStatus>>,
    pub admin_token: Option<Arc<String>>,
    pub sessions: Sessions,
    pub repositories: RepositoriesState,
    pub slurm: Slurm,
    /// Open event streams; one more is refused.
    pub streams: Arc<Semaphore>,
    /// Which node each running Slurm job is on (asked of Slurm once per job).
    pub nodes: Arc<Mutex<HashMap<u64, String>>>,
    /// Turns true when the daemon stops: event streams end then, rather than holding the
    /// graceful shutdown open.
    pub stopping: watch::Receiver<bool>,
}

/// The console's own state that lives as long as the daemon (the rest comes from
/// [`crate::api::AppState`]).
#[derive(Clone)]
pub struct ConsoleShared {
    pub sessions: Sessions,
    pub streams: Arc<Semaphore>,
    pub nodes: Arc<Mutex<HashMap<u64, String>>>,
    pub stopping: watch::Receiver<bool>,
}

impl ConsoleShared {
    /// `stopping` turns true when the daemon stops.
    pub fn new(stopping: watch::Receiver<bool>) -> ConsoleShared {
        ConsoleShared {
            sessions: Sessions::default(),
            streams: Arc::new(Semaphore::new(MAX_STREAMS)),
            nodes: Arc::default(),
            stopping,
        }
    }
}

impl Default for ConsoleShared {
    /// For a router that never stops its streams early (tests that build the state by hand).
    fn default() -> Self {
        ConsoleShared::new(watch::channel(false).1)
    }
}

/// The console's routes, for [`crate::api::router`] to merge (their own concurrency is
/// bounded there and, for streams, by [`MAX_STREAMS`]).
pub fn routes<S>(console_dir: &Path) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    ConsoleState: axum::extract::FromRef<S>,
{
    let index = console_dir.join("index.html");
    let assets = ServeDir::new(console_dir).fallback(ServeFile::new(index));
    Router::new()
        .route("/console/api/session", get(handlers::whoami))
        .route("/console/api/login", post(handlers::login))
        .route("/console/api/logout", post(handlers::logout))
        .route("/console/api/links", post(handlers::issue_link))
        .route("/console/link/{code}", get(handlers::open_link))
        .route("/console/api/events", get(events::stream))
        .route(
            "/console/api/repositories/{username}",
            post(handlers::replace_mapping),
        )
        .nest_service("/console", assets)
        .layer(SetResponseHeaderLayer::overriding(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ))
        .layer(SetResponseHeaderLayer::overriding(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ))
}
