//! One job at a time: each sample starts on an idle node, so it shows the latency a lone job
//! sees (webhook → sbatch accepted, queued → runner process started) and the API calls it costs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use github_sim::WorkflowSpec;
use serde::Serialize;
use test_support::wait_until;

use super::{api_delta, job, Stack, CPU, REPO};
use crate::demo::slurm;
use crate::demo::stack::ORG;
use e2e::procfs::{boottime_now, clock_ticks_per_second};

#[derive(Debug, Default, Serialize)]
pub struct SequentialResult {
    pub jobs: usize,
    /// Relay received the `queued` webhook → the wrapper saw sbatch accept the job (s).
    pub webhook_to_sbatch_secs: Vec<f64>,
    /// How long sbatch itself took inside those (s).
    pub sbatch_call_secs: Vec<f64>,
    /// Job queued in the simulator → Runner.Listener process started on the node (s).
    pub queued_to_runner_start_secs: Vec<f64>,
    pub api_calls_paid: u64,
    pub api_calls_304: u64,
    pub api_calls_by_endpoint: BTreeMap<String, u64>,
}

/// One job at a time: enqueue it, wait for it to complete and its Slurm job to end.
pub fn sequential(stack: &mut Stack, jobs: usize) -> Result<SequentialResult> {
    let before = stack.world.sim.counters();
    let mut result = SequentialResult {
        jobs,
        ..SequentialResult::default()
    };
    for i in 0..jobs {
        measure_one(stack, i, &mut result)?;
    }
    let after = stack.world.sim.counters();
    let (paid, free, by_endpoint) = api_delta(&before, &after);
    result.api_calls_paid = paid;
    result.api_calls_304 = free;
    result.api_calls_by_endpoint = by_endpoint;
    Ok(result)
}

/// Runs job `i` alone and adds its three timings to `result`.
fn measure_one(stack: &mut Stack, i: usize, result: &mut SequentialResult) -> Result<()> {
    stack.ensure_dispatcher_alive()?;
    // In the jobs dir (mode 1777): the step runs as the job user.
    let probe = stack
        .cluster
        .jobs_dir()
        .join(format!("{}-runner-start-{i}", stack.prefix));
    // The step's parent is the runner's listener process: record when the kernel started it.
    let command = format!(
        "cut -d' ' -f22 /proc/$PPID/stat > {p}.tmp && cat /proc/$PPID/comm >> {p}.tmp && mv {p}.tmp {p}",
        p = probe.display()
    );
    crate::bench::cluster_jobs::wait_node_idle(stack.cluster, Duration::from_secs(30))?;
    let calls_before = stack.timing.calls()?.len();
    let relayed_before = stack.relay.relayed_count();
    let queued_at = boottime_now();
    let run = stack.world.sim.enqueue_workflow(WorkflowSpec {
        repo: format!("{ORG}/{REPO}"),
        name: format!("seq-{i}"),
        jobs: vec![job(format!("one-{i}"), CPU, 0, Some(command))],
        delay_ms: 0,
    })?;
    let job_id = run.job_ids[0];
    let sim = &stack.world.sim;
    let done = wait_until(
        &format!("sequential job {i} to complete"),
        Duration::from_secs(120),
        || sim.job(job_id).filter(|j| j.status == "completed"),
    )?;
    ensure!(
        done.conclusion.as_deref() == Some("success"),
        "sequential job {i} ended {:?}; dispatcher log:\n{}",
        done.conclusion,
        stack.dispatcher.log_tail(20)
    );
    let started = runner_start_secs(&probe)?;
    result.queued_to_runner_start_secs.push(started - queued_at);

    let relayed = stack.relay.relayed();
    let webhook = relayed[relayed_before..]
        .iter()
        .find(|r| r.job_id == Some(job_id) && r.action.as_deref() == Some("queued"))
        .context("the relay saw no queued webhook for the job")?;
    let calls = stack.timing.calls()?;
    let submit = calls[calls_before.min(calls.len())..]
        .iter()
        .find(|c| c.exit_status == 0 && c.ended >= webhook.sent_at)
        .context("no sbatch call followed the webhook")?;
    result
        .webhook_to_sbatch_secs
        .push(submit.ended - webhook.sent_at);
    result.sbatch_call_secs.push(submit.ended - submit.started);

    // Next job only once this one's Slurm job has ended: every sample starts on an idle node.
    let ids: BTreeSet<u32> = calls.iter().filter_map(|c| c.job_id).collect();
    stack.guard.seen.extend(ids.iter().copied());
    let cluster = stack.cluster;
    wait_until(
        "the runner's Slurm job to end",
        Duration::from_secs(90),
        || {
            let listed = slurm::jobs_of(cluster, cluster.test_user())?;
            anyhow::Ok(listed.iter().all(|j| !ids.contains(&j.id)).then_some(()))
        },
    )?;
    Ok(())
}

/// When the runner's listener process started (seconds since boot), from the probe the job's
/// step wrote; also checks that the step really ran under `Runner.Listener`.
fn runner_start_secs(probe: &Path) -> Result<f64> {
    let text = std::fs::read_to_string(probe)
        .with_context(|| format!("reading the runner start probe {}", probe.display()))?;
    let mut lines = text.lines();
    let started_ticks: f64 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .context("the probe holds no start time")?;
    let parent = lines.next().unwrap_or("").trim().to_owned();
    ensure!(
        parent == "Runner.Listener",
        "the step's parent process is {parent:?}, not the runner's Runner.Listener"
    );
    let _ = std::fs::remove_file(probe);
    Ok(started_ticks / clock_ticks_per_second())
}
