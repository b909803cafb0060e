//! Properties of the scaling decision (`scale::decide`) over random pools: any number of
//! scopes, queued jobs, warm targets (`min_idle`) and runners in any phase. Each decision
//! stays within `max_runners`, creates only for queued jobs or warmth no spare runner covers,
//! cancels only runners whose Slurm job is still pending, retires only idle runners of a
//! warm pool, and fills the room it has. Played forward against a small world (runners
//! start, go idle, take jobs and finish, in random order), repeated decisions meet every
//! queued job eventually, with no pool ever above `max_runners`, and a warm pool settles at
//! its warm target of idle runners.
//!
//! Only the public shape is used (`decide`, `PoolDemand` and `ScopeDemand` built from
//! `Default`), so the properties hold whatever else the decision comes to read.

use std::collections::{BTreeMap, BTreeSet};

use gha_dispatcher::model::RunnerPhase;
use gha_dispatcher::scale::decide::{decide, PoolDemand, RunnerInfo, ScopeDemand};
use proptest::prelude::*;

// The struct update keeps this building when the decision's input grows a field (a second
// intake's job count): the properties are about the fields set here.
#[allow(clippy::needless_update)]
fn scope_demand(queued: Vec<u64>, warm: usize, runners: Vec<RunnerInfo>) -> ScopeDemand {
    ScopeDemand {
        queued_jobs: queued,
        warm,
        runners,
        ..ScopeDemand::default()
    }
}

#[allow(clippy::needless_update)]
fn pool_demand(max: u32, retire_idle: bool, scopes: BTreeMap<String, ScopeDemand>) -> PoolDemand {
    PoolDemand {
        max_runners: max,
        scopes,
        retire_idle,
        ..PoolDemand::default()
    }
}

/// A pool: up to 3 scopes, each with up to 8 queued jobs (ids unique in the pool), a warm
/// target up to 3 and up to 8 runners in any phase (names unique in the pool); warm (its idle
/// surplus retired) or not.
fn pool_strategy() -> impl Strategy<Value = PoolDemand> {
    let scope = (
        0usize..8,
        0usize..4,
        proptest::collection::vec(
            (0usize..RunnerPhase::ALL.len(), 0i64..100, any::<bool>()),
            0..8,
        ),
    );
    let pool = (
        0u32..12,
        any::<bool>(),
        proptest::collection::vec(scope, 1..4),
    );
    pool.prop_map(|(max, retire_idle, scopes)| {
        let mut next_job = 1u64;
        let mut next_runner = 0usize;
        let mut built = BTreeMap::new();
        for (index, (queued, warm, runners)) in scopes.into_iter().enumerate() {
            let jobs: Vec<u64> = (next_job..next_job + queued as u64).collect();
            next_job += queued as u64;
            let runners = runners
                .into_iter()
                .map(|(phase, created_at, registered)| {
                    next_runner += 1;
                    RunnerInfo {
                        name: format!("r{next_runner}"),
                        phase: RunnerPhase::ALL[phase],
                        created_at,
                        registered,
                    }
                })
                .collect();
            let warm = if retire_idle { warm } else { 0 };
            built.insert(format!("scope-{index}"), scope_demand(jobs, warm, runners));
        }
        pool_demand(max, retire_idle, built)
    })
}

