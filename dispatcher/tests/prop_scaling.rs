//! Properties of the scaling decision (`scale::decide`) over random pools: any number of
//! scopes, queued jobs and runners in any phase. Each decision stays within `max_runners`,
//! creates only for queued jobs no spare runner covers, cancels only runners whose Slurm job
//! is still pending, and fills the room it has. Played forward against a small world (runners
//! start, go idle, take jobs and finish, in random order), repeated decisions meet every
//! queued job eventually, with no pool ever above `max_runners`.
//!
//! Only the public shape is used (`decide`, `PoolDemand`, `ScopeDemand` built from
//! `Default`), so the properties hold whatever else the decision comes to read.

use std::collections::{BTreeMap, BTreeSet};

use gha_dispatcher::model::RunnerPhase;
use gha_dispatcher::scale::decide::{decide, PoolDemand, RunnerInfo, ScopeDemand};
use proptest::prelude::*;

// The struct update keeps this building when the decision's input grows a field (a second
// intake's job count): the properties are about the fields set here.
#[allow(clippy::needless_update)]
fn scope_demand(queued: Vec<u64>, runners: Vec<RunnerInfo>) -> ScopeDemand {
    ScopeDemand {
        queued_jobs: queued,
        runners,
        ..ScopeDemand::default()
    }
}

/// A pool: up to 3 scopes, each with up to 8 queued jobs (ids unique in the pool) and up to
/// 8 runners in any phase (names unique in the pool).
fn pool_strategy() -> impl Strategy<Value = PoolDemand> {
    let scope = (
        0usize..8,
        proptest::collection::vec(
            (0usize..RunnerPhase::ALL.len(), 0i64..100, any::<bool>()),
            0..8,
        ),
    );
    (0u32..12, proptest::collection::vec(scope, 1..4)).prop_map(|(max, scopes)| {
        let mut next_job = 1u64;
        let mut next_runner = 0usize;
        let mut built = BTreeMap::new();
        for (index, (queued, runners)) in scopes.into_iter().enumerate() {
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
            built.insert(format!("scope-{index}"), scope_demand(jobs, runners));
        }
        PoolDemand {
            max_runners: max,
            scopes: built,
        }
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
                prop_assert!(demand.waiting_count > 0, "made for no job and no count");
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

        let mut uncovered_total = 0;
        for (scope, demand) in &pool.scopes {
            let created = decision.create.iter().filter(|(s, _)| s == scope).count();
            let queued = demand.queued_jobs.len();
            // No more spare capacity than queued jobs, counting what is on its way.
            prop_assert!(spare(demand) + created <= queued.max(spare(demand)));
            let cancelled_here = demand
                .runners
                .iter()
                .filter(|r| cancelled.contains(r.name.as_str()))
                .count();
            prop_assert!(created == 0 || cancelled_here == 0, "creates and cancels in {scope}");
            // Only surplus is cancelled: what stays still covers the queue.
            if cancelled_here > 0 {
                prop_assert!(spare(demand) - cancelled_here >= queued);
            }
            uncovered_total += queued.saturating_sub(spare(demand));
        }
        // It fills the room it has: every uncovered job gets a runner or is counted as blocked.
        let room = max.saturating_sub(alive);
        prop_assert_eq!(decision.create.len(), uncovered_total.min(room));
        prop_assert_eq!(decision.blocked_by_max, uncovered_total - decision.create.len());
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
        PoolDemand {
            max_runners: max,
            scopes: BTreeMap::from([("s".to_string(), scope_demand(self.queued.clone(), runners))]),
        }
    }

    fn apply(&mut self, max: u32) {
        let decision = decide(&self.pool(max));
        for name in &decision.cancel {
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
        jobs in 0u64..25,
        arrivals in proptest::collection::vec(0u64..4, 0..20),
        picks in proptest::collection::vec(any::<usize>(), 0..200),
    ) {
        let mut world = World { queued: (1..=jobs).collect(), ..World::default() };
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
    }
}
