//! The drain's per-job timeline on the real cluster (issue 16 §3): a small drain through the
//! listener (32 one-second jobs on the 16-slot pool) beside 32 bare jobs (so that slots are
//! reused in both), and every job's moments are there, from the party that knows each:
//! queued, sbatch accepted, Slurm start, ticket redeemed, runner online, job assigned, job
//! done, runner exited, epilog done; the slots are at most the pool's 16, the jobs that
//! followed another on a slot have its reuse, the stage table has every stage and the Gantt is
//! written. Numbers are the bench's business: nothing here asserts a speed.

use std::time::Duration;

use anyhow::{Context, Result};
use demo_bench::bench::dispatch::{self, Intake, Stack, DRAIN_SLOTS, GANTT_FILE, TIMELINE_FILE};
use e2e::dispatcher_config::RunnerCredentials;
use e2e::Cluster;
use github_sim::SimConfig;

/// Builds gha-dispatcher in this test's profile and points the stack at it.
fn use_built_dispatcher() -> Result<()> {
    std::env::set_var("GHA_DISPATCHER_BIN", e2e::built::dispatcher()?);
    Ok(())
}

#[test]
fn every_job_of_a_small_drain_has_every_moment() -> Result<()> {
    use_built_dispatcher()?;
    let cluster = Cluster::shared();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let out = tempfile::tempdir()?;
    let mut stack = Stack::start(
        cluster,
        &runtime,
        RunnerCredentials::Ticket,
        SimConfig::default(),
    )?;
    let jobs = 2 * DRAIN_SLOTS as usize;
    let drained = dispatch::drain(
        &mut stack,
        (jobs, jobs),
        Intake::Listener,
        Duration::from_secs(300),
        out.path(),
    );
    stack.stop()?;
    let result = drained?;
    assert_eq!(result.completed_success, jobs, "{result:?}");
    assert!(result.drain_secs.is_some());
    let floor = result.floor.as_ref().context("the floor ran")?;
    assert_eq!(floor.jobs, jobs);
    assert!(floor.cycle_secs.is_some(), "{floor:?}");

    let text = std::fs::read_to_string(out.path().join(TIMELINE_FILE))?;
    let timelines: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    assert_eq!(timelines.len(), jobs);
    for job in &timelines {
        for moment in [
            "queued",
            "sbatch_accepted",
            "slurm_start",
            "ticket_redeemed",
            "runner_online",
            "job_assigned",
            "job_done",
            "runner_exited",
            "epilog_done",
        ] {
            assert!(job[moment].is_f64(), "{moment} missing: {job}");
        }
        let slot = job["slot"].as_u64().context("a slot")?;
        assert!(slot < u64::from(DRAIN_SLOTS), "{job}");
        let at = |k: &str| job[k].as_f64().unwrap_or(f64::NAN);
        // Each party's clock agrees on the order of what it cannot see apart.
        assert!(at("queued") <= at("sbatch_accepted") + 0.05, "{job}");
        assert!(at("slurm_start") <= at("ticket_redeemed"), "{job}");
        assert!(at("job_assigned") <= at("job_done"), "{job}");
        // The batch step's end and the epilog's are logged by different processes: slurmstepd
        // logs "done with job" after its own cleanup, and the epilog (which slurmd starts once
        // slurmctld heard of the end) can finish before that; a CI run saw it 83 ms earlier.
        // Within a second, both marks are this job's (a misread time would be hours off).
        assert!(at("runner_exited") <= at("epilog_done") + 1.0, "{job}");
    }
    let reused = timelines
        .iter()
        .filter(|j| j["slot_reused"].is_f64())
        .count();
    assert!(
        reused >= jobs - DRAIN_SLOTS as usize,
        "only {reused} slot reuses"
    );
    assert!(
        result.stages.iter().all(|row| row.secs.is_some()),
        "{:?}",
        result.stages
    );
    let svg = std::fs::read_to_string(out.path().join(GANTT_FILE))?;
    assert!(svg.starts_with("<svg") && svg.contains("slot 1"));
    Ok(())
}
