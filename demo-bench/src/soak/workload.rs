//! The soak's workload: repositories split between the webhook organization ([`ORG`]) and the
//! listened one ([`LISTENED_ORG`], runner scale sets), three pools, and runs of ten jobs each
//! spread over the repositories and pools. Most jobs are short; every tenth runs long enough
//! that a fault (a cancelled runner, a lost node, a restarted slurmd) meets runners mid-job.

use github_sim::{JobSpec, WorkflowSpec};

use super::plan::SplitMix64;
use crate::bench::dispatch::{three_pools, ARM, CPU, LARGE};
use crate::demo::stack::ORG;
use crate::demo::workflow::LISTENED_ORG;
use e2e::dispatcher_config::Pool;

/// Jobs per workflow run.
pub const JOBS_PER_RUN: usize = 10;

/// The three pools (16 runners at most, the cluster's 16 CPUs): the bench's.
pub fn pools() -> Vec<Pool> {
    three_pools()
}

/// Repository names per organization: a third listened, the rest by webhook.
pub fn repositories(total: usize) -> (Vec<String>, Vec<String>) {
    let listened = (total / 3).max(1);
    let hooked = total.saturating_sub(listened).max(1);
    let names = |prefix: &str, n: usize| (1..=n).map(|i| format!("{prefix}{i:02}")).collect();
    (names("svc", hooked), names("lab", listened))
}

/// The runs: `jobs` jobs in runs of [`JOBS_PER_RUN`], each run in a repository chosen by
/// `rng`, its jobs over the three label sets.
pub fn runs(
    jobs: usize,
    hooked: &[String],
    listened: &[String],
    rng: &mut SplitMix64,
) -> Vec<WorkflowSpec> {
    let mut runs = Vec::new();
    let mut made = 0;
    while made < jobs {
        let n = JOBS_PER_RUN.min(jobs - made);
        let repo = if rng.below(3) == 0 {
            format!(
                "{LISTENED_ORG}/{}",
                listened[rng.below(listened.len() as u64) as usize]
            )
        } else {
            format!("{ORG}/{}", hooked[rng.below(hooked.len() as u64) as usize])
        };
        let jobs: Vec<JobSpec> = (0..n).map(|i| job(made + i, rng)).collect();
        runs.push(WorkflowSpec {
            repo,
            name: format!("soak-{}", runs.len() + 1),
            jobs,
            delay_ms: 0,
        });
        made += n;
    }
    runs
}

fn job(index: usize, rng: &mut SplitMix64) -> JobSpec {
    let labels = match rng.below(10) {
        0..=5 => CPU,
        6..=7 => LARGE,
        _ => ARM,
    };
    let mut spec = JobSpec::new(format!("job-{index}"), labels);
    spec.command = Some("test \"$GITHUB_ACTIONS\" = true".into());
    spec.duration_ms = if index % 10 == 9 {
        20_000 + rng.below(10_000)
    } else {
        200 + rng.below(1_500)
    };
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_job_fits_a_pool_and_both_intakes_get_runs() {
        let (hooked, listened) = repositories(30);
        assert_eq!(hooked.len() + listened.len(), 30);
        let mut rng = SplitMix64(1);
        let runs = runs(2000, &hooked, &listened, &mut rng);
        assert_eq!(runs.iter().map(|r| r.jobs.len()).sum::<usize>(), 2000);
        assert!(runs.iter().any(|r| r.repo.starts_with(LISTENED_ORG)));
        assert!(runs.iter().any(|r| r.repo.starts_with(ORG)));
        let pools = pools();
        for job in runs.iter().flat_map(|r| &r.jobs) {
            assert!(pools.iter().any(|p| p.serves(&job.runs_on)), "{}", job.name);
        }
    }
}
