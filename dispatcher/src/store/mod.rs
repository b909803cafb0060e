//! The state database: every SQL statement the dispatcher runs, one file per table, the
//! schema's migrations, and group commit for webhook deliveries.
//!
//! SQLite in WAL mode with `synchronous=FULL`, so a row written before a side effect
//! (minting a runner, calling `sbatch`) survives `kill -9`. The connection lives behind a
//! mutex; async code reaches it through [`Db::call`] (`spawn_blocking`) and keeps
//! every transaction short. Rows are decoded into the typed [`crate::model`]; text naming no
//! state is an error that says which runner or job holds it.

mod deliveries;
mod group_commit;
mod jobs;
mod migrations;
mod repo_users;
mod runners;
mod scale_sets;

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};

use crate::model::{RunnerRow, RunnerState};

pub use deliveries::{record_delivery, record_delivery_in, Delivery, DeliveryOutcome};
pub use jobs::{
    apply_job_update, job, jobs_since, jobs_with_status, running_job_ids_of_ended_runners,
    JobTimes, JobTransition,
};
pub use repo_users::{replace_repositories, repo_users, repositories_of, seed_repo_users};
pub use runners::*;
pub use scale_sets::{apply_message, scale_set, upsert_scale_set, ScaleSetRow};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("cannot create the database directory {path}: {source}")]
    Dir {
        path: String,
        source: std::io::Error,
    },
    #[error("cannot make the database file {path} private: {source}")]
    File {
        path: String,
        source: std::io::Error,
    },
    #[error("database task failed: {0}")]
    Join(String),
}

/// The database file (created empty if missing, mode 0600 whatever the umask) and any
/// `-wal`/`-shm` files beside it: 0600, readable by the daemon's user only.
fn private_files(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut file = path.as_os_str().to_owned();
        file.push(suffix);
        match std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

/// A column whose text names no value of its type, as rusqlite reports conversion errors.
fn conversion(column: usize, message: impl ToString) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(
        column,
        rusqlite::types::Type::Text,
        message.to_string().into(),
    )
}

#[derive(Clone)]
pub struct Db {
    conn: Arc<Mutex<Connection>>,
    deliveries: group_commit::DeliveryQueue,
}

impl Db {
    pub fn open(path: &Path) -> Result<Db, DbError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| DbError::Dir {
                path: dir.display().to_string(),
                source,
            })?;
        }
        private_files(path).map_err(|source| DbError::File {
            path: path.display().to_string(),
            source,
        })?;
        let conn = Connection::open(path)?;
        let db = Self::init(conn)?;
        // SQLite creates the WAL and SHM files with the database file's mode; any left by an
        // earlier run under another umask are made private too.
        private_files(path).map_err(|source| DbError::File {
            path: path.display().to_string(),
            source,
        })?;
        Ok(db)
    }

    pub fn open_in_memory() -> Result<Db, DbError> {
        Self::init(Connection::open_in_memory()?)
    }

    fn init(mut conn: Connection) -> Result<Db, DbError> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrations::migrate(&mut conn)?;
        Ok(Db {
            conn: Arc::new(Mutex::new(conn)),
            deliveries: Default::default(),
        })
    }

    /// Records a webhook delivery and its job update, durably, sharing the transaction with
    /// whatever other deliveries arrive meanwhile (group commit).
    pub async fn record_delivery(
        &self,
        delivery: Delivery,
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

    /// A write whose failure is only logged: the next full pass re-derives the state.
    pub async fn record<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&mut Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    {
        if let Err(e) = self.call(f).await {
            tracing::error!(error = %e, what, "cannot record state");
        }
    }

    /// The runner named `name`.
    pub async fn runner(&self, name: &str) -> Result<Option<RunnerRow>, DbError> {
        let name = name.to_string();
        self.call(move |c| runners::runner(c, &name)).await
    }

    /// Sets a runner's state; a failure is logged (the next full pass re-derives it).
    pub async fn set_runner_state_logged(
        &self,
        name: &str,
        state: RunnerState,
        error: Option<String>,
    ) {
        let name = name.to_string();
        self.record("runner state", move |c| {
            set_runner_state(c, &name, state, error.as_deref())
        })
        .await;
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

    /// Whether the database answers at all (`/healthz`).
    pub async fn ping(&self) -> Result<(), DbError> {
        self.call(|c| c.query_row("SELECT 1", [], |r| r.get::<_, i64>(0)))
            .await
            .map(drop)
    }
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
mod tests;
