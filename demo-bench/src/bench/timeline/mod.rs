//! The per-job timeline of a benchmark phase (issue 16 §3): for each GitHub job, the moments
//! from queued to its slot's reuse, each taken from the party that knows it, and where a slot's
//! cycle goes (per stage: p50, p95, share), with a Gantt of the slots as SVG ([`svg`]).
//!
//! Sources and their resolution: the simulator's timeline (queued, runner online, job
//! assigned, job done: milliseconds, `github_sim::TimelineEvent`); the sbatch timing wrapper
//! (sbatch accepted: microseconds); slurmd's log (Slurm start, ticket redeemed, runner
//! exited, epilog done: milliseconds, [`slurmd_log`]). Slots are rebuilt from the node's
//! marks: each job takes the slot freed earliest before its start (every runner job takes one
//! CPU of the 16), so "slot reused" is the next launch on the slot this job freed.

pub mod slurmd_log;
pub mod stages;
pub mod svg;

use std::collections::BTreeMap;

use github_sim::{TimelineEvent, TimelineKind};
use serde::Serialize;

pub use slurmd_log::NodeMarks;
pub use stages::{stage_table, StageRow};

/// One GitHub job's moments, Unix seconds; `None`: not seen.
#[derive(Debug, Clone, Default, Serialize)]
pub struct JobTimeline {
    pub github_job: u64,
    pub runner: Option<String>,
    pub slurm_job: Option<u32>,
    pub slot: Option<usize>,
    pub queued: Option<f64>,
    pub sbatch_accepted: Option<f64>,
    pub slurm_start: Option<f64>,
    pub ticket_redeemed: Option<f64>,
    pub runner_online: Option<f64>,
    pub job_assigned: Option<f64>,
    pub job_done: Option<f64>,
    pub runner_exited: Option<f64>,
    pub epilog_done: Option<f64>,
    pub slot_reused: Option<f64>,
    /// When the job that reused this one's slot had been accepted by sbatch: splits the gap
    /// between "slot free" and "slot reused" into the dispatcher's and Slurm's parts.
    pub next_sbatch_accepted: Option<f64>,
}

impl JobTimeline {
    /// When the job's slot came free: the epilog's end, else the batch script's.
    pub fn freed(&self) -> Option<f64> {
        self.epilog_done.or(self.runner_exited)
    }
}

/// What the timeline is built from.
pub struct Sources<'a> {
    /// The GitHub jobs to follow.
    pub github_jobs: &'a [u64],
    pub sim: &'a [TimelineEvent],
    /// sbatch accepted (Unix seconds) by Slurm job id.
    pub sbatch: &'a BTreeMap<u32, f64>,
    /// Slurm job id by job name (the runner's name).
    pub slurm_ids: &'a BTreeMap<String, u32>,
    pub node: &'a BTreeMap<u32, NodeMarks>,
}

/// Every followed job's timeline, slots assigned.
pub fn build(sources: &Sources) -> Vec<JobTimeline> {
    let mut by_job: BTreeMap<u64, JobTimeline> = sources
        .github_jobs
        .iter()
        .map(|&id| {
            let timeline = JobTimeline {
                github_job: id,
                ..JobTimeline::default()
            };
            (id, timeline)
        })
        .collect();
    let mut online: BTreeMap<&str, f64> = BTreeMap::new();
    for event in sources.sim {
        let at = event.at_ms as f64 / 1000.0;
        if event.what == TimelineKind::RunnerOnline {
            if let Some(name) = event.runner.as_deref() {
                online.entry(name).or_insert(at);
            }
            continue;
        }
        let Some(job) = event.job_id.and_then(|id| by_job.get_mut(&id)) else {
            continue;
        };
        match event.what {
            TimelineKind::JobQueued => _ = job.queued.get_or_insert(at),
            TimelineKind::JobAssigned => {
                job.job_assigned = Some(at);
                job.runner.clone_from(&event.runner);
            }
            TimelineKind::JobCompleted => _ = job.job_done.get_or_insert(at),
            _ => {}
        }
    }
    let mut jobs: Vec<JobTimeline> = by_job.into_values().collect();
    for job in &mut jobs {
        fill_from_runner(job, sources, &online);
    }
    assign_slots(&mut jobs);
    jobs
}

/// The runner's and its Slurm job's moments.
fn fill_from_runner(job: &mut JobTimeline, sources: &Sources, online: &BTreeMap<&str, f64>) {
    let Some(runner) = job.runner.as_deref() else {
        return;
    };
    job.runner_online = online.get(runner).copied();
    let Some(&slurm_job) = sources.slurm_ids.get(runner) else {
        return;
    };
    job.slurm_job = Some(slurm_job);
    job.sbatch_accepted = sources.sbatch.get(&slurm_job).copied();
    if let Some(marks) = sources.node.get(&slurm_job) {
        job.slurm_start = marks.launched;
        job.ticket_redeemed = marks.redeemed;
        job.runner_exited = marks.batch_done;
        job.epilog_done = marks.epilog_done;
    }
}

