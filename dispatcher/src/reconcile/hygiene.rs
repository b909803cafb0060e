//! Hygiene: what nothing else cleans up. Pending jobs whose ticket expired, runners that did
//! not come online within the boot deadline, Slurm jobs whose row is over (orphans), and
//! registrations that outlived their Slurm job.

use super::{Reconciler, TEARDOWN_GRACE_SECS};
use crate::clients::slurm::QueuedJob;
use crate::model::{now_secs, RunnerRow, RunnerState, Scope, SlurmState};
use crate::registrations::Listed;
use crate::store;

impl Reconciler {
    /// Every hygiene step, after the rows were brought in line with Slurm and GitHub.
    /// `listed_at`: when the GitHub listing `gh_runners` was taken.
    pub(super) async fn hygiene(
        &self,
        queue: &[QueuedJob],
        gh_runners: Option<&Listed>,
        listed_at: i64,
    ) {
        let now = now_secs();
        let rows = self
            .ctx
            .db
            .call(|c| store::live_runners(c))
            .await
            .unwrap_or_default();
        self.cancel_expired_tickets(&rows, now).await;
        for row in rows.iter().filter(|r| r.state == RunnerState::Submitted) {
            self.enforce_boot_deadline(row, now).await;
        }
        self.cancel_orphaned_jobs(queue, now).await;
        if let Some(gh) = gh_runners {
            self.remove_leftover_registrations(gh, listed_at).await;
        }
    }

    /// A ticket that expired while its job waited in Slurm's queue could only be refused
    /// when the job starts: cancel the still-pending job now (scancel --state=PENDING never
    /// touches a started one), so the demand gets a runner with a fresh ticket.
    async fn cancel_expired_tickets(&self, rows: &[RunnerRow], now: i64) {
        let expired_while_pending = |r: &&RunnerRow| {
            r.state == RunnerState::Submitted
                && r.never_registered()
                && r.slurm_state == Some(SlurmState::Pending)
                && r.ticket_expires_at.is_some_and(|at| now >= at)
        };
        for row in rows.iter().filter(expired_while_pending) {
            let Some(job_id) = row.slurm_job_id else {
                continue;
            };
            self.ctx
                .db
                .set_runner_state_logged(&row.name, RunnerState::Cancelling, None)
                .await;
            match self.ctx.slurm.cancel_if_pending(job_id).await {
                Ok(()) => {
                    self.ctx.telemetry.metrics.reaped("ticket_expired");
                    tracing::info!(runner = %row.name, slurm_job = job_id, "cancelled a pending runner whose ticket expired");
                }
                Err(e) => {
                    tracing::warn!(runner = %row.name, error = %e, "scancel of a runner with an expired ticket failed")
                }
            }
        }
    }

    /// A submitted runner whose job started more than `boot_deadline_secs` ago and that never
    /// came online (nor took a job) is cancelled and abandoned.
    async fn enforce_boot_deadline(&self, row: &RunnerRow, now: i64) {
        let deadline = self.ctx.config.scaling.boot_deadline_secs as i64;
        let started = row.slurm_started_at.unwrap_or(i64::MAX);
        if row.ever_online
            || row.busy
            || row.assigned_job_id.is_some()
            || now.saturating_sub(started) <= deadline
        {
            return;
        }
        // Ask GitHub once more right now: a runner that connected since the last
        // listing may already be running a job, and must not be cancelled. (One that
        // never redeemed its ticket cannot have connected.)
        let scope = Scope::from_key(&row.scope).filter(|_| !row.never_registered());
        if let Some(scope) = scope {
            match self.ctx.github.find_runner(&scope, &row.name).await {
                Ok(Some(r)) if r.is_online() || r.busy => {
                    let (name, id, busy) = (row.name.clone(), r.id, r.busy);
                    self.ctx
                        .db
                        .record("runner state", move |c| {
                            store::set_runner_github(c, &name, id, true, busy)
                        })
                        .await;
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    self.ctx.telemetry.github_error("find_runner", &e);
                    return;
                }
            }
        }
        tracing::warn!(runner = %row.name, slurm_job = ?row.slurm_job_id, "runner did not come online within the boot deadline");
        if let Some(id) = row.slurm_job_id {
            if let Err(e) = self.ctx.slurm.cancel(id).await {
                tracing::warn!(error = %e, "scancel failed");
                return;
            }
        }
        self.ctx.telemetry.metrics.reaped("boot_deadline");
        // The scancel ends the job, and its end notice may finish the row first: whoever
        // ends it counts it (the row as it was when this swap ended it).
        let name = row.name.clone();
        let ended = self
            .ctx
            .db
            .call(move |c| {
                let why = "did not come online within the boot deadline";
                store::swap_runner_state(c, &name, RunnerState::Abandoned, Some(why))
            })
            .await;
        match ended {
            Ok(Some(before)) if !before.state.is_final() && before.got_no_config() => {
                self.ctx.telemetry.metrics.tickets_unredeemed.inc();
            }
            Ok(_) => {}
            Err(e) => tracing::error!(runner = %row.name, error = %e, "cannot record runner state"),
        }
        self.ctx.registrations.delete(row, "boot_deadline").await;
    }

