//! What a soak run does: its sizes and faults (every one a flag of `ci/soak`), and when each
//! fault fires, drawn from one seed (printed, so a run can be repeated with `--seed`). Faults
//! fire at shares of the workload's progress (completed jobs over all jobs), not at clock
//! times, so a slower machine meets the same sequence.

use serde::Serialize;

/// Sizes and faults of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub seed: u64,
    pub jobs: usize,
    pub repositories: usize,
    /// Percent of GitHub REST answers that are a fault (5xx, 429, secondary limit).
    pub rest_fault_percent: u32,
    /// Percent of the scale set protocol's calls answered 503.
    pub scaleset_fault_percent: u32,
    /// Percent of webhooks dropped, duplicated, delayed or reordered.
    pub webhook_fault_percent: u32,
    pub dispatcher_kills: usize,
    pub slurmctld_restarts: usize,
    pub slurmd_restarts: usize,
    pub munged_restarts: usize,
    pub runner_cancels: usize,
    pub node_losses: usize,
    /// How long a lost node stays down.
    pub node_down_secs: u64,
}

/// One fault the schedule fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Fault {
    KillDispatcher,
    RestartSlurmctld,
    RestartSlurmd,
    RestartMunged,
    CancelRunnerMidJob,
    LoseNode,
}

impl Fault {
    pub fn name(self) -> &'static str {
        match self {
            Fault::KillDispatcher => "dispatcher SIGKILLed and restarted",
            Fault::RestartSlurmctld => "slurmctld restarted",
            Fault::RestartSlurmd => "slurmd restarted while runners run",
            Fault::RestartMunged => "munged restarted",
            Fault::CancelRunnerMidJob => "runner job cancelled mid-job (scancel)",
            Fault::LoseNode => "node lost (slurmd killed, back after the pause)",
        }
    }
}

/// A fault and the share of completed jobs at which it fires.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Scheduled {
    pub at_share: f64,
    pub fault: Fault,
}

impl Plan {
    /// The faults in firing order, at seeded random shares between 5% and 85% of the
    /// workload (the end is left for the invariants to see a quiet system).
    pub fn schedule(&self) -> Vec<Scheduled> {
        let mut rng = SplitMix64(self.seed);
        let counts = [
            (Fault::KillDispatcher, self.dispatcher_kills),
            (Fault::RestartSlurmctld, self.slurmctld_restarts),
            (Fault::RestartSlurmd, self.slurmd_restarts),
            (Fault::RestartMunged, self.munged_restarts),
            (Fault::CancelRunnerMidJob, self.runner_cancels),
            (Fault::LoseNode, self.node_losses),
        ];
        let mut all: Vec<Scheduled> = counts
            .iter()
            .flat_map(|&(fault, n)| std::iter::repeat_n(fault, n))
            .map(|fault| Scheduled {
                at_share: 0.05 + 0.80 * rng.unit(),
                fault,
            })
            .collect();
        all.sort_by(|a, b| a.at_share.total_cmp(&b.at_share));
        all
    }
}

/// A small seeded generator (SplitMix64): the soak's only randomness, so a seed repeats a run's
/// choices.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(seed: u64) -> Plan {
        Plan {
            seed,
            jobs: 200,
            repositories: 30,
            rest_fault_percent: 20,
            scaleset_fault_percent: 10,
            webhook_fault_percent: 10,
            dispatcher_kills: 5,
            slurmctld_restarts: 2,
            slurmd_restarts: 1,
            munged_restarts: 1,
            runner_cancels: 1,
            node_losses: 1,
            node_down_secs: 60,
        }
    }

    #[test]
    fn a_seed_repeats_the_schedule_and_every_fault_is_in_it() {
        let a = plan(7).schedule();
        let b = plan(7).schedule();
        assert_eq!(a.len(), 11);
        assert!(a
            .iter()
            .zip(&b)
            .all(|(x, y)| x.at_share == y.at_share && x.fault == y.fault));
        assert!(a.windows(2).all(|w| w[0].at_share <= w[1].at_share));
        assert!(a.iter().all(|s| (0.05..0.85).contains(&s.at_share)));
        let kills = a
            .iter()
            .filter(|s| s.fault == Fault::KillDispatcher)
            .count();
        assert_eq!(kills, 5);
        let other: Vec<f64> = plan(8).schedule().iter().map(|s| s.at_share).collect();
        assert_ne!(other, a.iter().map(|s| s.at_share).collect::<Vec<_>>());
    }
}
