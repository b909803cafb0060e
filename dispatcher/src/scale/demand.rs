//! Demand: the one count of unmet work, used by both of its readers.
//!
//! The scale pass decides from it how many runners to add or cancel per pool and placement;
//! a ticket redemption asks it whether the redeeming runner is still wanted. Both read the
//! same [`demand`], so the two can never disagree about which jobs a runner may serve, nor
//! about a runner wanted for warmth (a pool's `min_idle`, counted beside the waiting jobs).

use std::collections::{BTreeMap, HashMap};

use super::decide::{PoolDemand, RunnerInfo, ScopeDemand};
use super::placement::{placement_key, Mapping};
use super::pools;
use crate::config::{Config, Intake};
use crate::model::{JobRow, Placement, RunnerRow};
use crate::scale_sets::ScaleSetWaiting;
use crate::telemetry::RefusedJob;

/// Queued jobs and live runners, grouped by pool and placement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Demand {
    /// Every configured pool, keyed by name.
    pub pools: BTreeMap<String, PoolDemand>,
    /// The placement behind each placement key that has queued jobs.
    pub placements: HashMap<String, Placement>,
    /// Queued jobs of ours that get no runner, and why.
    pub refused: Vec<RefusedJob>,
    /// The scale set of each (pool, placement key) fed by a listener: its new runners are
    /// that set's.
    pub scale_sets: HashMap<(String, String), u64>,
}

/// Demand for a runner like one given (same pool and placement), as redemption checks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerDemand {
    /// Unassigned queued jobs.
    pub queued: usize,
    /// Idle runners wanted for warmth (the pool's `min_idle` in its hours).
    pub warm: usize,
    /// Other live runners that already hold a registration (redeemed ticket or inline) and
    /// are spare (not busy, not being cancelled).
    pub others_ready: usize,
}

/// Group unassigned queued jobs (by the pool their labels select and their placement), the
/// jobs waiting in listener scale sets (by their pool and the target's placement) and live
/// runners (by their pool and placement). Demand is grouped by placement (scope, user,
/// account): a runner only serves jobs that would run as the same user. A job of a listener
/// target heard of by webhook is not counted: its scale set's statistics count it. Each
/// target's warm runners (pools with `min_idle`, in their hours at `now`) join the group of
/// the target as a whole.
pub fn demand(
    config: &Config,
    queued: &[JobRow],
    scale_sets: &[ScaleSetWaiting],
    live: &[RunnerRow],
    mapping: &Mapping,
    now: i64,
) -> Demand {
    let mut demand = Demand {
        pools: config
            .pools
            .iter()
            .map(|p| {
                let empty = PoolDemand {
                    max_runners: p.max_runners,
                    scopes: BTreeMap::new(),
                    retire_idle: p.is_warm(),
                };
                (p.name.clone(), empty)
            })
            .collect(),
        placements: HashMap::new(),
        refused: Vec::new(),
        scale_sets: HashMap::new(),
    };
    demand.add_jobs(config, queued, mapping);
    demand.add_scale_sets(config, scale_sets, mapping);
    demand.add_warm(config, mapping, now);
    demand.add_runners(config, live);
    demand
}

impl Demand {
    /// Unassigned queued jobs of webhook targets, each by id.
    fn add_jobs(&mut self, config: &Config, queued: &[JobRow], mapping: &Mapping) {
        let by_listener = |repo: &str| {
            config
                .github
                .target_for_repo(repo)
                .is_some_and(|t| t.intake == Intake::Listener)
        };
        for job in queued
            .iter()
            .filter(|j| j.runner_name.is_none() && !by_listener(&j.repo))
        {
            let Some(pool) = pools::select(&config.pools, &job.labels) else {
                continue;
            };
            let placement = match mapping.place(config, &job.repo) {
                Ok(Some(p)) => p,
                Ok(None) => continue,
                Err(refusal) => {
                    self.refuse(job.job_id, &job.repo, refusal);
                    continue;
                }
            };
            if let Some(group) = self.group(&pool.name, placement) {
                group.queued_jobs.push(job.job_id);
            }
        }
    }

    /// The jobs waiting in each listener scale set, by count, with the set's placement.
    fn add_scale_sets(&mut self, config: &Config, sets: &[ScaleSetWaiting], mapping: &Mapping) {
        for set in sets {
            let Some(target) = config
                .github
                .targets
                .iter()
                .find(|t| t.scope.key() == set.scope)
            else {
                continue;
            };
            let placement = match mapping.place_listener(config, target) {
                Ok(p) => p,
                Err(refusal) => {
                    if set.waiting > 0 {
                        // No job id in a scale set's count: the set's id stands for its jobs.
                        self.refuse(set.scale_set_id, &set.scope, refusal);
                    }
                    continue;
                }
            };
            let key = placement.key();
            if let Some(group) = self.group(&set.pool, placement) {
                group.waiting_count += set.waiting;
                self.scale_sets
                    .insert((set.pool.clone(), key), set.scale_set_id);
            }
        }
    }

