//! The `runners` table: one row per runner we create, written before each side effect
//! (intent first), so crash recovery knows what was in flight.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::conversion;
use crate::model::{now_secs, RunnerRow, RunnerState, SlurmState, UnknownState};

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|x| x as u64)
}

const RUNNER_COLUMNS: &str = "name, pool, scope, state, for_job_id, github_runner_id, slurm_job_id, slurm_state, online, ever_online, busy, assigned_job_id, last_error, created_at, submitted_at, slurm_started_at, finished_at, run_as, account, ticket_hash, ticket_expires_at, ticket_redeemed_at, scale_set_id, ran_job";

fn runner_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunnerRow> {
    let name: String = r.get(0)?;
    let state: String = r.get(3)?;
    // Strict: a state this version does not know is an error naming the runner, not a guess.
    let state = RunnerState::parse(&state).map_err(|e| conversion(3, in_runner(&name, e)))?;
    let slurm_state = match r.get::<_, Option<String>>(7)? {
        Some(s) => Some(SlurmState::parse(&s).map_err(|e| conversion(7, in_runner(&name, e)))?),
        None => None,
    };
    Ok(RunnerRow {
        name,
        pool: r.get(1)?,
        scope: r.get(2)?,
        state,
        for_job_id: opt_u64(r.get(4)?),
        github_runner_id: opt_u64(r.get(5)?),
        slurm_job_id: opt_u64(r.get(6)?),
        slurm_state,
        online: r.get(8)?,
        ever_online: r.get(9)?,
        busy: r.get(10)?,
        assigned_job_id: opt_u64(r.get(11)?),
        last_error: r.get(12)?,
        created_at: r.get(13)?,
        submitted_at: r.get(14)?,
        slurm_started_at: r.get(15)?,
        finished_at: r.get(16)?,
        run_as: r.get(17)?,
        account: r.get(18)?,
        ticket_hash: r.get(19)?,
        ticket_expires_at: r.get(20)?,
        ticket_redeemed_at: r.get(21)?,
        scale_set_id: opt_u64(r.get(22)?),
        ran_job: r.get(23)?,
    })
}

/// Runners that are not finished or abandoned.
pub fn live_runners(conn: &Connection) -> rusqlite::Result<Vec<RunnerRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUNNER_COLUMNS} FROM runners WHERE state NOT IN ('finished', 'abandoned') ORDER BY created_at, name"
    ))?;
    let rows = stmt.query_map([], runner_from_row)?;
    rows.collect()
}

pub fn runner(conn: &Connection, name: &str) -> rusqlite::Result<Option<RunnerRow>> {
    conn.query_row(
        &format!("SELECT {RUNNER_COLUMNS} FROM runners WHERE name = ?1"),
        params![name],
        runner_from_row,
    )
    .optional()
}

/// Runners whose Slurm side is over but whose GitHub registration may remain.
pub fn final_runners_with_registration(conn: &Connection) -> rusqlite::Result<Vec<RunnerRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUNNER_COLUMNS} FROM runners WHERE state IN ('finished', 'abandoned') AND github_runner_id IS NOT NULL"
    ))?;
    let rows = stmt.query_map([], runner_from_row)?;
    rows.collect()
}

pub fn recent_runners(conn: &Connection, limit: usize) -> rusqlite::Result<Vec<RunnerRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUNNER_COLUMNS} FROM runners ORDER BY created_at DESC, name LIMIT ?1"
    ))?;
    let rows = stmt.query_map(params![limit as i64], runner_from_row)?;
    rows.collect()
}

/// Record the intent to create a runner (before `generate-jitconfig`).
pub fn insert_minting_runner(
    conn: &Connection,
    name: &str,
    pool: &str,
    scope: &str,
    for_job_id: Option<u64>,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO runners (name, pool, scope, state, for_job_id, created_at) VALUES (?1, ?2, ?3, 'minting', ?4, ?5)",
        params![name, pool, scope, for_job_id.map(|j| j as i64), now_secs()],
    )?;
    Ok(())
}

/// Record a ticket runner, straight as `submitting`: nothing is minted before `sbatch` (the
/// JIT config is minted when the node redeems the ticket).
pub fn insert_ticket_runner(
    conn: &Connection,
    name: &str,
    pool: &str,
    scope: &str,
    for_job_id: Option<u64>,
    ticket_hash: &str,
    expires_at: i64,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO runners (name, pool, scope, state, for_job_id, created_at, ticket_hash, ticket_expires_at)
         VALUES (?1, ?2, ?3, 'submitting', ?4, ?5, ?6, ?7)",
        params![name, pool, scope, for_job_id.map(|j| j as i64), now_secs(), ticket_hash, expires_at],
    )?;
    Ok(())
}

