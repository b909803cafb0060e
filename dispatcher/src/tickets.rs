//! Late-binding runner tickets: issuing them and redeeming them (`POST /tickets/redeem`).
//!
//! In ticket mode a runner's Slurm job carries `--gha-runner=ticket:<43 chars>` instead of a
//! JIT config. When the job starts, root on its node sends a MUNGE credential whose payload is
//! `{"ticket", "job_id"}`; only if every check below passes is the JIT config minted, and it
//! goes back sealed in a MUNGE credential only root can open (`--restrict-uid=0`). The
//! database keeps the ticket's sha256, never the ticket; tickets, credentials and configs are
//! never logged nor put in an error.
//!
//! The checks are pure functions over facts gathered in order (credential, database row,
//! Slurm, demand), so each refusal is tested without a cluster; the handler gathers the facts
//! and stops at the first refusal.

use std::net::IpAddr;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine;
use rand::RngCore;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::{Config, Scope};
use crate::control::{placement_key, runner_phase};
use crate::db::{self, JobRow, RunnerRow, RunnerState};
use crate::github::MintError;
use crate::munge::{self, Decoded, MungeError};
use crate::pools;
use crate::server::AppState;
use crate::slurm::JobPlacement;
use crate::usermap::Mapping;

/// Largest request body: a credential for a payload of ~100 bytes is ~300 characters.
pub const MAX_BODY_BYTES: usize = 8 * 1024;
/// Characters of a ticket: 32 random bytes, base64url without padding.
pub const TICKET_LEN: usize = 43;
/// For `squeue`, `scontrol` and name resolution together: the node's helper gives up after
/// about 20 s, and generate-jitconfig still has to fit in.
const SLURM_BUDGET: Duration = Duration::from_secs(8);
const GITHUB_BUDGET: Duration = Duration::from_secs(10);
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(3);

/// A freshly issued ticket. `Debug` never shows it.
pub struct Ticket {
    secret: String,
    hash: String,
}

impl Ticket {
    /// 32 bytes from the thread's CSPRNG (ChaCha, seeded from the OS).
    pub fn issue() -> Ticket {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        let hash = ticket_hash(&secret);
        Ticket { secret, hash }
    }

    /// What the database stores.
    pub fn hash(&self) -> &str {
        &self.hash
    }

    /// The ticket itself, for `sbatch` only.
    pub fn into_secret(self) -> String {
        self.secret
    }
}

impl std::fmt::Debug for Ticket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Ticket(<redacted>)")
    }
}

/// sha256 of the ticket's text, lowercase hex.
pub fn ticket_hash(ticket: &str) -> String {
    hex::encode(Sha256::digest(ticket.as_bytes()))
}

/// Why a redemption is refused; the `error` of the JSON answer and the metric's `result`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    TooLarge,
    BadCredential,
    NotRoot,
    BadPayload,
    UnknownTicket,
    TicketUsed,
    TicketExpired,
    WrongJob,
    JobNotRunning,
    WrongHost,
    NotNeeded,
    GithubUnavailable,
    /// munge/unmunge cannot be run: nothing was decided about the caller.
    MungeUnavailable,
    /// squeue/scontrol failed: the job could not be checked.
    SlurmUnavailable,
    DatabaseUnavailable,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::TooLarge => "too_large",
            Code::BadCredential => "bad_credential",
            Code::NotRoot => "not_root",
            Code::BadPayload => "bad_payload",
            Code::UnknownTicket => "unknown_ticket",
            Code::TicketUsed => "ticket_used",
            Code::TicketExpired => "ticket_expired",
            Code::WrongJob => "wrong_job",
            Code::JobNotRunning => "job_not_running",
            Code::WrongHost => "wrong_host",
            Code::NotNeeded => "not_needed",
            Code::GithubUnavailable => "github_unavailable",
            Code::MungeUnavailable => "munge_unavailable",
            Code::SlurmUnavailable => "slurm_unavailable",
            Code::DatabaseUnavailable => "database_unavailable",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            Code::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Code::BadCredential | Code::NotRoot | Code::WrongJob | Code::WrongHost => {
                StatusCode::FORBIDDEN
            }
            Code::BadPayload => StatusCode::BAD_REQUEST,
            Code::UnknownTicket => StatusCode::NOT_FOUND,
            Code::TicketUsed | Code::JobNotRunning => StatusCode::CONFLICT,
            Code::TicketExpired | Code::NotNeeded => StatusCode::GONE,
            Code::GithubUnavailable
            | Code::MungeUnavailable
            | Code::SlurmUnavailable
            | Code::DatabaseUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// A refused redemption: its code and a message for the node's job output (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: Code,
    pub message: String,
}