    /// Each warm pool's target per GitHub target, placed like the target as a whole (the
    /// placement its jobs' runners get). A target whose jobs are split among users (an
    /// organization with repositories mapped on their own) gets no warm runners: no one
    /// runner could serve them all. A listener target's runners must join its scale set,
    /// so it is warmed only once that set is known.
    fn add_warm(&mut self, config: &Config, mapping: &Mapping, now: i64) {
        for pool in &config.pools {
            let warm = pool.warm_target(now);
            if warm == 0 {
                continue;
            }
            for target in &config.github.targets {
                let Ok(placement) = mapping.place_listener(config, target) else {
                    continue;
                };
                let set_key = (pool.name.clone(), placement.key());
                if target.intake == Intake::Listener && !self.scale_sets.contains_key(&set_key) {
                    continue;
                }
                if let Some(group) = self.group(&pool.name, placement) {
                    group.warm += warm;
                }
            }
        }
    }

    /// Live runners, by their pool and placement.
    fn add_runners(&mut self, config: &Config, live: &[RunnerRow]) {
        for row in live {
            if let Some(d) = self.pools.get_mut(&row.pool) {
                d.scopes
                    .entry(placement_key(config, row))
                    .or_insert_with(ScopeDemand::default)
                    .runners
                    .push(RunnerInfo {
                        name: row.name.clone(),
                        phase: row.phase(),
                        created_at: row.created_at,
                        registered: row.has_registration(),
                    });
            }
        }
    }

    /// The group of `pool` and `placement` (remembering the placement behind its key).
    fn group(&mut self, pool: &str, placement: Placement) -> Option<&mut ScopeDemand> {
        let key = placement.key();
        self.placements.entry(key.clone()).or_insert(placement);
        Some(self.pools.get_mut(pool)?.scopes.entry(key).or_default())
    }

    fn refuse(&mut self, job_id: u64, repo: &str, refusal: super::placement::Refusal) {
        self.refused.push(RefusedJob {
            job_id,
            repo: repo.to_string(),
            reason: refusal.reason().to_string(),
        });
    }

