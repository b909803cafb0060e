//! Runner rows against the Slurm queue: a runner whose job is gone is finished, a row a crash
//! left mid-way (`minting`, `submitting`) is adopted or abandoned.

use std::collections::HashSet;

use super::Reconciler;
use crate::clients::slurm::{self, QueuedJob};
use crate::model::{RunnerRow, RunnerState, SlurmState};
use crate::registrations::Listed;
use crate::store::{self, Db};
use crate::telemetry::Metrics;

/// Runner `name`'s Slurm job is over (`ended`: how, when known; a job slurmctld forgot, or one
/// the node's epilog reported, ended too: `COMPLETED` stands for it). Recorded so (its job is
/// not asked about again) and the runner finished; a ticket runner that never redeemed its
/// ticket is counted (the scaler provisions again while the demand remains). True when this
/// call finished it (it was not final before).
pub async fn record_job_ended(
    db: &Db,
    metrics: &Metrics,
    name: &str,
    ended: Option<SlurmState>,
) -> bool {
    let (n, state) = (name.to_string(), ended.unwrap_or(SlurmState::Completed));
    let result = db
        .call(move |c| {
            store::set_runner_slurm_state(c, &n, state)?;
            store::swap_runner_state(c, &n, RunnerState::Finished, None)
        })
        .await;
    match result {
        Ok(Some(before)) if !before.state.is_final() => {
            if before.got_no_config() {
                metrics.tickets_unredeemed.inc();
                tracing::info!(runner = %name, slurm_job = ?before.slurm_job_id, "Slurm job ended without a runner config (ticket unredeemed, or claimed and never minted)");
            }
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::error!(error = %e, "cannot record runner state");
            false
        }
    }
}

impl Reconciler {
    /// Mark runners whose Slurm job ended as finished, from `squeue` alone (no GitHub
    /// call), so a full pool frees its slot within seconds. Registrations are left to the
    /// full pass. True when a runner finished.
    pub async fn notice_ended_slurm_jobs(&self) -> bool {
        let (rows, queue) = match self.running_jobs().await {
            Ok(found) => found,
            Err(e) => {
                tracing::debug!(error = %e, "squeue failed; the full pass will retry");
                return false;
            }
        };
        let mut any = false;
        for row in &rows {
            let Some(job_id) = row.slurm_job_id else {
                continue;
            };
            let job = queue.iter().find(|j| j.job_id == job_id);
            if !job.is_some_and(QueuedJob::is_active) {
                tracing::info!(runner = %row.name, slurm_job = job_id, "Slurm job ended");
                self.finish_as(&row.name, job.map(|j| j.state)).await;
                any = true;
            }
        }
        any
    }

    /// [`record_job_ended`] by this pass: a job whose node was lost (`NODE_FAIL`) is counted
    /// once, by whichever pass finishes the runner.
    async fn finish_as(&self, name: &str, ended: Option<SlurmState>) {
        let metrics = &self.ctx.telemetry.metrics;
        if record_job_ended(&self.ctx.db, metrics, name, ended).await
            && ended == Some(SlurmState::NodeFail)
        {
            metrics.runner_jobs_node_failed.inc();
            tracing::warn!(runner = %name, "the runner's node was lost (Slurm job NODE_FAIL)");
        }
    }

    /// The registration of a runner whose Slurm job is over. A runner that took a job is
    /// ephemeral: GitHub removed it after that job, so no call; if it is still listed once
    /// its Slurm job has ended, hygiene deletes it. One that never took a job is removed
    /// now (without a call when this pass's listing shows it gone). A busy one is kept.
    async fn after_slurm_job_ended(&self, row: &RunnerRow, listed: Option<&Listed>) {
        if row.busy {
            return;
        }
        if row.assigned_job_id.is_some() {
            if listed.is_some_and(|l| !l.contains_key(&row.name)) {
                self.ctx.registrations.forget(&row.name).await;
            }
            return;
        }
        self.ctx
            .registrations
            .remove(row, "slurm_job_ended", listed)
            .await;
    }

    /// A row a crash left before its runner could start: once its registration (if any) is
    /// gone, it is abandoned with `why`; otherwise the next pass tries again.
    async fn abandon_after_crash(&self, row: &RunnerRow, listed: Option<&Listed>, why: &str) {
        if self
            .ctx
            .registrations
            .remove(row, "crash_recovery", listed)
            .await
        {
            self.ctx
                .db
                .set_runner_state_logged(&row.name, RunnerState::Abandoned, Some(why.into()))
                .await;
        }
    }