/// The runner holding the ticket whose sha256 is `ticket_hash`.
pub fn runner_by_ticket_hash(
    conn: &Connection,
    ticket_hash: &str,
) -> rusqlite::Result<Option<RunnerRow>> {
    conn.query_row(
        &format!("SELECT {RUNNER_COLUMNS} FROM runners WHERE ticket_hash = ?1"),
        params![ticket_hash],
        runner_from_row,
    )
    .optional()
}

/// Mark the runner's ticket redeemed, once: true for the one caller that did it, false when
/// it already was (a concurrent or repeated redemption).
pub fn mark_ticket_redeemed(conn: &Connection, name: &str, at: i64) -> rusqlite::Result<bool> {
    let changed = conn.execute(
        "UPDATE runners SET ticket_redeemed_at = ?2 WHERE name = ?1 AND ticket_hash IS NOT NULL AND ticket_redeemed_at IS NULL",
        params![name, at],
    )?;
    Ok(changed == 1)
}

/// The registration minted at redemption. Unlike [`set_runner_registered`] the state is left
/// alone: the runner's Slurm job is already running.
pub fn set_runner_id(conn: &Connection, name: &str, github_runner_id: u64) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runners SET github_runner_id = ?2 WHERE name = ?1",
        params![name, github_runner_id as i64],
    )?;
    Ok(())
}

/// Who the runner's Slurm job runs as; written in the same transaction as its intent row.
pub fn set_runner_identity(
    conn: &Connection,
    name: &str,
    run_as: Option<&str>,
    account: Option<&str>,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runners SET run_as = ?2, account = ?3 WHERE name = ?1",
        params![name, run_as, account],
    )?;
    Ok(())
}

pub fn set_runner_registered(
    conn: &Connection,
    name: &str,
    github_runner_id: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runners SET state = 'submitting', github_runner_id = ?2 WHERE name = ?1",
        params![name, github_runner_id as i64],
    )?;
    Ok(())
}

pub fn set_runner_submitted(
    conn: &Connection,
    name: &str,
    slurm_job_id: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runners SET state = 'submitted', slurm_job_id = ?2, slurm_state = COALESCE(slurm_state, 'PENDING'),
         submitted_at = COALESCE(submitted_at, ?3), last_error = NULL WHERE name = ?1",
        params![name, slurm_job_id as i64, now_secs()],
    )?;
    Ok(())
}

pub fn set_runner_state(
    conn: &Connection,
    name: &str,
    state: RunnerState,
    error: Option<&str>,
) -> rusqlite::Result<()> {
    let finished_at = state.is_final().then(now_secs);
    conn.execute(
        "UPDATE runners SET state = ?2, last_error = COALESCE(?3, last_error), finished_at = COALESCE(?4, finished_at) WHERE name = ?1",
        params![name, state.as_str(), error, finished_at],
    )?;
    Ok(())
}

pub fn set_runner_error(conn: &Connection, name: &str, error: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runners SET last_error = ?2 WHERE name = ?1",
        params![name, error],
    )?;
    Ok(())
}

pub fn set_runner_slurm_state(
    conn: &Connection,
    name: &str,
    slurm_state: SlurmState,
) -> rusqlite::Result<()> {
    let started = (slurm_state != SlurmState::Pending).then(now_secs);
    conn.execute(
        "UPDATE runners SET slurm_state = ?2, slurm_started_at = COALESCE(slurm_started_at, ?3) WHERE name = ?1",
        params![name, slurm_state.as_str(), started],
    )?;
    Ok(())
}

pub fn set_runner_github(
    conn: &Connection,
    name: &str,
    github_runner_id: u64,
    online: bool,
    busy: bool,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runners SET github_runner_id = ?2, online = ?3, ever_online = MAX(ever_online, ?3), busy = ?4 WHERE name = ?1",
        params![name, github_runner_id as i64, online, busy],
    )?;
    Ok(())
}

pub fn clear_registration(conn: &Connection, name: &str) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runners SET github_runner_id = NULL, online = 0 WHERE name = ?1",
        params![name],
    )?;
    Ok(())
}

/// Runners GitHub no longer lists are offline (an ephemeral runner removes itself after its
/// job). `listed`: the names in a complete listing.
pub fn mark_unlisted_offline(
    conn: &mut Connection,
    listed: &HashSet<String>,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for r in live_runners(&tx)? {
        if r.online && !listed.contains(&r.name) {
            tx.execute("UPDATE runners SET online = 0 WHERE name = ?1", [&r.name])?;
        }
    }
    tx.commit()
}