fn refuse(code: Code, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.code.status(),
            Json(serde_json::json!({ "error": self.code.as_str(), "message": self.message })),
        )
            .into_response()
    }
}

/// The credential's payload. `Debug` never shows the ticket.
#[derive(Deserialize)]
pub struct RedeemRequest {
    pub ticket: String,
    pub job_id: u32,
}

impl std::fmt::Debug for RedeemRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedeemRequest")
            .field("ticket", &"<redacted>")
            .field("job_id", &self.job_id)
            .finish()
    }
}

/// Only root on a node may redeem, and only a well-formed request.
pub fn check_credential(decoded: &Decoded) -> Result<RedeemRequest, Refusal> {
    if decoded.uid != 0 {
        return Err(refuse(
            Code::NotRoot,
            format!(
                "the MUNGE credential was made by uid {}, not root",
                decoded.uid
            ),
        ));
    }
    let bad = || {
        refuse(
            Code::BadPayload,
            "the credential's payload is not {\"ticket\": string, \"job_id\": u32}",
        )
    };
    // Through a Value: serde would also take a struct from an array (`["T", 42]`).
    match serde_json::from_slice::<serde_json::Value>(&decoded.payload) {
        Ok(value) if value.is_object() => serde_json::from_value(value).map_err(|_| bad()),
        _ => Err(bad()),
    }
}

/// The runner row the ticket belongs to: known, unused, unexpired, for this Slurm job.
/// A row whose sbatch is not recorded yet (the job started within moments of being
/// submitted) is matched by its job's name in [`check_job`] instead.
pub fn check_ticket(
    row: Option<RunnerRow>,
    req: &RedeemRequest,
    now: i64,
) -> Result<RunnerRow, Refusal> {
    let Some(row) = row else {
        return Err(refuse(Code::UnknownTicket, "no runner holds this ticket"));
    };
    if row.ticket_redeemed_at.is_some() {
        return Err(refuse(
            Code::TicketUsed,
            format!("the ticket of runner {} was already redeemed", row.name),
        ));
    }
    if row.ticket_expires_at.is_none_or(|at| now >= at) {
        return Err(refuse(
            Code::TicketExpired,
            format!("the ticket of runner {} has expired", row.name),
        ));
    }
    if let Some(id) = row.slurm_job_id.filter(|id| *id != u64::from(req.job_id)) {
        return Err(refuse(
            Code::WrongJob,
            format!("the ticket belongs to Slurm job {id}, not {}", req.job_id),
        ));
    }
    Ok(row)
}

/// The job must be running now; the node running its batch script is returned.
pub fn check_job<'a>(
    row: &RunnerRow,
    req: &RedeemRequest,
    job: Option<&'a JobPlacement>,
) -> Result<&'a str, Refusal> {
    let not_running = |state: &str| {
        refuse(
            Code::JobNotRunning,
            format!("Slurm job {} is {state}, not running", req.job_id),
        )
    };
    let Some(job) = job else {
        return Err(not_running("unknown to Slurm"));
    };
    if row.slurm_job_id.is_none() && job.name != row.name {
        return Err(refuse(
            Code::WrongJob,
            format!("Slurm job {} is not runner {}'s job", req.job_id, row.name),
        ));
    }
    if !job.is_running() {
        return Err(not_running(&job.state));
    }
    job.node.as_deref().ok_or_else(|| {
        refuse(
            Code::WrongHost,
            format!("Slurm job {} has no single node", req.job_id),
        )
    })
}

