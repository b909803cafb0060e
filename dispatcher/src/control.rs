//! The control loop: only the order of the stages and when they run.
//!
//! One pass at a time, so the database rows describe every runner in flight. A runner pass
//! (on a timer, and first after a start: crash recovery) reconciles our runners with GitHub
//! and Slurm and then scales; a webhook, a node's notice that a runner job ended (or the end
//! of an sbatch back-off) wakes a scale-only pass; while a pool is full and jobs wait, our
//! jobs in Slurm alone are polled for freed slots, as a fallback.
//!
//! The GitHub job poll (queued and running jobs, one listing per repository) runs beside the
//! loop, not in it: it writes job rows only, as the webhook intake does, and a flaky GitHub
//! makes it slow (retries, rate-limit pauses: tens of seconds a poll at a 20% error share,
//! measured by the soak). Inside the loop it held every pass back that long, so freed slots
//! waited for it. Each poll wakes a scale pass.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

use crate::clients::github::GithubClient;
use crate::reconcile::Reconciler;
use crate::scale::Scaler;
use crate::submit::Submitter;

/// How often Slurm is asked, while a pool is full and jobs wait, whether a slot came free.
/// Only a fallback: a runner job's end wakes the loop at once through the node's epilog
/// notice (`ended`), the `completed` webhook or the listener's `JobCompleted`. The poll
/// catches a notice that never came (dispatcher down or unreachable, helper failed); 10 s
/// bounds that rare delay while costing slurmctld one single-job RPC per runner in flight
/// per 10 s instead of per 1.5 s.
const SATURATED_POLL: Duration = Duration::from_secs(10);

/// How soon a job poll follows one that left the queued jobs not yet read from GitHub
/// (errors, rate limits): scaling waits for that read, so waiting a whole period between
/// tries would leave a restarted dispatcher idle for minutes when GitHub is flaky.
const UNSYNCED_RETRY: Duration = Duration::from_secs(3);

#[derive(Clone)]
pub struct Controller {
    reconcile: Reconciler,
    scale: Scaler,
    submit: Submitter,
    github: Arc<GithubClient>,
    wake: Arc<Notify>,
    /// Set by a scale pass that left queued jobs waiting because a pool was at max_runners.
    saturated: Arc<AtomicBool>,
    period: Duration,
}

impl Controller {
    pub fn new(
        reconcile: Reconciler,
        scale: Scaler,
        submit: Submitter,
        github: Arc<GithubClient>,
        wake: Arc<Notify>,
        period: Duration,
    ) -> Controller {
        Controller {
            reconcile,
            scale,
            submit,
            github,
            wake,
            saturated: Arc::new(AtomicBool::new(false)),
            period,
        }
    }

    /// Run until `shutdown` resolves. The first pass is a runner pass (crash recovery); the
    /// job poll starts beside it.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        // A set, so the poll stops with the loop however it ends (dropped, too).
        let mut job_poll = tokio::task::JoinSet::new();
        job_poll.spawn(self.clone().poll_jobs());
        // Recovery first: no scale decision on the database as a previous process left it.
        self.runner_pass().await;
        let start = tokio::time::Instant::now() + self.period;
        let mut ticker = tokio::time::interval_at(start, self.period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let retry_at = self.submit.retry_at();
            let retry = async move {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let saturated = self.saturated.load(Ordering::Relaxed);
            let saturated_poll = async move {
                if saturated {
                    tokio::time::sleep(SATURATED_POLL).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => self.runner_pass().await,
                _ = self.wake.notified() => self.scale_pass().await,
                _ = retry => self.scale_pass().await,
                _ = saturated_poll => {
                    if self.reconcile.notice_ended_slurm_jobs().await {
                        self.scale_pass().await;
                    }
                }
            }
        }
        job_poll.abort_all();
    }

    /// The GitHub job poll, beside the loop: every period, or `UNSYNCED_RETRY` after a poll
    /// that left queued jobs unread; each poll wakes a scale pass.
    async fn poll_jobs(self) {
        loop {
            self.reconcile.sync_jobs_from_github().await;
            self.wake.notify_one();
            let unsynced = !self.reconcile.unread().is_nothing();
            tokio::time::sleep(if unsynced {
                UNSYNCED_RETRY
            } else {
                self.period
            })
            .await;
        }
    }

    /// Reconcile our runners with GitHub and Slurm, then scale.
    async fn runner_pass(&self) {
        self.reconcile
            .reconcile_runners(&self.submit.in_flight())
            .await;
        self.scale_pass().await;
    }

    /// Everything in one go, in order (the job poll, the runner pass): for tests that run
    /// passes one at a time.
    pub async fn full_pass(&self) {
        self.reconcile.full_pass(&self.submit.in_flight()).await;
        self.scale_pass().await;
    }

    /// Retry held submissions, decide, cancel surplus, create runners for uncovered demand.
    pub async fn scale_pass(&self) {
        if self.submit.allowed() {
            self.submit.retry().await;
        }
        let Some(plan) = self.scale.pass(&self.reconcile.unread()).await else {
            return;
        };
        self.saturated.store(plan.saturated, Ordering::Relaxed);
        if plan.create.is_empty() {
            return;
        }
        if !self.submit.allowed() {
            tracing::debug!(
                waiting = plan.create.len(),
                "sbatch backing off; demand kept for later"
            );
            return;
        }
        // A runner started now redeems its ticket for a config from GitHub: not while calls
        // are paused for long (it would fail). A short pause, which a redemption waits out,
        // holds nothing back: under a steady share of rate limits one is nearly always on.
        if let Some(wait) = self.github.blocked_long() {
            tracing::debug!(
                wait_secs = wait.as_secs(),
                "GitHub rate limited; demand kept for later"
            );
            return;
        }
        self.submit.create_all(plan.create).await;
        self.scale.refresh_runner_gauges().await;
    }
}
