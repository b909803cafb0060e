//! The scaling decision for one pool, as a pure function of its [`PoolDemand`].
//!
//! Runners are not bound to jobs: any idle runner whose labels cover a job may take it. So
//! for each pool and registration scope we keep *spare* runners (on their way or online and
//! idle) equal to the unassigned queued jobs plus the scope's warm target (idle runners
//! kept ready, `min_idle`), never exceeding the pool's `max_runners` in total. When demand
//! falls, surplus runners whose Slurm job is still pending are cancelled; a runner that
//! started (it may be taking a job right now) or has a job is never cancelled. In a warm
//! pool (its runners have no idle stop of their own) surplus idle runners are retired
//! instead: their registration is removed first, which GitHub refuses for a runner that
//! just took a job, so a runner with a job is never retired either.

use std::collections::BTreeMap;

use crate::model::RunnerPhase;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerInfo {
    pub name: String,
    pub phase: RunnerPhase,
    /// Creation time; the newest pending runners are cancelled first.
    pub created_at: i64,
    /// It holds a GitHub registration (a redeemed ticket, or minted inline): ready for a
    /// job as soon as it is online.
    pub registered: bool,
}

/// Demand and supply of one pool in one registration scope.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeDemand {
    /// Unassigned queued job ids, oldest first (webhook intake: we know each job).
    pub queued_jobs: Vec<u64>,
    /// Jobs waiting that we know only by count (listener intake: a scale set's statistics).
    pub waiting_count: usize,
    /// Idle runners wanted beside the waiting jobs (the pool's `min_idle`, in its hours).
    pub warm: usize,
    pub runners: Vec<RunnerInfo>,
}

impl ScopeDemand {
    /// Every job waiting for a runner, known by id or by count.
    pub fn waiting(&self) -> usize {
        self.queued_jobs.len() + self.waiting_count
    }

