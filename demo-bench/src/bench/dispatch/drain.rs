//! The drain (issue 16 §3): `count` one-second jobs queued at once on the `drain` pool, whose
//! `max_runners` is the node's 16 CPUs, run to the last. Through the listener by default: a
//! webhook-intake runner gets its JIT config from REST `generate-jitconfig`, which GitHub's
//! secondary limit holds to 180 a minute (the simulator enforces it), so a webhook drain is
//! bounded by GitHub at 3 jobs/s (1,000 jobs: at least 333 s) whatever we do; a scale set's
//! runners get theirs from the Actions service, which has no such budget. Measured: the drain time against the
//! ideal (count / slots seconds) and against Slurm's own floor in the same run
//! ([`crate::bench::slurm_floor`]), and every job's timeline ([`crate::bench::timeline`]):
//! the stage table and a Gantt of the slots, written beside the report.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use github_sim::{TimelineKind, WorkflowSpec};
use serde::Serialize;

use super::burst::{drain_jobs, Observer};
use super::{job, Intake, Stack, DRAIN, DRAIN_SLOTS, LISTEN_ORG, LISTEN_REPO, REPO};
use crate::bench::relay::unix_now;
use crate::bench::slurm_floor::{self, FloorResult};
use crate::bench::squeue_cost::{self, SqueueCost};
use crate::bench::timeline::{self, slurmd_log, stage_table, JobTimeline, Sources, StageRow};
use crate::demo::stack::ORG;

/// The SVG's and the per-job timeline's file names, beside report.md.
pub const GANTT_FILE: &str = "drain-gantt.svg";
pub const TIMELINE_FILE: &str = "drain-timeline.json";

#[derive(Debug, Default, Serialize)]
pub struct DrainResult {
    /// `listener` (the default) or `webhook`.
    pub intake: &'static str,
    pub jobs: usize,
    pub slots: u32,
    /// First job queued → last job completed (the simulator's clock, ms).
    pub drain_secs: Option<f64>,
    /// `jobs` × 1 s / `slots`: no overhead at all.
    pub ideal_secs: f64,
    /// Drain time per job per slot beyond the job's own second.
    pub overhead_per_job_slot_secs: Option<f64>,
    pub completed_success: usize,
    pub completed_other: usize,
    pub stages: Vec<StageRow>,
    /// Bare one-second jobs, same node, same run.
    pub floor: Option<FloorResult>,
    /// The dispatcher's Slurm question today against a narrowed one, right after the drain.
    pub squeue_cost: Option<SqueueCost>,
}

/// Runs the floor (`floor_jobs` bare jobs; 0: skip), then the drain; writes the Gantt and
/// the timeline into `out`.
pub fn drain(
    stack: &mut Stack,
    (count, floor_jobs): (usize, usize),
    intake: Intake,
    timeout: Duration,
    out: &Path,
) -> Result<DrainResult> {
    let floor = (floor_jobs > 0)
        .then(|| slurm_floor::floor(stack.cluster, floor_jobs, timeout))
        .transpose()?;
    let listened = intake == Intake::Listener;
    stack.webhooks(!listened);
    let measured = measure(stack, count, listened, timeout, out);
    stack.webhooks(true);
    let mut result = measured?;
    result.floor = floor;
    result.intake = if listened { "listener" } else { "webhook" };
    Ok(result)
}

fn measure(
    stack: &mut Stack,
    count: usize,
    listened: bool,
    timeout: Duration,
    out: &Path,
) -> Result<DrainResult> {
    let label = stack.scale_set_label("drain");
    let (repo, runs_on) = if listened {
        (format!("{LISTEN_ORG}/{LISTEN_REPO}"), vec![label.as_str()])
    } else {
        (format!("{ORG}/{REPO}"), DRAIN.to_vec())
    };
    let jobs = (0..count)
        .map(|i| job(format!("drain-{i}"), &runs_on, 1000, None))
        .collect();
    let run = stack.world.sim.enqueue_workflow(WorkflowSpec {
        repo,
        name: "drain".into(),
        jobs,
        delay_ms: 0,
    })?;
    let mut observer = Observer {
        run_jobs: run.job_ids.iter().copied().collect(),
        started: unix_now(),
        fills: BTreeMap::new(),
        all_at_target: None,
    };
    let drained = drain_jobs(stack, &mut observer, count, timeout)?;
    if drained.is_none() {
        stack.world.sim.cancel_run(run.run_id)?;
    }
    let timelines = timelines(stack, &run.job_ids)?;
    write_files(&timelines, count, out)?;
    let mut result = summarize(stack, &run.job_ids, &timelines);
    if let Some(last) = timelines.iter().filter_map(|j| j.slurm_job).max() {
        result.squeue_cost = Some(squeue_cost::measure(stack.cluster, last, 5)?);
    }
    Ok(result)
}