    /// Bring rows in line with the Slurm queue, and recover rows a crash left mid-way.
    /// `in_flight`: runners whose credential submission holds for an sbatch retry.
    pub(super) async fn sync_from_slurm(
        &self,
        queue: &[QueuedJob],
        listed: Option<&Listed>,
        in_flight: &HashSet<String>,
    ) {
        let rows = match self.ctx.db.call(|c| store::live_runners(c)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read runners");
                return;
            }
        };
        for row in rows {
            // By the job id sbatch returned; by name only while none is recorded (a crash
            // between sbatch and recording it).
            let in_queue = match row.slurm_job_id {
                Some(id) => queue.iter().find(|j| j.job_id == id),
                None => slurm::first_named(queue, &row.name),
            };
            match row.state {
                RunnerState::Minting => {
                    // Interrupted during generate-jitconfig: the credential, if any, is lost.
                    self.abandon_after_crash(&row, listed, "interrupted while minting")
                        .await;
                }
                // Waiting for an sbatch retry.
                RunnerState::Submitting if in_flight.contains(&row.name) => {}
                RunnerState::Submitting => self.recover_submitting(&row, in_queue, listed).await,
                RunnerState::Submitted | RunnerState::Cancelling => {
                    self.follow_slurm_job(&row, in_queue, listed).await
                }
                RunnerState::Finished | RunnerState::Abandoned => {}
            }
        }
    }

    /// A `submitting` row nobody holds a credential for: sbatch may have succeeded just
    /// before a crash (adopt the job), or never ran (abandon the row).
    async fn recover_submitting(
        &self,
        row: &RunnerRow,
        in_queue: Option<&QueuedJob>,
        listed: Option<&Listed>,
    ) {
        // Adopted by name only if it runs as the runner's user: anyone can name a job.
        let Some(job) = in_queue.filter(|j| Some(j.user_id) == self.ctx.runner_uid(row)) else {
            self.abandon_after_crash(row, listed, "credential lost before sbatch")
                .await;
            return;
        };
        let (name, id, state) = (row.name.clone(), job.job_id, job.state);
        self.ctx
            .db
            .record("runner state", move |c| {
                store::set_runner_submitted(c, &name, id)?;
                store::set_runner_slurm_state(c, &name, state)
            })
            .await;
        tracing::info!(runner = %row.name, slurm_job = id, "adopted Slurm job after restart");
        if !job.is_active() {
            self.finish_as(&row.name, Some(job.state)).await;
            self.after_slurm_job_ended(row, listed).await;
        }
    }

    /// A submitted (or cancelling) runner: record its job's state, or finish it when the job
    /// is over. A cancellation that came too late (the job started) is undone; one whose job
    /// still pends is sent again (the scancel failed, or the process died between recording
    /// the intent and calling Slurm: the job would otherwise hold a slot until it started).
    async fn follow_slurm_job(
        &self,
        row: &RunnerRow,
        in_queue: Option<&QueuedJob>,
        listed: Option<&Listed>,
    ) {
        let Some(job) = in_queue.filter(|j| j.is_active()) else {
            self.finish_as(&row.name, in_queue.map(|j| j.state)).await;
            self.after_slurm_job_ended(row, listed).await;
            return;
        };
        let (name, state) = (row.name.clone(), job.state);
        let back_to_submitted =
            row.state == RunnerState::Cancelling && job.state != SlurmState::Pending;
        self.ctx
            .db
            .record("runner state", move |c| {
                store::set_runner_slurm_state(c, &name, state)?;
                if back_to_submitted {
                    store::set_runner_state(c, &name, RunnerState::Submitted, None)?;
                }
                Ok(())
            })
            .await;
        if row.state == RunnerState::Cancelling && job.state == SlurmState::Pending {
            match self.ctx.slurm.cancel_if_pending(job.job_id).await {
                Ok(()) => {
                    tracing::info!(runner = %row.name, slurm_job = job.job_id, "cancellation of a pending runner sent again")
                }
                Err(e) => {
                    tracing::warn!(runner = %row.name, error = %e, "scancel of a cancelling runner failed; the next pass retries")
                }
            }
        }
    }
}