    /// Slurm jobs of ours whose row is over (or was never ours to keep).
    async fn cancel_orphaned_jobs(&self, queue: &[QueuedJob], now: i64) {
        // A runner marked finished by its job's `completed` event may still be tearing down.
        let tearing_down = |r: &RunnerRow| {
            r.state == RunnerState::Finished
                && r.assigned_job_id.is_some()
                && r.finished_at
                    .is_some_and(|at| now.saturating_sub(at) < TEARDOWN_GRACE_SECS)
        };
        for job in queue.iter().filter(|j| j.is_active()) {
            let row = self.ctx.db.runner(&job.name).await.ok().flatten();
            // Only the row's own job (or, with none recorded, one run as its user): a job
            // someone else named like a runner is not ours to cancel.
            let its_job = |r: &RunnerRow| match r.slurm_job_id {
                Some(id) => id == job.job_id,
                None => self.ctx.runner_uid(r) == Some(job.user_id),
            };
            if row.is_some_and(|r| r.state.is_final() && !tearing_down(&r) && its_job(&r)) {
                tracing::warn!(slurm_job = job.job_id, name = %job.name, "cancelling orphaned Slurm job");
                if self.ctx.slurm.cancel(job.job_id).await.is_ok() {
                    self.ctx.telemetry.metrics.reaped("orphan_slurm_job");
                }
            }
        }
    }

    /// Registrations of ours that outlived their Slurm job, offline and not busy; and those
    /// the (complete) listing no longer shows, forgotten without a call.
    async fn remove_leftover_registrations(&self, gh: &Listed, listed_at: i64) {
        for (name, (_, runner)) in gh {
            if runner.busy || runner.is_online() {
                continue;
            }
            let row = self.ctx.db.runner(name).await.ok().flatten();
            // One that took a job is given until this listing to go away by itself.
            let outlived = |r: &RunnerRow| {
                r.assigned_job_id.is_none() || r.finished_at.is_some_and(|at| at < listed_at)
            };
            // A registration already removed in this pass (boot deadline, Slurm job
            // ended) is in the listing taken before: no second DELETE.
            let still_held = |r: &RunnerRow| r.github_runner_id.is_some();
            if let Some(mut row) =
                row.filter(|r| r.state.is_final() && still_held(r) && outlived(r))
            {
                row.github_runner_id = Some(runner.id);
                self.ctx
                    .registrations
                    .delete(&row, "offline_leftover")
                    .await;
            }
        }
        let remembered = self
            .ctx
            .db
            .call(|c| store::final_runners_with_registration(c))
            .await
            .unwrap_or_default();
        for row in remembered.iter().filter(|r| !gh.contains_key(&r.name)) {
            self.ctx.registrations.forget(&row.name).await;
        }
    }
}