/// The credential must come from the job's node.
pub fn check_host(
    encode_host: Option<IpAddr>,
    node: &str,
    node_ips: &[IpAddr],
) -> Result<(), Refusal> {
    match encode_host {
        Some(ip)
            if node_ips
                .iter()
                .any(|n| n.to_canonical() == ip.to_canonical()) =>
        {
            Ok(())
        }
        Some(ip) => Err(refuse(
            Code::WrongHost,
            format!("the credential comes from {ip}, not from node {node}"),
        )),
        None => Err(refuse(
            Code::WrongHost,
            "the credential names no encoding host",
        )),
    }
}

/// Demand for a runner like the one redeeming: its pool and placement (scope, user, account).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Demand {
    /// Unassigned queued jobs.
    pub queued: usize,
    /// Other live runners that already hold a registration (redeemed ticket or inline) and
    /// are spare (not busy, not being cancelled).
    pub others_ready: usize,
}

/// The runner is still wanted: not being cancelled or over, and its jobs not all covered.
pub fn check_needed(row: &RunnerRow, demand: Demand) -> Result<(), Refusal> {
    if row.state == RunnerState::Cancelling || row.state.is_final() {
        return Err(refuse(
            Code::NotNeeded,
            format!("runner {} is {}", row.name, row.state.as_str()),
        ));
    }
    if demand.queued <= demand.others_ready {
        return Err(refuse(
            Code::NotNeeded,
            format!(
                "no job needs runner {}: {} queued, {} other runners ready",
                row.name, demand.queued, demand.others_ready
            ),
        ));
    }
    Ok(())
}

/// Count demand and ready supply for `row`'s pool and placement, as the scaler groups them.
pub fn demand_for(
    config: &Config,
    row: &RunnerRow,
    queued: &[JobRow],
    live: &[RunnerRow],
    mapping: &Mapping,
) -> Demand {
    let key = placement_key(config, row);
    let queued = queued
        .iter()
        .filter(|j| j.runner_name.is_none())
        .filter(|j| pools::select(&config.pools, &j.labels).is_some_and(|p| p.name == row.pool))
        .filter(|j| matches!(mapping.place(config, &j.repo), Ok(Some(p)) if p.key() == key))
        .count();
    let others_ready = live
        .iter()
        .filter(|r| r.name != row.name && r.pool == row.pool && !r.state.is_final())
        .filter(|r| placement_key(config, r) == key)
        .filter(|r| match r.ticket_hash {
            Some(_) => r.ticket_redeemed_at.is_some(),
            None => r.github_runner_id.is_some(),
        })
        .filter(|r| runner_phase(r).is_spare())
        .count();
    Demand {
        queued,
        others_ready,
    }
}

/// What a log line about a redemption may say: never the ticket.
#[derive(Default)]
struct Context {
    runner: Option<String>,
    job_id: Option<u32>,
}

/// `POST /tickets/redeem`: body = a MUNGE credential (text). 200 = a MUNGE credential,
/// decodable by root only, whose payload is the runner's JIT config; else JSON
/// `{"error", "message"}`.
pub async fn redeem(State(app): State<AppState>, body: Result<Bytes, BytesRejection>) -> Response {
    let mut ctx = Context::default();
    let result = redeem_inner(&app, body, &mut ctx).await;
    let runner = ctx.runner.as_deref().unwrap_or("-");
    let job = ctx
        .job_id
        .map(|j| j.to_string())
        .unwrap_or_else(|| "-".into());
    match result {
        Ok(sealed) => {
            app.metrics.ticket_redemption("ok");
            tracing::info!(runner, slurm_job = %job, "ticket redeemed");
            (
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                sealed,
            )
                .into_response()
        }
        Err(refusal) => {
            app.metrics.ticket_redemption(refusal.code.as_str());
            tracing::warn!(runner, slurm_job = %job, error = refusal.code.as_str(), message = %refusal.message, "ticket refused");
            refusal.into_response()
        }
    }
}

