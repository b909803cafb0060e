//! `GET /status`: the document and the table `gha-dispatcher status` prints from it.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::config::Config;
use crate::model::{now_secs, JobStatus, RunnerRow};
use crate::scale::pools;
use crate::scale_sets::{ScaleSetStatus, ScaleSets};
use crate::store::{self, Db, DbError};
use crate::telemetry::SharedStatus;

/// What `/status` needs (an `axum` sub-state).
#[derive(Clone)]
pub struct StatusState {
    pub config: Arc<Config>,
    pub db: Db,
    pub shared: Arc<Mutex<SharedStatus>>,
    /// `/status` is for the admin: this token, or root's MUNGE credential.
    pub admin_token: Option<Arc<String>>,
    pub scale_sets: ScaleSets,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PoolStatus {
    pub name: String,
    pub labels: Vec<String>,
    pub max_runners: u32,
    pub queued_jobs: usize,
    pub runners: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunnerStatus {
    pub name: String,
    pub pool: String,
    pub scope: String,
    pub state: String,
    pub slurm_job_id: Option<u64>,
    pub slurm_state: Option<String>,
    pub github_runner_id: Option<u64>,
    pub online: bool,
    pub busy: bool,
    pub job_id: Option<u64>,
    pub last_error: Option<String>,
    /// The GitHub job it ran (accounting), once it took one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ran_job: Option<String>,
    /// Ticket runners: "waiting" (for its node to redeem it), "redeemed" or "expired";
    /// absent for a runner whose JIT config went inline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket: Option<String>,
}

/// Where a runner's ticket stands, for `/status`.
pub fn ticket_state(row: &RunnerRow, now: i64) -> Option<&'static str> {
    row.ticket_hash.as_ref()?;
    Some(match (row.ticket_redeemed_at, row.ticket_expires_at) {
        (Some(_), _) => "redeemed",
        (None, Some(at)) if now < at => "waiting",
        (None, _) => "expired",
    })
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub pools: Vec<PoolStatus>,
    pub runners: Vec<RunnerStatus>,
    pub jobs_queued_not_ours: usize,
    /// Listener targets' scale sets: session state and latest statistics.
    #[serde(default)]
    pub scale_sets: Vec<ScaleSetStatus>,
    #[serde(flatten)]
    pub shared: SharedStatus,
}

pub async fn build(app: &StatusState) -> Result<Status, DbError> {
    let (queued, live, recent) = app
        .db
        .call(|c| {
            Ok((
                store::jobs_with_status(c, JobStatus::Queued)?,
                store::live_runners(c)?,
                store::recent_runners(c, 50)?,
            ))
        })
        .await?;
    let mut per_pool: BTreeMap<&str, usize> = BTreeMap::new();
    let mut not_ours = 0;
    for job in &queued {
        let pool = app
            .config
            .github
            .scope_for_repo(&job.repo)
            .and_then(|_| pools::select(&app.config.pools, &job.labels));
        match pool {
            Some(p) if job.runner_name.is_none() => {
                *per_pool.entry(p.name.as_str()).or_default() += 1
            }
            Some(_) => {}
            None => not_ours += 1,
        }
    }
    for set in app.scale_sets.waiting() {
        if let Some(p) = app.config.pools.iter().find(|p| p.name == set.pool) {
            *per_pool.entry(p.name.as_str()).or_default() += set.waiting;
        }
    }
    let pools = app
        .config
        .pools
        .iter()
        .map(|p| PoolStatus {
            name: p.name.clone(),
            labels: p.labels.clone(),
            max_runners: p.max_runners,
            queued_jobs: per_pool.get(p.name.as_str()).copied().unwrap_or(0),
            runners: live.iter().filter(|r| r.pool == p.name).count(),
        })
        .collect();
    let now = now_secs();
    let mut runners: Vec<RunnerStatus> = live
        .iter()
        .chain(recent.iter().filter(|r| r.state.is_final()))
        .map(|r| RunnerStatus {
            name: r.name.clone(),
            pool: r.pool.clone(),
            scope: r.scope.clone(),
            state: r.state.as_str().into(),
            slurm_job_id: r.slurm_job_id,
            slurm_state: r.slurm_state.map(|s| s.as_str().to_string()),
            github_runner_id: r.github_runner_id,
            online: r.online,
            busy: r.busy,
            job_id: r.assigned_job_id,
            last_error: r.last_error.clone(),
            ran_job: r.ran_job.clone(),
            ticket: ticket_state(r, now).map(str::to_string),
        })
        .collect();
    runners.dedup_by(|a, b| a.name == b.name);
    let shared = app.shared.lock().map(|s| s.clone()).unwrap_or_default();
    Ok(Status {
        pools,
        runners,
        jobs_queued_not_ours: not_ours,
        scale_sets: app.scale_sets.status(),
        shared,
    })
}

/// One line per listener scale set: its session and what it holds.
fn render_scale_sets(out: &mut String, sets: &[ScaleSetStatus]) {
    for set in sets {
        let session = serde_json::to_value(&set.session)
            .ok()
            .and_then(|v| v["state"].as_str().map(str::to_string))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "scale set {} ({} in {}): session {session}, assigned {}, running {}",
            set.scale_set_id
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            set.pool,
            set.scope,
            set.statistics.map(|s| s.total_assigned_jobs).unwrap_or(0),
            set.statistics.map(|s| s.total_running_jobs).unwrap_or(0),
        );
    }
}