fn spare(scope: &ScopeDemand) -> usize {
    scope.runners.iter().filter(|r| r.phase.is_spare()).count()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn one_decision_keeps_every_rule(pool in pool_strategy()) {
        let decision = decide(&pool);
        let alive: usize = pool.scopes.values().map(|s| s.runners.len()).sum();
        let max = pool.max_runners as usize;
        // Never above max_runners (runners already there beyond it are not ours to undo here).
        prop_assert!(alive + decision.create.len() <= max.max(alive));

        let mut made_for = BTreeSet::new();
        for (scope, job) in &decision.create {
            let demand = pool.scopes.get(scope).expect("a created runner names a known scope");
            let Some(job) = job else {
                prop_assert!(
                    demand.waiting_count + demand.warm > 0,
                    "made for no job, no count and no warmth"
                );
                continue;
            };
            prop_assert!(demand.queued_jobs.contains(job), "made for a job not queued there");
            prop_assert!(made_for.insert(*job), "two runners made for job {job}");
        }
        let all_runners: BTreeMap<&str, &RunnerInfo> = pool
            .scopes
            .values()
            .flat_map(|s| s.runners.iter().map(|r| (r.name.as_str(), r)))
            .collect();
        let cancelled: BTreeSet<&str> = decision.cancel.iter().map(String::as_str).collect();
        prop_assert_eq!(cancelled.len(), decision.cancel.len(), "a runner cancelled twice");
        for name in &cancelled {
            let runner = all_runners.get(name).expect("a cancelled runner exists");
            // A runner that started may be taking a job right now: never cancelled.
            prop_assert_eq!(runner.phase, RunnerPhase::SlurmPending);
        }
        let retired: BTreeSet<&str> = decision.retire.iter().map(String::as_str).collect();
        prop_assert_eq!(retired.len(), decision.retire.len(), "a runner retired twice");
        prop_assert!(retired.is_empty() || pool.retire_idle, "retired in a pool that is not warm");
        for name in &retired {
            let runner = all_runners.get(name).expect("a retired runner exists");
            // Only an idle runner is retired (GitHub refuses it once it took a job).
            prop_assert_eq!(runner.phase, RunnerPhase::Idle);
        }

        let mut uncovered_total = 0;
        let mut blocked_jobs = 0;
        let mut room = max.saturating_sub(alive);
        for (scope, demand) in &pool.scopes {
            let created = decision.create.iter().filter(|(s, _)| s == scope).count();
            let queued = demand.queued_jobs.len();
            let wanted = queued + demand.warm;
            // No more spare capacity than wanted (jobs and warmth), counting what is on its way.
            prop_assert!(spare(demand) + created <= wanted.max(spare(demand)));
            let gone_here = demand
                .runners
                .iter()
                .filter(|r| cancelled.contains(r.name.as_str()) || retired.contains(r.name.as_str()))
                .count();
            prop_assert!(created == 0 || gone_here == 0, "creates and removes in {scope}");
            // Only surplus goes: what stays still covers the queue and the warm target.
            if gone_here > 0 {
                prop_assert!(spare(demand) - gone_here >= wanted);
            }
            let uncovered = wanted.saturating_sub(spare(demand));
            uncovered_total += uncovered;
            // Scopes are served in order; jobs before warmth within one.
            let jobs_uncovered = queued.saturating_sub(spare(demand));
            let taken = uncovered.min(room);
            room -= taken;
            blocked_jobs += jobs_uncovered - jobs_uncovered.min(taken);
        }
        // It fills the room it has: every uncovered job gets a runner or is counted as
        // blocked (warmth that does not fit blocks no job).
        let room = max.saturating_sub(alive);
        prop_assert_eq!(decision.create.len(), uncovered_total.min(room));
        prop_assert_eq!(decision.blocked_by_max, blocked_jobs);
    }
}

/// A runner of the small world below.
#[derive(Debug, Clone)]
struct WorldRunner {
    name: String,
    phase: RunnerPhase,
    created_at: i64,
}

/// One scope's world: queued jobs and runners moving through their phases.
#[derive(Debug, Default)]
struct World {
    queued: Vec<u64>,
    /// Idle runners wanted (`min_idle`); above 0 the pool is warm: idle runners wait until
    /// the decision retires them instead of stopping on their own.
    warm: usize,
    runners: Vec<WorldRunner>,
    done_jobs: usize,
    clock: i64,
}

