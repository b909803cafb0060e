//! State database: schema, migrations and every query the dispatcher makes.
//!
//! SQLite in WAL mode with `synchronous=FULL`, so a row written before a side effect
//! (minting a runner, calling `sbatch`) survives `kill -9`. The connection lives behind a
//! mutex; async code reaches it through [`Db::call`] (`spawn_blocking`) and keeps
//! every transaction short.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection, OptionalExtension};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the database directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("database task failed: {0}")]
    Join(String),
}

const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE deliveries (
    delivery_id TEXT PRIMARY KEY,
    event       TEXT NOT NULL,
    action      TEXT,
    job_id      INTEGER,
    received_at INTEGER NOT NULL
);
CREATE TABLE jobs (
    job_id        INTEGER PRIMARY KEY,
    run_id        INTEGER NOT NULL,
    repo          TEXT NOT NULL,
    labels        TEXT NOT NULL,
    status        TEXT NOT NULL,
    status_rank   INTEGER NOT NULL,
    runner_name   TEXT,
    first_seen_ms INTEGER NOT NULL,
    queued_ms     INTEGER,
    started_ms    INTEGER,
    updated_ms    INTEGER NOT NULL
);
CREATE INDEX jobs_by_status ON jobs(status);
CREATE TABLE runners (
    name             TEXT PRIMARY KEY,
    pool             TEXT NOT NULL,
    scope            TEXT NOT NULL,
    state            TEXT NOT NULL,
    for_job_id       INTEGER,
    github_runner_id INTEGER,
    slurm_job_id     INTEGER,
    slurm_state      TEXT,
    online           INTEGER NOT NULL DEFAULT 0,
    ever_online      INTEGER NOT NULL DEFAULT 0,
    busy             INTEGER NOT NULL DEFAULT 0,
    assigned_job_id  INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    submitted_at     INTEGER,
    slurm_started_at INTEGER,
    finished_at      INTEGER
);
CREATE INDEX runners_by_state ON runners(state);
"#,
    r#"
-- Repository (`owner/repo`) or organization (`owner`) to Unix user. The key is the primary
-- key, so a repository maps to at most one user; GitHub names are case-insensitive.
CREATE TABLE repo_users (
    repo_key   TEXT PRIMARY KEY COLLATE NOCASE,
    unix_user  TEXT NOT NULL,
    account    TEXT,
    updated_ms INTEGER NOT NULL
);
CREATE INDEX repo_users_by_user ON repo_users(unix_user);
-- Who a runner's Slurm job runs as (NULL: the service user) and its Slurm account.
ALTER TABLE runners ADD COLUMN run_as TEXT;
ALTER TABLE runners ADD COLUMN account TEXT;
"#,
    r#"
-- Late-binding tickets: the sha256 (hex) of the ticket handed to sbatch (never the ticket),
-- when it stops being redeemable, and when it was redeemed (single use). All NULL: a runner
-- whose JIT config went inline.
ALTER TABLE runners ADD COLUMN ticket_hash TEXT;
ALTER TABLE runners ADD COLUMN ticket_expires_at INTEGER;
ALTER TABLE runners ADD COLUMN ticket_redeemed_at INTEGER;
CREATE UNIQUE INDEX runners_by_ticket_hash ON runners(ticket_hash);
"#,
];

/// Status of a GitHub job as far as we know; the rank only moves forward so a late or
/// repeated delivery never undoes a newer one.
pub fn status_rank(status: &str) -> i64 {
    match status {
        "requested" | "pending" | "waiting" => 0,
        "queued" => 1,
        "in_progress" => 2,
        "completed" => 3,
        _ => 0,
    }
}

/// What a webhook or a poll tells us about one GitHub job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    pub job_id: u64,
    pub run_id: u64,
    pub repo: String,
    pub labels: Vec<String>,
    pub status: String,
    pub runner_name: Option<String>,
    /// GitHub's `created_at` / `started_at`, epoch seconds, when given.
    pub created_at: Option<i64>,
    pub started_at: Option<i64>,
}

/// Epoch seconds of an RFC 3339 timestamp such as GitHub's `2024-05-01T12:00:00Z`.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub job_id: u64,
    pub run_id: u64,
    pub repo: String,
    pub labels: Vec<String>,
    pub status: String,
    pub runner_name: Option<String>,
    /// When we first saw it queued, epoch milliseconds.
    pub queued_ms: Option<i64>,
}