/// Sets a runner's state and returns the row as it was before (one transaction).
/// Sets a runner's state (and `error`, if given) and returns the row as it was, in one
/// transaction: of two parties ending a runner at once (a node's end notice, hygiene), only
/// the one that saw it live acts on its end (counts an unredeemed ticket, say).
pub fn swap_runner_state(
    conn: &mut Connection,
    name: &str,
    state: RunnerState,
    error: Option<&str>,
) -> rusqlite::Result<Option<RunnerRow>> {
    let tx = conn.transaction()?;
    let before = runner(&tx, name)?;
    set_runner_state(&tx, name, state, error)?;
    tx.commit()?;
    Ok(before)
}

/// Records why a claimed ticket got no config; true when the runner was still live, i.e. its
/// end has not been recorded (and counted) yet. One transaction, for the same reason as
/// [`swap_runner_state`].
pub fn record_redemption_failure(
    conn: &mut Connection,
    name: &str,
    error: &str,
) -> rusqlite::Result<bool> {
    let tx = conn.transaction()?;
    let live = runner(&tx, name)?.is_some_and(|r| !r.state.is_final());
    set_runner_error(&tx, name, error)?;
    tx.commit()?;
    Ok(live)
}

/// What GitHub listed about our runners: (name, runner id, online, busy), in one transaction.
pub fn set_runners_github(
    conn: &mut Connection,
    observed: &[(String, u64, bool, bool)],
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    for (name, id, online, busy) in observed {
        set_runner_github(&tx, name, *id, *online, *busy)?;
    }
    tx.commit()
}

fn in_runner(name: &str, e: UnknownState) -> String {
    format!("runner {name}: {e}")
}

/// The runner is one of scale set `scale_set_id`'s (its JIT config comes from the set).
pub fn set_runner_scale_set(
    conn: &Connection,
    name: &str,
    scale_set_id: u64,
) -> rusqlite::Result<()> {
    conn.execute(
        "UPDATE runners SET scale_set_id = ?2 WHERE name = ?1",
        params![name, scale_set_id as i64],
    )?;
    Ok(())
}

/// The runner took a job (accounting): busy from now on, and what it ran. `None` when no
/// runner of ours has that name; else its Slurm job, if recorded, for the comment.
pub fn set_runner_ran(
    conn: &Connection,
    name: &str,
    ran_job: &str,
) -> rusqlite::Result<Option<Option<u64>>> {
    let changed = conn.execute(
        "UPDATE runners SET ran_job = ?2, busy = 1 WHERE name = ?1",
        params![name, ran_job],
    )?;
    if changed == 0 {
        return Ok(None);
    }
    conn.query_row(
        "SELECT slurm_job_id FROM runners WHERE name = ?1",
        params![name],
        |r| Ok(Some(opt_u64(r.get(0)?))),
    )
}

/// The runner's job ended (its JIT registration is spent): finished, its slot free now.
/// Only rows whose sbatch is recorded; true when this call finished it.
pub fn finish_runner_after_job(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    let finished = conn.execute(
        "UPDATE runners SET state = 'finished', busy = 0, finished_at = COALESCE(finished_at, ?2)
         WHERE name = ?1 AND state IN ('submitted', 'cancelling')",
        params![name, now_secs()],
    )?;
    Ok(finished > 0)
}

/// Finished or abandoned runners, since `since` (or with no end time), whose Slurm job was not
/// yet seen over (no terminal Slurm state recorded): their job may still run (a `completed`
/// event came first, or a cancel has yet to land), so it is asked about until it is seen ended.
pub fn final_runners_in_slurm(conn: &Connection, since: i64) -> rusqlite::Result<Vec<RunnerRow>> {
    let terminal: Vec<String> = SlurmState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(|s| format!("'{}'", s.as_str()))
        .collect();
    let mut stmt = conn.prepare(&format!(
        "SELECT {RUNNER_COLUMNS} FROM runners WHERE state IN ('finished', 'abandoned') \
         AND slurm_job_id IS NOT NULL AND (slurm_state IS NULL OR slurm_state NOT IN ({})) \
         AND (finished_at IS NULL OR finished_at >= ?1)",
        terminal.join(", ")
    ))?;
    let rows = stmt.query_map(params![since], runner_from_row)?;
    rows.collect()
}

/// The runner whose Slurm job is `job_id` (the newest, should a reset cluster reuse an id).
pub fn runner_by_slurm_job(conn: &Connection, job_id: u64) -> rusqlite::Result<Option<RunnerRow>> {
    conn.query_row(
        &format!(
            "SELECT {RUNNER_COLUMNS} FROM runners WHERE slurm_job_id = ?1 ORDER BY created_at DESC LIMIT 1"
        ),
        params![job_id as i64],
        runner_from_row,
    )
    .optional()
}
