//! Scaling: how many runners each pool needs, per placement.
//!
//! [`demand`] counts unmet work once, for the scale pass and for ticket redemption alike;
//! [`decide`] turns one pool's demand into runners to add or pending jobs to cancel (pure);
//! [`pools`] matches labels to pools and [`placement`] says who a job's runner runs as;
//! [`warm`] retires the idle runners of warm pools (surplus, or due for rotation). The
//! [`Scaler`] stage reads the database, publishes what it saw, cancels surplus pending jobs
//! and hands the runners to create to `submit`.

pub mod decide;
pub mod demand;
pub mod placement;
pub mod pools;
pub mod warm;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};

use crate::clients::slurm::Slurm;
use crate::config::{Config, PoolConfig};
use crate::model::{now_secs, JobStatus, Placement, RunnerPhase, RunnerRow, RunnerState, Unread};
use crate::registrations::Registrations;
use crate::scale_sets::ScaleSets;
use crate::stage::StageContext;
use crate::store::{self, Db};
use crate::telemetry::{RefusedJob, Telemetry};
use decide::PoolDemand;
use demand::{demand, Demand};
use placement::Mapping;

/// A runner a scale pass wants created.
#[derive(Debug, Clone)]
pub struct NewRunner {
    pub pool: PoolConfig,
    pub placement: Placement,
    /// The queued job it is made for, when known by id (webhook intake).
    pub for_job: Option<u64>,
    /// The scale set it joins (listener intake); `None`: registered through REST.
    pub scale_set_id: Option<u64>,
}

/// What a scale pass leaves to submission.
#[derive(Debug, Default)]
pub struct Plan {
    /// Runners to create.
    pub create: Vec<NewRunner>,
    /// Some pool is at `max_runners` while jobs wait.
    pub saturated: bool,
}

/// The scale stage of the control loop.
#[derive(Clone)]
pub struct Scaler {
    config: Arc<Config>,
    db: Db,
    slurm: Slurm,
    telemetry: Telemetry,
    scale_sets: ScaleSets,
    /// Removes the registration of a warm runner it retires.
    registrations: Registrations,
    /// Jobs already counted in `jobs_refused_total`, so each is counted once.
    refused_counted: Arc<Mutex<HashSet<u64>>>,
    /// Warm pools' idle counts as last seen, for idle runner-seconds.
    idle_clock: Arc<Mutex<warm::IdleClock>>,
}

impl Scaler {
    pub fn new(ctx: StageContext, scale_sets: ScaleSets) -> Scaler {
        Scaler {
            config: ctx.config,
            db: ctx.db,
            slurm: ctx.slurm,
            telemetry: ctx.telemetry,
            scale_sets,
            registrations: ctx.registrations,
            refused_counted: Arc::new(Mutex::new(HashSet::new())),
            idle_clock: Arc::new(Mutex::new(warm::IdleClock::new())),
        }
    }

    /// Read demand (the queued rows `unread` allows), rotate warm runners due for it, publish
    /// what it saw, cancel surplus pending runners and retire surplus idle ones; `None` when
    /// the database could not be read.
    pub async fn pass(&self, unread: &Unread) -> Option<Plan> {
        let snapshot = self
            .db
            .call(|c| {
                Ok((
                    store::jobs_with_status(c, JobStatus::Queued)?,
                    store::live_runners(c)?,
                    store::repo_users(c)?,
                ))
            })
            .await;
        let (mut queued, runners, mapping) = match snapshot {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot read state for scaling");
                return None;
            }
        };
        queued.retain(|job| unread.trusts(job));
        let now = now_secs();
        let Demand {
            mut pools,
            placements,
            refused,
            scale_sets,
        } = demand(
            &self.config,
            &queued,
            &self.scale_sets.waiting(),
            &runners,
            &Mapping::new(mapping),
            now,
        );
        self.rotate_due(&runners, &mut pools, now).await;
        self.publish_refused(refused);
        self.publish_gauges(&pools);
        self.publish_warm(&pools);

        let mut plan = Plan::default();
        for pool in &self.config.pools {
            let Some(d) = pools.get(&pool.name) else {
                continue;
            };
            let decision = decide::decide(d);
            for name in decision.cancel {
                self.cancel_surplus(&runners, &name).await;
            }
            for row in runners.iter().filter(|r| decision.retire.contains(&r.name)) {
                self.retire(row, "warm_surplus").await;
            }
            if decision.blocked_by_max > 0 {
                plan.saturated = true;
                tracing::debug!(pool = %pool.name, waiting = decision.blocked_by_max, "pool at max_runners");
            }
            for (key, for_job) in decision.create {
                if let Some(placement) = placements.get(&key) {
                    plan.create.push(NewRunner {
                        pool: pool.clone(),
                        placement: placement.clone(),
                        for_job,
                        scale_set_id: scale_sets.get(&(pool.name.clone(), key)).copied(),
                    });
                }
            }
        }
        Some(plan)
    }

    /// Refused jobs go to `/status` (all currently refused) and the metric (each job once).
    fn publish_refused(&self, refused: Vec<RefusedJob>) {
        {
            let mut counted = self
                .refused_counted
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for job in &refused {
                if counted.insert(job.job_id) {
                    self.telemetry.metrics.jobs_refused(&job.reason);
                    tracing::warn!(job = job.job_id, repo = %job.repo, reason = %job.reason, "job refused: no runner will be created");
                }
            }
            let current: HashSet<u64> = refused.iter().map(|j| j.job_id).collect();
            counted.retain(|id| current.contains(id));
        }
        self.telemetry.shared().refused_jobs = refused;
    }

    fn publish_gauges(&self, demand: &BTreeMap<String, PoolDemand>) {
        let metrics = &self.telemetry.metrics;
        for (pool, d) in demand {
            let queued: usize = d.scopes.values().map(|s| s.waiting()).sum();
            metrics.set_queued(pool, queued as i64);
            for phase in RunnerPhase::ALL {
                let n = d
                    .scopes
                    .values()
                    .flat_map(|s| &s.runners)
                    .filter(|r| r.phase == phase)
                    .count();
                metrics.set_runners(pool, phase, n as i64);
            }
        }
    }

    /// Runner gauges from the database as it is now. The next pass publishes exact numbers;
    /// this only avoids stale gauges between passes.
    pub async fn refresh_runner_gauges(&self) {
        let Ok(rows) = self.db.call(|c| store::live_runners(c)).await else {
            return;
        };
        let mut counts: BTreeMap<(String, RunnerPhase), i64> = BTreeMap::new();
        for row in &rows {
            *counts.entry((row.pool.clone(), row.phase())).or_default() += 1;
        }
        for pool in &self.config.pools {
            for phase in RunnerPhase::ALL {
                let n = counts
                    .get(&(pool.name.clone(), phase))
                    .copied()
                    .unwrap_or(0);
                self.telemetry.metrics.set_runners(&pool.name, phase, n);
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
        self.db
            .set_runner_state_logged(name, RunnerState::Cancelling, None)
            .await;
        match self.slurm.cancel_if_pending(job_id).await {
            Ok(()) => {
                self.telemetry.metrics.runners_cancelled.inc();
                tracing::info!(runner = %name, slurm_job = job_id, "cancelled surplus pending runner");
            }
            Err(e) => {
                tracing::warn!(runner = %name, error = %e, "scancel of surplus runner failed")
            }
        }
    }
}