async fn redeem_inner(
    app: &AppState,
    body: Result<Bytes, BytesRejection>,
    ctx: &mut Context,
) -> Result<String, Refusal> {
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => refuse(
            Code::TooLarge,
            format!("the body is over {MAX_BODY_BYTES} bytes"),
        ),
        _ => refuse(Code::BadCredential, "cannot read the body"),
    })?;
    let text = std::str::from_utf8(&body)
        .map_err(|_| refuse(Code::BadCredential, "not a MUNGE credential"))?;
    let socket = app.config.munge_socket.as_deref();
    let decoded = munge::decode(socket, text).await.map_err(|e| match e {
        MungeError::Malformed | MungeError::Refused(_) => {
            refuse(Code::BadCredential, e.to_string())
        }
        other => {
            tracing::error!(error = %other, "cannot check a MUNGE credential");
            refuse(
                Code::MungeUnavailable,
                "cannot check MUNGE credentials right now",
            )
        }
    })?;
    let req = check_credential(&decoded)?;
    ctx.job_id = Some(req.job_id);

    let hash = ticket_hash(&req.ticket);
    let row = app
        .db
        .call(move |c| db::runner_by_ticket_hash(c, &hash))
        .await
        .map_err(db_unavailable)?;
    if let Some(r) = &row {
        ctx.runner = Some(r.name.clone());
    }
    let row = check_ticket(row, &req, db::now_secs())?;

    let (node, node_ips) = tokio::time::timeout(SLURM_BUDGET, job_node(app, &row, &req))
        .await
        .map_err(|_| {
            refuse(
                Code::SlurmUnavailable,
                format!("Slurm gave no answer within {} s", SLURM_BUDGET.as_secs()),
            )
        })??;
    check_host(decoded.encode_host, &node, &node_ips)?;

    // From the single-use mark on, the work must finish even if the node hangs up, so that a
    // minted registration is recorded (or found by name once its job ends).
    let app = app.clone();
    tokio::spawn(async move { claim_and_mint(&app, row).await })
        .await
        .map_err(|e| {
            tracing::error!(error = %e, "ticket redemption task failed");
            refuse(
                Code::DatabaseUnavailable,
                "redemption failed inside the dispatcher",
            )
        })?
}

