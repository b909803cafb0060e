//! Warm pools (`min_idle`): retiring idle runners (surplus, or due for rotation before their
//! Slurm time limit) and what keeping them costs.
//!
//! A warm pool's runners are submitted with the job script's `--warm` flag, which lifts the
//! runner's own idle stop (`GHA_IDLE_TIMEOUT`): a runner kept ready is meant to wait, and the
//! plugin cannot know whether the dispatcher still wants it. The dispatcher, which does
//! know, retires what it no longer wants, the same way for both reasons: first the runner's
//! GitHub registration is removed (GitHub refuses while the runner runs a job, so a runner
//! that just took one is left alone to run it), then its Slurm job is cancelled. The flag
//! lifts only the idle stop; Slurm's time limit still bounds the job, so a hand-submitted
//! job using it holds at most its own allocation, and a warm runner the dispatcher lost
//! track of (the daemon down) ends at its time limit.

use std::collections::BTreeMap;
use std::time::Instant;

use super::decide::PoolDemand;
use super::Scaler;
use crate::config::PoolConfig;
use crate::model::{RunnerPhase, RunnerRow, RunnerState};
use crate::telemetry::WarmPoolStatus;

/// How long before its time limit an idle warm runner is rotated: a quarter of the limit,
/// from 15 s to 5 min, so a short test limit still leaves a pass or two to act in and a long
/// one is not cut short by much.
pub fn rotation_margin_secs(time_limit_secs: u64) -> u64 {
    (time_limit_secs / 4).clamp(15, 300)
}

/// Whether `row`, an idle runner of warm `pool`, is due for rotation at `now`.
pub fn rotation_due(pool: &PoolConfig, row: &RunnerRow, now: i64) -> bool {
    let (Some(limit), Some(started)) = (pool.time_limit_secs, row.slurm_started_at) else {
        return false;
    };
    let limit = limit as i64;
    pool.is_warm()
        && row.phase() == RunnerPhase::Idle
        && now >= started + limit - rotation_margin_secs(limit as u64) as i64
}

/// When a warm pool's idle count was last seen, and that count: idle runner-seconds are
/// the count held since then times the time passed.
pub(super) type IdleClock = BTreeMap<String, (Instant, usize)>;

impl Scaler {
    /// Retire every idle runner of a warm pool that is due for rotation; each one retired
    /// is marked cancelling in `pools`, so this pass's decision already replaces it.
    pub(super) async fn rotate_due(
        &self,
        runners: &[RunnerRow],
        pools: &mut BTreeMap<String, PoolDemand>,
        now: i64,
    ) {
        for pool in self.config.pools.iter().filter(|p| p.is_warm()) {
            for row in runners
                .iter()
                .filter(|r| r.pool == pool.name && rotation_due(pool, r, now))
            {
                if !self.retire(row, "warm_rotated").await {
                    continue;
                }
                let retired = pools
                    .get_mut(&pool.name)
                    .into_iter()
                    .flat_map(|d| d.scopes.values_mut())
                    .flat_map(|s| s.runners.iter_mut())
                    .find(|r| r.name == row.name);
                if let Some(info) = retired {
                    info.phase = RunnerPhase::Cancelling;
                }
            }
        }
    }

    /// Remove an idle runner's registration, then cancel its Slurm job. False (nothing
    /// done) when GitHub keeps the registration: the runner took a job, or GitHub could not
    /// be asked; the next pass looks again.
    pub(super) async fn retire(&self, row: &RunnerRow, reason: &str) -> bool {
        let Some(job_id) = row.slurm_job_id else {
            return false;
        };
        if !self.registrations.delete(row, reason).await {
            tracing::info!(runner = %row.name, reason, "idle runner not retired: registration kept (busy, or GitHub unavailable)");
            return false;
        }
        self.db
            .set_runner_state_logged(&row.name, RunnerState::Cancelling, None)
            .await;
        match self.slurm.cancel(job_id).await {
            Ok(()) => {
                tracing::info!(runner = %row.name, slurm_job = job_id, reason, "retired idle warm runner")
            }
            Err(e) => {
                tracing::warn!(runner = %row.name, slurm_job = job_id, error = %e, "scancel of a retired warm runner failed; its registration is gone, so it takes no job")
            }
        }
        true
    }

    /// Warm pools' target and idle gauges, idle runner-seconds since the last pass, and the
    /// same for `/status`.
    pub(super) fn publish_warm(&self, pools: &BTreeMap<String, PoolDemand>) {
        let mut clock = self
            .idle_clock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut status = BTreeMap::new();
        let now = Instant::now();
        for pool in self.config.pools.iter().filter(|p| p.is_warm()) {
            let scopes = pools.get(&pool.name).map(|d| d.scopes.values());
            let (target, idle) = scopes.into_iter().flatten().fold((0, 0), |(t, i), s| {
                let idle = s.runners.iter().filter(|r| r.phase == RunnerPhase::Idle);
                (t + s.warm, i + idle.count())
            });
            let idle_seconds = match clock.insert(pool.name.clone(), (now, idle)) {
                Some((then, held)) => held as f64 * now.duration_since(then).as_secs_f64(),
                None => 0.0,
            };
            self.telemetry
                .metrics
                .set_warm(&pool.name, target as i64, idle as i64, idle_seconds);
            let hours = pool.warm_hours.map(|h| h.to_string());
            let entry = WarmPoolStatus {
                min_idle: pool.min_idle,
                hours,
                target,
                idle,
            };
            status.insert(pool.name.clone(), entry);
        }
        drop(clock);
        self.telemetry.shared().warm_pools = status;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SlurmState;

    fn warm_pool(min_idle: u32, limit: Option<u64>) -> PoolConfig {
        PoolConfig {
            min_idle,
            time_limit_secs: limit,
            ..PoolConfig::example("cpu", &["linux"], 0)
        }
    }

    fn idle_since(started: i64) -> RunnerRow {
        RunnerRow {
            slurm_job_id: Some(7),
            slurm_state: Some(SlurmState::Running),
            slurm_started_at: Some(started),
            online: true,
            ever_online: true,
            ..RunnerRow::example("r", RunnerState::Submitted)
        }
    }

    #[test]
    fn idle_warm_runners_rotate_a_margin_before_their_limit() {
        assert_eq!(rotation_margin_secs(60), 15);
        assert_eq!(rotation_margin_secs(3600), 300);
        let pool = warm_pool(2, Some(600));
        // Started at 0, limit 600 s, margin 150 s: due from 450 s.
        assert!(!rotation_due(&pool, &idle_since(0), 449));
        assert!(rotation_due(&pool, &idle_since(0), 450));
        let busy = RunnerRow {
            busy: true,
            ..idle_since(0)
        };
        assert!(
            !rotation_due(&pool, &busy, 599),
            "a runner with a job stays"
        );
        assert!(!rotation_due(&warm_pool(0, Some(600)), &idle_since(0), 599));
        assert!(!rotation_due(&warm_pool(2, None), &idle_since(0), 10_000));
    }
}
