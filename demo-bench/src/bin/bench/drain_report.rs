//! The drain phase as the bench runs it, and its section of report.md: drain time against the
//! ideal and Slurm's floor, the stage table (where a slot's cycle goes) and the Gantt written
//! beside the report.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use demo_bench::bench::dispatch::{
    self, DrainResult, Intake, Stack, DRAIN_SLOTS, GANTT_FILE, TIMELINE_FILE,
};
use demo_bench::bench::timeline::stages;
use demo_bench::demo::stats::Summary;

/// Issue 16 §3's goal for 1,000 jobs on 16 slots.
const GOAL_SECS_PER_1000: f64 = 160.0;

/// Waits for earlier runners to be gone, then runs the floor and the drain.
pub fn run_drain(
    stack: &mut Stack,
    (jobs, floor_jobs): (usize, usize),
    intake: &str,
    limit: Duration,
    out: &Path,
) -> Result<DrainResult> {
    eprintln!("[bench] waiting for earlier runners to be gone before the drain");
    let left = stack.wait_quiet(Duration::from_secs(120))?;
    if !left.is_empty() {
        eprintln!("[bench] still there before the drain: {left}");
    }
    eprintln!(
        "[bench] drain: {floor_jobs} bare 1-s jobs (Slurm's floor), then {jobs} 1-s jobs on \
         {DRAIN_SLOTS} slots through the {intake}"
    );
    let intake = match intake {
        "webhook" => Intake::Webhook,
        _ => Intake::Listener,
    };
    dispatch::drain(stack, (jobs, floor_jobs), intake, limit, out)
}

pub fn drain_section(d: &DrainResult) -> String {
    let mut out = String::from("## The time between jobs (issue 16 §3)\n\n");
    let secs = |v: Option<f64>| v.map_or("not measured".into(), |v| format!("{v:.1} s"));
    let goal = GOAL_SECS_PER_1000 * d.jobs as f64 / 1000.0;
    let _ = writeln!(
        out,
        "{} one-second jobs queued at once on a pool of {} slots (`max_runners` = the node's CPUs), \
         {} intake, ticket credentials. Drain (first queued → last completed): **{}** \
         (goal < {goal:.0} s; ideal {:.1} s); overhead per job per slot beyond its second: {}; \
         {} succeeded, {} other.\n",
        d.jobs,
        d.slots,
        d.intake,
        secs(d.drain_secs),
        d.ideal_secs,
        secs(d.overhead_per_job_slot_secs),
        d.completed_success,
        d.completed_other
    );
    if d.intake == "webhook" {
        out.push_str(
            "Webhook intake: each runner's JIT config comes from REST `generate-jitconfig`, which \
             GitHub's secondary limit (900 points a minute per endpoint, 5 a POST) holds to 180 a \
             minute, and the simulator enforces it: GitHub bounds such a drain at 3 jobs/s.\n\n",
        );
    }
    if let Some(f) = &d.floor {
        let p50 =
            |s: &Option<Summary>| s.as_ref().map_or("–".into(), |s| format!("{:.3} s", s.p50));
        let per_1000 = f
            .drain_secs
            .map(|s| format!("{:.1} s", s * 1000.0 / f.jobs.max(1) as f64));
        let _ = writeln!(
            out,
            "Slurm's own floor, same run: {} bare `sbatch --wrap 'sleep 1'` jobs submitted at once \
             drained in {} on {} slots ({} per 1,000 jobs); slot cycle p50 {}, slot idle \
             (end → next launch) p50 {}, submit → start p50 {}.\n",
            f.jobs,
            secs(f.drain_secs),
            f.slots,
            per_1000.unwrap_or_else(|| "–".into()),
            p50(&f.cycle_secs),
            p50(&f.slot_idle_secs),
            p50(&f.submit_to_start_secs)
        );
    }
    out.push_str(&stages::markdown(&d.stages));
    if let Some(q) = &d.squeue_cost {
        let p50 =
            |s: &Option<Summary>| s.as_ref().map_or("–".into(), |s| format!("{:.3} s", s.p50));
        let _ = writeln!(
            out,
            "\nThe dispatcher's Slurm question, timed right after the drain with {} jobs known to \
             slurmctld: the whole list (`squeue --all --states=all --json`, asked today by every \
             ticket redemption and every poll of a full pool) p50 {}; one job by id \
             (`squeue --jobs=<id>`, the narrowed query of issue 16 §4) p50 {}.",
            q.jobs_known,
            p50(&q.whole_list_json_secs),
            p50(&q.one_job_secs)
        );
    }
    let _ = writeln!(
        out,
        "\nThe slots over time: [{GANTT_FILE}]({GANTT_FILE}) (grey: the slot idle between a \
         job's epilog and the next launch); every job's moments: `{TIMELINE_FILE}`.\n\n\
         ![drain Gantt]({GANTT_FILE})"
    );
    out
}
