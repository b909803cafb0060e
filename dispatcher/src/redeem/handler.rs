//! `POST /tickets/redeem`: the facts of one redemption gathered from MUNGE, the database and
//! Slurm for [`checks::run`], then the JIT config minted and sealed for root.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use redeem_contract::{RedeemRequest, RefusalBody, RefusalCode, SealedAnswer, MAX_REQUEST_BYTES};
use tokio::time::Instant;

use super::checks::{self, refuse, NeededCheck, Refusal};
use super::{ticket_hash, RedeemState};
use crate::clients::github::MintError;
use crate::clients::munge::{self, Decoded, MungeError};
use crate::clients::slurm::{JobPlacement, SlurmError};
use crate::clients::users;
use crate::model::{now_secs, JobStatus, RunnerRow, RunnerState, Scope, REDEMPTION_ERROR_PREFIX};
use crate::scale::demand::demand;
use crate::scale::placement::Mapping;
use crate::store::{self, DbError};

/// For `squeue`, `scontrol` and name resolution together: the node's helper gives up after
/// about 20 s, and generate-jitconfig still has to fit in.
const SLURM_BUDGET: Duration = Duration::from_secs(8);
const GITHUB_BUDGET: Duration = Duration::from_secs(10);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a redemption waits for the submitter to record its sbatch's job id.
const JOB_ID_WAIT: Duration = Duration::from_secs(4);
const JOB_ID_POLL: Duration = Duration::from_millis(100);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.code.http_status())
            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(RefusalBody::new(self.code, self.message))).into_response()
    }
}

/// `POST /tickets/redeem`: body = a MUNGE credential (text). 200 = a MUNGE credential,
/// decodable by root only, whose payload is the runner's JIT config; else JSON
/// `{"error", "message"}`.
pub async fn redeem(
    State(state): State<RedeemState>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let metrics = state.metrics.clone();
    // The whole redemption runs in its own task: once the ticket is marked used, the work
    // must finish even if the node hangs up, so that a minted registration is recorded (or
    // found by name once its job ends).
    let task = tokio::spawn(async move {
        let mut facts = Live {
            state,
            body: Some(body),
            runner: None,
            job_id: None,
            slurm_deadline: None,
        };
        let result = match checks::run(&mut facts, now_secs()).await {
            Ok(claimed) => mint_and_seal(&facts.state, claimed, facts.job_id).await,
            Err(refusal) => Err(refusal),
        };
        (result, facts.runner, facts.job_id)
    });
    let (result, runner, job_id) = task.await.unwrap_or_else(|e| {
        tracing::error!(error = %e, "ticket redemption task failed");
        let failed = refuse(
            RefusalCode::DatabaseUnavailable,
            "redemption failed inside the dispatcher",
        );
        (Err(failed), None, None)
    });
    let runner = runner.as_deref().unwrap_or("-");
    let job = job_id.map_or_else(|| "-".into(), |j| j.to_string());
    match result {
        Ok(sealed) => {
            metrics.ticket_redemption("ok");
            tracing::info!(runner, slurm_job = %job, "ticket redeemed");
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                sealed,
            )
                .into_response()
        }
        Err(refusal) => {
            metrics.ticket_redemption(refusal.code.as_str());
            if refusal.counts_unredeemed {
                metrics.tickets_unredeemed.inc();
            }
            tracing::warn!(runner, slurm_job = %job, error = refusal.code.as_str(), message = %refusal.message, "ticket refused");
            refusal.into_response()
        }
    }
}

/// The facts of one live redemption. What a log line about it may say (never the ticket) is
/// collected on the way: the runner and the job.
struct Live {
    state: RedeemState,
    body: Option<Result<Bytes, BytesRejection>>,
    runner: Option<String>,
    job_id: Option<u32>,
    /// Set by the first Slurm question: all of them share [`SLURM_BUDGET`].
    slurm_deadline: Option<Instant>,
}

impl Live {
    fn slurm_deadline(&mut self) -> Instant {
        *self
            .slurm_deadline
            .get_or_insert_with(|| Instant::now() + SLURM_BUDGET)
    }
}

fn slurm_unavailable(e: SlurmError) -> Refusal {
    tracing::warn!(error = %e, "Slurm query for a ticket redemption failed");
    refuse(
        RefusalCode::SlurmUnavailable,
        format!("cannot ask Slurm: {e}"),
    )
}

fn slurm_timeout() -> Refusal {
    refuse(
        RefusalCode::SlurmUnavailable,
        format!("Slurm gave no answer within {} s", SLURM_BUDGET.as_secs()),
    )
}

fn db_unavailable(e: DbError) -> Refusal {
    tracing::error!(error = %e, "database error during a ticket redemption");
    refuse(
        RefusalCode::DatabaseUnavailable,
        "the dispatcher's database is unavailable",
    )
}