/// Every drain job's timeline from the simulator, the sbatch wrapper, squeue and slurmd's log.
fn timelines(stack: &Stack, github_jobs: &[u64]) -> Result<Vec<JobTimeline>> {
    let sim = stack.world.sim.timeline();
    let sbatch: BTreeMap<u32, f64> = stack
        .timing
        .calls()?
        .iter()
        .filter_map(|c| Some((c.job_id?, c.ended)))
        .collect();
    let slurm_ids = slurm_ids_by_name(stack)?;
    let log_path = stack.cluster.dir().join("log/slurmd.log");
    let mut node = BTreeMap::new();
    // The last jobs' epilogs may still run when their GitHub jobs have completed: wait (at
    // most 30 s) until every runner job's epilog is in the log, then take what is there.
    let _ = test_support::wait_until_every(
        "every runner job's epilog in slurmd's log",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            node = slurmd_log::parse(&log);
            slurm_ids
                .values()
                .all(|id| node.get(id).is_some_and(|m| m.epilog_done.is_some()))
        },
    );
    Ok(timeline::build(&Sources {
        github_jobs,
        sim: &sim,
        sbatch: &sbatch,
        slurm_ids: &slurm_ids,
        node: &node,
    }))
}

/// Slurm job ids of this run's runner jobs by job name (the runner's name), finished ones
/// included (the test cluster keeps them for `MinJobAge`).
fn slurm_ids_by_name(stack: &Stack) -> Result<BTreeMap<String, u32>> {
    let output = stack
        .cluster
        .command("squeue")
        .args(["--noheader", "--states=all", "--format=%i|%j"])
        .args(["--user", stack.cluster.test_user()])
        .output()
        .context("running squeue")?;
    anyhow::ensure!(
        output.status.success(),
        "squeue failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| {
            let (id, name) = line.split_once('|')?;
            let name = name.trim();
            name.starts_with(&stack.prefix)
                .then(|| Some((name.to_owned(), id.trim().parse().ok()?)))?
        })
        .collect())
}

fn write_files(timelines: &[JobTimeline], count: usize, out: &Path) -> Result<()> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let title =
        format!("{count} one-second jobs on {DRAIN_SLOTS} slots: each slot's jobs, stage by stage");
    let svg = out.join(GANTT_FILE);
    std::fs::write(&svg, timeline::svg::gantt(timelines, &title))
        .with_context(|| format!("writing {}", svg.display()))?;
    let json = out.join(TIMELINE_FILE);
    let text = serde_json::to_string(timelines).context("serialising the timeline")?;
    std::fs::write(&json, text).with_context(|| format!("writing {}", json.display()))
}

fn summarize(stack: &Stack, github_jobs: &[u64], timelines: &[JobTimeline]) -> DrainResult {
    let sim = stack.world.sim.timeline();
    let of_run = |kind| {
        sim.iter()
            .filter(move |e| e.what == kind && e.job_id.is_some_and(|id| github_jobs.contains(&id)))
            .map(|e| e.at_ms as f64 / 1000.0)
    };
    let first = of_run(TimelineKind::JobQueued).fold(f64::INFINITY, f64::min);
    let completed: Vec<f64> = of_run(TimelineKind::JobCompleted).collect();
    let last = completed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let all_done = completed.len() >= github_jobs.len();
    let drain_secs = (all_done && first.is_finite()).then_some(last - first);
    let snapshot = stack.world.sim.snapshot();
    let success = snapshot
        .jobs
        .iter()
        .filter(|j| github_jobs.contains(&j.id) && j.conclusion.as_deref() == Some("success"))
        .count();
    let jobs = github_jobs.len();
    let slots = DRAIN_SLOTS;
    DrainResult {
        jobs,
        slots,
        drain_secs,
        ideal_secs: jobs as f64 / f64::from(slots),
        overhead_per_job_slot_secs: drain_secs
            .map(|d| d * f64::from(slots) / jobs.max(1) as f64 - 1.0),
        completed_success: success,
        completed_other: completed.len().saturating_sub(success),
        stages: stage_table(timelines),
        ..DrainResult::default()
    }
}
