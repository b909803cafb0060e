//! The dispatcher's load on slurmctld (issue 16 §4): the same running stack measured on the
//! cluster as it is, then holding `foreign` held jobs of another user (`gha-ci-2`), side by
//! side in one run. Per state: slurmctld's RPCs from root (the dispatcher's user; sdiag's own
//! and slurmd's job-end messages left out) during an idle window, extrapolated to an hour (said
//! so in the report), and during a small burst of jobs, per job (root's RPCs then also hold
//! sbatch's, the epilog's and the bench's own waiting: the report lists them by type); and the wall time of the dispatcher's
//! query (`squeue --jobs=<id>` in its strict format) beside the whole-queue query it replaced
//! (`squeue --all --states=all --json`). `sdiag --reset` (root) opens each window.

use std::collections::BTreeMap;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::dispatch::{sequential, Intake, Stack};
use crate::demo::stats::Summary;

/// Who the foreign jobs belong to: not a runner user of the dispatcher's.
const FOREIGN_USER: &str = "gha-ci-2";
/// Parallel sbatch processes filling the queue.
const SUBMITTERS: usize = 8;
/// Timed runs of each query.
const QUERY_RUNS: usize = 20;
/// The dispatcher's query format (clients::slurm's).
const OUR_FORMAT: &str = "--format=%i|%U|%T|%B|%N|%j";

#[derive(Debug, Serialize)]
pub struct SlurmLoadResult {
    pub foreign_jobs: usize,
    pub foreign_submit_secs: f64,
    pub empty: LoadWindow,
    pub loaded: LoadWindow,
    /// loaded / empty p50 of the dispatcher's query (goal: within 1.5).
    pub query_time_ratio: Option<f64>,
}

/// One cluster state's figures.
#[derive(Debug, Serialize)]
pub struct LoadWindow {
    /// Job records slurmctld held (`squeue --all --states=all`, counted once, untimed).
    pub job_records: usize,
    pub idle_window_secs: f64,
    pub idle_root_rpcs: u64,
    /// Extrapolated from the window (goal: fewer than 120).
    pub idle_rpcs_per_hour: f64,
    pub idle_by_type: BTreeMap<String, u64>,
    pub burst_jobs: usize,
    pub burst_root_rpcs: u64,
    pub burst_rpcs_per_job: f64,
    pub burst_by_type: BTreeMap<String, u64>,
    /// The dispatcher's single-job query, ms.
    pub our_query_ms: Option<Summary>,
    /// The whole-queue query it replaced, ms.
    pub whole_queue_query_ms: Option<Summary>,
}

/// sdiag's counts: by message type, and by user name.
#[derive(Debug, Default)]
pub struct Sdiag {
    pub by_type: BTreeMap<String, u64>,
    pub by_user: BTreeMap<String, u64>,
}

