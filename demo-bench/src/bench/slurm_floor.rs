//! Slurm's own floor for a drain, measured in the same run as the dispatcher's: `count` bare
//! one-second jobs (`sbatch --wrap 'sleep 1'`, one CPU each) submitted at once by the test user,
//! so Slurm alone fills the node's slots and refills each as it frees. Their moments come from
//! slurmd's log (milliseconds) and sbatch's return, through the same timeline and slot
//! reconstruction as the runner jobs ([`crate::bench::timeline`]).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result};
use serde::Serialize;
use test_support::wait_until_every;

use crate::bench::relay::unix_now;
use crate::bench::timeline::{self, stages, JobTimeline};
use crate::demo::stats::Summary;
use e2e::Cluster;

#[derive(Debug, Default, Serialize)]
pub struct FloorResult {
    pub jobs: usize,
    /// First sbatch to the last job's end on the node.
    pub drain_secs: Option<f64>,
    /// sbatch accepted → slurmd launched it (includes waiting for a free slot).
    pub submit_to_start_secs: Option<Summary>,
    /// A slot's cycle: launch → the next launch on the slot it freed.
    pub cycle_secs: Option<Summary>,
    /// The slot's idle part: the job's end on the node → the next launch there.
    pub slot_idle_secs: Option<Summary>,
    pub slots: usize,
}

/// Submits `count` bare one-second jobs at once and waits (at most `timeout`) for them to end.
pub fn floor(cluster: &Cluster, count: usize, timeout: Duration) -> Result<FloorResult> {
    let first = unix_now();
    let mut accepted: BTreeMap<u32, f64> = BTreeMap::new();
    for _ in 0..count {
        let job = cluster.sbatch(&["--ntasks=1", "--cpus-per-task=1", "--wrap", "sleep 1"])?;
        accepted.insert(job.id, unix_now());
    }
    let log_path = cluster.dir().join("log/slurmd.log");
    let mut marks = BTreeMap::new();
    let waited = wait_until_every(
        "the floor's bare jobs to end",
        timeout,
        Duration::from_millis(500),
        || {
            let text = std::fs::read_to_string(&log_path).unwrap_or_default();
            marks = timeline::slurmd_log::parse(&text);
            accepted
                .keys()
                .all(|id| marks.get(id).is_some_and(|m| m.batch_done.is_some()))
        },
    );
    waited.with_context(|| format!("{count} bare jobs did not all end within {timeout:?}"))?;
    let mut jobs: Vec<JobTimeline> = accepted
        .iter()
        .map(|(&id, &at)| {
            let node = marks.get(&id).cloned().unwrap_or_default();
            JobTimeline {
                slurm_job: Some(id),
                sbatch_accepted: Some(at),
                slurm_start: node.launched,
                runner_exited: node.batch_done,
                epilog_done: node.epilog_done,
                ..JobTimeline::default()
            }
        })
        .collect();
    timeline::assign_slots(&mut jobs);
    Ok(summarize(&jobs, first))
}

fn summarize(jobs: &[JobTimeline], first: f64) -> FloorResult {
    let collect = |f: &dyn Fn(&JobTimeline) -> Option<f64>| {
        Summary::of(&jobs.iter().filter_map(f).collect::<Vec<_>>())
    };
    let last = jobs
        .iter()
        .filter_map(JobTimeline::freed)
        .fold(f64::NEG_INFINITY, f64::max);
    FloorResult {
        jobs: jobs.len(),
        drain_secs: last.is_finite().then_some(last - first),
        submit_to_start_secs: collect(&|j| Some(j.slurm_start? - j.sbatch_accepted?)),
        cycle_secs: collect(&stages::cycle),
        slot_idle_secs: collect(&|j| Some(j.slot_reused? - j.freed()?)),
        slots: jobs
            .iter()
            .filter_map(|j| j.slot)
            .max()
            .map_or(0, |s| s + 1),
    }
}
