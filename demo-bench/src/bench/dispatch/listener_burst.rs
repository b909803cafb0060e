//! The burst on the listener target: `count` jobs queued at once in the listened organization
//! (70% on the cpu pool's scale set, 20% large, 10% arm, by `runs-on: <scale set>`), no
//! webhook. Measured as for the webhook burst: how fast each pool reaches its demand (or
//! `max_runners`), how fast the jobs drain, that none ran twice, the dispatcher's CPU, and the
//! REST calls and scale set protocol traffic it cost.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use github_sim::{JobSpec, WorkflowSpec};
use serde::Serialize;

use super::burst::{drain_jobs, fill_targets, Observer};
use super::{account_delta, job, ProtocolDelta, Stack, LISTEN_ORG, LISTEN_REPO};
use crate::bench::dispatch::PoolFill;
use crate::bench::relay::unix_now;
use e2e::procfs::cpu_seconds;

#[derive(Debug, Default, Serialize)]
pub struct ListenerBurstResult {
    pub jobs: usize,
    /// Per pool: demand, max_runners, the target (the smaller), seconds until reached.
    pub pools: BTreeMap<String, PoolFill>,
    /// Seconds from the enqueue until every pool had reached its target.
    pub all_pools_at_target_secs: Option<f64>,
    pub drain_secs: Option<f64>,
    pub completed_success: usize,
    pub completed_other: usize,
    /// Burst jobs a runner took more than once (`Counters.job_runs`): should be none.
    pub ran_more_than_once: usize,
    pub dispatcher_cpu_secs: f64,
    pub dispatcher_cpu_ms_per_job: f64,
    /// Paid REST calls naming the listened organization, and the App's own.
    pub api_calls_paid: u64,
    pub app_calls_paid: u64,
    pub api_calls_per_job: f64,
    pub protocol: ProtocolDelta,
}

/// The burst's jobs and how many each pool serves.
pub(super) fn listened_jobs(
    stack: &Stack,
    count: usize,
) -> (Vec<JobSpec>, BTreeMap<String, usize>) {
    let mut jobs = Vec::with_capacity(count);
    let mut demand: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..count {
        let pool = match i % 100 {
            0..=69 => "cpu",
            70..=89 => "large",
            _ => "arm",
        };
        *demand.entry(pool.to_owned()).or_default() += 1;
        let label = stack.scale_set_label(pool);
        jobs.push(job(format!("burst-{i}"), &[label.as_str()], 1000, None));
    }
    (jobs, demand)
}

/// `count` jobs queued at once on the listener target; webhooks off meanwhile.
pub fn listener_burst(
    stack: &mut Stack,
    count: usize,
    drain: Duration,
) -> Result<ListenerBurstResult> {
    stack.webhooks(false);
    let measured = measure(stack, count, drain);
    stack.webhooks(true);
    measured
}

fn measure(stack: &mut Stack, count: usize, drain: Duration) -> Result<ListenerBurstResult> {
    let (jobs, demand) = listened_jobs(stack, count);
    let before = stack.world.sim.counters();
    let cpu_before = cpu_seconds(stack.dispatcher.pid())?;
    let started = unix_now();
    let run = stack.world.sim.enqueue_workflow(WorkflowSpec {
        repo: format!("{LISTEN_ORG}/{LISTEN_REPO}"),
        name: "listened-burst".into(),
        jobs,
        delay_ms: 0,
    })?;
    let mut observer = Observer {
        run_jobs: run.job_ids.iter().copied().collect(),
        started,
        fills: fill_targets(&stack.pools, &demand),
        all_at_target: None,
    };
    observer.poll_until(
        stack,
        "every pool at its target",
        (Duration::from_secs(120), Duration::from_millis(50)),
        |observer, stack| {
            observer.observe(stack)?;
            Ok(observer.all_at_target.is_some())
        },
    )?;
    let drained_at = drain_jobs(stack, &mut observer, count, drain)?;
    let cpu_secs = cpu_seconds(stack.dispatcher.pid())? - cpu_before;
    let after = stack.world.sim.counters();
    // Before any cancel below: a job cancelled for the next phase did not end otherwise.
    let snapshot = stack.world.sim.snapshot();
    if drained_at.is_none() {
        // Leave no burst work behind for the next phase.
        stack.world.sim.cancel_run(run.run_id)?;
    }
    let completed: Vec<_> = snapshot
        .jobs
        .iter()
        .filter(|j| observer.run_jobs.contains(&j.id) && j.status == "completed")
        .collect();
    let success = completed
        .iter()
        .filter(|j| j.conclusion.as_deref() == Some("success"))
        .count();
    let finished = completed.len().max(1);
    let (paid, _, _) = account_delta(&before, &after, LISTEN_ORG);
    Ok(ListenerBurstResult {
        jobs: count,
        pools: observer.fills,
        all_pools_at_target_secs: observer.all_at_target,
        drain_secs: drained_at,
        completed_success: success,
        completed_other: completed.len() - success,
        ran_more_than_once: after
            .job_runs
            .iter()
            .filter(|(id, r)| observer.run_jobs.contains(id) && r.assignments > 1)
            .count(),
        dispatcher_cpu_secs: cpu_secs,
        dispatcher_cpu_ms_per_job: cpu_secs * 1000.0 / finished as f64,
        api_calls_paid: paid,
        app_calls_paid: account_delta(&before, &after, "").0,
        api_calls_per_job: paid as f64 / finished as f64,
        protocol: ProtocolDelta::between(&before.scaleset, &after.scaleset),
    })
}
