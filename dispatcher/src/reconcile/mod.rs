//! Reconciliation: bring the database in line with GitHub and Slurm, so a missed webhook, a
//! crash or a restart changes nothing.
//!
//! A full pass reads queued and running jobs from GitHub (`jobs`), our runners' registrations
//! (`runners`) and our Slurm jobs (`tracked`: by id, none when nothing is in flight), recovers
//! rows a crash left mid-way (`slurm`), then runs `hygiene`. The control loop runs the jobs'
//! part as a poll of its own beside the loop ([`Reconciler::sync_jobs_from_github`]) and the
//! rest in its passes ([`Reconciler::reconcile_runners`]). Nothing is concluded from an incomplete view: a failed listing or `squeue` skips
//! the steps that would read it. In ticket mode a runner whose ticket was never redeemed has
//! no registration, so no GitHub call is made to find or delete one.

mod hygiene;
mod jobs;
mod runners;
mod slurm;
mod tracked;

pub use slurm::record_job_ended;

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::model::now_secs;
use crate::stage::StageContext;
use crate::store;

/// Queued jobs re-read one by one per full pass when no list showed them.
const JOB_REFRESH_PER_PASS: usize = 100;
/// A runner marked finished by its job's `completed` event may still be tearing down in its
/// Slurm job for a while; only after this is that job an orphan to cancel.
const TEARDOWN_GRACE_SECS: i64 = 120;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

/// The reconcile stage of the control loop.
#[derive(Clone)]
pub struct Reconciler {
    ctx: StageContext,
    /// What the passes read from GitHub so far: until a repository was listed, the database
    /// may hold its demand that was met while we were down (see `Unread`).
    sync_progress: Arc<Mutex<jobs::SyncProgress>>,
    last_prune: Arc<Mutex<Option<Instant>>>,
}

impl Reconciler {
    pub fn new(ctx: StageContext) -> Reconciler {
        Reconciler {
            ctx,
            sync_progress: Arc::new(Mutex::new(jobs::SyncProgress::default())),
            last_prune: Arc::new(Mutex::new(None)),
        }
    }

    fn prefix(&self) -> String {
        format!("{}-", self.ctx.config.github.runner_name_prefix)
    }

    /// One full reconcile pass: jobs, then runners. `in_flight`: runners whose credential
    /// submission holds for an sbatch retry (their `submitting` rows are not crash leftovers).
    pub async fn full_pass(&self, in_flight: &HashSet<String>) {
        self.sync_jobs_from_github().await;
        self.reconcile_runners(in_flight).await;
    }

    /// The runners' part of a pass: registrations from GitHub, our Slurm jobs, crash
    /// recovery, hygiene. The control loop runs it apart from the job poll, which writes job
    /// rows only (as the webhook intake does) and so runs beside the loop.
    pub async fn reconcile_runners(&self, in_flight: &HashSet<String>) {
        // A registration that outlives this moment outlived its Slurm job's end.
        let listed_at = now_secs();
        let gh_runners = self.sync_runners_from_github().await;
        match self.our_jobs(in_flight).await {
            Ok(queue) => {
                self.sync_from_slurm(&queue, gh_runners.as_ref(), in_flight)
                    .await;
                self.hygiene(&queue, gh_runners.as_ref(), listed_at).await;
            }
            Err(e) => {
                // Without a trustworthy queue, nothing may be concluded about our jobs.
                self.ctx.telemetry.metrics.reconcile_error("squeue");
                tracing::warn!(error = %e, "squeue failed; skipping Slurm reconciliation");
                self.ctx.telemetry.shared().last_slurm_error = Some(e.to_string());
            }
        }
        self.prune_hourly().await;
        let mut shared = self.ctx.telemetry.shared();
        shared.last_full_reconcile_at = Some(now_secs());
        shared.github_calls = self.ctx.github.call_counts();
        shared.github_blocked_for_secs = self.ctx.github.blocked_for().map(|d| d.as_secs());
    }

    async fn prune_hourly(&self) {
        {
            let mut last = self
                .last_prune
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if last.is_some_and(|at| at.elapsed() <= PRUNE_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        match self.ctx.db.call(|c| store::prune(c, now_secs())).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned old deliveries, jobs and runners"),
            Err(e) => tracing::warn!(error = %e, "pruning the state database failed"),
        }
    }
}
