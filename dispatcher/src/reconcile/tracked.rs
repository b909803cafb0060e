//! Which of our Slurm jobs to ask Slurm about, and asking: slurmctld's work is in proportion
//! to our runners in flight, and nothing at all is asked when none is.
//!
//! By id (slurmctld's single-job RPC): the jobs of live runners, and those of finished or
//! abandoned runners not yet seen over (an orphan to cancel, or a job still tearing down). By
//! user and name (the per-user RPC): a `submitting` row a crash left without a job id, whose
//! sbatch may have gone through. A job seen over (or forgotten by slurmctld) is recorded so,
//! and is not asked about again.

use std::collections::{BTreeMap, HashSet};

use super::Reconciler;
use crate::clients::slurm::{QueuedJob, SlurmError};
use crate::model::now_secs;
use crate::model::{RunnerRow, RunnerState, SlurmState};
use crate::store::{self, DbError};

/// How long after its row ended a job not yet seen over is still asked about (an orphan to
/// cancel). Bounded so that rows from before end notices were recorded (no terminal state)
/// cost one look each, not a query per pass forever; a job still running after this is left
/// to its time limit.
const ORPHAN_WATCH_SECS: i64 = 3600;

/// The Slurm side could not be read: nothing may be concluded about our jobs.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error(transparent)]
    Slurm(#[from] SlurmError),
    #[error("cannot read runners: {0}")]
    Db(#[from] DbError),
}

impl Reconciler {
    /// Our Slurm jobs, as far as our rows say they may be in Slurm's queue. `in_flight`:
    /// `submitting` rows an sbatch retry holds (not crash leftovers: not looked for by name).
    pub(super) async fn our_jobs(
        &self,
        in_flight: &HashSet<String>,
    ) -> Result<Vec<QueuedJob>, QueueError> {
        let since = now_secs() - ORPHAN_WATCH_SECS;
        let rows = self
            .ctx
            .db
            .call(move |c| {
                let mut rows = store::live_runners(c)?;
                rows.extend(store::final_runners_in_slurm(c, since)?);
                Ok(rows)
            })
            .await?;
        let ids: Vec<u64> = rows.iter().filter_map(|r| r.slurm_job_id).collect();
        let mut jobs = self.ctx.slurm.jobs(&ids).await?;
        let mut unrecorded: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for row in rows.iter().filter(|r| {
            r.state == RunnerState::Submitting
                && r.slurm_job_id.is_none()
                && !in_flight.contains(&r.name)
        }) {
            if let Some(uid) = self.ctx.runner_uid(row) {
                unrecorded.entry(uid).or_default().push(row.name.clone());
            }
        }
        for (uid, names) in unrecorded {
            jobs.extend(self.ctx.slurm.jobs_named(uid, &names).await?);
        }
        self.record_seen_over(&rows, &jobs).await;
        Ok(jobs)
    }

    /// The jobs of submitted and cancelling runners (the only ones whose end frees a slot).
    pub(super) async fn running_jobs(
        &self,
    ) -> Result<(Vec<RunnerRow>, Vec<QueuedJob>), QueueError> {
        let rows: Vec<RunnerRow> = self
            .ctx
            .db
            .call(|c| store::live_runners(c))
            .await?
            .into_iter()
            .filter(|r| matches!(r.state, RunnerState::Submitted | RunnerState::Cancelling))
            .collect();
        let ids: Vec<u64> = rows.iter().filter_map(|r| r.slurm_job_id).collect();
        let jobs = self.ctx.slurm.jobs(&ids).await?;
        Ok((rows, jobs))
    }

    /// Final rows whose job is now seen over, or forgotten by slurmctld (then it ended: how
    /// is not known, `COMPLETED` stands for it), are recorded so: never asked about again.
    async fn record_seen_over(&self, rows: &[RunnerRow], jobs: &[QueuedJob]) {
        for row in rows.iter().filter(|r| r.state.is_final()) {
            let Some(id) = row.slurm_job_id else {
                continue;
            };
            let seen = jobs.iter().find(|j| j.job_id == id);
            if seen.is_some_and(QueuedJob::is_active) {
                continue;
            }
            let (name, state) = (
                row.name.clone(),
                seen.map_or(SlurmState::Completed, |j| j.state),
            );
            self.ctx
                .db
                .record("runner state", move |c| {
                    store::set_runner_slurm_state(c, &name, state)
                })
                .await;
        }
    }
}