/// Slurm's view of the job: the node it runs on and that node's addresses.
async fn job_node(
    app: &AppState,
    row: &RunnerRow,
    req: &RedeemRequest,
) -> Result<(String, Vec<IpAddr>), Refusal> {
    let unavailable = |e: crate::slurm::SlurmError| {
        tracing::warn!(error = %e, "Slurm query for a ticket redemption failed");
        refuse(Code::SlurmUnavailable, format!("cannot ask Slurm: {e}"))
    };
    let job = app
        .slurm
        .job(u64::from(req.job_id))
        .await
        .map_err(unavailable)?;
    let node = check_job(row, req, job.as_ref())?.to_string();
    let names = app.slurm.node_addresses(&node).await.map_err(unavailable)?;
    Ok((node, resolve(&names).await))
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

/// Under the database lock: re-check the row, check demand, mark the ticket used. Then mint
/// the JIT config, record the registration and seal the config for root.
async fn claim_and_mint(app: &AppState, row: RunnerRow) -> Result<String, Refusal> {
    let config = app.config.clone();
    let name = row.name.clone();
    let claimed = app
        .db
        .call(move |c| {
            let tx = c.transaction()?;
            let Some(row) = db::runner(&tx, &name)? else {
                return Ok(Err(refuse(
                    Code::UnknownTicket,
                    "no runner holds this ticket",
                )));
            };
            if row.ticket_redeemed_at.is_some() {
                return Ok(Err(refuse(
                    Code::TicketUsed,
                    format!("the ticket of runner {} was already redeemed", row.name),
                )));
            }
            let demand = demand_for(
                &config,
                &row,
                &db::jobs_with_status(&tx, "queued")?,
                &db::live_runners(&tx)?,
                &Mapping::new(db::repo_users(&tx)?),
            );
            if let Err(refusal) = check_needed(&row, demand) {
                return Ok(Err(refusal));
            }
            if !db::mark_ticket_redeemed(&tx, &name, db::now_secs())? {
                return Ok(Err(refuse(
                    Code::TicketUsed,
                    "the ticket was already redeemed",
                )));
            }
            tx.commit()?;
            Ok(Ok(row))
        })
        .await
        .map_err(db_unavailable)??;

    let Some(scope) = Scope::from_key(&claimed.scope) else {
        return Err(refuse(
            Code::GithubUnavailable,
            format!("runner {} has an unknown scope", claimed.name),
        ));
    };
    let Some(pool) = app.config.pools.iter().find(|p| p.name == claimed.pool) else {
        return Err(refuse(
            Code::NotNeeded,
            format!("pool {} is no longer configured", claimed.pool),
        ));
    };
    let minted = tokio::time::timeout(
        GITHUB_BUDGET,
        app.github.generate_jitconfig(
            &scope,
            &claimed.name,
            &pool.labels,
            app.config.github.runner_group_id,
        ),
    )
    .await;
    // A failed or timed-out call may still have registered the runner: with the ticket
    // marked and no runner id, the control loop looks it up by name when the job ends.
    let minted = match minted {
        Ok(Ok(m)) => m,
        Ok(Err(e)) => {
            let message = match e {
                MintError::NameTaken => "the runner name is already registered".to_string(),
                MintError::Other(e) => e.to_string(),
            };
            record_error(
                app,
                &claimed.name,
                format!("redemption: generate-jitconfig failed: {message}"),
            )
            .await;
            return Err(refuse(
                Code::GithubUnavailable,
                format!("generate-jitconfig failed: {message}"),
            ));
        }
        Err(_) => {
            record_error(
                app,
                &claimed.name,
                "redemption: generate-jitconfig timed out".into(),
            )
            .await;
            return Err(refuse(
                Code::GithubUnavailable,
                format!(
                    "generate-jitconfig gave no answer within {} s",
                    GITHUB_BUDGET.as_secs()
                ),
            ));
        }
    };
    let (n, id) = (claimed.name.clone(), minted.runner_id);
    if let Err(e) = app.db.call(move |c| db::set_runner_id(c, &n, id)).await {
        // Found by name when it matters (its job's end, hygiene).
        tracing::error!(runner = %claimed.name, error = %e, "cannot record registration");
    }
    tracing::info!(runner = %claimed.name, runner_id = id, "runner registered at ticket redemption");
    munge::encode_payload(
        app.config.munge_socket.as_deref(),
        minted.encoded_jit_config.as_bytes(),
        Some(0),
    )
    .await
    .map_err(|e| {
        tracing::error!(runner = %claimed.name, error = %e, "cannot seal the JIT config");
        refuse(
            Code::MungeUnavailable,
            "cannot create a MUNGE credential right now",
        )
    })
}

async fn record_error(app: &AppState, name: &str, message: String) {
    let name = name.to_string();
    if let Err(e) = app
        .db
        .call(move |c| db::set_runner_error(c, &name, &message))
        .await
    {
        tracing::error!(error = %e, "cannot record runner error");
    }
}

fn db_unavailable(e: db::DbError) -> Refusal {
    tracing::error!(error = %e, "database error during a ticket redemption");
    refuse(
        Code::DatabaseUnavailable,
        "the dispatcher's database is unavailable",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_000_000;

    fn row(name: &str) -> RunnerRow {
        RunnerRow {
            name: name.into(),
            pool: "cpu".into(),
            scope: "org:acme".into(),
            state: RunnerState::Submitted,
            for_job_id: Some(1),
            github_runner_id: None,
            slurm_job_id: Some(42),
            slurm_state: Some("RUNNING".into()),
            online: false,
            ever_online: false,
            busy: false,
            assigned_job_id: None,
            last_error: None,
            created_at: 0,
            submitted_at: Some(0),
            slurm_started_at: Some(0),
            finished_at: None,
            run_as: None,
            account: None,
            ticket_hash: Some("h".into()),
            ticket_expires_at: Some(NOW + 60),
            ticket_redeemed_at: None,
        }
    }

    fn decoded(uid: u32, payload: &str) -> Decoded {
        Decoded {
            uid,
            encode_host: Some("10.0.0.7".parse().unwrap()),
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn job(state: &str) -> JobPlacement {
        JobPlacement {
            job_id: 42,
            name: "r".into(),
            state: state.into(),
            node: Some("node7".into()),
        }
    }

    const GOOD_PAYLOAD: &str = r#"{"ticket":"T","job_id":42}"#;

    /// Every fact a redemption looks at, as the handler gathers them.
    struct Facts {
        decoded: Decoded,
        row: Option<RunnerRow>,
        job: Option<JobPlacement>,
        node_ips: Vec<IpAddr>,
        demand: Demand,
    }

    fn good() -> Facts {
        Facts {
            decoded: decoded(0, GOOD_PAYLOAD),
            row: Some(row("r")),
            job: Some(job("RUNNING")),
            node_ips: vec!["10.0.0.7".parse().unwrap()],
            demand: Demand {
                queued: 1,
                others_ready: 0,
            },
        }
    }

    /// The handler's order, over facts gathered up front.
    fn decide(f: Facts) -> Result<(), Code> {
        let run = || -> Result<(), Refusal> {
            let req = check_credential(&f.decoded)?;
            let row = check_ticket(f.row.clone(), &req, NOW)?;
            let node = check_job(&row, &req, f.job.as_ref())?;
            check_host(f.decoded.encode_host, node, &f.node_ips)?;
            check_needed(&row, f.demand)
        };
        run().map_err(|r| r.code)
    }

    #[test]
    fn every_refusal_in_the_contract_order() {
        assert_eq!(decide(good()), Ok(()));
        // Each case breaks one fact, and everything checked after it too: the earlier
        // check must win.
        let all_broken = || Facts {
            decoded: Decoded {
                encode_host: Some("10.9.9.9".parse().unwrap()),
                ..decoded(1000, "not json")
            },
            row: Some(RunnerRow {
                ticket_redeemed_at: Some(NOW - 5),
                ticket_expires_at: Some(NOW - 1),
                slurm_job_id: Some(41),
                state: RunnerState::Cancelling,
                ..row("r")
            }),
            job: Some(job("PENDING")),
            node_ips: vec![],
            demand: Demand {
                queued: 0,
                others_ready: 3,
            },
        };
        let mut f = all_broken();
        assert_eq!(decide(f), Err(Code::NotRoot));
        f = all_broken();
        f.decoded.uid = 0;
        assert_eq!(decide(f), Err(Code::BadPayload));
        f = all_broken();
        f.decoded = Decoded {
            encode_host: Some("10.9.9.9".parse().unwrap()),
            ..decoded(0, GOOD_PAYLOAD)
        };
        let fix_credential = f.decoded.payload.clone();
        f.row = None;
        assert_eq!(decide(f), Err(Code::UnknownTicket));
        let with_credential = || {
            let mut f = all_broken();
            f.decoded.uid = 0;
            f.decoded.payload = fix_credential.clone();
            f
        };
        assert_eq!(decide(with_credential()), Err(Code::TicketUsed));
        let mut f = with_credential();
        f.row.as_mut().unwrap().ticket_redeemed_at = None;
        assert_eq!(decide(f), Err(Code::TicketExpired));
        let with_ticket = || {
            let mut f = with_credential();
            let r = f.row.as_mut().unwrap();
            r.ticket_redeemed_at = None;
            r.ticket_expires_at = Some(NOW + 1);
            f
        };
        assert_eq!(decide(with_ticket()), Err(Code::WrongJob));
        let with_job_id = || {
            let mut f = with_ticket();
            f.row.as_mut().unwrap().slurm_job_id = Some(42);
            f
        };
        assert_eq!(decide(with_job_id()), Err(Code::JobNotRunning));
        let mut f = with_job_id();
        f.job = None;
        assert_eq!(decide(f), Err(Code::JobNotRunning));
        let with_running = || {
            let mut f = with_job_id();
            f.job = Some(job("RUNNING"));
            f
        };
        assert_eq!(decide(with_running()), Err(Code::WrongHost));
        let with_host = || {
            let mut f = with_running();
            f.node_ips = vec!["10.9.9.9".parse().unwrap()];
            f
        };
        // The row is being cancelled: not needed whatever the demand.
        let mut f = with_host();
        f.demand = Demand {
            queued: 5,
            others_ready: 0,
        };
        assert_eq!(decide(f), Err(Code::NotNeeded));
        let mut f = with_host();
        f.row.as_mut().unwrap().state = RunnerState::Submitted;
        assert_eq!(decide(f), Err(Code::NotNeeded));
        let mut f = with_host();
        f.row.as_mut().unwrap().state = RunnerState::Submitted;
        f.demand = Demand {
            queued: 4,
            others_ready: 3,
        };
        assert_eq!(decide(f), Ok(()));
    }

    #[test]
    fn credential_checks() {
        assert_eq!(
            check_credential(&decoded(1000, GOOD_PAYLOAD))
                .unwrap_err()
                .code,
            Code::NotRoot
        );
        let req = check_credential(&decoded(0, &format!("{GOOD_PAYLOAD}\n"))).unwrap();
        assert_eq!((req.ticket.as_str(), req.job_id), ("T", 42));
        assert!(!format!("{req:?}").contains("\"T\""));
        for bad in [
            "",
            "null",
            r#"{"ticket":"T"}"#,
            r#"{"job_id":42}"#,
            r#"{"ticket":1,"job_id":42}"#,
            r#"{"ticket":"T","job_id":-1}"#,
            r#"{"ticket":"T","job_id":4294967296}"#,
            r#"{"ticket":"T","job_id":"42"}"#,
            r#"["T",42]"#,
        ] {
            assert_eq!(
                check_credential(&decoded(0, bad)).unwrap_err().code,
                Code::BadPayload,
                "{bad}"
            );
        }
    }

    #[test]
    fn ticket_and_job_checks() {
        let req = RedeemRequest {
            ticket: "T".into(),
            job_id: 42,
        };
        assert_eq!(check_ticket(Some(row("r")), &req, NOW).unwrap().name, "r");
        let expired = RunnerRow {
            ticket_expires_at: Some(NOW),
            ..row("r")
        };
        assert_eq!(
            check_ticket(Some(expired), &req, NOW).unwrap_err().code,
            Code::TicketExpired
        );
        // sbatch answered but its job id is not recorded yet: the job's name decides.
        let unrecorded = RunnerRow {
            slurm_job_id: None,
            state: RunnerState::Submitting,
            ..row("r")
        };
        let unrecorded = check_ticket(Some(unrecorded), &req, NOW).unwrap();
        assert_eq!(
            check_job(&unrecorded, &req, Some(&job("RUNNING"))),
            Ok("node7")
        );
        let other = JobPlacement {
            name: "someone-else".into(),
            ..job("RUNNING")
        };
        assert_eq!(
            check_job(&unrecorded, &req, Some(&other)).unwrap_err().code,
            Code::WrongJob
        );
        assert_eq!(
            check_job(&row("r"), &req, Some(&job("CONFIGURING"))),
            Ok("node7")
        );
        for state in [
            "PENDING",
            "COMPLETING",
            "COMPLETED",
            "CANCELLED",
            "SUSPENDED",
        ] {
            assert_eq!(
                check_job(&row("r"), &req, Some(&job(state)))
                    .unwrap_err()
                    .code,
                Code::JobNotRunning,
                "{state}"
            );
        }
        let nowhere = JobPlacement {
            node: None,
            ..job("RUNNING")
        };
        assert_eq!(
            check_job(&row("r"), &req, Some(&nowhere)).unwrap_err().code,
            Code::WrongHost
        );
    }

    #[test]
    fn host_check_compares_addresses() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert!(check_host(Some("127.0.0.1".parse().unwrap()), "n", &ips).is_ok());
        assert!(check_host(Some("::ffff:127.0.0.1".parse().unwrap()), "n", &ips).is_ok());
        let e = check_host(Some("10.0.0.1".parse().unwrap()), "n", &ips).unwrap_err();
        assert_eq!(e.code, Code::WrongHost);
        assert!(e.message.contains("10.0.0.1") && e.message.contains('n'));
        assert_eq!(
            check_host(None, "n", &ips).unwrap_err().code,
            Code::WrongHost
        );
        assert_eq!(
            check_host(Some("127.0.0.1".parse().unwrap()), "n", &[])
                .unwrap_err()
                .code,
            Code::WrongHost
        );
    }

    #[tokio::test]
    async fn literal_addresses_resolve_to_themselves() {
        let ips = resolve(&["127.0.0.1".into(), "localhost".into()]).await;
        assert!(ips.contains(&"127.0.0.1".parse().unwrap()), "{ips:?}");
    }

    fn config() -> Config {
        Config::parse(
            r#"
[server]
listen = "127.0.0.1:0"
webhook_secret_file = "/x"
[github]
token_file = "/x"
targets = [{ org = "acme" }]
[slurm]
job_script = "/x"
user = "svc"
[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 10
[[pools]]
name = "gpu"
labels = ["gpu"]
priority = 5
max_runners = 10
"#,
        )
        .unwrap()
    }

    fn queued(job_id: u64, repo: &str, labels: &[&str]) -> JobRow {
        JobRow {
            job_id,
            run_id: 1,
            repo: repo.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            status: "queued".into(),
            runner_name: None,
            queued_ms: Some(0),
        }
    }

    #[test]
    fn demand_counts_the_same_pool_and_placement_only() {
        let config = config();
        let mapping = Mapping::new(vec![db::RepoUser {
            repo_key: "acme/private".into(),
            unix_user: "alice".into(),
            account: None,
        }]);
        let me = row("me");
        let jobs = vec![
            queued(1, "acme/widgets", &["linux"]),
            queued(2, "acme/widgets", &["linux"]),
            queued(3, "acme/widgets", &["gpu"]),   // another pool
            queued(4, "acme/private", &["linux"]), // another placement
            JobRow {
                runner_name: Some("x".into()),
                ..queued(5, "acme/widgets", &["linux"])
            },
        ];
        // Mapping a repository of the org registers its jobs' runners on the repository.
        let widgets_scope = "repo:acme/widgets";
        let me = RunnerRow {
            scope: widgets_scope.into(),
            ..me
        };
        let peer = |name: &str| RunnerRow {
            scope: widgets_scope.into(),
            ..row(name)
        };
        let live = vec![
            me.clone(),
            // Redeemed and starting: ready.
            RunnerRow {
                ticket_redeemed_at: Some(NOW),
                ..peer("redeemed")
            },
            // Inline with a registration, idle: ready.
            RunnerRow {
                ticket_hash: None,
                github_runner_id: Some(9),
                online: true,
                ever_online: true,
                ..peer("inline")
            },
            // Not redeemed yet: no registration.
            peer("waiting"),
            // Busy: not spare.
            RunnerRow {
                ticket_redeemed_at: Some(NOW),
                busy: true,
                ..peer("busy")
            },
            // Another pool.
            RunnerRow {
                pool: "gpu".into(),
                ticket_redeemed_at: Some(NOW),
                ..peer("gpu")
            },
            // Another placement (the org scope).
            RunnerRow {
                ticket_redeemed_at: Some(NOW),
                ..row("org-scope")
            },
            // Being cancelled.
            RunnerRow {
                ticket_redeemed_at: Some(NOW),
                state: RunnerState::Cancelling,
                ..peer("cancelling")
            },
        ];
        assert_eq!(
            demand_for(&config, &me, &jobs, &live, &mapping),
            Demand {
                queued: 2,
                others_ready: 2
            }
        );
    }

    #[test]
    fn tickets_are_random_base64url_and_stored_hashed() {
        let a = Ticket::issue();
        let b = Ticket::issue();
        assert_ne!(a.hash(), b.hash());
        assert_eq!(format!("{a:?}"), "Ticket(<redacted>)");
        let hash = a.hash().to_string();
        let secret = a.into_secret();
        assert_eq!(secret.len(), TICKET_LEN);
        assert!(secret
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_eq!(hash, ticket_hash(&secret));
        assert_eq!(hash.len(), 64);
        assert!(hash.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')));
        assert_eq!(
            ticket_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn codes_and_statuses_follow_the_contract() {
        for (code, status, text) in [
            (Code::TooLarge, 413, "too_large"),
            (Code::BadCredential, 403, "bad_credential"),
            (Code::NotRoot, 403, "not_root"),
            (Code::BadPayload, 400, "bad_payload"),
            (Code::UnknownTicket, 404, "unknown_ticket"),
            (Code::TicketUsed, 409, "ticket_used"),
            (Code::TicketExpired, 410, "ticket_expired"),
            (Code::WrongJob, 403, "wrong_job"),
            (Code::JobNotRunning, 409, "job_not_running"),
            (Code::WrongHost, 403, "wrong_host"),
            (Code::NotNeeded, 410, "not_needed"),
            (Code::GithubUnavailable, 503, "github_unavailable"),
        ] {
            assert_eq!((code.status().as_u16(), code.as_str()), (status, text));
        }
    }
}
