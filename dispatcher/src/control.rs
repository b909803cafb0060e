//! The control loop: reconcile GitHub, the database and Slurm, then scale.
//!
//! One pass at a time, so the database rows describe every runner in flight. A full pass
//! (on a timer) refreshes queued jobs and runners from GitHub and the Slurm queue, recovers
//! rows left mid-way by a crash, runs hygiene and then scales; a webhook wakes a scale-only
//! pass. Every side effect is preceded by a database row saying what is about to happen:
//! `minting` before `generate-jitconfig`, `submitting` before `sbatch`, so after a `kill -9`
//! the next full pass finishes or undoes it and nothing is submitted twice. In ticket mode
//! nothing is minted here: the row starts as `submitting` with the ticket's hash, and the
//! registration is made when the node redeems the ticket (`tickets`); a runner whose ticket
//! was never redeemed has no registration, so no GitHub call is made to find or delete one.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinSet;

use crate::config::{Config, PoolConfig, RunnerCredentials, Scope};
use crate::db::{self, Db, RunnerRow, RunnerState};
use crate::github::{DeleteOutcome, GhRunner, GithubClient, MintError};
use crate::metrics::Metrics;
use crate::pools;
use crate::scaler::{self, PoolDemand, RunnerInfo, RunnerPhase, ScopeDemand};
use crate::slurm::{QueuedJob, RunnerCredential, Slurm, SubmitRequest};
use crate::status::{RefusedJob, SharedStatus};
use crate::tickets::Ticket;
use crate::usermap::{Mapping, Placement};

/// A minted credential that has not yet reached `sbatch`. Given up after this long, since
/// JIT configs go stale.
const CREDENTIAL_MAX_AGE: Duration = Duration::from_secs(45 * 60);
/// Queued jobs re-read one by one per full pass when no list showed them.
const JOB_REFRESH_PER_PASS: usize = 100;
/// How often `squeue` is asked, while a pool is full and jobs wait, whether a slot came free.
const SATURATED_POLL: Duration = Duration::from_millis(1500);
/// A runner marked finished by its job's `completed` event may still be tearing down in its
/// Slurm job for a while; only after this is that job an orphan to cancel.
const TEARDOWN_GRACE_SECS: i64 = 120;

/// Our runners as GitHub listed them in this pass, by name.
type Listed = HashMap<String, (Scope, GhRunner)>;

#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

#[derive(Clone)]
pub struct Controller {
    config: Arc<Config>,
    db: Db,
    github: Arc<GithubClient>,
    slurm: Slurm,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    shared: Arc<Mutex<SharedStatus>>,
    credentials: Arc<Mutex<HashMap<String, (RunnerCredential, Instant)>>>,
    backoff: Arc<Mutex<Backoff>>,
    last_prune: Arc<Mutex<Option<Instant>>>,
    /// Set once queued jobs were read from GitHub without error by this process: until then
    /// the database may hold demand that was met while we were down.
    jobs_synced: Arc<std::sync::atomic::AtomicBool>,
    /// Set by a scale pass that left queued jobs waiting because a pool was at max_runners.
    saturated: Arc<std::sync::atomic::AtomicBool>,
    /// Jobs already counted in `jobs_refused_total`, so each is counted once.
    refused_counted: Arc<Mutex<HashSet<u64>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The scaler's group of an existing runner (rows from before the mapping: service user).
pub fn placement_key(config: &Config, row: &RunnerRow) -> String {
    Placement::key_of(
        &row.scope,
        row.run_as.as_deref().or(config.slurm.user.as_deref()),
        row.account.as_deref(),
    )
}

/// Where a runner is in its life, as far as scaling (and ticket redemption) cares.
pub fn runner_phase(row: &RunnerRow) -> RunnerPhase {
    match row.state {
        RunnerState::Cancelling => RunnerPhase::Cancelling,
        // First: a runner can take a job before its sbatch is even recorded.
        _ if row.busy || row.assigned_job_id.is_some() => RunnerPhase::Busy,
        RunnerState::Minting | RunnerState::Submitting => RunnerPhase::InFlight,
        // Was online and is gone: it ran (or is leaving after) a job we did not hear about.
        _ if row.ever_online && !row.online => RunnerPhase::Busy,
        _ if row.slurm_state.as_deref() == Some("PENDING") => RunnerPhase::SlurmPending,
        _ if row.online => RunnerPhase::Idle,
        _ => RunnerPhase::Starting,
    }
}

/// A unique runner name of at most 64 characters: `<prefix>-<pool>-<16 hex>`.
pub fn runner_name(prefix: &str, pool: &str) -> String {
    let suffix: u64 = rand::rng().random();
    let mut name = format!("{prefix}-{pool}-{suffix:016x}");
    name.truncate(64);
    name
}

impl Controller {
    pub fn new(
        config: Arc<Config>,
        db: Db,
        github: Arc<GithubClient>,
        metrics: Arc<Metrics>,
        wake: Arc<Notify>,
        shared: Arc<Mutex<SharedStatus>>,
    ) -> Controller {
        Controller {
            slurm: Slurm::new(config.slurm.clone()),
            config,
            db,
            github,
            metrics,
            wake,
            shared,
            credentials: Arc::new(Mutex::new(HashMap::new())),
            backoff: Arc::new(Mutex::new(Backoff::default())),
            last_prune: Arc::new(Mutex::new(None)),
            jobs_synced: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            saturated: Arc::new(std::sync::atomic::AtomicBool::new(false)),
            refused_counted: Arc::new(Mutex::new(HashSet::new())),
        }
    }

