//! The `jobs` table: GitHub jobs we heard of, their furthest status and when they were
//! queued and started.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::conversion;
use crate::model::{now_millis, JobRow, JobStatus, JobUpdate};

/// What applying a job update changed, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobTransition {
    /// Seconds from first seen queued to first seen in progress, when this update started it.
    pub queue_to_start_secs: Option<f64>,
    /// The update completed a job on one of our runners, which is now finished.
    pub runner_finished: bool,
}

/// Insert or advance a job; its status never moves backwards.
pub fn apply_job_update(conn: &Connection, u: &JobUpdate) -> rusqlite::Result<JobTransition> {
    let now = now_millis();
    let rank = u.status.rank();
    let labels = serde_json::to_string(&u.labels).unwrap_or_else(|_| "[]".into());
    let existing: Option<(i64, Option<i64>, Option<i64>)> = conn
        .query_row(
            "SELECT status_rank, queued_ms, started_ms FROM jobs WHERE job_id = ?1",
            params![u.job_id as i64],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let mut transition = JobTransition::default();
    // GitHub's own timestamps measure queue-to-start even when deliveries arrive out of order.
    let github_wait = match (u.created_at, u.started_at) {
        (Some(created), Some(started)) if started >= created => Some((started - created) as f64),
        _ => None,
    };
    match existing {
        None => {
            if rank >= 2 {
                transition.queue_to_start_secs = github_wait;
            }
            let queued_at = (rank >= 1).then_some(now);
            let started_at = (rank >= 2).then_some(now);
            conn.execute(
                "INSERT INTO jobs (job_id, run_id, repo, labels, status, status_rank, runner_name, first_seen_ms, queued_ms, started_ms, updated_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?8)",
                params![u.job_id as i64, u.run_id as i64, u.repo, labels, u.status.as_str(), rank, u.runner_name, now, queued_at, started_at],
            )?;
        }
        Some((old_rank, queued_at, started_at)) => {
            if rank > old_rank {
                let new_queued = queued_at.or((rank >= 1).then_some(now));
                let new_started = started_at.or((rank >= 2).then_some(now));
                if started_at.is_none() && rank >= 2 {
                    transition.queue_to_start_secs =
                        github_wait.or(queued_at.map(|q| (now - q) as f64 / 1000.0));
                }
                conn.execute(
                    "UPDATE jobs SET status = ?2, status_rank = ?3, runner_name = COALESCE(?4, runner_name),
                     queued_ms = ?5, started_ms = ?6, updated_ms = ?7 WHERE job_id = ?1",
                    params![u.job_id as i64, u.status.as_str(), rank, u.runner_name, new_queued, new_started, now],
                )?;
            }
        }
    }
    if let (Some(runner), true) = (&u.runner_name, rank >= 2) {
        // The runner named here has (or had) a job: it is no longer spare capacity.
        conn.execute(
            "UPDATE runners SET busy = CASE WHEN ?3 >= 3 THEN 0 ELSE 1 END, assigned_job_id = ?2 WHERE name = ?1",
            params![runner, u.job_id as i64, rank],
        )?;
        if rank >= 3 {
            // A JIT runner takes one job and leaves: its slot is free now, not when a
            // reconcile pass sees its Slurm job gone. Only rows whose sbatch is recorded:
            // a `submitting` row is crash recovery's to adopt.
            transition.runner_finished = super::runners::finish_runner_after_job(conn, runner)?;
        }
    }
    Ok(transition)
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let labels: String = r.get(3)?;
    let status: String = r.get(4)?;
    Ok(JobRow {
        job_id: r.get::<_, i64>(0)? as u64,
        run_id: r.get::<_, i64>(1)? as u64,
        repo: r.get(2)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        status: JobStatus::parse(&status).map_err(|e| conversion(4, e))?,
        runner_name: r.get(5)?,
        queued_ms: r.get(6)?,
    })
}

const JOB_COLUMNS: &str = "job_id, run_id, repo, labels, status, runner_name, queued_ms";

pub fn jobs_with_status(conn: &Connection, status: JobStatus) -> rusqlite::Result<Vec<JobRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE status = ?1 ORDER BY queued_ms, job_id"
    ))?;
    let rows = stmt.query_map(params![status.as_str()], job_from_row)?;
    rows.collect()
}

/// The ids of jobs running in the database whose runner (one of ours) is over: an ephemeral
/// runner runs one job, so GitHub has ended it too, and its `completed` webhook may have been
/// lost. Each running job's runner is looked up by its key, so the poll never reads every
/// finished runner.
pub fn running_job_ids_of_ended_runners(conn: &Connection) -> rusqlite::Result<HashSet<u64>> {
    let mut stmt = conn.prepare(
        "SELECT job_id FROM jobs WHERE status = 'in_progress' AND EXISTS
         (SELECT 1 FROM runners WHERE runners.name = jobs.runner_name
          AND runners.state IN ('finished', 'abandoned'))",
    )?;
    let ids = stmt.query_map([], |r| r.get::<_, i64>(0).map(|id| id as u64))?;
    ids.collect()
}

/// A job with its times, for the console's jobs view and timeline.
#[derive(Debug, Clone, PartialEq)]
pub struct JobTimes {
    pub job: JobRow,
    /// When we first saw it in progress, epoch milliseconds.
    pub started_ms: Option<i64>,
    /// Its last change, epoch milliseconds (when it finished, for a completed job).
    pub updated_ms: i64,
}

/// Jobs changed since `since_ms` (epoch milliseconds), newest first, at most `limit`.
pub fn jobs_since(
    conn: &Connection,
    since_ms: i64,
    limit: usize,
) -> rusqlite::Result<Vec<JobTimes>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS}, started_ms, updated_ms FROM jobs WHERE updated_ms >= ?1
         ORDER BY COALESCE(queued_ms, first_seen_ms) DESC, job_id DESC LIMIT ?2"
    ))?;
    let rows = stmt.query_map(params![since_ms, limit as i64], |r| {
        Ok(JobTimes {
            job: job_from_row(r)?,
            started_ms: r.get(7)?,
            updated_ms: r.get(8)?,
        })
    })?;
    rows.collect()
}

pub fn job(conn: &Connection, job_id: u64) -> rusqlite::Result<Option<JobRow>> {
    conn.query_row(
        &format!("SELECT {JOB_COLUMNS} FROM jobs WHERE job_id = ?1"),
        params![job_id as i64],
        job_from_row,
    )
    .optional()
}