/// Lifecycle of a runner we create. Intent is recorded before each side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerState {
    /// Row written, `generate-jitconfig` not yet answered.
    Minting,
    /// Registered on GitHub, `sbatch` not yet confirmed.
    Submitting,
    /// A Slurm job exists.
    Submitted,
    /// `scancel --state=PENDING` sent because demand fell.
    Cancelling,
    /// Slurm job gone; the registration may still need deleting.
    Finished,
    /// Given up (lost credential after a restart, boot deadline, ...); cleaned up.
    Abandoned,
}

impl RunnerState {
    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Minting => "minting",
            RunnerState::Submitting => "submitting",
            RunnerState::Submitted => "submitted",
            RunnerState::Cancelling => "cancelling",
            RunnerState::Finished => "finished",
            RunnerState::Abandoned => "abandoned",
        }
    }
    pub fn parse(s: &str) -> RunnerState {
        match s {
            "minting" => RunnerState::Minting,
            "submitting" => RunnerState::Submitting,
            "submitted" => RunnerState::Submitted,
            "cancelling" => RunnerState::Cancelling,
            "finished" => RunnerState::Finished,
            _ => RunnerState::Abandoned,
        }
    }
    pub fn is_final(self) -> bool {
        matches!(self, RunnerState::Finished | RunnerState::Abandoned)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRow {
    pub name: String,
    pub pool: String,
    pub scope: String,
    pub state: RunnerState,
    pub for_job_id: Option<u64>,
    pub github_runner_id: Option<u64>,
    pub slurm_job_id: Option<u64>,
    pub slurm_state: Option<String>,
    pub online: bool,
    pub ever_online: bool,
    pub busy: bool,
    pub assigned_job_id: Option<u64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub submitted_at: Option<i64>,
    pub slurm_started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The Unix user its Slurm job runs as; `None`: the service user (`slurm.user`).
    pub run_as: Option<String>,
    /// The Slurm account from the repository mapping; `None`: the pool's.
    pub account: Option<String>,
    /// sha256 (lowercase hex) of the runner's ticket; `None`: its JIT config went inline.
    pub ticket_hash: Option<String>,
    pub ticket_expires_at: Option<i64>,
    pub ticket_redeemed_at: Option<i64>,
}

impl RunnerRow {
    /// A ticket runner whose ticket was never redeemed: no JIT config was minted for it, so
    /// it has no GitHub registration to look up or delete.
    pub fn never_registered(&self) -> bool {
        self.ticket_hash.is_some() && self.ticket_redeemed_at.is_none()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    New,
    Duplicate,
}

/// What applying a job update changed, for metrics.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JobTransition {
    /// Seconds from first seen queued to first seen in progress, when this update started it.
    pub queue_to_start_secs: Option<f64>,
    /// The update completed a job on one of our runners, which is now finished.
    pub runner_finished: bool,
}

#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    deliveries: crate::group_commit::DeliveryQueue,
}

pub fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

pub fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn opt_u64(v: Option<i64>) -> Option<u64> {
    v.map(|x| x as u64)
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let conn = Connection::open(path)?;
        Self::init(conn)
    }

    pub fn open_in_memory() -> Result<Db, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Db, DbError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", (i + 1) as i64)?;
            tx.commit()?;
        }
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            deliveries: Default::default(),
        })
    }

    /// Records a webhook delivery and its job update, durably, sharing the transaction with
    /// whatever other deliveries arrive meanwhile (`group_commit`).
    pub async fn record_delivery(
        &self,
        delivery: crate::group_commit::Delivery,
    ) -> Result<(DeliveryOutcome, JobTransition), DbError> {
        self.deliveries.record(self, delivery).await
    }

    /// Run `f` with the connection on a blocking thread.
    pub async fn call<T, F>(&self, f: F) -> Result<T, DbError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, rusqlite::Error> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            f(&mut guard).map_err(DbError::from)
        })
        .await
        .map_err(|e| DbError::Join(e.to_string()))?
    }

    /// Synchronous access for tests and the CLI.
    pub fn with<T>(
        &self,
        f: impl FnOnce(&mut Connection) -> Result<T, rusqlite::Error>,
    ) -> Result<T, DbError> {
        let mut guard = self
            .conn
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        f(&mut guard).map_err(DbError::from)
    }
}