    /// A database write whose failure is logged; the next full pass re-derives the state.
    async fn record<F>(&self, what: &'static str, f: F)
    where
        F: FnOnce(&mut rusqlite::Connection) -> Result<(), rusqlite::Error> + Send + 'static,
    {
        if let Err(e) = self.db.call(f).await {
            tracing::error!(error = %e, what, "cannot record state");
        }
    }

    fn prefix(&self) -> String {
        format!("{}-", self.config.github.runner_name_prefix)
    }

    /// Run until `shutdown` resolves. The first pass is a full one (crash recovery).
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        let period = Duration::from_secs(self.config.scaling.reconcile_interval_secs);
        // Recovery first: no scale decision on the database as a previous process left it.
        self.full_pass().await;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let retry_at = lock(&self.backoff).retry_at;
            let retry = async move {
                match retry_at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            let saturated = self.saturated.load(std::sync::atomic::Ordering::Relaxed);
            let saturated_poll = async move {
                if saturated {
                    tokio::time::sleep(SATURATED_POLL).await
                } else {
                    std::future::pending().await
                }
            };
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticker.tick() => self.full_pass().await,
                _ = self.wake.notified() => self.scale_pass().await,
                _ = retry => self.scale_pass().await,
                _ = saturated_poll => {
                    if self.notice_ended_slurm_jobs().await {
                        self.scale_pass().await;
                    }
                }
            }
        }
    }

    fn note_github_error(&self, step: &str, e: &dyn std::fmt::Display) {
        self.metrics.reconcile_error(step);
        tracing::warn!(step, error = %e, "GitHub call failed");
        lock(&self.shared).last_github_error = Some(e.to_string());
    }

