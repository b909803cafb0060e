//! The node's side of a runner job's life, read from slurmd's log, whose lines carry
//! millisecond timestamps (Slurm's default `iso8601_ms`, local time) where `scontrol show job`
//! has whole seconds: when slurmd launched the batch job, when the plugin had redeemed its
//! ticket, when the batch script ended, and when the plugin's epilog had finished.

use std::collections::BTreeMap;

use chrono::{Local, NaiveDateTime, TimeZone};

/// What slurmd's log says about one Slurm job (Unix seconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeMarks {
    /// `Launching batch job N`: slurmd starts the job's slurmstepd.
    pub launched: Option<f64>,
    /// `[N.batch] spank-gha: job N: runner ticket redeemed in ...`.
    pub redeemed: Option<f64>,
    /// `[N.batch] done with job`: the batch script (the runner job) has ended.
    pub batch_done: Option<f64>,
    /// `spank-gha: job N: removed ...` or `... nothing to remove ...`: the plugin's epilog ended.
    pub epilog_done: Option<f64>,
}

/// Every job's marks in `log` (slurmd.log's text), by Slurm job id.
pub fn parse(log: &str) -> BTreeMap<u32, NodeMarks> {
    let mut marks: BTreeMap<u32, NodeMarks> = BTreeMap::new();
    for line in log.lines() {
        let Some((at, rest)) = stamp(line) else {
            continue;
        };
        if let Some(id) = rest
            .strip_prefix("Launching batch job ")
            .and_then(leading_id)
        {
            marks.entry(id).or_default().launched.get_or_insert(at);
        } else if let Some((id, text)) = batch_step(rest) {
            let entry = marks.entry(id).or_default();
            if text == "done with job" {
                entry.batch_done.get_or_insert(at);
            } else if text.contains("runner ticket redeemed in") {
                entry.redeemed.get_or_insert(at);
            }
        } else if let Some(id) = rest.strip_prefix("spank-gha: job ").and_then(leading_id) {
            if rest.contains(": removed ") || rest.contains("teardown in") {
                marks.entry(id).or_default().epilog_done.get_or_insert(at);
            }
        }
    }
    marks
}

/// `[2026-12-01T20:48:22.836] rest` → (Unix seconds, rest).
fn stamp(line: &str) -> Option<(f64, &str)> {
    let (inside, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let naive = NaiveDateTime::parse_from_str(inside, "%Y-%m-%dT%H:%M:%S%.f").ok()?;
    let local = Local.from_local_datetime(&naive).earliest()?;
    Some((local.timestamp_millis() as f64 / 1000.0, rest))
}

/// `[N.batch] text` → (N, text).
fn batch_step(rest: &str) -> Option<(u32, &str)> {
    let (step, text) = rest.strip_prefix('[')?.split_once("] ")?;
    let id = step.strip_suffix(".batch")?.parse().ok()?;
    Some((id, text))
}

fn leading_id(text: &str) -> Option<u32> {
    let digits: String = text.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_each_mark_once_with_milliseconds() {
        let log = "\
[2026-12-01T20:48:23.734] Launching batch job 30 for UID 1001
[2026-12-01T20:48:23.760] [30.batch] spank-gha: job 30: runner ticket redeemed in 12.5 ms
[2026-12-01T20:48:23.772] [30.batch] spank-gha: job 30: work dir /tmp/x ready for uid 1001
[2026-12-01T20:48:24.902] [30.batch] done with job
[2026-12-01T20:48:24.912] spank-gha: job 30: removed /tmp/spank-gha/gha-30 (teardown in 15.7 ms)
[2026-12-01T20:48:25.000] [31.batch] done with job
garbage line
";
        let marks = parse(log);
        let job = &marks[&30];
        let launched = job.launched.unwrap();
        let gap = |t: Option<f64>| ((t.unwrap() - launched) * 1000.0).round();
        assert_eq!(gap(job.redeemed), 26.0);
        assert_eq!(gap(job.batch_done), 1168.0);
        assert_eq!(gap(job.epilog_done), 1178.0);
        assert_eq!(marks[&31].launched, None);
        assert!(marks[&31].batch_done.is_some());
    }
}
