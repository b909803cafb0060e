//! Where a slot's cycle goes: the stages between a job's consecutive moments, each with the
//! party that measured it, p50, p95 and its share of the cycle (Slurm start → the slot's next
//! Slurm start). The cycle's stages add up to it exactly; the two before the cycle (queued →
//! sbatch → start) are shown apart: in a drain they hold the wait for a free slot.

use serde::Serialize;

use super::JobTimeline;
use crate::demo::stats::Summary;

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct StageRow {
    pub stage: &'static str,
    /// Who measured the ends, and at what resolution.
    pub source: &'static str,
    pub in_cycle: bool,
    pub secs: Option<Summary>,
    /// Mean of the stage over mean of the cycle, over the jobs that have both.
    pub share_of_cycle: Option<f64>,
}

type Span = fn(&JobTimeline) -> Option<f64>;

fn between(from: Option<f64>, to: Option<f64>) -> Option<f64> {
    Some(to? - from?)
}

/// The slot came free and the dispatcher had submitted the job that takes it: whichever
/// happened last.
fn slot_ready(j: &JobTimeline) -> Option<f64> {
    Some(j.freed()?.max(j.next_sbatch_accepted?))
}

const NODE: &str = "slurmd log (ms)";
const SIM: &str = "simulator (ms)";

/// (stage, source, in the cycle, duration).
const STAGES: &[(&str, &str, bool, Span)] = &[
    (
        "queued → sbatch accepted",
        "simulator (ms), sbatch wrapper (µs)",
        false,
        |j| between(j.queued, j.sbatch_accepted),
    ),
    (
        "sbatch accepted → Slurm start",
        "sbatch wrapper, slurmd log (ms)",
        false,
        |j| between(j.sbatch_accepted, j.slurm_start),
    ),
    (
        "Slurm start → ticket redeemed (plugin)",
        NODE,
        true,
        |j| between(j.slurm_start, j.ticket_redeemed),
    ),
    (
        "ticket redeemed → runner online (job script, runner start)",
        "slurmd log, simulator (ms)",
        true,
        |j| between(j.ticket_redeemed, j.runner_online),
    ),
    ("runner online → job assigned (GitHub)", SIM, true, |j| {
        between(j.runner_online, j.job_assigned)
    }),
    ("job assigned → job done (the job)", SIM, true, |j| {
        between(j.job_assigned, j.job_done)
    }),
    (
        "job done → runner exited (runner exit, job script end)",
        "simulator, slurmd log (ms)",
        true,
        |j| between(j.job_done, j.runner_exited),
    ),
    (
        "runner exited → epilog done (plugin epilog)",
        NODE,
        true,
        |j| between(j.runner_exited, j.epilog_done),
    ),
    (
        "slot free → next job submitted (dispatcher notices, sbatch)",
        "slurmd log, sbatch wrapper (ms)",
        true,
        |j| Some((j.next_sbatch_accepted? - j.freed()?).max(0.0)),
    ),
    (
        "next job submitted → slot reused (Slurm schedules, launches)",
        "sbatch wrapper, slurmd log (ms)",
        true,
        |j| between(slot_ready(j), j.slot_reused),
    ),
];

/// The slot's cycle: this job's Slurm start to the next start on its slot.
pub fn cycle(j: &JobTimeline) -> Option<f64> {
    between(j.slurm_start, j.slot_reused)
}

/// The stage table over `jobs` (those that completed a full cycle count towards shares).
pub fn stage_table(jobs: &[JobTimeline]) -> Vec<StageRow> {
    let mut rows: Vec<StageRow> = STAGES
        .iter()
        .map(|(stage, source, in_cycle, span)| {
            let samples: Vec<f64> = jobs.iter().filter_map(span).collect();
            let share = in_cycle.then(|| share(jobs, *span)).flatten();
            StageRow {
                stage,
                source,
                in_cycle: *in_cycle,
                secs: Summary::of(&samples),
                share_of_cycle: share,
            }
        })
        .collect();
    rows.push(StageRow {
        stage: "the slot's cycle (Slurm start → slot reused)",
        source: NODE,
        in_cycle: true,
        secs: Summary::of(&jobs.iter().filter_map(cycle).collect::<Vec<_>>()),
        share_of_cycle: Some(1.0),
    });
    rows
}

fn share(jobs: &[JobTimeline], span: Span) -> Option<f64> {
    let pairs: Vec<(f64, f64)> = jobs
        .iter()
        .filter_map(|j| Some((span(j)?, cycle(j)?)))
        .collect();
    let stage: f64 = pairs.iter().map(|p| p.0).sum();
    let total: f64 = pairs.iter().map(|p| p.1).sum();
    (total > 0.0).then(|| stage / total)
}

/// The table as Markdown.
pub fn markdown(rows: &[StageRow]) -> String {
    let mut out = String::from(
        "| stage | measured by | p50 | p95 | share of the slot's cycle |\n|---|---|---|---|---|\n",
    );
    for row in rows {
        let (p50, p95) = row
            .secs
            .as_ref()
            .map_or(("–".into(), "–".into()), |s| (secs(s.p50), secs(s.p95)));
        let share = row
            .share_of_cycle
            .map_or("– (before the cycle)".into(), |s| {
                format!("{:.0}%", s * 100.0)
            });
        out.push_str(&format!(
            "| {} | {} | {p50} | {p95} | {share} |\n",
            row.stage, row.source
        ));
    }
    out
}

fn secs(s: f64) -> String {
    format!("{s:.3} s")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cycle_stages_add_up_to_the_cycle() {
        let job = JobTimeline {
            queued: Some(0.0),
            sbatch_accepted: Some(0.1),
            slurm_start: Some(1.0),
            ticket_redeemed: Some(1.1),
            runner_online: Some(1.5),
            job_assigned: Some(1.6),
            job_done: Some(2.6),
            runner_exited: Some(2.9),
            epilog_done: Some(3.0),
            next_sbatch_accepted: Some(4.0),
            slot_reused: Some(4.5),
            ..JobTimeline::default()
        };
        let rows = stage_table(&[job]);
        let in_cycle: f64 = rows
            .iter()
            .filter(|r| r.in_cycle && r.share_of_cycle != Some(1.0))
            .filter_map(|r| r.share_of_cycle)
            .sum();
        assert!((in_cycle - 1.0).abs() < 1e-9, "shares sum to {in_cycle}");
        let submit = rows
            .iter()
            .find(|r| r.stage.starts_with("slot free"))
            .unwrap();
        assert_eq!(submit.secs.as_ref().unwrap().p50, 1.0);
        assert!(markdown(&rows).contains("| 100% |"));
    }
}
