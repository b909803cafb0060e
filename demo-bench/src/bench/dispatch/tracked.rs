//! Tracked jobs: many queued jobs on a pool too small to run them, so the dispatcher must hold
//! them all: its memory and intake CPU while it does.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use github_sim::{RunCreated, WorkflowSpec};
use serde::Serialize;
use test_support::wait_until;

use super::{job, Stack, REPO, TRACKED};
use crate::demo::stack::ORG;
use e2e::procfs::{cpu_seconds, memory_mib};

#[derive(Debug, Default, Serialize)]
pub struct TrackedResult {
    pub jobs: usize,
    pub answered_2xx: usize,
    /// How the dispatcher answered the queued webhooks: status code (0 = no answer) → count.
    pub answers_by_status: BTreeMap<u16, usize>,
    /// Queued jobs the dispatcher's `/status` showed on the pool after the webhooks.
    pub dispatcher_queued: Option<u64>,
    pub rss_before_mib: f64,
    pub rss_max_mib: f64,
    pub rss_peak_hwm_mib: f64,
    pub cpu_secs_for_intake: f64,
}

/// 10,000 queued jobs on a small pool: what the dispatcher's memory looks like holding them.
pub fn tracked(stack: &mut Stack, count: usize) -> Result<TrackedResult> {
    let pid = stack.dispatcher.pid();
    let (rss_before, _) = memory_mib(pid)?;
    let cpu_before = cpu_seconds(pid)?;
    let (run, answers_by_status) = queue(stack, count)?;
    let answered_2xx = answers_by_status
        .iter()
        .filter(|(status, _)| (200..300).contains(*status))
        .map(|(_, n)| n)
        .sum();
    let rss_max = sample_rss(stack, pid, Duration::from_secs(5))?;
    let (_, hwm) = memory_mib(pid)?;
    let cpu_after = cpu_seconds(pid)?;
    let dispatcher_queued = stack.dispatcher.queued_per_pool()?.get("tracked").copied();
    cancel(stack, &run)?;
    Ok(TrackedResult {
        jobs: count,
        answered_2xx,
        answers_by_status,
        dispatcher_queued,
        rss_before_mib: rss_before,
        rss_max_mib: rss_max,
        rss_peak_hwm_mib: hwm,
        cpu_secs_for_intake: cpu_after - cpu_before,
    })
}

/// Queues `count` jobs and releases their webhooks at 5,000 a second; returns the run and how
/// the dispatcher answered (status code, 0 = no answer → count).
fn queue(stack: &mut Stack, count: usize) -> Result<(RunCreated, BTreeMap<u16, usize>)> {
    stack.relay.set_hold(true);
    let jobs = (0..count)
        .map(|i| job(format!("tracked-{i}"), TRACKED, 120_000, None))
        .collect();
    let run = stack.world.sim.enqueue_workflow(WorkflowSpec {
        repo: format!("{ORG}/{REPO}"),
        name: "tracked".into(),
        jobs,
        delay_ms: 0,
    })?;
    let relay = stack.relay.clone();
    wait_until(
        "the simulator to hand 10,000 webhooks to the relay",
        Duration::from_secs(300),
        || relay.held() >= count,
    )?;
    let relayed_before = stack.relay.relayed_count();
    stack.relay.set_hold(false);
    stack
        .runtime
        .block_on(stack.relay.release(5000.0))
        .context("releasing the tracked jobs' webhooks")?;
    let mut answers_by_status: BTreeMap<u16, usize> = BTreeMap::new();
    for answer in &stack.relay.relayed()[relayed_before..] {
        *answers_by_status.entry(answer.status).or_default() += 1;
    }
    Ok((run, answers_by_status))
}

/// The largest RSS over `window` after every webhook was answered (the dispatcher reconciles
/// and scales meanwhile). Sampling over a span of time is the measurement, not a wait.
fn sample_rss(stack: &mut Stack, pid: u32, window: Duration) -> Result<f64> {
    let mut rss_max: f64 = 0.0;
    let until = Instant::now() + window;
    while Instant::now() < until {
        stack.ensure_dispatcher_alive()?;
        rss_max = rss_max.max(memory_mib(pid)?.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(rss_max)
}

/// Cancels the run; its `completed` webhooks go through the relay at speed too.
fn cancel(stack: &mut Stack, run: &RunCreated) -> Result<()> {
    stack.relay.set_hold(true);
    stack.world.sim.cancel_run(run.run_id)?;
    let run_jobs: BTreeSet<u64> = run.job_ids.iter().copied().collect();
    let expected = stack
        .world
        .sim
        .snapshot()
        .jobs
        .iter()
        .filter(|j| run_jobs.contains(&j.id) && j.status == "completed" && j.runner_name.is_none())
        .count();
    let relay = stack.relay.clone();
    let handed = wait_until(
        "the cancellations to reach the relay",
        Duration::from_secs(300),
        || relay.held() >= expected,
    );
    stack.relay.set_hold(false);
    stack
        .runtime
        .block_on(stack.relay.release(5000.0))
        .context("releasing the cancellations")?;
    handed?;
    Ok(())
}
