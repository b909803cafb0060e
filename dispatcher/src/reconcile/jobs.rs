//! Jobs from GitHub: queued and running jobs of every webhook target's repositories
//! (conditional requests), plus a one-by-one refresh of the queued jobs no list showed and
//! of the running ones their repository's list left out or whose runner is over, so a
//! missed webhook still creates demand, a missed cancellation or start stops counting as
//! demand, and a missed completion (GitHub does not redeliver) does not leave a job running
//! in the database for good.
//! Listener targets are not polled: their scale sets' sessions say what waits.

use std::collections::HashSet;

use super::{Reconciler, JOB_REFRESH_PER_PASS};
use crate::config::Intake;
use crate::model::{JobRow, JobStatus, JobUpdate, Unread};
use crate::store;

/// What this process has read from GitHub since it started, across passes (see
/// [`Unread`]): a steady share of failing calls (GitHub's 5xx and rate limits) fails some
/// call in nearly every pass, so each repository counts once it was listed, in any pass.
#[derive(Debug, Default)]
pub(super) struct SyncProgress {
    /// Webhook repositories listed without error at least once.
    listed: HashSet<String>,
    /// Queued rows of the first pass not yet confirmed by GitHub (`None` before it).
    unconfirmed: Option<HashSet<u64>>,
}

impl SyncProgress {
    /// Records one pass.
    fn record(&mut self, listed: Vec<String>, queued: &[JobRow], confirmed: &HashSet<u64>) {
        self.listed.extend(listed);
        let unconfirmed = self
            .unconfirmed
            .get_or_insert_with(|| queued.iter().map(|j| j.job_id).collect());
        unconfirmed.retain(|id| !confirmed.contains(id));
        tracing::debug!(
            repositories_listed = self.listed.len(),
            rows_unconfirmed = unconfirmed.len(),
            "reading the queued jobs from GitHub since start"
        );
    }

    /// What is still unread of `webhook_repos`.
    pub(super) fn unread<'a>(&self, webhook_repos: impl Iterator<Item = &'a String>) -> Unread {
        let Some(jobs) = &self.unconfirmed else {
            return Unread::Everything;
        };
        Unread::Some {
            repos: webhook_repos
                .filter(|r| !self.listed.contains(*r))
                .cloned()
                .collect(),
            jobs: jobs.clone(),
        }
    }
}

impl Reconciler {
    /// Queued jobs from GitHub, so a missed webhook still creates demand, and a job whose
    /// cancellation or start we missed stops counting as demand. Writes job rows only.
    pub async fn sync_jobs_from_github(&self) {
        let (mut confirmed, listed) = self.list_webhook_repos().await;
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
        let running = self.running_missing_from(&listed, &confirmed).await;
        let candidates: Vec<JobRow> = queued.iter().chain(&running).cloned().collect();
        let refreshed = self.refresh_unseen(&candidates, &mut confirmed).await;
        self.apply_updates(refreshed).await;
        if let Ok(mut progress) = self.sync_progress.lock() {
            progress.record(listed, &queued, &confirmed);
        }
    }

    /// Rows running in the database that no listing this pass showed, and that either
    /// their repository's listing (in `listed`, without error) left out, or whose runner is
    /// over (a repository an organization's webhook covers but no pass lists): their
    /// `completed` webhook was probably lost.
    async fn running_missing_from(&self, listed: &[String], seen: &HashSet<u64>) -> Vec<JobRow> {
        let rows = self
            .ctx
            .db
            .call(|c| {
                let running = store::jobs_with_status(c, JobStatus::InProgress)?;
                let runner_ended = store::running_job_ids_of_ended_runners(c)?;
                Ok((running, runner_ended))
            })
            .await;
        match rows {
            Ok((running, runner_ended)) => running
                .into_iter()
                .filter(|j| !seen.contains(&j.job_id))
                .filter(|j| listed.contains(&j.repo) || runner_ended.contains(&j.job_id))
                .collect(),
            Err(e) => {
                tracing::error!(error = %e, "cannot read running jobs");
                Vec::new()
            }
        }
    }

    /// Which queued rows the demand may not count yet (see [`Unread`]).
    pub fn unread(&self) -> Unread {
        match self.sync_progress.lock() {
            Ok(progress) => progress.unread(self.webhook_repos()),
            Err(_) => Unread::Everything,
        }
    }

    fn webhook_repos(&self) -> impl Iterator<Item = &String> {
        self.ctx
            .config
            .github
            .targets
            .iter()
            .filter(|t| t.intake == Intake::Webhook)
            .flat_map(|t| t.repositories.iter())
    }

    /// Lists every webhook repository's active jobs and records them; returns the job ids
    /// seen and the repositories listed without error. Repositories never listed yet go
    /// first: a rate limit fails the rest of a pass fast, and a fixed order would then never
    /// reach the last ones.
    async fn list_webhook_repos(&self) -> (HashSet<u64>, Vec<String>) {
        let mut seen = HashSet::new();
        let mut listed = Vec::new();
        let mut order: Vec<(&crate::config::Target, &String)> = self
            .ctx
            .config
            .github
            .targets
            .iter()
            .filter(|t| t.intake == Intake::Webhook)
            .flat_map(|t| t.repositories.iter().map(move |r| (t, r)))
            .collect();
        if let Ok(progress) = self.sync_progress.lock() {
            order.sort_by_key(|(_, repo)| progress.listed.contains(*repo));
        }
        for (target, repo) in order {
            {
                match self.ctx.github.active_jobs(&target.scope, repo).await {
                    Ok(jobs) => {
                        seen.extend(jobs.iter().map(|j| j.job_id));
                        listed.push(repo.clone());
                        self.apply_updates(jobs).await;
                    }
                    Err(e) => self.ctx.telemetry.github_error("poll_jobs", &e),
                }
            }
        }
        (seen, listed)
    }

    /// Refreshes one by one (up to `JOB_REFRESH_PER_PASS`) the queued jobs no listing showed;
    /// adds to `confirmed` each one GitHub answered for, and every job of a listener target
    /// (its scale set's session says what waits, not a refresh).
    async fn refresh_unseen(
        &self,
        queued: &[JobRow],
        confirmed: &mut HashSet<u64>,
    ) -> Vec<JobUpdate> {
        let mut refreshed = Vec::new();
        let unseen: Vec<&JobRow> = queued
            .iter()
            .filter(|j| !confirmed.contains(&j.job_id))
            .collect();
        let mut asked = 0;
        // After an error, ask no more this pass, but still confirm listener targets' rows.
        let mut failed = false;
        for job in unseen {
            let target = self.ctx.config.github.target_for_repo(&job.repo);
            let Some(target) = target.filter(|t| t.intake != Intake::Listener) else {
                confirmed.insert(job.job_id);
                continue;
            };
            if failed || asked == JOB_REFRESH_PER_PASS {
                continue;
            }
            asked += 1;
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
                    self.ctx.telemetry.github_error("refresh_job", &e);
                    failed = true;
                    continue;
                }
            }
            confirmed.insert(job.job_id);
        }
        refreshed
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