impl World {
    fn pool(&self, max: u32) -> PoolDemand {
        let runners = self
            .runners
            .iter()
            .map(|r| RunnerInfo {
                name: r.name.clone(),
                phase: r.phase,
                created_at: r.created_at,
                registered: matches!(r.phase, RunnerPhase::Idle | RunnerPhase::Starting),
            })
            .collect();
        let scope = scope_demand(self.queued.clone(), self.warm, runners);
        pool_demand(
            max,
            self.warm > 0,
            BTreeMap::from([("s".to_string(), scope)]),
        )
    }

    fn apply(&mut self, max: u32) {
        let decision = decide(&self.pool(max));
        for name in decision.cancel.iter().chain(&decision.retire) {
            self.runners.retain(|r| &r.name != name);
        }
        for (_, job) in decision.create {
            self.clock += 1;
            self.runners.push(WorldRunner {
                name: format!("for-{job:?}-{}", self.clock),
                phase: RunnerPhase::InFlight,
                created_at: self.clock,
            });
        }
    }

    /// Moves runner `pick` one phase on; an idle runner takes the oldest queued job.
    fn step(&mut self, pick: usize) {
        if self.runners.is_empty() {
            return;
        }
        let index = pick % self.runners.len();
        let runner = &mut self.runners[index];
        match runner.phase {
            RunnerPhase::InFlight => runner.phase = RunnerPhase::SlurmPending,
            RunnerPhase::SlurmPending => runner.phase = RunnerPhase::Starting,
            RunnerPhase::Starting => runner.phase = RunnerPhase::Idle,
            RunnerPhase::Idle if !self.queued.is_empty() => {
                self.queued.remove(0);
                runner.phase = RunnerPhase::Busy;
            }
            // A warm pool's idle runner waits to be retired.
            RunnerPhase::Idle if self.warm > 0 => {}
            // An idle runner with nothing to do stops (its idle timeout).
            RunnerPhase::Idle | RunnerPhase::Busy | RunnerPhase::Cancelling => {
                if runner.phase == RunnerPhase::Busy {
                    self.done_jobs += 1;
                }
                self.runners.remove(index);
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn repeated_decisions_meet_the_demand_eventually(
        max in 1u32..6,
        warm in 0usize..4,
        jobs in 0u64..25,
        arrivals in proptest::collection::vec(0u64..4, 0..20),
        picks in proptest::collection::vec(any::<usize>(), 0..200),
    ) {
        let mut world = World { queued: (1..=jobs).collect(), warm, ..World::default() };
        let mut next_job = jobs + 1;
        let mut arrivals = arrivals.into_iter();
        // A random interleaving of decisions, runner progress and new jobs.
        for (round, pick) in picks.into_iter().enumerate() {
            if round % 3 == 0 {
                for _ in 0..arrivals.next().unwrap_or(0) {
                    world.queued.push(next_job);
                    next_job += 1;
                }
                world.apply(max);
            }
            world.step(pick);
            prop_assert!(world.runners.len() <= max as usize, "above max_runners");
        }
        // Then a fair run: every runner moves in turn; the queue must drain.
        let total = (next_job - 1) as usize;
        for round in 0..(total + 1) * 8 * (max as usize + 1) {
            if world.queued.is_empty() {
                break;
            }
            world.apply(max);
            world.step(round);
            prop_assert!(world.runners.len() <= max as usize, "above max_runners");
        }
        prop_assert!(world.queued.is_empty(), "jobs never met: {:?}", world.queued);
        // With nothing more to do, a warm pool settles at its target (within max_runners)
        // of idle runners; another pool at none.
        for round in 0..64 * (max as usize + 1) * (warm + 1) {
            world.apply(max);
            world.step(round);
            prop_assert!(world.runners.len() <= max as usize, "above max_runners");
        }
        world.apply(max);
        let idle = world.runners.iter().filter(|r| r.phase == RunnerPhase::Idle).count();
        prop_assert_eq!(idle, warm.min(max as usize), "idle runners at rest: {:?}", world.runners);
        prop_assert_eq!(world.runners.len(), idle, "only idle runners at rest");
    }
}
