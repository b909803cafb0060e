//! The runner scale set listener: for each listener target and pool, one task that finds or
//! creates the pool's scale set, opens a message session (outbound HTTPS only) and
//! long-polls it, as `actions/scaleset`'s listener does. What a message says is applied by
//! `apply`; scaling reads the set's statistics from [`ScaleSets`] like any other demand.
//!
//! Faults: a 409 when opening the session means an earlier session (a crashed process's) is
//! still active: retried with back-off until it expires, visibly (log, metric, `/status`).
//! A 401 on the queue refreshes the session; other errors back off on the same session (an
//! acquisition that failed is tried again before the next poll);
//! a session the service no longer knows (404) is opened again. A clean shutdown deletes the
//! session, so the next start need not wait.

mod apply;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clients::actions::{ActionsClient, ActionsError, Session};
use crate::clients::slurm::Slurm;
use crate::config::{Config, PoolConfig};
use crate::scale_sets::{ScaleSets, SessionState};
use crate::stage::StageContext;
use crate::store::{self, Db};
use crate::telemetry::Metrics;

/// Back-off between failed attempts (session conflicts included): doubling to this cap.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a clean shutdown waits for the session's deletion.
const DELETE_BUDGET: Duration = Duration::from_secs(10);

/// What the listener tasks share.
#[derive(Clone)]
pub struct ListenerContext {
    pub config: Arc<Config>,
    pub db: Db,
    pub slurm: Slurm,
    pub metrics: Arc<Metrics>,
    /// Wakes the control loop when a message changed demand.
    pub wake: Arc<Notify>,
    pub scale_sets: ScaleSets,
}

impl ListenerContext {
    /// The listeners' share of the control loop's context.
    pub fn new(stages: &StageContext, wake: Arc<Notify>, scale_sets: ScaleSets) -> Self {
        ListenerContext {
            config: stages.config.clone(),
            db: stages.db.clone(),
            slurm: stages.slurm.clone(),
            metrics: stages.telemetry.metrics.clone(),
            wake,
            scale_sets,
        }
    }
}

/// One task per listener target and pool; each ends when `stop` turns true.
pub fn spawn(ctx: ListenerContext, stop: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
    let mut tasks = Vec::new();
    for target in ctx.config.github.listener_targets() {
        let Some(client) = ctx.scale_sets.client(&target.scope.key()) else {
            continue;
        };
        for pool in &ctx.config.pools {
            let set = ListenedSet {
                ctx: ctx.clone(),
                client: client.clone(),
                scope: target.scope.key(),
                pool: pool.clone(),
            };
            tasks.push(tokio::spawn(set.run(stop.clone())));
        }
    }
    tasks
}

/// Why a session ended.
enum Ended {
    Stopped,
    Failed(ActionsError),
}

struct ListenedSet {
    ctx: ListenerContext,
    client: Arc<ActionsClient>,
    scope: String,
    pool: PoolConfig,
}

impl ListenedSet {
    async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut attempts = 0u32;
        loop {
            if *stop.borrow() {
                return;
            }
            let error = match self.session_cycle(&mut stop).await {
                Ok(Ended::Stopped) => return,
                // The session had worked: back-off starts over.
                Ok(Ended::Failed(e)) => {
                    attempts = 0;
                    e
                }
                Err(e) => e,
            };
            attempts += 1;
            let wait = backoff(attempts);
            self.report_failure(&error, attempts, wait);
            if sleep_or_stop(wait, &mut stop).await {
                return;
            }
            if !error.is_session_conflict() {
                attempts = attempts.min(3);
            }
        }
    }

    fn report_failure(&self, error: &ActionsError, attempts: u32, wait: Duration) {
        let retry_in_secs = wait.as_secs();
        let state = if error.is_session_conflict() {
            self.ctx.metrics.listener_session_conflicts.inc();
            tracing::warn!(pool = %self.pool.name, scope = %self.scope, attempts, retry_in_secs, "an earlier message session of this scale set is still active (409); waiting for it to expire");
            SessionState::WaitingForOldSession {
                attempts,
                retry_in_secs,
            }
        } else {
            tracing::warn!(pool = %self.pool.name, scope = %self.scope, error = %error, retry_in_secs, "scale set listener failed; retrying");
            SessionState::Failing {
                error: error.to_string(),
                retry_in_secs,
            }
        };
        self.ctx
            .scale_sets
            .set_session(&self.pool.name, &self.scope, state);
        self.ctx
            .scale_sets
            .set_statistics(&self.pool.name, &self.scope, None);
    }

    /// Find or create the set, open a session, listen until stopped or failed; a clean stop
    /// deletes the session.
    async fn session_cycle(&self, stop: &mut watch::Receiver<bool>) -> Result<Ended, ActionsError> {
        let (pool, scope) = (self.pool.name.as_str(), self.scope.as_str());
        self.ctx
            .scale_sets
            .set_session(pool, scope, SessionState::Starting);
        let set_id = self.ensure_scale_set().await?;
        let session = self.client.create_session(set_id, &owner_name()).await?;
        tracing::info!(
            pool,
            scope,
            scale_set = set_id,
            "scale set message session opened"
        );
        self.ctx
            .scale_sets
            .set_session(pool, scope, SessionState::Listening);
        self.ctx.scale_sets.set_statistics(
            pool,
            scope,
            Some(session.statistics.unwrap_or_default()),
        );
        self.ctx.wake.notify_one();
        let (ended, session) = self.listen(set_id, session, stop).await;
        self.ctx.scale_sets.set_statistics(pool, scope, None);
        if matches!(ended, Ended::Stopped) {
            match tokio::time::timeout(DELETE_BUDGET, self.client.delete_session(set_id, &session))
                .await
            {
                Ok(Ok(())) => tracing::info!(pool, scope, "scale set message session deleted"),
                Ok(Err(e)) => {
                    tracing::warn!(pool, scope, error = %e, "cannot delete the message session")
                }
                Err(_) => tracing::warn!(pool, scope, "deleting the message session timed out"),
            }
        }
        Ok(ended)
    }

    /// The pool's scale set in this scope, found by name or created, recorded in the database.
    async fn ensure_scale_set(&self) -> Result<u64, ActionsError> {
        let group = self.ctx.config.github.runner_group_id;
        let name = format!(
            "{}-{}",
            self.ctx.config.github.runner_name_prefix, self.pool.name
        );
        let set = match self.client.find_scale_set(group, &name).await? {
            Some(set) => set,
            None => {
                // The pool's labels, and the set's name as one more: jobs may target the set
                // either way (`runs-on: [self-hosted, linux, x64]` or `runs-on: slurm-cpu`).
                let mut labels = self.pool.labels.clone();
                labels.push(name.clone());
                let created = self.client.create_scale_set(group, &name, &labels).await?;
                tracing::info!(pool = %self.pool.name, scope = %self.scope, scale_set = created.id, name = %name, "runner scale set created");
                created
            }
        };
        let (pool, scope, id) = (self.pool.name.clone(), self.scope.clone(), set.id);
        self.ctx
            .db
            .call(move |c| store::upsert_scale_set(c, &pool, &scope, id, &name))
            .await
            .map_err(|e| ActionsError::Decode {
                endpoint: "scale set record".into(),
                message: e.to_string(),
            })?;
        self.ctx
            .scale_sets
            .set_scale_set_id(&self.pool.name, &self.scope, set.id);
        Ok(set.id)
    }
}

