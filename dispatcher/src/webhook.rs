//! Webhook intake: `POST /webhook`.
//!
//! Order matters: the signature is checked on the raw bytes before anything is parsed
//! (401, nothing recorded), then the body is parsed (400 when malformed), then the delivery
//! and the job update it carries are committed in one transaction, deduplicated by
//! `X-GitHub-Delivery`, and only then answered 202. Bodies over 25 MB get 413 from the body
//! limit layer. The whole handler is bounded well under GitHub's 10 s.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::Deserialize;

use crate::db::{self, DeliveryOutcome, JobUpdate};
use crate::group_commit::Delivery;
use crate::server::AppState;
use crate::signature;

pub const MAX_BODY_BYTES: usize = 25 * 1024 * 1024;
/// GitHub gives up after 10 s; answer an error well before that instead of hanging.
const HANDLER_BUDGET: Duration = Duration::from_secs(8);

#[derive(Debug, Deserialize)]
struct WorkflowJobEvent {
    action: String,
    workflow_job: WorkflowJob,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct WorkflowJob {
    id: u64,
    run_id: u64,
    #[serde(default)]
    labels: Vec<String>,
    status: String,
    #[serde(default)]
    runner_name: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    started_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed workflow_job payload: {0}")]
pub struct MalformedPayload(String);

/// Turn a `workflow_job` body into the job update it carries.
///
/// The action is what happened; the job's `status` may lag (a real example has action
/// `queued` with status `waiting`), so the furthest of the two is recorded.
pub fn parse_workflow_job(body: &[u8]) -> Result<(String, JobUpdate), MalformedPayload> {
    let event: WorkflowJobEvent =
        serde_json::from_slice(body).map_err(|e| MalformedPayload(e.to_string()))?;
    let status = if db::status_rank(&event.action) > db::status_rank(&event.workflow_job.status) {
        event.action.clone()
    } else {
        event.workflow_job.status.clone()
    };
    Ok((
        event.action,
        JobUpdate {
            job_id: event.workflow_job.id,
            run_id: event.workflow_job.run_id,
            repo: event.repository.full_name,
            labels: event.workflow_job.labels,
            status,
            runner_name: event.workflow_job.runner_name.filter(|n| !n.is_empty()),
            created_at: event
                .workflow_job
                .created_at
                .as_deref()
                .and_then(db::parse_timestamp),
            started_at: event
                .workflow_job
                .started_at
                .as_deref()
                .and_then(db::parse_timestamp),
        },
    ))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

pub async fn handle(
    State(app): State<AppState>,
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

async fn intake(app: &AppState, headers: &HeaderMap, body: Bytes) -> (StatusCode, String) {
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
    let delivery = delivery.to_string();
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

    let ours = update.as_ref().map(|u| app.is_ours(u));
    let recorded = app
        .db
        .record_delivery(Delivery {
            delivery_id: delivery.clone(),
            event,
            action: action.clone(),
            update: update.clone(),
        })
        .await;
    match recorded {
        Ok((DeliveryOutcome::Duplicate, _)) => {
            app.metrics.webhook("duplicate");
            tracing::info!(delivery = %delivery, "duplicate delivery ignored");
            (StatusCode::ACCEPTED, "duplicate\n".into())
        }
        Ok((DeliveryOutcome::New, transition)) => {
            app.metrics.webhook("accepted");
            if let Some(secs) = transition.queue_to_start_secs {
                app.metrics.queue_to_runner_start.observe(secs);
            }
            if transition.runner_finished {
                // The wake below runs a scale pass on the slot this frees.
                tracing::info!(
                    runner = update
                        .as_ref()
                        .and_then(|u| u.runner_name.as_deref())
                        .unwrap_or(""),
                    "runner finished its job"
                );
            }
            if let Some(u) = &update {
                if ours == Some(false) && action.as_deref() == Some("queued") {
                    app.metrics.jobs_not_ours.inc();
                    tracing::info!(job = u.job_id, repo = %u.repo, labels = ?u.labels, "queued job matches no pool or target: not ours");
                } else {
                    tracing::info!(delivery = %delivery, job = u.job_id, action = action.as_deref().unwrap_or(""), status = %u.status, "workflow_job recorded");
                }
            }
            app.wake.notify_one();
            (StatusCode::ACCEPTED, "accepted\n".into())
        }
        Err(e) => {
            app.metrics.webhook("db_error");
            tracing::error!(delivery = %delivery, error = %e, "cannot record delivery");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot record delivery\n".into(),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_event_and_keeps_the_furthest_status() {
        let body =
            br#"{"action":"in_progress","workflow_job":{"id":5,"run_id":2,"labels":["self-hosted"],
            "status":"queued","runner_name":"r1"},"repository":{"full_name":"acme/w"}}"#;
        let (action, u) = parse_workflow_job(body).unwrap();
        assert_eq!(action, "in_progress");
        assert_eq!(u.status, "in_progress");
        assert_eq!(u.runner_name.as_deref(), Some("r1"));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse_workflow_job(b"not json").is_err());
        assert!(parse_workflow_job(br#"{"action":"queued"}"#).is_err());
        assert!(parse_workflow_job(br#"{"action":"queued","workflow_job":{"id":"x"}}"#).is_err());
    }
}