/// Human-readable tables of pools and runners.
pub fn render_table(status: &Status) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<16} {:>7} {:>8} {:>5}  LABELS",
        "POOL", "QUEUED", "RUNNERS", "MAX"
    );
    for p in &status.pools {
        let _ = writeln!(
            out,
            "{:<16} {:>7} {:>8} {:>5}  {}",
            p.name,
            p.queued_jobs,
            p.runners,
            p.max_runners,
            p.labels.join(",")
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<40} {:<10} {:<11} {:>9} {:<10} {:<7} {:<5} {:>10}  TICKET",
        "RUNNER", "POOL", "STATE", "SLURM_ID", "SLURM", "ONLINE", "BUSY", "JOB"
    );
    for r in &status.runners {
        let _ = writeln!(
            out,
            "{:<40} {:<10} {:<11} {:>9} {:<10} {:<7} {:<5} {:>10}  {}",
            r.name,
            r.pool,
            r.state,
            r.slurm_job_id
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            r.slurm_state.as_deref().unwrap_or("-"),
            if r.online { "yes" } else { "no" },
            if r.busy { "yes" } else { "no" },
            r.job_id
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            r.ticket.as_deref().unwrap_or("-"),
        );
    }
    render_scale_sets(&mut out, &status.scale_sets);
    for (pool, warm) in &status.shared.warm_pools {
        let _ = writeln!(
            out,
            "\nwarm pool {pool}: {} idle of {} wanted now (min_idle {} per target, {})",
            warm.idle,
            warm.target,
            warm.min_idle,
            warm.hours.as_deref().unwrap_or("always"),
        );
    }
    if status.jobs_queued_not_ours > 0 {
        let _ = writeln!(
            out,
            "\nqueued jobs matching no pool: {}",
            status.jobs_queued_not_ours
        );
    }
    for job in &status.shared.refused_jobs {
        let _ = writeln!(
            out,
            "refused job {} of {}: {}",
            job.job_id, job.repo, job.reason
        );
    }
    for (label, value) in [
        ("last sbatch error", &status.shared.last_sbatch_error),
        ("last GitHub error", &status.shared.last_github_error),
        ("last Slurm error", &status.shared.last_slurm_error),
    ] {
        if let Some(v) = value {
            let _ = writeln!(out, "{label}: {v}");
        }
    }
    out
}