    /// The demand `row` would serve, and the other runners already able to serve it.
    pub fn for_runner(&self, config: &Config, row: &RunnerRow) -> RunnerDemand {
        let key = placement_key(config, row);
        let Some(group) = self.pools.get(&row.pool).and_then(|p| p.scopes.get(&key)) else {
            return RunnerDemand {
                queued: 0,
                warm: 0,
                others_ready: 0,
            };
        };
        RunnerDemand {
            queued: group.waiting(),
            warm: group.warm,
            others_ready: group
                .runners
                .iter()
                .filter(|r| r.name != row.name && r.registered && r.phase.is_spare())
                .count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobStatus, RepoUser, RunnerState};

    const NOW: i64 = 1_000_000;

    fn row(name: &str) -> RunnerRow {
        RunnerRow::running_ticket_example(name, NOW + 60)
    }

    fn config() -> Config {
        Config::parse(
            r#"
[server]
listen = "127.0.0.1:0"
webhook_secret_file = "/x"
[github]
token_file = "/x"
targets = [{ org = "acme" }]
[slurm]
job_script = "/x"
user = "svc"
[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 10
[[pools]]
name = "gpu"
labels = ["gpu"]
priority = 5
max_runners = 10
"#,
        )
        .unwrap()
    }

    fn queued(job_id: u64, repo: &str, labels: &[&str]) -> JobRow {
        JobRow {
            job_id,
            run_id: 1,
            repo: repo.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            status: JobStatus::Queued,
            runner_name: None,
            queued_ms: Some(0),
        }
    }

    #[test]
    fn demand_counts_the_same_pool_and_placement_only() {
        let config = config();
        let mapping = Mapping::new(vec![RepoUser {
            repo_key: "acme/private".into(),
            unix_user: "alice".into(),
            account: None,
        }]);
        let me = row("me");
        let jobs = vec![
            queued(1, "acme/widgets", &["linux"]),
            queued(2, "acme/widgets", &["linux"]),
            queued(3, "acme/widgets", &["gpu"]),   // another pool
            queued(4, "acme/private", &["linux"]), // another placement
            JobRow {
                runner_name: Some("x".into()),
                ..queued(5, "acme/widgets", &["linux"])
            },
        ];
        // Mapping a repository of the org registers its jobs' runners on the repository.
        let widgets_scope = "repo:acme/widgets";
        let me = RunnerRow {
            scope: widgets_scope.into(),
            ..me
        };
        let peer = |name: &str| RunnerRow {
            scope: widgets_scope.into(),
            ..row(name)
        };
        let live = vec![
            me.clone(),
            // Redeemed and starting: ready.
            RunnerRow {
                ticket_redeemed_at: Some(NOW),
                ..peer("redeemed")
            },
            // Inline with a registration, idle: ready.
            RunnerRow {
                ticket_hash: None,
                github_runner_id: Some(9),
                online: true,
                ever_online: true,
                ..peer("inline")
            },
            // Not redeemed yet: no registration.
            peer("waiting"),
            // Busy: not spare.
            RunnerRow {
                ticket_redeemed_at: Some(NOW),
                busy: true,
                ..peer("busy")
            },
            // Another pool.
            RunnerRow {
                pool: "gpu".into(),
                ticket_redeemed_at: Some(NOW),
                ..peer("gpu")
            },
            // Another placement (the org scope).
            RunnerRow {
                ticket_redeemed_at: Some(NOW),
                ..row("org-scope")
            },
            // Being cancelled.
            RunnerRow {
                ticket_redeemed_at: Some(NOW),
                state: RunnerState::Cancelling,
                ..peer("cancelling")
            },
        ];
        assert_eq!(
            demand(&config, &jobs, &[], &live, &mapping, NOW).for_runner(&config, &me),
            RunnerDemand {
                queued: 2,
                warm: 0,
                others_ready: 2
            }
        );
    }

    #[test]
    fn a_listener_target_counts_its_scale_set_and_not_its_webhooks() {
        let mut config = config();
        config.github.targets[0].intake = Intake::Listener;
        let jobs = vec![queued(1, "acme/widgets", &["linux"])];
        let waiting = vec![ScaleSetWaiting {
            pool: "cpu".into(),
            scope: "org:acme".into(),
            scale_set_id: 7,
            waiting: 3,
        }];
        let live = vec![row("r1")];
        let d = demand(&config, &jobs, &waiting, &live, &Mapping::default(), NOW);
        let cpu = &d.pools["cpu"];
        let key = Placement::key_of("org:acme", Some("svc"), None);
        assert_eq!(cpu.scopes[&key].queued_jobs, Vec::<u64>::new());
        assert_eq!(cpu.scopes[&key].waiting_count, 3);
        assert_eq!(d.scale_sets[&("cpu".to_string(), key)], 7);
        assert_eq!(d.for_runner(&config, &live[0]).queued, 3);
    }

    #[test]
    fn warm_runners_join_the_target_as_a_whole_and_count_for_redemption() {
        let mut config = config();
        config.pools[0].min_idle = 2;
        let me = row("me");
        let d = demand(
            &config,
            &[],
            &[],
            std::slice::from_ref(&me),
            &Mapping::default(),
            NOW,
        );
        let key = Placement::key_of("org:acme", Some("svc"), None);
        assert_eq!(d.pools["cpu"].scopes[&key].warm, 2);
        assert!(d.pools["cpu"].retire_idle);
        assert_eq!(d.pools["gpu"].scopes.len(), 0, "gpu keeps none warm");
        assert_eq!(d.placements[&key].user.as_deref(), Some("svc"));
        let wanted = d.for_runner(&config, &me);
        assert_eq!((wanted.queued, wanted.warm, wanted.others_ready), (0, 2, 0));
        // An organization split among users: no one runner serves it all, none kept warm.
        let split = Mapping::new(vec![RepoUser {
            repo_key: "acme/private".into(),
            unix_user: "alice".into(),
            account: None,
        }]);
        let d = demand(&config, &[], &[], &[], &split, NOW);
        assert!(d.pools["cpu"].scopes.values().all(|s| s.warm == 0));
        // A listener target is warmed only once its scale set is known.
        config.github.targets[0].intake = Intake::Listener;
        let d = demand(&config, &[], &[], &[], &Mapping::default(), NOW);
        assert!(d.pools["cpu"].scopes.is_empty());
        let set = ScaleSetWaiting {
            pool: "cpu".into(),
            scope: "org:acme".into(),
            scale_set_id: 7,
            waiting: 0,
        };
        let d = demand(&config, &[], &[set], &[], &Mapping::default(), NOW);
        assert_eq!(d.pools["cpu"].scopes[&key].warm, 2);
    }
}