/// Record a delivery and the job update it carries in one transaction. A delivery id seen
/// before changes nothing.
pub fn record_delivery(
    conn: &mut Connection,
    delivery_id: &str,
    event: &str,
    action: Option<&str>,
    update: Option<&JobUpdate>,
) -> rusqlite::Result<(DeliveryOutcome, JobTransition)> {
    let tx = conn.transaction()?;
    let outcome = record_delivery_in(&tx, delivery_id, event, action, update)?;
    tx.commit()?;
    Ok(outcome)
}

/// [`record_delivery`] inside the caller's transaction (webhook intake batches them:
/// `group_commit`).
pub fn record_delivery_in(
    tx: &Connection,
    delivery_id: &str,
    event: &str,
    action: Option<&str>,
    update: Option<&JobUpdate>,
) -> rusqlite::Result<(DeliveryOutcome, JobTransition)> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO deliveries (delivery_id, event, action, job_id, received_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![delivery_id, event, action, update.map(|u| u.job_id as i64), now_secs()],
    )?;
    if inserted == 0 {
        return Ok((DeliveryOutcome::Duplicate, JobTransition::default()));
    }
    let transition = match update {
        Some(u) => apply_job_update(tx, u)?,
        None => JobTransition::default(),
    };
    Ok((DeliveryOutcome::New, transition))
}

/// Insert or advance a job; its status never moves backwards.
pub fn apply_job_update(conn: &Connection, u: &JobUpdate) -> rusqlite::Result<JobTransition> {
    let now = now_millis();
    let rank = status_rank(&u.status);
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
                params![u.job_id as i64, u.run_id as i64, u.repo, labels, u.status, rank, u.runner_name, now, queued_at, started_at],
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
                    params![u.job_id as i64, u.status, rank, u.runner_name, new_queued, new_started, now],
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
            let finished = conn.execute(
                "UPDATE runners SET state = 'finished', finished_at = COALESCE(finished_at, ?2)
                 WHERE name = ?1 AND state IN ('submitted', 'cancelling')",
                params![runner, now_secs()],
            )?;
            transition.runner_finished = finished > 0;
        }
    }
    Ok(transition)
}

fn job_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<JobRow> {
    let labels: String = r.get(3)?;
    Ok(JobRow {
        job_id: r.get::<_, i64>(0)? as u64,
        run_id: r.get::<_, i64>(1)? as u64,
        repo: r.get(2)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        status: r.get(4)?,
        runner_name: r.get(5)?,
        queued_ms: r.get(6)?,
    })
}

const JOB_COLUMNS: &str = "job_id, run_id, repo, labels, status, runner_name, queued_ms";

