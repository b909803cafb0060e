//! Submission: turning the scale pass's "add a runner for this job" into a Slurm job.
//!
//! Every side effect is preceded by a database row saying what is about to happen
//! (`minting` before `generate-jitconfig`, `submitting` before `sbatch`), so after a `kill -9`
//! the next full pass finishes or undoes it and nothing is submitted twice. The credential
//! (JIT config or ticket) lives only in memory until sbatch accepts it; a failing sbatch is
//! retried with back-off, and a credential too old to submit is given up.

mod backoff;
mod create;
mod sbatch;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::clients::slurm::RunnerCredential;
use crate::model::RunnerState;
use crate::scale::NewRunner;
use crate::stage::StageContext;
use backoff::Backoff;
pub use create::runner_name;

/// A minted credential that has not yet reached `sbatch`. Given up after this long, since
/// JIT configs go stale.
const CREDENTIAL_MAX_AGE: Duration = Duration::from_secs(45 * 60);

type Credentials = HashMap<String, (RunnerCredential, Instant)>;

/// The submission stage of the control loop.
#[derive(Clone)]
pub struct Submitter {
    ctx: StageContext,
    /// Credentials of runners whose sbatch has not succeeded yet, by runner name.
    credentials: Arc<Mutex<Credentials>>,
    backoff: Arc<Mutex<Backoff>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Submitter {
    pub fn new(ctx: StageContext) -> Submitter {
        Submitter {
            ctx,
            credentials: Arc::new(Mutex::new(HashMap::new())),
            backoff: Arc::new(Mutex::new(Backoff::default())),
        }
    }

    fn credentials(&self) -> MutexGuard<'_, Credentials> {
        lock(&self.credentials)
    }

    fn backoff(&self) -> MutexGuard<'_, Backoff> {
        lock(&self.backoff)
    }

    /// Runners whose credential is held for an sbatch (re)try.
    pub fn in_flight(&self) -> HashSet<String> {
        self.credentials().keys().cloned().collect()
    }

    /// When the back-off lets sbatch be tried again (`None`: now).
    pub fn retry_at(&self) -> Option<Instant> {
        self.backoff().retry_at()
    }

    /// sbatch is not backing off.
    pub fn allowed(&self) -> bool {
        self.retry_at().is_none_or(|at| Instant::now() >= at)
    }

    /// Create the runners, `scaling.submit_concurrency` at a time.
    pub async fn create_all(&self, runners: Vec<NewRunner>) {
        let limit = Arc::new(Semaphore::new(self.ctx.config.scaling.submit_concurrency));
        let mut tasks = JoinSet::new();
        for runner in runners {
            let this = self.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                this.create_runner(&runner).await;
            });
        }
        while tasks.join_next().await.is_some() {}
    }

    /// sbatch again every runner whose credential is held, unless Slurm took its last
    /// sbatch after all (then its job is adopted); stop at the first failure (the back-off
    /// says when to try again).
    pub async fn retry(&self) {
        let names: Vec<String> = self.credentials().keys().cloned().collect();
        for name in names {
            let expired = self
                .credentials()
                .get(&name)
                .is_some_and(|(_, at)| at.elapsed() > CREDENTIAL_MAX_AGE);
            if expired {
                self.give_up(&name).await;
                continue;
            }
            let sent = match self.adopt_if_taken(&name).await {
                Ok(true) => continue,
                Ok(false) => self.submit(&name).await,
                Err(e) => {
                    self.sbatch_failed(&name, e.to_string()).await;
                    false
                }
            };
            if !sent {
                break; // still failing: wait for the next back-off step
            }
        }
    }

    /// A credential too old to submit: its registration (if any) is removed, the row
    /// abandoned.
    async fn give_up(&self, name: &str) {
        self.credentials().remove(name);
        if let Ok(Some(row)) = self.ctx.db.runner(name).await {
            self.ctx
                .registrations
                .delete(&row, "credential_expired")
                .await;
        }
        self.ctx
            .db
            .set_runner_state_logged(
                name,
                RunnerState::Abandoned,
                Some("credential too old to submit".into()),
            )
            .await;
    }
}