/// The name the session is opened under: this host's.
fn owner_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "gha-dispatcher".into())
}

fn backoff(attempts: u32) -> Duration {
    Duration::from_secs(1u64 << attempts.min(5)).min(MAX_BACKOFF)
}

/// Sleep `wait`, or less if `stop` turns true; true when stopped.
async fn sleep_or_stop(wait: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(wait) => {}
        _ = stop.wait_for(|s| *s) => return true,
    }
    *stop.borrow()
}

impl ListenedSet {
    /// Long-poll until stopped or the session fails; returns the (possibly refreshed)
    /// session for deletion.
    async fn listen(
        &self,
        set_id: u64,
        mut session: Session,
        stop: &mut watch::Receiver<bool>,
    ) -> (Ended, Session) {
        let mut failures = 0u32;
        // Offers of the messages received, not acquired yet (see `apply`). A new session starts
        // without them: the service offers again what a lost session never acquired.
        let mut offers: Vec<i64> = Vec::new();
        loop {
            let Some(outcome) = self.step(set_id, &mut session, &mut offers, stop).await else {
                return (Ended::Stopped, session);
            };
            match outcome {
                Ok(()) => failures = 0,
                Err(e) if e.is_token_expired() => {
                    match self.client.refresh_session(set_id, &session).await {
                        Ok(fresh) => {
                            tracing::info!(pool = %self.pool.name, scope = %self.scope, "message queue token expired; session refreshed");
                            session = fresh;
                        }
                        Err(e) => return (Ended::Failed(e), session),
                    }
                }
                Err(e) if e.status() == Some(404) => return (Ended::Failed(e), session),
                Err(e) => {
                    failures += 1;
                    let wait = backoff(failures);
                    tracing::warn!(pool = %self.pool.name, scope = %self.scope, error = %e, retry_in_secs = wait.as_secs(), offers_held = offers.len(), "message queue call failed; retrying on the same session");
                    if sleep_or_stop(wait, stop).await {
                        return (Ended::Stopped, session);
                    }
                }
            }
        }
    }

    /// One turn of the loop: acquire the offers held, if any, else poll for a message, apply
    /// it and acquire what it offers. `None`: stopped while polling.
    async fn step(
        &self,
        set_id: u64,
        session: &mut Session,
        offers: &mut Vec<i64>,
        stop: &mut watch::Receiver<bool>,
    ) -> Option<Result<(), ActionsError>> {
        if offers.is_empty() {
            let last = self.last_message_id(set_id).await;
            let polled = tokio::select! {
                _ = stop.wait_for(|s| *s) => return None,
                polled = self.client.get_message(session, last, self.pool.max_runners) => polled,
            };
            let message = match polled {
                Ok(Some(message)) => message,
                Ok(None) => return Some(Ok(())),
                Err(e) => return Some(Err(e)),
            };
            // Held before the message is applied: whatever fails from here on, they stay.
            *offers = apply::offers(&message);
            if let Err(e) = self.handle(set_id, session, message).await {
                return Some(Err(e));
            }
        }
        if offers.is_empty() {
            return Some(Ok(()));
        }
        Some(self.acquire(set_id, session, offers).await)
    }

    async fn last_message_id(&self, set_id: u64) -> u64 {
        let (pool, scope) = (self.pool.name.clone(), self.scope.clone());
        match self
            .ctx
            .db
            .call(move |c| store::scale_set(c, &pool, &scope))
            .await
        {
            Ok(Some(row)) if row.scale_set_id == set_id => row.last_message_id,
            _ => 0,
        }
    }
}