/// Gives each started job the slot freed earliest before its start (a new slot if none was
/// free), and each job's `slot_reused` the next start on its slot.
pub fn assign_slots(jobs: &mut [JobTimeline]) {
    let mut order: Vec<usize> = (0..jobs.len())
        .filter(|&i| jobs[i].slurm_start.is_some())
        .collect();
    order.sort_by(|&a, &b| jobs[a].slurm_start.total_cmp_opt(jobs[b].slurm_start));
    // Per slot: the job last on it.
    let mut slots: Vec<usize> = Vec::new();
    for i in order {
        let start = jobs[i].slurm_start.unwrap_or(f64::INFINITY);
        let free = slots
            .iter()
            .enumerate()
            .filter_map(|(slot, &last)| {
                let freed = jobs[last].freed()?;
                (freed <= start).then_some((slot, freed))
            })
            .min_by(|a, b| a.1.total_cmp(&b.1))
            .map(|(slot, _)| slot);
        let slot = match free {
            Some(slot) => {
                let next_sbatch = jobs[i].sbatch_accepted;
                let previous = &mut jobs[slots[slot]];
                previous.slot_reused = Some(start);
                previous.next_sbatch_accepted = next_sbatch;
                slots[slot] = i;
                slot
            }
            None => {
                slots.push(i);
                slots.len() - 1
            }
        };
        jobs[i].slot = Some(slot);
    }
}

trait OptionOrder {
    fn total_cmp_opt(self, other: Option<f64>) -> std::cmp::Ordering;
}

impl OptionOrder for Option<f64> {
    fn total_cmp_opt(self, other: Option<f64>) -> std::cmp::Ordering {
        self.unwrap_or(f64::INFINITY)
            .total_cmp(&other.unwrap_or(f64::INFINITY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node_job(start: f64, end: f64) -> JobTimeline {
        JobTimeline {
            slurm_start: Some(start),
            epilog_done: Some(end),
            ..JobTimeline::default()
        }
    }

    #[test]
    fn a_job_takes_the_slot_freed_earliest_before_it_starts() {
        let mut jobs = vec![
            node_job(0.0, 2.0),
            node_job(0.5, 1.0),
            node_job(1.5, 3.0),
            node_job(2.5, 4.0),
        ];
        assign_slots(&mut jobs);
        let slots: Vec<_> = jobs.iter().map(|j| j.slot).collect();
        assert_eq!(slots, [Some(0), Some(1), Some(1), Some(0)]);
        assert_eq!(jobs[1].slot_reused, Some(1.5));
        assert_eq!(jobs[0].slot_reused, Some(2.5));
        assert_eq!(jobs[3].slot_reused, None);
    }

    #[test]
    fn builds_from_the_three_parties() {
        let event = |ms: i64, what, job: Option<u64>, runner: Option<&str>| TimelineEvent {
            at_ms: ms,
            what,
            job_id: job,
            runner: runner.map(str::to_owned),
        };
        let sim = vec![
            event(1_000, TimelineKind::JobQueued, Some(7), None),
            event(2_500, TimelineKind::RunnerOnline, None, Some("r1")),
            event(2_600, TimelineKind::JobAssigned, Some(7), Some("r1")),
            event(3_600, TimelineKind::JobCompleted, Some(7), Some("r1")),
        ];
        let sbatch = BTreeMap::from([(40, 1.2)]);
        let slurm_ids = BTreeMap::from([("r1".to_owned(), 40)]);
        let node = BTreeMap::from([(
            40,
            NodeMarks {
                launched: Some(1.5),
                redeemed: Some(1.6),
                batch_done: Some(3.8),
                epilog_done: Some(3.9),
            },
        )]);
        let jobs = build(&Sources {
            github_jobs: &[7],
            sim: &sim,
            sbatch: &sbatch,
            slurm_ids: &slurm_ids,
            node: &node,
        });
        let job = &jobs[0];
        assert_eq!(job.slurm_job, Some(40));
        assert_eq!(
            (job.queued, job.sbatch_accepted, job.runner_online),
            (Some(1.0), Some(1.2), Some(2.5))
        );
        assert_eq!((job.job_done, job.epilog_done), (Some(3.6), Some(3.9)));
        assert_eq!(job.slot, Some(0));
    }
}