    /// Mark runners whose Slurm job ended as finished, from `squeue` alone (no GitHub
    /// call), so a full pool frees its slot within seconds. Registrations are left to the
    /// full pass. True when a runner finished.
    async fn notice_ended_slurm_jobs(&self) -> bool {
        let queue = match self.slurm.queue(&self.prefix()).await {
            Ok(queue) => queue,
            Err(e) => {
                tracing::debug!(error = %e, "squeue failed; the full pass will retry");
                return false;
            }
        };
        let rows = match self.db.call(|c| db::live_runners(c)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read runners");
                return false;
            }
        };
        let mut any = false;
        for row in rows
            .iter()
            .filter(|r| matches!(r.state, RunnerState::Submitted | RunnerState::Cancelling))
        {
            let Some(job_id) = row.slurm_job_id else {
                continue;
            };
            let active = queue.iter().any(|j| j.job_id == job_id && j.is_active());
            if !active {
                tracing::info!(runner = %row.name, slurm_job = job_id, "Slurm job ended");
                self.finish(&row.name).await;
                any = true;
            }
        }
        any
    }

    pub async fn full_pass(&self) {
        self.sync_jobs_from_github().await;
        // A registration that outlives this moment outlived its Slurm job's end.
        let listed_at = db::now_secs();
        let gh_runners = self.sync_runners_from_github().await;
        match self.slurm.queue(&self.prefix()).await {
            Ok(queue) => {
                self.sync_from_slurm(&queue, gh_runners.as_ref()).await;
                self.hygiene(&queue, gh_runners.as_ref(), listed_at).await;
            }
            Err(e) => {
                // Without a trustworthy queue, nothing may be concluded about our jobs.
                self.metrics.reconcile_error("squeue");
                tracing::warn!(error = %e, "squeue failed; skipping Slurm reconciliation");
                lock(&self.shared).last_slurm_error = Some(e.to_string());
            }
        }
        self.prune_hourly().await;
        {
            let mut shared = lock(&self.shared);
            shared.last_full_reconcile_at = Some(db::now_secs());
            shared.github_calls = self.github.call_counts();
            shared.github_blocked_for_secs = self.github.blocked_for().map(|d| d.as_secs());
        }
        self.scale_pass().await;
    }

    async fn prune_hourly(&self) {
        let due = lock(&self.last_prune).is_none_or(|at| at.elapsed() > Duration::from_secs(3600));
        if !due {
            return;
        }
        *lock(&self.last_prune) = Some(Instant::now());
        match self.db.call(|c| db::prune(c, db::now_secs())).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(removed, "pruned old deliveries, jobs and runners"),
            Err(e) => tracing::warn!(error = %e, "pruning the state database failed"),
        }
    }

    /// Queued jobs from GitHub, so a missed webhook still creates demand, and a job whose
    /// cancellation or start we missed stops counting as demand.
    async fn sync_jobs_from_github(&self) {
        let mut complete = true;
        let mut seen = HashSet::new();
        for target in &self.config.github.targets {
            for repo in &target.repositories {
                match self.github.active_jobs(&target.scope, repo).await {
                    Ok(jobs) => {
                        seen.extend(jobs.iter().map(|j| j.job_id));
                        self.apply_updates(jobs).await;
                    }
                    Err(e) => {
                        complete = false;
                        self.note_github_error("poll_jobs", &e);
                    }
                }
            }
        }
        let queued = match self.db.call(|c| db::jobs_with_status(c, "queued")).await {
            Ok(q) => q,
            Err(e) => {
                tracing::error!(error = %e, "cannot read queued jobs");
                return;
            }
        };
        let mut refreshed = Vec::new();
        let unseen: Vec<&db::JobRow> = queued
            .iter()
            .filter(|j| !seen.contains(&j.job_id))
            .collect();
        complete &= unseen.len() <= JOB_REFRESH_PER_PASS;
        for job in unseen.into_iter().take(JOB_REFRESH_PER_PASS) {
            let Some(scope) = self.config.github.scope_for_repo(&job.repo) else {
                continue;
            };
            match self.github.job(&scope, &job.repo, job.job_id).await {
                Ok(Some(update)) => refreshed.push(update),
                // The job is gone on GitHub: it is no demand any more.
                Ok(None) => refreshed.push(db::JobUpdate {
                    job_id: job.job_id,
                    run_id: job.run_id,
                    repo: job.repo.clone(),
                    labels: job.labels.clone(),
                    status: "completed".into(),
                    runner_name: None,
                    created_at: None,
                    started_at: None,
                }),
                Err(e) => {
                    complete = false;
                    self.note_github_error("refresh_job", &e);
                    break;
                }
            }
        }
        self.apply_updates(refreshed).await;
        if complete {
            self.jobs_synced
                .store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }

    async fn apply_updates(&self, updates: Vec<db::JobUpdate>) {
        if updates.is_empty() {
            return;
        }
        let result = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let mut transitions = Vec::new();
                for u in &updates {
                    transitions.push(db::apply_job_update(&tx, u)?);
                }
                tx.commit()?;
                Ok(transitions)
            })
            .await;
        match result {
            Ok(transitions) => {
                for t in transitions {
                    if let Some(secs) = t.queue_to_start_secs {
                        self.metrics.queue_to_runner_start.observe(secs);
                    }
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot record job updates"),
        }
    }

    /// The configured scopes, plus those of our runners registered on one repository of an
    /// organization target (see `usermap`: repositories with a user of their own), live or
    /// final with a registration: hygiene concludes "gone" from a listing, so it must cover them.
    /// `None` when the database could not say.
    async fn scopes(&self) -> Option<Vec<Scope>> {
        let mut scopes: Vec<Scope> = self
            .config
            .github
            .targets
            .iter()
            .map(|t| t.scope.clone())
            .collect();
        let ours = self
            .db
            .call(|c| {
                let mut rows = db::live_runners(c)?;
                rows.extend(db::final_runners_with_registration(c)?);
                Ok(rows)
            })
            .await;
        match ours {
            Ok(rows) => scopes.extend(rows.iter().filter_map(|r| Scope::from_key(&r.scope))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read runner scopes");
                return None;
            }
        }
        scopes.sort();
        scopes.dedup();
        Some(scopes)
    }

    /// Online/busy state of our runners. `None` when any scope could not be listed.
    async fn sync_runners_from_github(&self) -> Option<Listed> {
        let prefix = self.prefix();
        let mut all = HashMap::new();
        let scopes = self.scopes().await;
        let mut complete = scopes.is_some();
        for scope in scopes.unwrap_or_default() {
            match self.github.list_runners(&scope).await {
                Ok(list) => {
                    for r in list.into_iter().filter(|r| r.name.starts_with(&prefix)) {
                        all.insert(r.name.clone(), (scope.clone(), r));
                    }
                }
                Err(e) => {
                    self.note_github_error("list_runners", &e);
                    complete = false;
                }
            }
        }
        let observed: Vec<(String, u64, bool, bool)> = all
            .values()
            .map(|(_, r)| (r.name.clone(), r.id, r.status == "online", r.busy))
            .collect();
        let result = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                for (name, id, online, busy) in &observed {
                    db::set_runner_github(&tx, name, *id, *online, *busy)?;
                }
                tx.commit()
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot record runner states");
        }
        if complete {
            // Runners we know of that GitHub no longer lists are offline (an ephemeral
            // runner removes itself after its job).
            let names: Vec<String> = all.keys().cloned().collect();
            self.record("runner state", move |c| {
                let listed: HashSet<String> = names.into_iter().collect();
                let tx = c.transaction()?;
                for r in db::live_runners(&tx)? {
                    if r.online && !listed.contains(&r.name) {
                        tx.execute("UPDATE runners SET online = 0 WHERE name = ?1", [&r.name])?;
                    }
                }
                tx.commit()
            })
            .await;
            Some(all)
        } else {
            None
        }
    }

    async fn delete_registration(&self, row: &RunnerRow, reason: &str) -> bool {
        if row.never_registered() && self.still_never_registered(&row.name).await {
            // Nothing was minted for it: no call, and nothing to forget.
            return true;
        }
        let Some(scope) = Scope::from_key(&row.scope) else {
            return false;
        };
        let id = match row.github_runner_id {
            Some(id) => Some(id),
            None => match self.github.find_runner(&scope, &row.name).await {
                Ok(found) => found.map(|r| r.id),
                Err(e) => {
                    self.note_github_error("find_runner", &e);
                    return false;
                }
            },
        };
        let Some(id) = id else {
            let name = row.name.clone();
            self.record("runner state", move |c| db::clear_registration(c, &name))
                .await;
            return true;
        };
        match self.github.delete_runner(&scope, id).await {
            Ok(DeleteOutcome::Deleted) | Ok(DeleteOutcome::AlreadyGone) => {
                self.metrics.reaped(reason);
                tracing::info!(runner = %row.name, reason, "runner registration removed");
                let name = row.name.clone();
                self.record("runner state", move |c| db::clear_registration(c, &name))
                    .await;
                true
            }
            Ok(DeleteOutcome::Busy) => {
                tracing::info!(runner = %row.name, "runner is running a job; registration kept");
                false
            }
            Err(e) => {
                self.note_github_error("delete_runner", &e);
                false
            }
        }
    }

    /// Whether `name`'s ticket is still unredeemed now (the row given may predate a
    /// redemption that raced with this pass). A database error answers no: then GitHub is asked.
    async fn still_never_registered(&self, name: &str) -> bool {
        let n = name.to_string();
        matches!(
            self.db.call(move |c| db::runner(c, &n)).await,
            Ok(Some(row)) if row.never_registered()
        )
    }

    /// The runner's Slurm job ended: it is finished. A ticket runner that never redeemed its
    /// ticket is counted (the scaler provisions again while the demand remains).
    async fn finish(&self, name: &str) {
        let n = name.to_string();
        let result = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                let before = db::runner(&tx, &n)?;
                db::set_runner_state(&tx, &n, RunnerState::Finished, None)?;
                tx.commit()?;
                Ok(before)
            })
            .await;
        match result {
            Ok(Some(before)) if !before.state.is_final() && before.never_registered() => {
                self.metrics.tickets_unredeemed.inc();
                tracing::info!(runner = %name, slurm_job = ?before.slurm_job_id, "Slurm job ended without redeeming its ticket");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "cannot record runner state"),
        }
    }

    async fn set_state(&self, name: &str, state: RunnerState, error: Option<String>) {
        let name = name.to_string();
        if let Err(e) = self
            .db
            .call(move |c| db::set_runner_state(c, &name, state, error.as_deref()))
            .await
        {
            tracing::error!(error = %e, "cannot record runner state");
        }
    }

    /// Bring rows in line with the Slurm queue, and recover rows a crash left mid-way.
    /// Remove a registration, without a call when this pass's complete listing shows it gone.
    async fn remove_registration(
        &self,
        row: &RunnerRow,
        reason: &str,
        listed: Option<&Listed>,
    ) -> bool {
        if listed.is_some_and(|l| !l.contains_key(&row.name)) {
            let name = row.name.clone();
            self.record("registration gone", move |c| {
                db::clear_registration(c, &name)
            })
            .await;
            return true;
        }
        self.delete_registration(row, reason).await
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
                let name = row.name.clone();
                self.record("registration gone", move |c| {
                    db::clear_registration(c, &name)
                })
                .await;
            }
            return;
        }
        self.remove_registration(row, "slurm_job_ended", listed)
            .await;
    }

    /// A row a crash left before its runner could start: once its registration (if any) is
    /// gone, it is abandoned with `why`; otherwise the next pass tries again.
    async fn abandon_after_crash(&self, row: &RunnerRow, listed: Option<&Listed>, why: &str) {
        if self
            .remove_registration(row, "crash_recovery", listed)
            .await
        {
            self.set_state(&row.name, RunnerState::Abandoned, Some(why.into()))
                .await;
        }
    }

    async fn sync_from_slurm(&self, queue: &[QueuedJob], listed: Option<&Listed>) {
        let by_name: HashMap<&str, &QueuedJob> =
            queue.iter().map(|j| (j.name.as_str(), j)).collect();
        let rows = match self.db.call(|c| db::live_runners(c)).await {
            Ok(rows) => rows,
            Err(e) => {
                tracing::error!(error = %e, "cannot read runners");
                return;
            }
        };
        for row in rows {
            let in_queue = row
                .slurm_job_id
                .and_then(|id| queue.iter().find(|j| j.job_id == id))
                .or_else(|| by_name.get(row.name.as_str()).copied());
            match row.state {
                RunnerState::Minting => {
                    // Interrupted during generate-jitconfig: the credential, if any, is lost.
                    self.abandon_after_crash(&row, listed, "interrupted while minting")
                        .await;
                }
                RunnerState::Submitting => {
                    if lock(&self.credentials).contains_key(&row.name) {
                        continue; // waiting for an sbatch retry
                    }
                    match in_queue {
                        Some(job) => {
                            // sbatch succeeded just before a crash: adopt the job.
                            let (name, id, state) =
                                (row.name.clone(), job.job_id, job.state.clone());
                            self.record("runner state", move |c| {
                                db::set_runner_submitted(c, &name, id)?;
                                db::set_runner_slurm_state(c, &name, &state)
                            })
                            .await;
                            tracing::info!(runner = %row.name, slurm_job = id, "adopted Slurm job after restart");
                            if !job.is_active() {
                                self.finish(&row.name).await;
                                self.after_slurm_job_ended(&row, listed).await;
                            }
                        }
                        None => {
                            self.abandon_after_crash(&row, listed, "credential lost before sbatch")
                                .await;
                        }
                    }
                }
                RunnerState::Submitted | RunnerState::Cancelling => {
                    match in_queue.filter(|j| j.is_active()) {
                        Some(job) => {
                            let (name, state) = (row.name.clone(), job.state.clone());
                            let back_to_submitted =
                                row.state == RunnerState::Cancelling && job.state != "PENDING";
                            self.record("runner state", move |c| {
                                db::set_runner_slurm_state(c, &name, &state)?;
                                if back_to_submitted {
                                    db::set_runner_state(c, &name, RunnerState::Submitted, None)?;
                                }
                                Ok(())
                            })
                            .await;
                        }
                        None => {
                            self.finish(&row.name).await;
                            self.after_slurm_job_ended(&row, listed).await;
                        }
                    }
                }
                RunnerState::Finished | RunnerState::Abandoned => {}
            }
        }
    }

    /// Boot deadline, orphaned Slurm jobs and leftover registrations.
    async fn hygiene(&self, queue: &[QueuedJob], gh_runners: Option<&Listed>, listed_at: i64) {
        let deadline = self.config.scaling.boot_deadline_secs as i64;
        let now = db::now_secs();
        let rows = self
            .db
            .call(|c| db::live_runners(c))
            .await
            .unwrap_or_default();
        // A ticket that expired while its job waited in Slurm's queue could only be refused
        // when the job starts: cancel the still-pending job now (scancel --state=PENDING never
        // touches a started one), so the demand gets a runner with a fresh ticket.
        let expired_while_pending = |r: &&RunnerRow| {
            r.state == RunnerState::Submitted
                && r.never_registered()
                && r.slurm_state.as_deref() == Some("PENDING")
                && r.ticket_expires_at.is_some_and(|at| now >= at)
        };
        for row in rows.iter().filter(expired_while_pending) {
            let Some(job_id) = row.slurm_job_id else {
                continue;
            };
            self.set_state(&row.name, RunnerState::Cancelling, None)
                .await;
            match self.slurm.cancel_if_pending(job_id).await {
                Ok(()) => {
                    self.metrics.reaped("ticket_expired");
                    tracing::info!(runner = %row.name, slurm_job = job_id, "cancelled a pending runner whose ticket expired");
                }
                Err(e) => {
                    tracing::warn!(runner = %row.name, error = %e, "scancel of a runner with an expired ticket failed")
                }
            }
        }
        for row in rows.iter().filter(|r| r.state == RunnerState::Submitted) {
            let started = row.slurm_started_at.unwrap_or(i64::MAX);
            if !row.ever_online
                && !row.busy
                && row.assigned_job_id.is_none()
                && now.saturating_sub(started) > deadline
            {
                // Ask GitHub once more right now: a runner that connected since the last
                // listing may already be running a job, and must not be cancelled. (One that
                // never redeemed its ticket cannot have connected.)
                let scope = Scope::from_key(&row.scope).filter(|_| !row.never_registered());
                if let Some(scope) = scope {
                    match self.github.find_runner(&scope, &row.name).await {
                        Ok(Some(r)) if r.status == "online" || r.busy => {
                            let (name, id, busy) = (row.name.clone(), r.id, r.busy);
                            self.record("runner state", move |c| {
                                db::set_runner_github(c, &name, id, true, busy)
                            })
                            .await;
                            continue;
                        }
                        Ok(_) => {}
                        Err(e) => {
                            self.note_github_error("find_runner", &e);
                            continue;
                        }
                    }
                }
                tracing::warn!(runner = %row.name, slurm_job = ?row.slurm_job_id, "runner did not come online within the boot deadline");
                if let Some(id) = row.slurm_job_id {
                    if let Err(e) = self.slurm.cancel(id).await {
                        tracing::warn!(error = %e, "scancel failed");
                        continue;
                    }
                }
                self.metrics.reaped("boot_deadline");
                if row.never_registered() {
                    self.metrics.tickets_unredeemed.inc();
                }
                self.set_state(
                    &row.name,
                    RunnerState::Abandoned,
                    Some("did not come online within the boot deadline".into()),
                )
                .await;
                self.delete_registration(row, "boot_deadline").await;
            }
        }

        // Slurm jobs of ours whose row is over (or was never ours to keep).
        for job in queue.iter().filter(|j| j.is_active()) {
            let name = job.name.clone();
            let row = self
                .db
                .call(move |c| db::runner(c, &name))
                .await
                .ok()
                .flatten();
            let tearing_down = |r: &RunnerRow| {
                r.state == RunnerState::Finished
                    && r.assigned_job_id.is_some()
                    && r.finished_at
                        .is_some_and(|at| now.saturating_sub(at) < TEARDOWN_GRACE_SECS)
            };
            if row.is_some_and(|r| r.state.is_final() && !tearing_down(&r)) {
                tracing::warn!(slurm_job = job.job_id, name = %job.name, "cancelling orphaned Slurm job");
                if self.slurm.cancel(job.job_id).await.is_ok() {
                    self.metrics.reaped("orphan_slurm_job");
                }
            }
        }

        // Registrations of ours that outlived their Slurm job, offline and not busy.
        if let Some(gh) = gh_runners {
            for (name, (_, runner)) in gh {
                if runner.busy || runner.status == "online" {
                    continue;
                }
                let n = name.clone();
                let row = self
                    .db
                    .call(move |c| db::runner(c, &n))
                    .await
                    .ok()
                    .flatten();
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
                    self.delete_registration(&row, "offline_leftover").await;
                }
            }
            // Registrations the listing no longer shows are gone: forget them, no call.
            let remembered = self
                .db
                .call(|c| db::final_runners_with_registration(c))
                .await
                .unwrap_or_default();
            for row in remembered.iter().filter(|r| !gh.contains_key(&r.name)) {
                let name = row.name.clone();
                self.record("registration gone", move |c| {
                    db::clear_registration(c, &name)
                })
                .await;
            }
        }
    }

    fn phase(row: &RunnerRow) -> RunnerPhase {
        runner_phase(row)
    }

    fn sbatch_allowed(&self) -> bool {
        lock(&self.backoff)
            .retry_at
            .is_none_or(|at| Instant::now() >= at)
    }

    /// Decide and act: cancel surplus pending jobs, create runners for uncovered demand.
    pub async fn scale_pass(&self) {
        if !self.jobs_synced.load(std::sync::atomic::Ordering::Relaxed) {
            tracing::debug!("queued jobs not yet read from GitHub since start; not scaling");
            return;
        }
        if self.sbatch_allowed() {
            self.retry_submissions().await;
        }
        let snapshot = self
            .db
            .call(|c| {
                Ok((
                    db::jobs_with_status(c, "queued")?,
                    db::live_runners(c)?,
                    db::repo_users(c)?,
                ))
            })
            .await;
        let (queued, runners, mapping) = match snapshot {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read state for scaling");
                return;
            }
        };
        let mut demand: BTreeMap<String, PoolDemand> = self
            .config
            .pools
            .iter()
            .map(|p| {
                (
                    p.name.clone(),
                    PoolDemand {
                        max_runners: p.max_runners,
                        scopes: BTreeMap::new(),
                    },
                )
            })
            .collect();
        // Demand is grouped by placement (scope, user, account): a runner only serves jobs
        // that would run as the same user.
        let mapping = Mapping::new(mapping);
        let mut placements: HashMap<String, Placement> = HashMap::new();
        let mut refused = Vec::new();
        for job in queued.iter().filter(|j| j.runner_name.is_none()) {
            let Some(pool) = pools::select(&self.config.pools, &job.labels) else {
                continue;
            };
            let placement = match mapping.place(&self.config, &job.repo) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(refusal) => {
                    refused.push(RefusedJob {
                        job_id: job.job_id,
                        repo: job.repo.clone(),
                        reason: refusal.reason().to_string(),
                    });
                    continue;
                }
            };
            let key = placement.key();
            placements.entry(key.clone()).or_insert(placement);
            if let Some(d) = demand.get_mut(&pool.name) {
                d.scopes
                    .entry(key)
                    .or_default()
                    .queued_jobs
                    .push(job.job_id);
            }
        }
        self.publish_refused(refused);
        for row in &runners {
            if let Some(d) = demand.get_mut(&row.pool) {
                d.scopes
                    .entry(self.placement_key_of(row))
                    .or_insert_with(ScopeDemand::default)
                    .runners
                    .push(RunnerInfo {
                        name: row.name.clone(),
                        phase: Self::phase(row),
                        created_at: row.created_at,
                    });
            }
        }
        self.publish_gauges(&demand);

        let mut to_create = Vec::new();
        let mut saturated = false;
        for pool in &self.config.pools {
            let Some(d) = demand.get(&pool.name) else {
                continue;
            };
            let decision = scaler::decide(d);
            for name in decision.cancel {
                self.cancel_surplus(&runners, &name).await;
            }
            if decision.blocked_by_max > 0 {
                saturated = true;
                tracing::debug!(pool = %pool.name, waiting = decision.blocked_by_max, "pool at max_runners");
            }
            for (key, job) in decision.create {
                if let Some(placement) = placements.get(&key) {
                    to_create.push((pool.clone(), placement.clone(), job));
                }
            }
        }
        self.saturated
            .store(saturated, std::sync::atomic::Ordering::Relaxed);
        if to_create.is_empty() {
            return;
        }
        if !self.sbatch_allowed() {
            tracing::debug!(
                waiting = to_create.len(),
                "sbatch backing off; demand kept for later"
            );
            return;
        }
        if let Some(wait) = self.github.blocked_for() {
            tracing::debug!(
                wait_secs = wait.as_secs(),
                "GitHub rate limited; demand kept for later"
            );
            return;
        }
        let limit = Arc::new(Semaphore::new(self.config.scaling.submit_concurrency));
        let mut tasks = JoinSet::new();
        for (pool, placement, job) in to_create {
            let this = self.clone();
            let limit = limit.clone();
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                this.create_runner(&pool, &placement, job).await;
            });
        }
        while tasks.join_next().await.is_some() {}
        self.refresh_runner_gauges().await;
    }

    fn placement_key_of(&self, row: &RunnerRow) -> String {
        placement_key(&self.config, row)
    }

    /// Refused jobs go to `/status` (all currently refused) and the metric (each job once).
    fn publish_refused(&self, refused: Vec<RefusedJob>) {
        {
            let mut counted = lock(&self.refused_counted);
            for job in &refused {
                if counted.insert(job.job_id) {
                    self.metrics.jobs_refused(&job.reason);
                    tracing::warn!(job = job.job_id, repo = %job.repo, reason = %job.reason, "job refused: no runner will be created");
                }
            }
            let current: HashSet<u64> = refused.iter().map(|j| j.job_id).collect();
            counted.retain(|id| current.contains(id));
        }
        lock(&self.shared).refused_jobs = refused;
    }

    async fn refresh_runner_gauges(&self) {
        // The next pass publishes exact numbers; this only avoids stale gauges between passes.
        if let Ok(rows) = self.db.call(|c| db::live_runners(c)).await {
            let mut counts: BTreeMap<(String, &'static str), i64> = BTreeMap::new();
            for row in &rows {
                *counts
                    .entry((row.pool.clone(), phase_name(Self::phase(row))))
                    .or_default() += 1;
            }
            for pool in &self.config.pools {
                for phase in PHASES {
                    let n = counts
                        .get(&(pool.name.clone(), phase))
                        .copied()
                        .unwrap_or(0);
                    self.metrics.set_runners(&pool.name, phase, n);
                }
            }
        }
    }

    fn publish_gauges(&self, demand: &BTreeMap<String, PoolDemand>) {
        for (pool, d) in demand {
            let queued: usize = d.scopes.values().map(|s| s.queued_jobs.len()).sum();
            self.metrics.set_queued(pool, queued as i64);
            for phase in PHASES {
                let n = d
                    .scopes
                    .values()
                    .flat_map(|s| &s.runners)
                    .filter(|r| phase_name(r.phase) == phase)
                    .count();
                self.metrics.set_runners(pool, phase, n as i64);
            }
        }
    }

    async fn cancel_surplus(&self, runners: &[RunnerRow], name: &str) {
        let Some(row) = runners.iter().find(|r| r.name == name) else {
            return;
        };
        let Some(job_id) = row.slurm_job_id else {
            return;
        };
        // Intent first, then the Slurm call, which only cancels a still-pending job.
        self.set_state(name, RunnerState::Cancelling, None).await;
        match self.slurm.cancel_if_pending(job_id).await {
            Ok(()) => {
                self.metrics.runners_cancelled.inc();
                tracing::info!(runner = %name, slurm_job = job_id, "cancelled surplus pending runner");
            }
            Err(e) => {
                tracing::warn!(runner = %name, error = %e, "scancel of surplus runner failed")
            }
        }
    }

    async fn create_runner(&self, pool: &PoolConfig, placement: &Placement, for_job: u64) {
        let scope = placement.scope.clone();
        let scope_key = scope.key();
        let name = runner_name(&self.config.github.runner_name_prefix, &pool.name);
        if self.config.slurm.runner_credentials == RunnerCredentials::Ticket {
            self.create_ticket_runner(pool, placement, for_job, name)
                .await;
            return;
        }
        let (n, p, s) = (name.clone(), pool.name.clone(), scope_key.clone());
        let (user, account) = (placement.user.clone(), placement.account.clone());
        if let Err(e) = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                db::insert_minting_runner(&tx, &n, &p, &s, Some(for_job))?;
                db::set_runner_identity(&tx, &n, user.as_deref(), account.as_deref())?;
                tx.commit()
            })
            .await
        {
            tracing::error!(error = %e, "cannot record runner intent; not minting");
            return;
        }
        let minted = self
            .github
            .generate_jitconfig(
                &scope,
                &name,
                &pool.labels,
                self.config.github.runner_group_id,
            )
            .await;
        let minted = match minted {
            Ok(m) => m,
            Err(MintError::NameTaken) => {
                // Only possible if the name was registered before: look it up and remove it.
                tracing::warn!(runner = %name, "runner name already registered; removing it");
                let row = self
                    .db
                    .call({
                        let n = name.clone();
                        move |c| db::runner(c, &n)
                    })
                    .await
                    .ok()
                    .flatten();
                if let Some(row) = row {
                    if self.delete_registration(&row, "name_conflict").await {
                        self.set_state(
                            &name,
                            RunnerState::Abandoned,
                            Some("name already registered".into()),
                        )
                        .await;
                    }
                }
                return;
            }
            Err(MintError::Other(e)) => {
                self.note_github_error("generate_jitconfig", &e);
                // The call may have registered the runner before failing; recovery of a
                // `minting` row (next full pass) looks it up by name and removes it.
                return;
            }
        };
        let (n, id) = (name.clone(), minted.runner_id);
        if let Err(e) = self
            .db
            .call(move |c| db::set_runner_registered(c, &n, id))
            .await
        {
            tracing::error!(error = %e, "cannot record registration");
            return;
        }
        lock(&self.credentials).insert(
            name.clone(),
            (
                RunnerCredential::JitConfig(minted.encoded_jit_config),
                Instant::now(),
            ),
        );
        tracing::info!(runner = %name, pool = %pool.name, scope = %scope_key, job = for_job, "runner registered");
        self.submit(&name).await;
    }

    /// Ticket mode: no JIT config before the job starts. The row goes straight to
    /// `submitting` with the ticket's hash; the ticket itself lives only in memory (for sbatch
    /// retries) and on the sbatch command line. A crash before sbatch loses it, and crash
    /// recovery abandons the row (nothing registered, nothing to delete).
    async fn create_ticket_runner(
        &self,
        pool: &PoolConfig,
        placement: &Placement,
        for_job: u64,
        name: String,
    ) {
        let ticket = Ticket::issue();
        let expires_at = db::now_secs()
            .saturating_add(i64::try_from(self.config.slurm.ticket_ttl_secs).unwrap_or(i64::MAX));
        let (n, p, s) = (name.clone(), pool.name.clone(), placement.scope.key());
        let (user, account) = (placement.user.clone(), placement.account.clone());
        let hash = ticket.hash().to_string();
        if let Err(e) = self
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                db::insert_ticket_runner(&tx, &n, &p, &s, Some(for_job), &hash, expires_at)?;
                db::set_runner_identity(&tx, &n, user.as_deref(), account.as_deref())?;
                tx.commit()
            })
            .await
        {
            tracing::error!(error = %e, "cannot record runner intent; not submitting");
            return;
        }
        lock(&self.credentials).insert(
            name.clone(),
            (
                RunnerCredential::Ticket(ticket.into_secret()),
                Instant::now(),
            ),
        );
        tracing::info!(runner = %name, pool = %pool.name, scope = %placement.scope.key(), job = for_job, "ticket runner created");
        self.submit(&name).await;
    }

    async fn retry_submissions(&self) {
        let names: Vec<String> = lock(&self.credentials).keys().cloned().collect();
        for name in names {
            let expired = lock(&self.credentials)
                .get(&name)
                .is_some_and(|(_, at)| at.elapsed() > CREDENTIAL_MAX_AGE);
            if expired {
                lock(&self.credentials).remove(&name);
                let n = name.clone();
                if let Ok(Some(row)) = self.db.call(move |c| db::runner(c, &n)).await {
                    self.delete_registration(&row, "credential_expired").await;
                }
                self.set_state(
                    &name,
                    RunnerState::Abandoned,
                    Some("credential too old to submit".into()),
                )
                .await;
                continue;
            }
            if !self.submit(&name).await {
                break; // still failing: wait for the next back-off step
            }
        }
    }

    /// `sbatch` the runner whose credential we hold. True on success.
    async fn submit(&self, name: &str) -> bool {
        let Some((credential, _)) = lock(&self.credentials).get(name).cloned() else {
            return false;
        };
        let n = name.to_string();
        let row = match self.db.call(move |c| db::runner(c, &n)).await {
            Ok(Some(row)) => row,
            _ => return false,
        };
        let Some(pool) = self.config.pools.iter().find(|p| p.name == row.pool) else {
            tracing::error!(runner = %name, pool = %row.pool, "pool no longer configured");
            return false;
        };
        let user = row.run_as.as_deref().or(self.config.slurm.user.as_deref());
        // The service user runs with `slurm.group`; a mapped user with its primary group.
        let group = match user {
            Some(u) if Some(u) != self.config.slurm.user.as_deref() => {
                match nix::unistd::User::from_name(u) {
                    Ok(Some(entry)) => Some(entry.gid.as_raw().to_string()),
                    Ok(None) | Err(_) => None, // sbatch names the unknown user in its error
                }
            }
            _ => self.config.slurm.group.clone(),
        };
        let comment = format!(
            "gha-dispatcher runner={} pool={} scope={} job={}",
            row.name,
            row.pool,
            row.scope,
            row.for_job_id
                .map(|j| j.to_string())
                .unwrap_or_else(|| "-".into())
        );
        let request = SubmitRequest {
            runner_name: &row.name,
            comment: &comment,
            pool,
            user,
            group: group.as_deref(),
            account: row.account.as_deref(),
            credential: &credential,
        };
        match self.slurm.submit(&request).await {
            Ok(slurm_job) => {
                lock(&self.credentials).remove(name);
                *lock(&self.backoff) = Backoff::default();
                lock(&self.shared).sbatch_retry_in_secs = None;
                self.metrics.sbatch_submissions.inc();
                let n = name.to_string();
                let for_job = row.for_job_id;
                let queued_at = self
                    .db
                    .call(move |c| {
                        db::set_runner_submitted(c, &n, slurm_job)?;
                        Ok(match for_job {
                            Some(j) => db::job(c, j)?.and_then(|j| j.queued_ms),
                            None => None,
                        })
                    })
                    .await;
                if let Ok(Some(queued_at)) = queued_at {
                    self.metrics
                        .queue_to_submit
                        .observe((db::now_millis() - queued_at).max(0) as f64 / 1000.0);
                }
                tracing::info!(runner = %name, slurm_job, "runner submitted");
                true
            }
            Err(e) => {
                self.metrics.sbatch_failures.inc();
                let message = e.to_string();
                let delay = {
                    let mut b = lock(&self.backoff);
                    b.failures += 1;
                    let secs = (1u64 << (b.failures - 1).min(10))
                        .min(self.config.scaling.sbatch_backoff_max_secs);
                    b.retry_at = Some(Instant::now() + Duration::from_secs(secs));
                    secs
                };
                tracing::warn!(runner = %name, error = %message, retry_in_secs = delay, "sbatch failed; will retry");
                {
                    let mut shared = lock(&self.shared);
                    shared.last_sbatch_error = Some(message.clone());
                    shared.sbatch_retry_in_secs = Some(delay);
                }
                let n = name.to_string();
                self.record("runner state", move |c| {
                    db::set_runner_error(c, &n, &message)
                })
                .await;
                false
            }
        }
    }
}