/// Parses the two RPC tables of `sdiag` output (`\tNAME ( id) count:N ave_time:...`).
pub fn parse_sdiag(text: &str) -> Sdiag {
    let mut out = Sdiag::default();
    let mut table = None;
    for line in text.lines() {
        if line.starts_with("Remote Procedure Call statistics by message type") {
            table = Some(true);
            continue;
        }
        if line.starts_with("Remote Procedure Call statistics by user") {
            table = Some(false);
            continue;
        }
        if !line.starts_with('\t') && !line.trim().is_empty() {
            table = None;
        }
        let (Some(by_type), Some((name, rest))) = (table, line.trim().split_once(' ')) else {
            continue;
        };
        let count = rest
            .split_whitespace()
            .find_map(|w| w.strip_prefix("count:"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(count) = count {
            let map = if by_type {
                &mut out.by_type
            } else {
                &mut out.by_user
            };
            map.insert(name.to_string(), count);
        }
    }
    out
}

fn sdiag(args: &[&str]) -> Result<String> {
    let out = Command::new("sdiag")
        .args(args)
        .output()
        .context("running sdiag")?;
    if !out.status.success() {
        bail!(
            "sdiag failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Root's RPCs since the last reset, and their types; sdiag's own and slurmd's (a job's end
/// reported by the node, also root's) left out of the count, and listed apart by type.
fn root_rpcs() -> Result<(u64, BTreeMap<String, u64>)> {
    let stats = parse_sdiag(&sdiag(&[])?);
    let own = [
        "REQUEST_STATS_INFO",
        "MESSAGE_EPILOG_COMPLETE",
        "REQUEST_COMPLETE_BATCH_SCRIPT",
        "MESSAGE_NODE_REGISTRATION_STATUS",
    ];
    let by_type = stats.by_type;
    let own_calls: u64 = own.iter().filter_map(|t| by_type.get(*t)).sum();
    let root = stats.by_user.get("root").copied().unwrap_or(0);
    Ok((root.saturating_sub(own_calls), by_type))
}

/// Submits `count` held jobs as [`FOREIGN_USER`], [`SUBMITTERS`] at a time. Seconds taken.
fn submit_foreign(count: usize) -> Result<f64> {
    let started = Instant::now();
    let per = count.div_ceil(SUBMITTERS);
    let workers: Vec<_> = (0..SUBMITTERS)
        .map(|w| {
            let n = per.min(count.saturating_sub(w * per));
            std::thread::spawn(move || -> Result<()> {
                for _ in 0..n {
                    let out = Command::new("sbatch")
                        .args(["--hold", "--uid", FOREIGN_USER, "--gid", FOREIGN_USER])
                        .args(["--job-name=foreign", "--output=/dev/null", "--wrap=true"])
                        .output()?;
                    if !out.status.success() {
                        bail!("sbatch: {}", String::from_utf8_lossy(&out.stderr).trim());
                    }
                }
                Ok(())
            })
        })
        .collect();
    for worker in workers {
        worker
            .join()
            .map_err(|_| anyhow::anyhow!("a submitter panicked"))??;
    }
    Ok(started.elapsed().as_secs_f64())
}

/// Wall time of `squeue <args>`, [`QUERY_RUNS`] times, ms.
fn time_query(args: &[&str]) -> Result<Option<Summary>> {
    let mut samples = Vec::new();
    for _ in 0..QUERY_RUNS {
        let started = Instant::now();
        let out = Command::new("squeue").args(args).output()?;
        if !out.status.success() {
            bail!(
                "squeue {args:?}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        samples.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(Summary::of(&samples))
}

fn job_records() -> Result<usize> {
    let out = Command::new("squeue")
        .args(["--all", "--states=all", "--noheader", "--format=%i"])
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).lines().count())
}

/// A held job of the runner user, named like ours, to time the dispatcher's query on.
fn probe_job(stack: &Stack) -> Result<u32> {
    let user = stack.cluster.test_user().to_string();
    let name = format!("--job-name={}-probe", stack.prefix);
    let submitted = stack.cluster.sbatch_as(
        &user,
        &["--hold", &name, "--output=/dev/null", "--wrap=true"],
    )?;
    Ok(submitted.id)
}

/// One state's window: idle, burst, query times.
fn window(stack: &mut Stack, idle: Duration, burst_jobs: usize, probe: u32) -> Result<LoadWindow> {
    let job_records = job_records()?;
    sdiag(&["--reset"])?;
    let started = Instant::now();
    // Measuring over a span of time is the point here, not waiting for a condition.
    std::thread::sleep(idle);
    let idle_window_secs = started.elapsed().as_secs_f64();
    let (idle_root_rpcs, idle_by_type) = root_rpcs()?;
    sdiag(&["--reset"])?;
    sequential(stack, burst_jobs, Intake::Webhook)?;
    let (burst_root_rpcs, burst_by_type) = root_rpcs()?;
    let jobs_arg = format!("--jobs={probe}");
    let ours = [jobs_arg.as_str(), "--states=all", "--noheader", OUR_FORMAT];
    Ok(LoadWindow {
        job_records,
        idle_window_secs,
        idle_root_rpcs,
        idle_rpcs_per_hour: idle_root_rpcs as f64 * 3600.0 / idle_window_secs,
        idle_by_type,
        burst_jobs,
        burst_root_rpcs,
        burst_rpcs_per_job: burst_root_rpcs as f64 / burst_jobs.max(1) as f64,
        burst_by_type,
        our_query_ms: time_query(&ours)?,
        whole_queue_query_ms: time_query(&["--all", "--states=all", "--json"])?,
    })
}

/// The phase: the cluster as it is, then with `foreign` held jobs of another user.
pub fn slurm_load(
    stack: &mut Stack,
    foreign: usize,
    idle: Duration,
    burst_jobs: usize,
) -> Result<SlurmLoadResult> {
    let probe = probe_job(stack)?;
    let empty = window(stack, idle, burst_jobs, probe)?;
    let foreign_submit_secs = submit_foreign(foreign)?;
    let loaded = window(stack, idle, burst_jobs, probe);
    // The foreign jobs go whatever happened (one RPC); the probe too.
    let _ = Command::new("scancel")
        .args(["--user", FOREIGN_USER])
        .status();
    let _ = Command::new("scancel").arg(probe.to_string()).status();
    let loaded = loaded?;
    let p50 = |w: &LoadWindow| w.our_query_ms.as_ref().map(|s| s.p50);
    let query_time_ratio = p50(&loaded).zip(p50(&empty)).map(|(l, e)| l / e);
    Ok(SlurmLoadResult {
        foreign_jobs: foreign,
        foreign_submit_secs,
        empty,
        loaded,
        query_time_ratio,
    })
}

/// The report's rows for this phase (issue 16 §4's goals).
pub fn metrics(r: &SlurmLoadResult) -> Vec<super::report::Metric> {
    use super::report::Metric;
    let ms = |s: &Option<Summary>| s.as_ref().map_or("-".into(), |s| format!("{:.1}", s.p50));
    vec![
        Metric {
            id: "16.4a".into(),
            name: "dispatcher's Slurm RPCs per idle hour".into(),
            goal: "< 120".into(),
            measured: format!(
                "{:.0} with {} foreign jobs, {:.0} without",
                r.loaded.idle_rpcs_per_hour, r.foreign_jobs, r.empty.idle_rpcs_per_hour
            ),
            meets_goal: Some(r.loaded.idle_rpcs_per_hour < 120.0 && r.empty.idle_rpcs_per_hour < 120.0),
            how: format!(
                "root's RPCs in sdiag over a {:.0} s idle window (sdiag's and slurmd's own left out), extrapolated to an hour",
                r.loaded.idle_window_secs
            ),
        },
        Metric {
            id: "16.4b".into(),
            name: "Slurm RPCs per job (root: dispatcher, epilog, bench)".into(),
            goal: "(no number given)".into(),
            measured: format!(
                "{:.1} with {} foreign jobs, {:.1} without",
                r.loaded.burst_rpcs_per_job, r.foreign_jobs, r.empty.burst_rpcs_per_job
            ),
            meets_goal: None,
            how: format!(
                "{} jobs one at a time through webhooks; by message type in report.json",
                r.loaded.burst_jobs
            ),
        },
        Metric {
            id: "16.4c".into(),
            name: "dispatcher's Slurm query, p50 ms".into(),
            goal: "loaded within 1.5× empty".into(),
            measured: format!(
                "{} loaded, {} empty (the old whole-queue query: {} loaded, {} empty)",
                ms(&r.loaded.our_query_ms),
                ms(&r.empty.our_query_ms),
                ms(&r.loaded.whole_queue_query_ms),
                ms(&r.empty.whole_queue_query_ms)
            ),
            meets_goal: r.query_time_ratio.map(|x| x <= 1.5),
            how: format!(
                "squeue --jobs=<id> in the dispatcher's format, {QUERY_RUNS} runs each; {} job records loaded, {} empty",
                r.loaded.job_records, r.empty.job_records
            ),
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sdiags_rpc_tables() {
        let text = "Remote Procedure Call statistics by message type\n\
            \tREQUEST_JOB_INFO_SINGLE                 ( 2021) count:5      ave_time:179    total_time:897\n\
            \tREQUEST_STATS_INFO                      ( 2035) count:1      ave_time:10     total_time:10\n\
            \n\
            Remote Procedure Call statistics by user\n\
            \troot            (       0) count:26     ave_time:232    total_time:6043\n\
            \tgha-ci          (    1001) count:2      ave_time:852    total_time:1704\n\
            \n\
            Pending RPC statistics\n\
            \tNo pending RPCs\n";
        let s = parse_sdiag(text);
        assert_eq!(s.by_type.get("REQUEST_JOB_INFO_SINGLE"), Some(&5));
        assert_eq!(s.by_user.get("root"), Some(&26));
        assert_eq!(s.by_user.get("gha-ci"), Some(&2));
        assert_eq!(s.by_user.len(), 2);
    }
}