pub fn jobs_with_status(conn: &Connection, status: &str) -> rusqlite::Result<Vec<JobRow>> {
    let mut stmt = conn.prepare(&format!(
        "SELECT {JOB_COLUMNS} FROM jobs WHERE status = ?1 ORDER BY queued_ms, job_id"
    ))?;
    let rows = stmt.query_map(params![status], job_from_row)?;
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

const RUNNER_COLUMNS: &str = "name, pool, scope, state, for_job_id, github_runner_id, slurm_job_id, slurm_state, online, ever_online, busy, assigned_job_id, last_error, created_at, submitted_at, slurm_started_at, finished_at, run_as, account, ticket_hash, ticket_expires_at, ticket_redeemed_at";

fn runner_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RunnerRow> {
    let state: String = r.get(3)?;
    Ok(RunnerRow {
        name: r.get(0)?,
        pool: r.get(1)?,
        scope: r.get(2)?,
        state: RunnerState::parse(&state),
        for_job_id: opt_u64(r.get(4)?),
        github_runner_id: opt_u64(r.get(5)?),
        slurm_job_id: opt_u64(r.get(6)?),
        slurm_state: r.get(7)?,
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

/// One row of the repository mapping: `owner/repo` or `owner` to a Unix user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUser {
    pub repo_key: String,
    pub unix_user: String,
    pub account: Option<String>,
}

fn repo_user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RepoUser> {
    Ok(RepoUser {
        repo_key: r.get(0)?,
        unix_user: r.get(1)?,
        account: r.get(2)?,
    })
}

/// The whole mapping.
pub fn repo_users(conn: &Connection) -> rusqlite::Result<Vec<RepoUser>> {
    let mut stmt =
        conn.prepare("SELECT repo_key, unix_user, account FROM repo_users ORDER BY repo_key")?;
    let rows = stmt.query_map([], repo_user_from_row)?;
    rows.collect()
}

/// The entries mapped to `unix_user`.
pub fn repositories_of(conn: &Connection, unix_user: &str) -> rusqlite::Result<Vec<RepoUser>> {
    let mut stmt = conn.prepare(
        "SELECT repo_key, unix_user, account FROM repo_users WHERE unix_user = ?1 ORDER BY repo_key",
    )?;
    let rows = stmt.query_map(params![unix_user], repo_user_from_row)?;
    rows.collect()
}

/// Insert the config's entries whose key is not in the table yet; existing rows (earlier
/// seeds or API writes) are kept. Returns how many were inserted.
pub fn seed_repo_users(conn: &mut Connection, entries: &[RepoUser]) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let mut inserted = 0;
    for e in entries {
        inserted += tx.execute(
            "INSERT OR IGNORE INTO repo_users (repo_key, unix_user, account, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            params![e.repo_key, e.unix_user, e.account, now_millis()],
        )?;
    }
    tx.commit()?;
    Ok(inserted)
}

/// Replace `unix_user`'s whole list in one transaction. Keys already mapped to another user
/// are returned (sorted) and nothing changes.
pub fn replace_repositories(
    conn: &mut Connection,
    unix_user: &str,
    entries: &[RepoUser],
) -> rusqlite::Result<Result<(), Vec<(String, String)>>> {
    let tx = conn.transaction()?;
    let mut conflicts = Vec::new();
    for e in entries {
        let owner: Option<String> = tx
            .query_row(
                "SELECT unix_user FROM repo_users WHERE repo_key = ?1 AND unix_user <> ?2",
                params![e.repo_key, unix_user],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(owner) = owner {
            conflicts.push((e.repo_key.clone(), owner));
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        return Ok(Err(conflicts)); // dropping `tx` rolls back (nothing was written)
    }
    tx.execute(
        "DELETE FROM repo_users WHERE unix_user = ?1",
        params![unix_user],
    )?;
    for e in entries {
        tx.execute(
            "INSERT INTO repo_users (repo_key, unix_user, account, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            params![e.repo_key, unix_user, e.account, now_millis()],
        )?;
    }
    tx.commit()?;
    Ok(Ok(()))
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
    slurm_state: &str,
) -> rusqlite::Result<()> {
    let started = (slurm_state != "PENDING").then(now_secs);
    conn.execute(
        "UPDATE runners SET slurm_state = ?2, slurm_started_at = COALESCE(slurm_started_at, ?3) WHERE name = ?1",
        params![name, slurm_state, started],
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

/// Forget what can no longer matter: deliveries older than GitHub's redelivery window
/// (3 days; kept 4 for clock skew), jobs completed a week ago, runners cleaned up a week ago.
pub fn prune(conn: &mut Connection, now: i64) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let mut removed = tx.execute(
        "DELETE FROM deliveries WHERE received_at < ?1",
        params![now - 4 * 86_400],
    )?;
    removed += tx.execute(
        "DELETE FROM jobs WHERE status = 'completed' AND updated_ms < ?1",
        params![(now - 7 * 86_400) * 1000],
    )?;
    removed += tx.execute(
        "DELETE FROM runners WHERE state IN ('finished', 'abandoned') AND github_runner_id IS NULL AND finished_at < ?1",
        params![now - 7 * 86_400],
    )?;
    tx.commit()?;
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn update(job_id: u64, status: &str, runner: Option<&str>) -> JobUpdate {
        JobUpdate {
            job_id,
            run_id: 7,
            repo: "acme/widgets".into(),
            labels: vec!["self-hosted".into(), "linux".into()],
            status: status.into(),
            runner_name: runner.map(str::to_string),
            created_at: None,
            started_at: None,
        }
    }

    #[test]
    fn prune_keeps_the_redelivery_window() {
        let db = Db::open_in_memory().unwrap();
        db.with(|c| {
            record_delivery(
                c,
                "old",
                "workflow_job",
                None,
                Some(&update(1, "completed", None)),
            )?;
            insert_minting_runner(c, "r", "cpu", "org:a", None)?;
            set_runner_state(c, "r", RunnerState::Finished, None)?;
            let now = now_secs();
            assert_eq!(prune(c, now + 3 * 86_400)?, 0);
            assert_eq!(prune(c, now + 8 * 86_400)?, 3);
            // A pruned delivery id is no longer a duplicate, but nothing older than the
            // window can be redelivered.
            assert!(job(c, 1)?.is_none());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn duplicate_delivery_changes_nothing() {
        let db = Db::open_in_memory().unwrap();
        db.with(|c| {
            let (first, _) = record_delivery(
                c,
                "g1",
                "workflow_job",
                Some("queued"),
                Some(&update(1, "queued", None)),
            )?;
            assert_eq!(first, DeliveryOutcome::New);
            let (again, _) = record_delivery(
                c,
                "g1",
                "workflow_job",
                Some("completed"),
                Some(&update(1, "completed", None)),
            )?;
            assert_eq!(again, DeliveryOutcome::Duplicate);
            assert_eq!(job(c, 1)?.unwrap().status, "queued");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn reordered_deliveries_never_move_status_back() {
        let db = Db::open_in_memory().unwrap();
        db.with(|c| {
            insert_minting_runner(c, "r1", "cpu", "org:acme", None)?;
            record_delivery(
                c,
                "g2",
                "workflow_job",
                Some("in_progress"),
                Some(&update(1, "in_progress", Some("r1"))),
            )?;
            record_delivery(
                c,
                "g1",
                "workflow_job",
                Some("queued"),
                Some(&update(1, "queued", None)),
            )?;
            assert_eq!(job(c, 1)?.unwrap().status, "in_progress");
            assert!(jobs_with_status(c, "queued")?.is_empty());
            let r = runner(c, "r1")?.unwrap();
            assert!(r.busy);
            assert_eq!(r.assigned_job_id, Some(1));
            record_delivery(
                c,
                "g3",
                "workflow_job",
                Some("completed"),
                Some(&update(1, "completed", Some("r1"))),
            )?;
            assert_eq!(job(c, 1)?.unwrap().status, "completed");
            // r1 never had its sbatch recorded: crash recovery decides, not the webhook.
            assert_eq!(runner(c, "r1")?.unwrap().state, RunnerState::Minting);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_completed_job_finishes_its_submitted_runner() {
        let db = Db::open_in_memory().unwrap();
        db.with(|c| {
            insert_minting_runner(c, "r1", "cpu", "org:acme", Some(1))?;
            set_runner_registered(c, "r1", 5)?;
            set_runner_submitted(c, "r1", 77)?;
            let (_, t) = record_delivery(
                c,
                "a",
                "workflow_job",
                Some("in_progress"),
                Some(&update(1, "in_progress", Some("r1"))),
            )?;
            assert!(!t.runner_finished);
            let r = runner(c, "r1")?.unwrap();
            assert!(r.busy && r.state == RunnerState::Submitted);
            let (_, t) = record_delivery(
                c,
                "b",
                "workflow_job",
                Some("completed"),
                Some(&update(1, "completed", Some("r1"))),
            )?;
            assert!(t.runner_finished);
            let r = runner(c, "r1")?.unwrap();
            assert_eq!(r.state, RunnerState::Finished);
            assert_eq!(r.assigned_job_id, Some(1));
            assert!(r.finished_at.is_some());
            assert!(live_runners(c)?.is_empty(), "its slot is free");
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn queue_to_start_is_measured_once() {
        let db = Db::open_in_memory().unwrap();
        db.with(|c| {
            record_delivery(
                c,
                "a",
                "workflow_job",
                None,
                Some(&update(5, "queued", None)),
            )?;
            let (_, t) = record_delivery(
                c,
                "b",
                "workflow_job",
                None,
                Some(&update(5, "in_progress", Some("x"))),
            )?;
            assert!(t.queue_to_start_secs.is_some());
            let (_, t) = record_delivery(
                c,
                "c",
                "workflow_job",
                None,
                Some(&update(5, "completed", Some("x"))),
            )?;
            assert_eq!(t.queue_to_start_secs, None);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn runner_lifecycle_and_persistence() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.db");
        {
            let db = Db::open(&path).unwrap();
            db.with(|c| {
                insert_minting_runner(c, "r1", "cpu", "org:acme", Some(3))?;
                set_runner_registered(c, "r1", 99)?;
                Ok(())
            })
            .unwrap();
        }
        let db = Db::open(&path).unwrap();
        db.with(|c| {
            let live = live_runners(c)?;
            assert_eq!(live.len(), 1);
            assert_eq!(live[0].state, RunnerState::Submitting);
            assert_eq!(live[0].github_runner_id, Some(99));
            set_runner_submitted(c, "r1", 1234)?;
            set_runner_slurm_state(c, "r1", "RUNNING")?;
            let r = runner(c, "r1")?.unwrap();
            assert_eq!(
                (r.slurm_job_id, r.state),
                (Some(1234), RunnerState::Submitted)
            );
            assert!(r.slurm_started_at.is_some());
            set_runner_state(c, "r1", RunnerState::Finished, None)?;
            assert!(live_runners(c)?.is_empty());
            assert_eq!(final_runners_with_registration(c)?.len(), 1);
            // A runner name is unique: a second intent with the same name fails.
            assert!(insert_minting_runner(c, "r1", "cpu", "org:acme", None).is_err());
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn migrates_a_version_2_database_keeping_its_runners() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        {
            let mut conn = Connection::open(&path).unwrap();
            for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
                let tx = conn.transaction().unwrap();
                tx.execute_batch(sql).unwrap();
                tx.pragma_update(None, "user_version", (i + 1) as i64)
                    .unwrap();
                tx.commit().unwrap();
            }
            insert_minting_runner(&conn, "old", "cpu", "org:a", Some(1)).unwrap();
            set_runner_registered(&conn, "old", 5).unwrap();
        }
        let db = Db::open(&path).unwrap();
        db.with(|c| {
            let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
            assert_eq!(version, 3);
            let old = runner(c, "old")?.unwrap();
            assert_eq!(
                (
                    old.github_runner_id,
                    old.ticket_hash,
                    old.ticket_redeemed_at
                ),
                (Some(5), None, None)
            );
            assert!(!runner(c, "old")?.unwrap().never_registered());
            insert_ticket_runner(c, "t", "cpu", "org:a", Some(2), "ab12", 1000)?;
            let t = runner_by_ticket_hash(c, "ab12")?.unwrap();
            assert_eq!(t.name, "t");
            assert_eq!(t.state, RunnerState::Submitting);
            assert_eq!(t.ticket_expires_at, Some(1000));
            assert!(t.never_registered());
            assert!(runner_by_ticket_hash(c, "cd34")?.is_none());
            Ok(())
        })
        .unwrap();
        drop(db);
        // Opening again runs no migration twice.
        let db = Db::open(&path).unwrap();
        db.with(|c| {
            assert_eq!(live_runners(c)?.len(), 2);
            Ok(())
        })
        .unwrap();
    }

    #[test]
    fn a_ticket_is_redeemed_once() {
        let db = Db::open_in_memory().unwrap();
        db.with(|c| {
            insert_ticket_runner(c, "t", "cpu", "org:a", None, "h1", 1000)?;
            set_runner_submitted(c, "t", 42)?;
            assert!(mark_ticket_redeemed(c, "t", 10)?);
            assert!(!mark_ticket_redeemed(c, "t", 11)?);
            set_runner_id(c, "t", 77)?;
            let t = runner(c, "t")?.unwrap();
            assert_eq!(t.ticket_redeemed_at, Some(10));
            assert_eq!(
                (t.state, t.github_runner_id),
                (RunnerState::Submitted, Some(77))
            );
            assert!(!t.never_registered());
            // An inline runner has no ticket to redeem.
            insert_minting_runner(c, "i", "cpu", "org:a", None)?;
            assert!(!mark_ticket_redeemed(c, "i", 10)?);
            // Ticket hashes are unique.
            assert!(insert_ticket_runner(c, "t2", "cpu", "org:a", None, "h1", 1000).is_err());
            Ok(())
        })
        .unwrap();
    }
}
