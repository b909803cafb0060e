//! What one of the dispatcher's Slurm questions costs with the jobs slurmctld holds right now:
//! the whole cluster's list as JSON (what the dispatcher asks today, per ticket redemption and
//! per poll of a full pool) against one job by id (what a narrowed query asks). Timed as the
//! dispatcher runs them, as child processes, wall clock.

use std::time::Instant;

use anyhow::{ensure, Context, Result};
use serde::Serialize;

use crate::demo::stats::Summary;
use e2e::Cluster;

#[derive(Debug, Default, Serialize)]
pub struct SqueueCost {
    /// Jobs slurmctld lists (every state), when measured.
    pub jobs_known: usize,
    /// `squeue --all --states=all --json`, seconds.
    pub whole_list_json_secs: Option<Summary>,
    /// `squeue --jobs=<id> --states=all --noheader`, seconds.
    pub one_job_secs: Option<Summary>,
}

/// Times each query `samples` times, asking about `job_id` for the single-job one.
pub fn measure(cluster: &Cluster, job_id: u32, samples: usize) -> Result<SqueueCost> {
    let whole = ["--all", "--states=all", "--json"];
    let one_job = format!("--jobs={job_id}");
    let single = [one_job.as_str(), "--states=all", "--noheader"];
    let mut whole_secs = Vec::new();
    let mut single_secs = Vec::new();
    for _ in 0..samples {
        whole_secs.push(timed(cluster, &whole)?.0);
        single_secs.push(timed(cluster, &single)?.0);
    }
    let listed = timed(
        cluster,
        &["--all", "--states=all", "--noheader", "--format=%i"],
    )?
    .1;
    Ok(SqueueCost {
        jobs_known: listed.lines().count(),
        whole_list_json_secs: Summary::of(&whole_secs),
        one_job_secs: Summary::of(&single_secs),
    })
}

fn timed(cluster: &Cluster, args: &[&str]) -> Result<(f64, String)> {
    let started = Instant::now();
    let output = cluster
        .command("squeue")
        .args(args)
        .output()
        .context("running squeue")?;
    let secs = started.elapsed().as_secs_f64();
    ensure!(
        output.status.success(),
        "squeue {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok((secs, String::from_utf8_lossy(&output.stdout).into_owned()))
}
