//! Applying one session message: its effects on our runners and its id in one transaction
//! (a redelivery is recognised by its id and changes nothing), then the statistics for
//! scaling, the accounting comments and the acknowledgement; and acquiring the jobs offered.
//!
//! The offers outlive their message: once its id is recorded (the next poll's
//! `lastMessageId`, which acknowledges it even if the `DELETE` failed) it does not come again,
//! so the listener holds the offers from the moment it has the message until an acquisition
//! succeeds. Left offered, a job counts against the set's capacity and no runner takes it.
//!
//! `JobStarted` names the runner that took a job: it is busy, and what it ran is recorded
//! (`accounting`). `JobCompleted` ends a runner's life (a JIT runner takes one job). Jobs
//! that come and go without a runner (`JobAssigned` then `JobCompleted` "canceled", the
//! re-offer quirk) touch no runner: demand follows the statistics, so they are never counted
//! twice, and a runner submitted for one is a surplus that scaling cancels while it pends.

use rusqlite::Connection;

use super::ListenedSet;
use crate::accounting::{self, RanJob};
use crate::clients::actions::{ActionsError, JobInfo, JobMessage, Message, Session};
use crate::store;

/// A runner that took a job in this message: (runner, what it ran, its Slurm job).
type Started = (String, RanJob, Option<u64>);

impl ListenedSet {
    /// Applies and acknowledges `message` (the caller holds its offers, to acquire).
    pub(super) async fn handle(
        &self,
        set_id: u64,
        session: &mut Session,
        message: Message,
    ) -> Result<(), ActionsError> {
        let started = self.record(set_id, &message).await?;
        self.ctx
            .scale_sets
            .set_statistics(&self.pool.name, &self.scope, Some(message.statistics));
        // Scaling may act on the statistics while the acknowledgement travels.
        self.ctx.wake.notify_one();
        // Before the acknowledgement: a redelivery (this message failing to be acknowledged)
        // applies nothing again, so this is the only chance.
        for (runner, ran, slurm_job) in started.unwrap_or_default() {
            accounting::recorded(&self.ctx.slurm, &self.ctx.metrics, &runner, &ran, slurm_job)
                .await;
        }
        self.ack(set_id, session, message.id).await
    }

    /// The message's effects, once: `None` when it was applied before (a redelivery).
    async fn record(
        &self,
        set_id: u64,
        message: &Message,
    ) -> Result<Option<Vec<Started>>, ActionsError> {
        let (id, jobs) = (message.id, message.jobs.clone());
        let applied = self
            .ctx
            .db
            .call(move |c| store::apply_message(c, set_id, id, |tx| effects(tx, &jobs)))
            .await
            .map_err(|e| ActionsError::Decode {
                endpoint: "message record".into(),
                message: e.to_string(),
            })?;
        match &applied {
            Some(_) => {
                for job in &message.jobs {
                    self.ctx.metrics.listener_message(kind(job));
                }
            }
            None => {
                tracing::info!(pool = %self.pool.name, message = id, "message redelivered; applied before")
            }
        }
        Ok(applied)
    }

    /// Acknowledge (delete) the message; a 401 refreshes the session and tries once more.
    async fn ack(
        &self,
        set_id: u64,
        session: &mut Session,
        message_id: u64,
    ) -> Result<(), ActionsError> {
        match self.client.delete_message(session, message_id).await {
            Err(e) if e.is_token_expired() => {
                *session = self.client.refresh_session(set_id, session).await?;
                self.client.delete_message(session, message_id).await
            }
            other => other,
        }
    }

    /// Acquires the `offered` runner requests; they are left for another try when that fails
    /// in a way a retry can mend (the caller refreshes the session on a 401, opens another on a
    /// 404, backs off otherwise). Another 4xx says the service will not take them: they are
    /// let go, for its re-offer, rather than block the polls behind them.
    pub(super) async fn acquire(
        &self,
        set_id: u64,
        session: &Session,
        offered: &mut Vec<i64>,
    ) -> Result<(), ActionsError> {
        let acquired = match self.client.acquire_jobs(set_id, session, offered).await {
            Ok(acquired) => acquired,
            Err(e) => {
                if e.status()
                    .is_some_and(|s| (400..500).contains(&s) && s != 401 && s != 404)
                {
                    tracing::warn!(pool = %self.pool.name, offered = offered.len(), error = %e, "the service refused to hand over the offered jobs; letting them go");
                    offered.clear();
                }
                return Err(e);
            }
        };
        self.ctx
            .metrics
            .listener_jobs_acquired
            .inc_by(acquired.len() as u64);
        tracing::info!(pool = %self.pool.name, offered = offered.len(), acquired = acquired.len(), "jobs acquired");
        // Those not acquired went to another listener or were withdrawn: the service decided.
        offered.clear();
        Ok(())
    }
}

/// The runner request ids of the jobs `message` offers. Acquiring is idempotent: those of a
/// redelivered message are acquired (again) too.
pub(super) fn offers(message: &Message) -> Vec<i64> {
    message
        .jobs
        .iter()
        .filter_map(|j| match j {
            JobMessage::Available(job) => Some(job.runner_request_id),
            _ => None,
        })
        .collect()
}

/// The runner rows' side of a message, inside its transaction.
fn effects(tx: &Connection, jobs: &[JobMessage]) -> rusqlite::Result<Vec<Started>> {
    let mut started = Vec::new();
    for job in jobs {
        match job {
            JobMessage::Started {
                job, runner_name, ..
            } => {
                let ran = ran_job(job);
                if let Some(slurm_job) =
                    store::set_runner_ran(tx, runner_name, &ran.comment(runner_name))?
                {
                    started.push((runner_name.clone(), ran, slurm_job));
                }
            }
            JobMessage::Completed { runner_name, .. } if !runner_name.is_empty() => {
                store::finish_runner_after_job(tx, runner_name)?;
            }
            _ => {}
        }
    }
    Ok(started)
}

fn ran_job(job: &JobInfo) -> RanJob {
    RanJob {
        repo: job.repo(),
        workflow: Some(job.job_workflow_ref.clone()).filter(|w| !w.is_empty()),
        run_id: Some(job.workflow_run_id).filter(|r| *r > 0),
        job_id: job.job_id.clone(),
    }
}

fn kind(job: &JobMessage) -> &'static str {
    match job {
        JobMessage::Available(_) => "JobAvailable",
        JobMessage::Assigned(_) => "JobAssigned",
        JobMessage::Started { .. } => "JobStarted",
        JobMessage::Completed { .. } => "JobCompleted",
    }
}
