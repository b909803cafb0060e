//! Webhook intake: `POST /webhook`; and `listener`, the runner scale set listener, the other
//! way GitHub announces demand (outbound HTTPS only).
//!
//! Order matters: the signature is checked on the raw bytes before anything is parsed
//! (401, nothing recorded), then the body is parsed (400 when malformed), then the delivery
//! and the job update it carries are committed in one transaction, deduplicated by
//! `X-GitHub-Delivery` and by the body's sha256 (a replay under a new id), and only then answered 202. Bodies over 25 MB get 413 from the body
//! limit layer. The whole handler is bounded well under GitHub's 10 s.

pub mod listener;
mod payload;
pub mod signature;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

pub use payload::{parse_workflow_job, MalformedPayload};

use crate::accounting::{self, RanJob};
use crate::clients::slurm::Slurm;
use crate::config::Config;
use crate::model::{JobStatus, JobUpdate};
use crate::scale::pools;
use crate::store::{Db, DbError, Delivery, DeliveryOutcome, JobTransition};
use crate::telemetry::Metrics;

pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// GitHub gives up after 10 s; answer an error well before that instead of hanging.
const HANDLER_BUDGET: Duration = Duration::from_secs(8);

/// What webhook intake needs (an `axum` sub-state: this module never names the API's state).
#[derive(Clone)]
pub struct IntakeState {
    pub config: Arc<Config>,
    pub db: Db,
    pub webhook_secret: Arc<Vec<u8>>,
    pub metrics: Arc<Metrics>,
    /// Wakes the control loop when a delivery changed demand.
    pub wake: Arc<Notify>,
    /// Accounting puts the job a runner took into its Slurm job's comment.
    pub slurm: Slurm,
}

impl IntakeState {
    /// A job is ours when its repository is under a target and its labels match a pool.
    pub fn is_ours(&self, job: &JobUpdate) -> bool {
        self.config.github.scope_for_repo(&job.repo).is_some()
            && pools::select(&self.config.pools, &job.labels).is_some()
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn handle(
    State(app): State<IntakeState>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    match tokio::time::timeout(HANDLER_BUDGET, intake(&app, &headers, body)).await {
        Ok(answer) => answer,
        Err(_) => {
            app.metrics.webhook("timeout");
            tracing::error!("webhook intake exceeded its time budget; answered 503");
            (StatusCode::SERVICE_UNAVAILABLE, "busy, try again\n".into())
        }
    }
}

async fn intake(app: &IntakeState, headers: &HeaderMap, body: Bytes) -> (StatusCode, String) {
    if !signature::verify(
        &app.webhook_secret,
        &body,
        header(headers, "x-hub-signature-256"),
    ) {
        app.metrics.webhook("bad_signature");
        tracing::warn!("webhook rejected: missing or wrong X-Hub-Signature-256");
        return (StatusCode::UNAUTHORIZED, "bad signature\n".into());
    }
    let Some(delivery) =
        header(headers, "x-github-delivery").filter(|d| !d.is_empty() && d.len() <= 100)
    else {
        app.metrics.webhook("malformed");
        return (
            StatusCode::BAD_REQUEST,
            "missing X-GitHub-Delivery\n".into(),
        );
    };
    let event = header(headers, "x-github-event").unwrap_or("").to_string();
    let (action, update) = match event.as_str() {
        "workflow_job" => match parse_workflow_job(&body) {
            Ok((action, update)) => (Some(action), Some(update)),
            Err(e) => {
                app.metrics.webhook("malformed");
                tracing::warn!(delivery = %delivery, error = %e, "webhook rejected");
                return (StatusCode::BAD_REQUEST, format!("{e}\n"));
            }
        },
        "" => {
            app.metrics.webhook("malformed");
            return (StatusCode::BAD_REQUEST, "missing X-GitHub-Event\n".into());
        }
        _ => {
            // ping and other events: acknowledged and recorded, nothing to do.
            if serde_json::from_slice::<serde_json::Value>(&body).is_err() {
                app.metrics.webhook("malformed");
                return (StatusCode::BAD_REQUEST, "body is not JSON\n".into());
            }
            (None, None)
        }
    };
    let delivery = Delivery {
        delivery_id: delivery.to_string(),
        event,
        action,
        update,
        body_sha256: Some(hex::encode(Sha256::digest(&body))),
    };
    let recorded = app.db.record_delivery(delivery.clone()).await;
    answer(app, &delivery, recorded)
}

/// The answer to a recorded (or unrecordable) delivery; a new one wakes the control loop.
fn answer(
    app: &IntakeState,
    delivery: &Delivery,
    recorded: Result<(DeliveryOutcome, JobTransition), DbError>,
) -> (StatusCode, String) {
    let id = &delivery.delivery_id;
    let transition = match recorded {
        Ok((DeliveryOutcome::Duplicate, _)) => {
            app.metrics.webhook("duplicate");
            tracing::info!(delivery = %id, "duplicate delivery ignored");
            return (StatusCode::ACCEPTED, "duplicate\n".into());
        }
        Ok((DeliveryOutcome::New, transition)) => transition,
        Err(e) => {
            app.metrics.webhook("db_error");
            tracing::error!(delivery = %id, error = %e, "cannot record delivery");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record delivery\n".into(),
            );
        }
    };
    app.metrics.webhook("accepted");
    if let Some(secs) = transition.queue_to_start_secs {
        app.metrics.queue_to_runner_start.observe(secs);
    }
    let action = delivery.action.as_deref().unwrap_or("");
    if let Some(u) = &delivery.update {
        if transition.runner_finished {
            // The wake below runs a scale pass on the slot this frees.
            let runner = u.runner_name.as_deref().unwrap_or("");
            tracing::info!(runner, "runner finished its job");
        }
        if action == "in_progress" {
            account(app, u);
        }
        if action == "queued" && !app.is_ours(u) {
            app.metrics.jobs_not_ours.inc();
            tracing::info!(job = u.job_id, repo = %u.repo, labels = ?u.labels, "queued job matches no pool or target: not ours");
        } else {
            tracing::info!(delivery = %id, job = u.job_id, action, status = %u.status, "workflow_job recorded");
        }
    }
    app.wake.notify_one();
    (StatusCode::ACCEPTED, "accepted\n".into())
}

/// A job started on a runner: if the runner is ours, record what it ran (in the background:
/// `scontrol` must not hold up GitHub's delivery).
fn account(app: &IntakeState, u: &JobUpdate) {
    let Some(runner) = u.runner_name.clone() else {
        return;
    };
    if u.status != JobStatus::InProgress && u.status != JobStatus::Completed {
        return;
    }
    let job = RanJob {
        repo: u.repo.clone(),
        workflow: u.workflow.clone(),
        run_id: Some(u.run_id as i64),
        job_id: u.job_id.to_string(),
    };
    let (db, slurm, metrics) = (app.db.clone(), app.slurm.clone(), app.metrics.clone());
    tokio::spawn(async move { accounting::record(&db, &slurm, &metrics, &runner, &job).await });
}
