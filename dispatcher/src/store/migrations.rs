//! The schema, as numbered migrations. `PRAGMA user_version` counts those applied; a
//! database from any earlier version opens and is brought forward, never rewritten.

use rusqlite::Connection;

pub(super) const MIGRATIONS: &[&str] = &[
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
    r#"
-- The sha256 (hex) of a delivery's body: a captured delivery replayed under a new
-- X-GitHub-Delivery id is a duplicate (NULL: recorded before digests were kept).
ALTER TABLE deliveries ADD COLUMN body_sha256 TEXT;
CREATE UNIQUE INDEX deliveries_by_body ON deliveries(body_sha256);
"#,
    r#"
-- Runner scale sets (listener intake), one per pool and registration scope, and the last
-- message of its session that was applied: a message at or below it is a redelivery.
CREATE TABLE scale_sets (
    pool            TEXT NOT NULL,
    scope           TEXT NOT NULL,
    scale_set_id    INTEGER NOT NULL,
    name            TEXT NOT NULL,
    last_message_id INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (pool, scope)
);
-- The scale set a runner was made for (NULL: registered through the REST API), and what
-- GitHub job it ran (accounting; the text put in its Slurm job's comment).
ALTER TABLE runners ADD COLUMN scale_set_id INTEGER;
ALTER TABLE runners ADD COLUMN ran_job TEXT;
"#,
];

/// Applies the migrations `conn` has not seen yet, each in its own transaction.
pub(super) fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)?;
        tx.commit()?;
    }
    Ok(())
}