impl checks::Facts for Live {
    async fn credential(&mut self) -> Result<Decoded, Refusal> {
        let body = self
            .body
            .take()
            .unwrap_or_else(|| Ok(Bytes::new()))
            .map_err(|rejection| match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => refuse(
                    RefusalCode::TooLarge,
                    format!("the body is over {MAX_REQUEST_BYTES} bytes"),
                ),
                _ => refuse(RefusalCode::BadCredential, "cannot read the body"),
            })?;
        let text = std::str::from_utf8(&body)
            .map_err(|_| refuse(RefusalCode::BadCredential, "not a MUNGE credential"))?;
        let socket = self.state.config.munge_socket.as_deref();
        munge::decode(socket, text).await.map_err(|e| match e {
            MungeError::Malformed | MungeError::Refused(_) => {
                refuse(RefusalCode::BadCredential, e.to_string())
            }
            MungeError::Busy => refuse(RefusalCode::MungeUnavailable, e.to_string()),
            other => {
                tracing::error!(error = %other, "cannot check a MUNGE credential");
                refuse(
                    RefusalCode::MungeUnavailable,
                    "cannot check MUNGE credentials right now",
                )
            }
        })
    }

    async fn ticket_holder(&mut self, req: &RedeemRequest) -> Result<Option<RunnerRow>, Refusal> {
        self.job_id = Some(req.job_id);
        let hash = ticket_hash(&req.ticket);
        // A job can start within moments of its sbatch: give the submitter a moment to
        // record the job id it got (the only job the ticket is good for).
        let deadline = Instant::now() + JOB_ID_WAIT;
        loop {
            let h = hash.clone();
            let row = self
                .state
                .db
                .call(move |c| store::runner_by_ticket_hash(c, &h))
                .await
                .map_err(db_unavailable)?;
            self.runner = row.as_ref().map(|r| r.name.clone());
            let unrecorded = row
                .as_ref()
                .is_some_and(|r| r.slurm_job_id.is_none() && r.state == RunnerState::Submitting);
            if !unrecorded || Instant::now() >= deadline {
                return Ok(row);
            }
            tokio::time::sleep(JOB_ID_POLL).await;
        }
    }

    fn runner_uid(&mut self, row: &RunnerRow) -> Option<u32> {
        users::uid_of(row.job_user(self.state.config.slurm.user.as_deref())?)
    }

    async fn slurm_job(&mut self, req: &RedeemRequest) -> Result<Option<JobPlacement>, Refusal> {
        let deadline = self.slurm_deadline();
        tokio::time::timeout_at(deadline, self.state.slurm.job(u64::from(req.job_id)))
            .await
            .map_err(|_| slurm_timeout())?
            .map_err(slurm_unavailable)
    }

    async fn node_addresses(&mut self, node: &str) -> Result<Vec<IpAddr>, Refusal> {
        let deadline = self.slurm_deadline();
        let work = async {
            let names = self
                .state
                .slurm
                .node_addresses(node)
                .await
                .map_err(slurm_unavailable)?;
            Ok(resolve(&names).await)
        };
        tokio::time::timeout_at(deadline, work)
            .await
            .map_err(|_| slurm_timeout())?
    }

    /// Under the database lock: re-check the row, check demand, mark the ticket used.
    async fn claim(&mut self, row: &RunnerRow, needed: NeededCheck) -> Result<RunnerRow, Refusal> {
        let config = self.state.config.clone();
        let name = row.name.clone();
        let waiting = self.state.scale_sets.waiting();
        self.state
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let Some(row) = store::runner(&tx, &name)? else {
                    return Ok(Err(refuse(
                        RefusalCode::UnknownTicket,
                        "no runner holds this ticket",
                    )));
                };
                if row.ticket_redeemed_at.is_some() {
                    return Ok(Err(refuse(
                        RefusalCode::TicketUsed,
                        format!("the ticket of runner {} was already redeemed", row.name),
                    )));
                }
                let demand = demand(
                    &config,
                    &store::jobs_with_status(&tx, JobStatus::Queued)?,
                    &waiting,
                    &store::live_runners(&tx)?,
                    &Mapping::new(store::repo_users(&tx)?),
                    now_secs(),
                );
                if let Err(refusal) = needed(&row, demand.for_runner(&config, &row)) {
                    return Ok(Err(refusal));
                }
                if !store::mark_ticket_redeemed(&tx, &name, now_secs())? {
                    return Ok(Err(refuse(
                        RefusalCode::TicketUsed,
                        "the ticket was already redeemed",
                    )));
                }
                tx.commit()?;
                Ok(Ok(row))
            })
            .await
            .map_err(db_unavailable)?
    }
}

/// Every address of `names` (literal addresses as they are). A name that does not resolve
/// adds nothing: the credential then has to match another.
async fn resolve(names: &[String]) -> Vec<IpAddr> {
    let mut ips = Vec::new();
    for name in names {
        if let Ok(ip) = name.parse::<IpAddr>() {
            ips.push(ip);
            continue;
        }
        match tokio::time::timeout(RESOLVE_TIMEOUT, tokio::net::lookup_host((name.as_str(), 0)))
            .await
        {
            Ok(Ok(addrs)) => ips.extend(addrs.map(|a| a.ip())),
            Ok(Err(e)) => tracing::debug!(name = %name, error = %e, "cannot resolve node name"),
            Err(_) => tracing::debug!(name = %name, "resolving node name timed out"),
        }
    }
    ips.sort();
    ips.dedup();
    ips
}