    /// Spare runners wanted: one per waiting job, plus the warm target.
    pub fn wanted(&self) -> usize {
        self.waiting() + self.warm
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PoolDemand {
    pub max_runners: u32,
    /// Keyed by scope, so the decision is deterministic.
    pub scopes: BTreeMap<String, ScopeDemand>,
    /// A warm pool: surplus idle runners are retired (they never stop on their own).
    pub retire_idle: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Decision {
    /// New runners to create: (scope, the queued job each one is made for, if known by id;
    /// `None` for a job known by count or a warm runner).
    pub create: Vec<(String, Option<u64>)>,
    /// Runners whose pending Slurm job should be cancelled.
    pub cancel: Vec<String>,
    /// Idle runners of a warm pool to retire (registration removed, then the job cancelled).
    pub retire: Vec<String>,
    /// Queued jobs that cannot get a runner now because the pool is full (a warm target
    /// that does not fit is not counted: it is no job waiting).
    pub blocked_by_max: usize,
}

pub fn decide(pool: &PoolDemand) -> Decision {
    let mut decision = Decision::default();
    let alive: usize = pool.scopes.values().map(|s| s.runners.len()).sum();
    let mut room = (pool.max_runners as usize).saturating_sub(alive);

    for (scope, demand) in &pool.scopes {
        let spare = demand.runners.iter().filter(|r| r.phase.is_spare()).count();
        let wanted = demand.wanted();
        if wanted > spare {
            // The first `spare` wanted runners are covered by runners on their way; jobs
            // known by id come first (oldest first), those known by count next, warmth last.
            let uncovered = demand
                .queued_jobs
                .iter()
                .map(|job| Some(*job))
                .chain(std::iter::repeat_n(
                    None,
                    demand.waiting_count + demand.warm,
                ))
                .skip(spare);
            let want = wanted - spare;
            let take = want.min(room);
            room -= take;
            let jobs_uncovered = demand.waiting().saturating_sub(spare);
            decision.blocked_by_max += jobs_uncovered - jobs_uncovered.min(take);
            decision
                .create
                .extend(uncovered.take(take).map(|job| (scope.clone(), job)));
        } else if spare > wanted {
            let surplus = spare - wanted;
            let cancelled = newest_first(demand, RunnerPhase::SlurmPending, surplus);
            if pool.retire_idle {
                let mut idle = oldest_first(demand, RunnerPhase::Idle);
                idle.truncate(surplus - cancelled.len());
                decision.retire.extend(idle);
            }
            decision.cancel.extend(cancelled);
        }
    }
    decision
}

/// Up to `count` runners of `phase`, newest first (the last made are the least along).
fn newest_first(demand: &ScopeDemand, phase: RunnerPhase, count: usize) -> Vec<String> {
    let mut found = oldest_first(demand, phase);
    found.reverse();
    found.truncate(count);
    found
}

/// Runners of `phase`, oldest first (closest to their time limit), ties by name.
fn oldest_first(demand: &ScopeDemand, phase: RunnerPhase) -> Vec<String> {
    let mut found: Vec<&RunnerInfo> = demand.runners.iter().filter(|r| r.phase == phase).collect();
    found.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then_with(|| a.name.cmp(&b.name))
    });
    found.into_iter().map(|r| r.name.clone()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runner(name: &str, phase: RunnerPhase, created_at: i64) -> RunnerInfo {
        RunnerInfo {
            name: name.into(),
            phase,
            created_at,
            registered: false,
        }
    }

    fn pool(max: u32, scopes: Vec<(&str, Vec<u64>, Vec<RunnerInfo>)>) -> PoolDemand {
        PoolDemand {
            max_runners: max,
            scopes: scopes
                .into_iter()
                .map(|(s, q, r)| {
                    (
                        s.to_string(),
                        ScopeDemand {
                            queued_jobs: q,
                            runners: r,
                            ..ScopeDemand::default()
                        },
                    )
                })
                .collect(),
            retire_idle: false,
        }
    }

    #[test]
    fn nothing_queued_nothing_running_does_nothing() {
        assert_eq!(
            decide(&pool(5, vec![("org:a", vec![], vec![])])),
            Decision::default()
        );
    }

    #[test]
    fn creates_one_runner_per_uncovered_job() {
        let d = decide(&pool(10, vec![("org:a", vec![1, 2, 3], vec![])]));
        assert_eq!(
            d.create,
            vec![
                ("org:a".into(), Some(1)),
                ("org:a".into(), Some(2)),
                ("org:a".into(), Some(3))
            ]
        );
        assert!(d.cancel.is_empty());
    }

    #[test]
    fn spare_runners_of_every_kind_cover_demand() {
        for phase in [
            RunnerPhase::InFlight,
            RunnerPhase::SlurmPending,
            RunnerPhase::Starting,
            RunnerPhase::Idle,
        ] {
            let d = decide(&pool(
                10,
                vec![("org:a", vec![1, 2], vec![runner("r", phase, 0)])],
            ));
            assert_eq!(d.create, vec![("org:a".into(), Some(2))], "{phase:?}");
        }
    }

    #[test]
    fn busy_runners_do_not_cover_demand_but_count_against_max() {
        let busy = vec![
            runner("b1", RunnerPhase::Busy, 0),
            runner("b2", RunnerPhase::Busy, 0),
        ];
        let d = decide(&pool(3, vec![("org:a", vec![7, 8], busy)]));
        assert_eq!(d.create, vec![("org:a".into(), Some(7))]);
        assert_eq!(d.blocked_by_max, 1);
    }

    #[test]
    fn max_runners_caps_across_scopes() {
        let d = decide(&pool(
            3,
            vec![
                ("org:a", vec![1, 2], vec![]),
                ("repo:b/c", vec![3, 4], vec![]),
            ],
        ));
        assert_eq!(d.create.len(), 3);
        assert_eq!(d.blocked_by_max, 1);
        let full = decide(&pool(
            1,
            vec![(
                "org:a",
                vec![1],
                vec![runner("c", RunnerPhase::Cancelling, 0)],
            )],
        ));
        assert!(full.create.is_empty());
        assert_eq!(full.blocked_by_max, 1);
    }

    #[test]
    fn surplus_cancels_only_pending_newest_first() {
        let runners = vec![
            runner("old-pending", RunnerPhase::SlurmPending, 1),
            runner("new-pending", RunnerPhase::SlurmPending, 5),
            runner("starting", RunnerPhase::Starting, 9),
            runner("idle", RunnerPhase::Idle, 9),
            runner("busy", RunnerPhase::Busy, 9),
            runner("inflight", RunnerPhase::InFlight, 9),
        ];
        // 4 spare + 2 pending... with one queued job: surplus 4, but only the 2 pending can go.
        let d = decide(&pool(10, vec![("org:a", vec![1], runners.clone())]));
        assert_eq!(
            d.cancel,
            vec!["new-pending".to_string(), "old-pending".to_string()]
        );
        assert!(d.create.is_empty());
        // Surplus of exactly one: the newest pending goes.
        let d = decide(&pool(10, vec![("org:a", vec![1, 2, 3, 4], runners)]));
        assert_eq!(d.cancel, vec!["new-pending".to_string()]);
    }

    #[test]
    fn jobs_known_by_count_need_runners_like_jobs_known_by_id() {
        let demand = |count, runners| PoolDemand {
            max_runners: 3,
            scopes: [(
                "org:a".to_string(),
                ScopeDemand {
                    queued_jobs: vec![9],
                    waiting_count: count,
                    runners,
                    ..ScopeDemand::default()
                },
            )]
            .into(),
            retire_idle: false,
        };
        let d = decide(&demand(4, vec![runner("s", RunnerPhase::Starting, 0)]));
        // 5 waiting, 1 spare: 4 more wanted, 2 fit under max_runners 3.
        assert_eq!(
            d.create,
            vec![("org:a".into(), None), ("org:a".into(), None)]
        );
        assert_eq!(d.blocked_by_max, 2);
        let d = decide(&demand(0, vec![]));
        assert_eq!(d.create, vec![("org:a".into(), Some(9))]);
        let pending = vec![
            runner("p1", RunnerPhase::SlurmPending, 1),
            runner("p2", RunnerPhase::SlurmPending, 2),
        ];
        let d = decide(&demand(0, pending));
        assert_eq!(
            d.cancel,
            vec!["p2".to_string()],
            "the statistics fell: surplus cancelled"
        );
    }

    fn warm_pool(max: u32, warm: usize, queued: Vec<u64>, runners: Vec<RunnerInfo>) -> PoolDemand {
        let mut p = pool(max, vec![("org:a", queued, runners)]);
        p.retire_idle = true;
        if let Some(scope) = p.scopes.get_mut("org:a") {
            scope.warm = warm;
        }
        p
    }

    #[test]
    fn a_warm_target_keeps_idle_runners_beside_the_jobs() {
        let d = decide(&warm_pool(5, 2, vec![], vec![]));
        assert_eq!(
            d.create,
            vec![("org:a".into(), None), ("org:a".into(), None)]
        );
        // One warm runner took a job (busy): its replacement is created. A new job is
        // covered by the idle one, which leaves two more to keep warm.
        let runners = vec![
            runner("busy", RunnerPhase::Busy, 1),
            runner("idle", RunnerPhase::Idle, 2),
        ];
        let d = decide(&warm_pool(5, 2, vec![], runners.clone()));
        assert_eq!(d.create, vec![("org:a".into(), None)]);
        let d = decide(&warm_pool(5, 2, vec![7], runners.clone()));
        assert_eq!(
            d.create,
            vec![("org:a".into(), None), ("org:a".into(), None)]
        );
        // max_runners bounds warmth too, and warmth that does not fit blocks no job.
        let d = decide(&warm_pool(2, 2, vec![], runners));
        assert!(d.create.is_empty());
        assert_eq!(d.blocked_by_max, 0);
    }

    #[test]
    fn surplus_idle_runners_of_a_warm_pool_are_retired_oldest_first() {
        let runners = vec![
            runner("pending", RunnerPhase::SlurmPending, 9),
            runner("idle-new", RunnerPhase::Idle, 5),
            runner("idle-old", RunnerPhase::Idle, 1),
            runner("idle-mid", RunnerPhase::Idle, 3),
            runner("busy", RunnerPhase::Busy, 0),
        ];
        // 4 spare, 1 wanted: the pending one is cancelled, then the two oldest idle retired.
        let d = decide(&warm_pool(10, 1, vec![], runners.clone()));
        assert_eq!(d.cancel, vec!["pending".to_string()]);
        assert_eq!(
            d.retire,
            vec!["idle-old".to_string(), "idle-mid".to_string()]
        );
        // Not a warm pool: idle runners stop on their own, nothing is retired.
        let d = decide(&pool(10, vec![("org:a", vec![], runners)]));
        assert!(d.retire.is_empty());
    }

    #[test]
    fn never_cancels_a_runner_with_a_job() {
        let runners = vec![
            runner("busy", RunnerPhase::Busy, 9),
            runner("idle", RunnerPhase::Idle, 9),
        ];
        let d = decide(&pool(10, vec![("org:a", vec![], runners)]));
        assert!(d.cancel.is_empty());
    }

    #[test]
    fn demand_in_one_scope_is_not_covered_by_another() {
        let d = decide(&pool(
            10,
            vec![
                (
                    "org:a",
                    vec![],
                    vec![runner("p", RunnerPhase::SlurmPending, 0)],
                ),
                ("repo:b/c", vec![5], vec![]),
            ],
        ));
        assert_eq!(d.create, vec![("repo:b/c".into(), Some(5))]);
        assert_eq!(d.cancel, vec!["p".to_string()]);
    }

    #[test]
    fn invariant_spare_plus_created_never_exceeds_demand_or_max() {
        // Exhaustive small grid over queued, per-phase counts and max.
        let phases = [
            RunnerPhase::SlurmPending,
            RunnerPhase::Idle,
            RunnerPhase::Busy,
            RunnerPhase::Starting,
        ];
        for queued in 0..6u64 {
            for max in 1..6u32 {
                for mask in 0..(4usize.pow(3)) {
                    let mut runners = Vec::new();
                    let mut m = mask;
                    for i in 0..3 {
                        let phase = phases[m % 4];
                        m /= 4;
                        runners.push(runner(&format!("r{i}"), phase, i));
                    }
                    let p = pool(max, vec![("s", (0..queued).collect(), runners.clone())]);
                    let d = decide(&p);
                    let spare = runners.iter().filter(|r| r.phase.is_spare()).count();
                    let alive = runners.len();
                    assert!(alive + d.create.len() <= (max as usize).max(alive));
                    assert!(spare + d.create.len() <= (queued as usize).max(spare));
                    for name in &d.cancel {
                        let r = runners.iter().find(|r| &r.name == name).unwrap();
                        assert_eq!(r.phase, RunnerPhase::SlurmPending);
                    }
                    assert!(d.cancel.is_empty() || d.create.is_empty());
                    if (queued as usize) > spare && alive < max as usize {
                        assert!(!d.create.is_empty());
                    }
                }
            }
        }
    }
}
