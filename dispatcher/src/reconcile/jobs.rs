//! Jobs from GitHub: queued and running jobs of every webhook target's repositories
//! (conditional requests), plus a one-by-one refresh of queued jobs no list showed, so a
//! missed webhook still creates demand and a missed cancellation or start stops counting as
//! demand. Listener targets are not polled: their scale sets' sessions say what waits.

use std::collections::HashSet;
use std::sync::atomic::Ordering;

use super::{Reconciler, JOB_REFRESH_PER_PASS};
use crate::config::Intake;
use crate::model::{JobRow, JobStatus, JobUpdate};
use crate::store;

impl Reconciler {
    /// Queued jobs from GitHub, so a missed webhook still creates demand, and a job whose
    /// cancellation or start we missed stops counting as demand.
    pub(super) async fn sync_jobs_from_github(&self) {
        let mut complete = true;
        let mut seen = HashSet::new();
        let webhook_targets = self
            .ctx
            .config
            .github
            .targets
            .iter()
            .filter(|t| t.intake == Intake::Webhook);
        for target in webhook_targets {
            for repo in &target.repositories {
                match self.ctx.github.active_jobs(&target.scope, repo).await {
                    Ok(jobs) => {
                        seen.extend(jobs.iter().map(|j| j.job_id));
                        self.apply_updates(jobs).await;
                    }
                    Err(e) => {
                        complete = false;
                        self.ctx.telemetry.github_error("poll_jobs", &e);
                    }
                }
            }
        }
        let queued = match self
            .ctx
            .db
            .call(|c| store::jobs_with_status(c, JobStatus::Queued))
            .await
        {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "cannot read queued jobs");
                return;
            }
        };
        let mut refreshed = Vec::new();
        let unseen: Vec<&JobRow> = queued
            .iter()
            .filter(|j| !seen.contains(&j.job_id))
            .collect();
        complete &= unseen.len() <= JOB_REFRESH_PER_PASS;
        for job in unseen.into_iter().take(JOB_REFRESH_PER_PASS) {
            let Some(target) = self.ctx.config.github.target_for_repo(&job.repo) else {
                continue;
            };
            if target.intake == Intake::Listener {
                continue;
            }
            let scope = target.scope.clone();
            match self.ctx.github.job(&scope, &job.repo, job.job_id).await {
                Ok(Some(update)) => refreshed.push(update),
                // The job is gone on GitHub: it is no demand any more.
                Ok(None) => refreshed.push(JobUpdate {
                    job_id: job.job_id,
                    run_id: job.run_id,
                    repo: job.repo.clone(),
                    labels: job.labels.clone(),
                    status: JobStatus::Completed,
                    runner_name: None,
                    workflow: None,
                    created_at: None,
                    started_at: None,
                }),
                Err(e) => {
                    complete = false;
                    self.ctx.telemetry.github_error("refresh_job", &e);
                    break;
                }
            }
        }
        self.apply_updates(refreshed).await;
        if complete {
            self.jobs_synced.store(true, Ordering::Relaxed);
        }
    }

    async fn apply_updates(&self, updates: Vec<JobUpdate>) {
        if updates.is_empty() {
            return;
        }
        let result = self
            .ctx
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let mut transitions = Vec::new();
                for u in &updates {
                    transitions.push(store::apply_job_update(&tx, u)?);
                }
                tx.commit()?;
                Ok(transitions)
            })
            .await;
        match result {
            Ok(transitions) => {
                for t in transitions {
                    if let Some(secs) = t.queue_to_start_secs {
                        self.ctx
                            .telemetry
                            .metrics
                            .queue_to_runner_start
                            .observe(secs);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot record job updates"),
        }
    }
}