/// Mint the claimed runner's JIT config, record the registration and seal the config for
/// root, bound to the job `job_id` and the runner's ticket. A failed or timed-out mint may still have registered the runner: with the ticket
/// marked and no runner id, the control loop looks it up by name when the job ends.
async fn mint_and_seal(
    state: &RedeemState,
    claimed: RunnerRow,
    job_id: Option<u32>,
) -> Result<String, Refusal> {
    let Some(scope) = Scope::from_key(&claimed.scope) else {
        return Err(refuse(
            RefusalCode::GithubUnavailable,
            format!("runner {} has an unknown scope", claimed.name),
        ));
    };
    let Some(pool) = state.config.pools.iter().find(|p| p.name == claimed.pool) else {
        return Err(refuse(
            RefusalCode::NotNeeded,
            format!("pool {} is no longer configured", claimed.pool),
        ));
    };
    let minted = tokio::time::timeout(
        GITHUB_BUDGET,
        state
            .registrations
            .mint(&scope, &claimed.name, &pool.labels, claimed.scale_set_id),
    )
    .await;
    let failure = match minted {
        Ok(Ok(minted)) => {
            let (n, id) = (claimed.name.clone(), minted.runner_id);
            if let Err(e) = state
                .db
                .call(move |c| store::set_runner_id(c, &n, id))
                .await
            {
                // Found by name when it matters (its job's end, hygiene).
                tracing::error!(runner = %claimed.name, error = %e, "cannot record registration");
            }
            tracing::info!(runner = %claimed.name, runner_id = id, "runner registered at ticket redemption");
            return seal(state, &claimed, job_id, minted.encoded_jit_config).await;
        }
        Ok(Err(MintError::NameTaken)) => "failed: the runner name is already registered".into(),
        Ok(Err(MintError::Other(e))) => format!("failed: {e}"),
        Err(_) => format!("gave no answer within {} s", GITHUB_BUDGET.as_secs()),
    };
    let message = format!("generate-jitconfig {failure}");
    // The ticket is spent and the job gets no config: it ends unredeemed in effect. Counted
    // here unless its end was recorded first (which counted it: no refusal was on record).
    let (n, recorded) = (
        claimed.name.clone(),
        format!("{REDEMPTION_ERROR_PREFIX}{message}"),
    );
    match state
        .db
        .call(move |c| store::record_redemption_failure(c, &n, &recorded))
        .await
    {
        Ok(true) => {
            state.metrics.tickets_unredeemed.inc();
        }
        Ok(false) => {}
        Err(e) => tracing::error!(runner = %claimed.name, error = %e, "cannot record the refusal"),
    }
    Err(refuse(RefusalCode::GithubUnavailable, message))
}

/// The JIT config in a MUNGE credential only root can open, bound to the runner's Slurm job
/// and ticket ([`SealedAnswer`]) so that the node can refuse an answer meant for another job.
/// `job_id` is the one the node asked for (the checks made sure it is the runner's job).
async fn seal(
    state: &RedeemState,
    claimed: &RunnerRow,
    job_id: Option<u32>,
    jit_config: String,
) -> Result<String, Refusal> {
    let runner = claimed.name.as_str();
    let binding = job_id.zip(claimed.ticket_hash.clone());
    let Some((job_id, ticket_sha256)) = binding else {
        tracing::error!(
            runner,
            "cannot seal the JIT config: no Slurm job or ticket recorded"
        );
        return Err(refuse(
            RefusalCode::DatabaseUnavailable,
            "the runner's job or ticket is not recorded",
        ));
    };
    let payload = SealedAnswer {
        job_id,
        ticket_sha256,
        jit_config,
    };
    munge::encode_payload(
        state.config.munge_socket.as_deref(),
        payload.to_json().as_bytes(),
        Some(0),
    )
    .await
    .map_err(|e| {
        tracing::error!(runner, error = %e, "cannot seal the JIT config");
        refuse(
            RefusalCode::MungeUnavailable,
            "cannot create a MUNGE credential right now",
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn literal_addresses_resolve_to_themselves() {
        let ips = resolve(&["127.0.0.1".into(), "localhost".into()]).await;
        assert!(ips.contains(&"127.0.0.1".parse().unwrap()), "{ips:?}");
    }

    #[tokio::test]
    async fn refusals_answer_with_the_contracts_status_and_body() {
        for code in RefusalCode::ALL {
            let response = refuse(code, "why").into_response();
            assert_eq!(response.status().as_u16(), code.http_status(), "{code}");
            let body = axum::body::to_bytes(response.into_body(), 1024)
                .await
                .unwrap();
            let body: RefusalBody = serde_json::from_slice(&body).unwrap();
            assert_eq!((body.code(), body.message.as_str()), (Some(code), "why"));
        }
    }
}
