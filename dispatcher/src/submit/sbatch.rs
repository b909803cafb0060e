//! `sbatch` for a runner whose credential submission holds: as the mapped user (or the
//! service user), named after the runner, with the pool's resources; success records the
//! Slurm job, failure backs off.

use super::Submitter;
use crate::clients::slurm::{self, SlurmError, SubmitRequest};
use crate::clients::users;
use crate::model::{now_millis, RunnerRow, RunnerState};
use crate::store;

impl Submitter {
    /// `sbatch` the runner whose credential we hold. True on success.
    pub(super) async fn submit(&self, name: &str) -> bool {
        let Some((credential, _)) = self.credentials().get(name).cloned() else {
            return false;
        };
        let row = match self.ctx.db.runner(name).await {
            Ok(Some(row)) => row,
            _ => return false,
        };
        let Some(pool) = self.ctx.config.pools.iter().find(|p| p.name == row.pool) else {
            tracing::error!(runner = %name, pool = %row.pool, "pool no longer configured");
            return false;
        };
        let user = row.job_user(self.ctx.config.slurm.user.as_deref());
        // The service user runs with `slurm.group`; a mapped user with its primary group.
        let group = match user {
            Some(u) if Some(u) != self.ctx.config.slurm.user.as_deref() => {
                users::primary_gid(u).map(|gid| gid.to_string())
            }
            _ => self.ctx.config.slurm.group.clone(),
        };
        let comment = comment(&row);
        let request = SubmitRequest {
            runner_name: &row.name,
            comment: &comment,
            pool,
            user,
            group: group.as_deref(),
            account: row.account.as_deref(),
            credential: &credential,
        };
        match self.ctx.slurm.submit(&request).await {
            Ok(slurm_job) => {
                self.submitted(&row, slurm_job).await;
                true
            }
            Err(e) => {
                self.sbatch_failed(name, e.to_string()).await;
                false
            }
        }
    }

    /// Before sbatch is tried again: did Slurm take the failed one after all? sbatch can
    /// fail after slurmctld accepted the job (no answer within the timeout, a reply cut
    /// short), and a second sbatch would start two jobs for one runner and one credential.
    /// A job by the runner's name, of the runner's user, is adopted instead (true).
    pub(super) async fn adopt_if_taken(&self, name: &str) -> Result<bool, SlurmError> {
        let Ok(Some(row)) = self.ctx.db.runner(name).await else {
            return Ok(false);
        };
        if row.state != RunnerState::Submitting {
            // Recorded meanwhile (recovery adopted its job, or it was given up).
            self.credentials().remove(name);
            return Ok(true);
        }
        let Some(uid) = self.ctx.runner_uid(&row) else {
            return Ok(false);
        };
        let taken = self
            .ctx
            .slurm
            .jobs_named(uid, std::slice::from_ref(&row.name))
            .await?;
        let Some(job) = slurm::first_named(&taken, &row.name) else {
            return Ok(false);
        };
        tracing::warn!(runner = %name, slurm_job = job.job_id, "Slurm took a submission whose sbatch failed; adopting its job");
        self.submitted(&row, job.job_id).await;
        Ok(true)
    }

    async fn submitted(&self, row: &RunnerRow, slurm_job: u64) {
        self.credentials().remove(&row.name);
        *self.backoff() = Default::default();
        self.ctx.telemetry.shared().sbatch_retry_in_secs = None;
        self.ctx.telemetry.metrics.sbatch_submissions.inc();
        let n = row.name.clone();
        let for_job = row.for_job_id;
        let queued_at = self
            .ctx
            .db
            .call(move |c| {
                store::set_runner_submitted(c, &n, slurm_job)?;
                Ok(match for_job {
                    Some(j) => store::job(c, j)?.and_then(|j| j.queued_ms),
                    None => None,
                })
            })
            .await;
        if let Ok(Some(queued_at)) = queued_at {
            self.ctx
                .telemetry
                .metrics
                .queue_to_submit
                .observe((now_millis() - queued_at).max(0) as f64 / 1000.0);
        }
        tracing::info!(runner = %row.name, slurm_job, "runner submitted");
    }

    /// The message is already scrubbed of the credential (the Slurm client's promise).
    pub(super) async fn sbatch_failed(&self, name: &str, message: String) {
        self.ctx.telemetry.metrics.sbatch_failures.inc();
        let delay = self
            .backoff()
            .failed(self.ctx.config.scaling.sbatch_backoff_max_secs);
        tracing::warn!(runner = %name, error = %message, retry_in_secs = delay, "sbatch failed; will retry");
        {
            let mut shared = self.ctx.telemetry.shared();
            shared.last_sbatch_error = Some(message.clone());
            shared.sbatch_retry_in_secs = Some(delay);
        }
        let n = name.to_string();
        self.ctx
            .db
            .record("runner state", move |c| {
                store::set_runner_error(c, &n, &message)
            })
            .await;
    }
}

/// The job's comment: which runner, pool, scope and GitHub job it is (no secret).
fn comment(row: &RunnerRow) -> String {
    format!(
        "gha-dispatcher runner={} pool={} scope={} job={}",
        row.name,
        row.pool,
        row.scope,
        row.for_job_id
            .map(|j| j.to_string())
            .unwrap_or_else(|| "-".into())
    )
}
