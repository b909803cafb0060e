//! `POST /runners/job-ended`: a node's epilog (root, through `gha-redeem --job-ended`) says
//! that a runner's Slurm job ended, so its slot is freed and the control loop woken at once,
//! without a Slurm query. Polling Slurm stays as the fallback for a notice that never came.
//!
//! Taken only from a MUNGE credential made by root (the epilog's uid; any user can make a
//! credential, and its payload could name anyone's job) whose payload is the contract's
//! `JobEndedNotice` for a job id this dispatcher's sbatch returned. MUNGE refuses a replayed
//! credential, and the job id is inside what it signed: a captured notice can neither be sent
//! again nor made to name another job. Nothing is decided from the notice but "this job is
//! over", which the Slurm poll would have found anyway.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use redeem_contract::{JobEndedNotice, RefusalBody, RefusalCode, MAX_REQUEST_BYTES};
use tokio::sync::Notify;

use crate::clients::munge::{self, MungeError};
use crate::config::Config;
use crate::reconcile::record_job_ended;
use crate::store::{self, Db};
use crate::telemetry::Metrics;

/// What the handler needs (an `axum` sub-state).
#[derive(Clone)]
pub struct EndedState {
    pub config: Arc<Config>,
    pub db: Db,
    pub metrics: Arc<Metrics>,
    /// Wakes the control loop: a slot came free.
    pub wake: Arc<Notify>,
}

/// Why a notice was not taken.
struct Refused(RefusalCode, String);

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(RefusalBody::new(self.0, self.1))).into_response()
    }
}

/// `POST /runners/job-ended`: body = a MUNGE credential (text). 204 when taken.
pub async fn job_ended(
    State(state): State<EndedState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    match take(&state, body).await {
        Ok((job_id, outcome)) => {
            state.metrics.job_end_notice(outcome);
            tracing::info!(slurm_job = job_id, outcome, "runner job end notice");
            StatusCode::NO_CONTENT.into_response()
        }
        Err(refused) => {
            state.metrics.job_end_notice(refused.0.as_str());
            tracing::warn!(error = refused.0.as_str(), message = %refused.1, "job end notice refused");
            refused.into_response()
        }
    }
}

/// The checks, in order (credential, root, payload, our job), then the effect. The job id and
/// what was done (`finished`, or `already_final` when the runner was over already).
async fn take(
    state: &EndedState,
    body: Result<Bytes, BytesRejection>,
) -> Result<(u32, &'static str), Refused> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => Refused(
            RefusalCode::TooLarge,
            format!("the body is over {MAX_REQUEST_BYTES} bytes"),
        ),
        _ => Refused(RefusalCode::BadCredential, "cannot read the body".into()),
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| Refused(RefusalCode::BadCredential, "not a MUNGE credential".into()))?;
    let decoded = munge::decode(state.config.munge_socket.as_deref(), text)
        .await
        .map_err(|e| match e {
            MungeError::Malformed | MungeError::Refused(_) => {
                Refused(RefusalCode::BadCredential, e.to_string())
            }
            other => Refused(RefusalCode::MungeUnavailable, other.to_string()),
        })?;
    if decoded.uid != 0 {
        return Err(Refused(
            RefusalCode::NotRoot,
            format!(
                "the MUNGE credential was made by uid {}, not root",
                decoded.uid
            ),
        ));
    }
    let notice = JobEndedNotice::parse(&decoded.payload)
        .ok_or_else(|| Refused(RefusalCode::BadPayload, "not a job end notice".into()))?;
    let job_id = notice.ended_job_id;
    let row = state
        .db
        .call(move |c| store::runner_by_slurm_job(c, u64::from(job_id)))
        .await
        .map_err(|e| Refused(RefusalCode::DatabaseUnavailable, e.to_string()))?
        .ok_or_else(|| {
            Refused(
                RefusalCode::WrongJob,
                format!("job {job_id} is not a runner job of this dispatcher"),
            )
        })?;
    let was_final = row.state.is_final();
    let finished = record_job_ended(&state.db, &state.metrics, &row.name, None).await;
    if finished {
        tracing::info!(runner = %row.name, slurm_job = job_id, "Slurm job ended (the node's epilog said)");
        state.wake.notify_one();
    }
    Ok((
        job_id,
        if was_final {
            "already_final"
        } else {
            "finished"
        },
    ))
}