const PHASES: [&str; 6] = [
    "in_flight",
    "slurm_pending",
    "starting",
    "idle",
    "busy",
    "cancelling",
];

fn phase_name(phase: RunnerPhase) -> &'static str {
    match phase {
        RunnerPhase::InFlight => "in_flight",
        RunnerPhase::SlurmPending => "slurm_pending",
        RunnerPhase::Starting => "starting",
        RunnerPhase::Idle => "idle",
        RunnerPhase::Busy => "busy",
        RunnerPhase::Cancelling => "cancelling",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(state: RunnerState) -> RunnerRow {
        RunnerRow {
            name: "r".into(),
            pool: "cpu".into(),
            scope: "org:a".into(),
            state,
            for_job_id: None,
            github_runner_id: None,
            slurm_job_id: Some(1),
            slurm_state: Some("PENDING".into()),
            online: false,
            ever_online: false,
            busy: false,
            assigned_job_id: None,
            last_error: None,
            created_at: 0,
            submitted_at: None,
            slurm_started_at: None,
            finished_at: None,
            run_as: None,
            account: None,
            ticket_hash: None,
            ticket_expires_at: None,
            ticket_redeemed_at: None,
        }
    }

    #[test]
    fn phases() {
        assert_eq!(
            Controller::phase(&row(RunnerState::Minting)),
            RunnerPhase::InFlight
        );
        assert_eq!(
            Controller::phase(&row(RunnerState::Submitted)),
            RunnerPhase::SlurmPending
        );
        let running = RunnerRow {
            slurm_state: Some("RUNNING".into()),
            ..row(RunnerState::Submitted)
        };
        assert_eq!(Controller::phase(&running), RunnerPhase::Starting);
        let idle = RunnerRow {
            online: true,
            ever_online: true,
            ..running.clone()
        };
        assert_eq!(Controller::phase(&idle), RunnerPhase::Idle);
        let gone = RunnerRow {
            online: false,
            ..idle
        };
        assert_eq!(Controller::phase(&gone), RunnerPhase::Busy);
        // A job can reach a runner before its sbatch is recorded: busy wins over in-flight.
        let early = RunnerRow {
            assigned_job_id: Some(9),
            ..row(RunnerState::Submitting)
        };
        assert_eq!(Controller::phase(&early), RunnerPhase::Busy);
        let cancelling = RunnerRow {
            busy: true,
            ..row(RunnerState::Cancelling)
        };
        assert_eq!(Controller::phase(&cancelling), RunnerPhase::Cancelling);
    }

    #[test]
    fn runner_names_are_unique_and_short() {
        let long_prefix = "p".repeat(20);
        let long_pool = "q".repeat(20);
        let names: HashSet<String> = (0..1000)
            .map(|_| runner_name(&long_prefix, &long_pool))
            .collect();
        assert_eq!(names.len(), 1000);
        assert!(names.iter().all(|n| n.len() <= 64));
    }
}
