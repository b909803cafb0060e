//! One job at a time: each sample starts on an idle node, so it shows the latency a lone job
//! sees (webhook → sbatch accepted, queued → runner process started) and the API calls it costs,
//! for either intake: the webhook target's repository, or the listener target's (its jobs say
//! `runs-on: <scale set>`; no webhook reaches the dispatcher meanwhile).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use github_sim::WorkflowSpec;
use serde::Serialize;
use test_support::wait_until;

use super::{account_delta, job, ProtocolDelta, Stack, CPU, LISTEN_ORG, LISTEN_REPO, REPO};
use crate::bench::relay::unix_now;
use crate::demo::slurm;
use crate::demo::stack::ORG;
use e2e::procfs::{boottime_now, clock_ticks_per_second};

/// How the phase's jobs reach the dispatcher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Intake {
    Webhook,
    Listener,
}

impl Intake {
    /// The organization whose target uses this intake.
    pub fn account(self) -> &'static str {
        match self {
            Intake::Webhook => ORG,
            Intake::Listener => LISTEN_ORG,
        }
    }
}

#[derive(Debug, Serialize)]
pub struct SequentialResult {
    pub intake: Intake,
    pub jobs: usize,
    /// Relay received the `queued` webhook → the wrapper saw sbatch accept the job (s);
    /// webhook intake only.
    pub webhook_to_sbatch_secs: Vec<f64>,
    /// Job queued in the simulator → the wrapper saw sbatch accept the job (s).
    pub queued_to_sbatch_secs: Vec<f64>,
    /// How long sbatch itself took inside those (s).
    pub sbatch_call_secs: Vec<f64>,
    /// Job queued in the simulator → Runner.Listener process started on the node (s).
    pub queued_to_runner_start_secs: Vec<f64>,
    /// Paid REST calls whose path names this target's organization.
    pub api_calls_paid: u64,
    pub api_calls_304: u64,
    pub api_calls_by_endpoint: BTreeMap<String, u64>,
    /// The App's own REST calls meanwhile (installation tokens: they serve every target).
    pub app_calls_paid: u64,
    /// The scale set protocol meanwhile (listener: this target's; webhook: none expected).
    pub protocol: ProtocolDelta,
}

/// One job at a time through `intake`: enqueue it, wait for it to complete and its Slurm job
/// to end.
pub fn sequential(stack: &mut Stack, jobs: usize, intake: Intake) -> Result<SequentialResult> {
    stack.webhooks(intake == Intake::Webhook);
    let before = stack.world.sim.counters();
    let mut result = SequentialResult {
        intake,
        jobs,
        webhook_to_sbatch_secs: Vec::new(),
        queued_to_sbatch_secs: Vec::new(),
        sbatch_call_secs: Vec::new(),
        queued_to_runner_start_secs: Vec::new(),
        api_calls_paid: 0,
        api_calls_304: 0,
        api_calls_by_endpoint: BTreeMap::new(),
        app_calls_paid: 0,
        protocol: ProtocolDelta::default(),
    };
    let measured = (0..jobs).try_for_each(|i| measure_one(stack, i, &mut result));
    stack.webhooks(true);
    measured?;
    let after = stack.world.sim.counters();
    let (paid, free, by_endpoint) = account_delta(&before, &after, intake.account());
    result.api_calls_paid = paid;
    result.api_calls_304 = free;
    result.api_calls_by_endpoint = by_endpoint;
    result.app_calls_paid = account_delta(&before, &after, "").0;
    result.protocol = ProtocolDelta::between(&before.scaleset, &after.scaleset);
    Ok(result)
}

/// The repository and `runs-on` of a job through `intake`.
fn target_of(stack: &Stack, intake: Intake) -> (String, Vec<String>) {
    match intake {
        Intake::Webhook => (
            format!("{ORG}/{REPO}"),
            CPU.iter().map(|l| l.to_string()).collect(),
        ),
        Intake::Listener => (
            format!("{LISTEN_ORG}/{LISTEN_REPO}"),
            vec![stack.scale_set_label("cpu")],
        ),
    }
}

/// Runs job `i` alone and adds its timings to `result`.
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
    let (repo, runs_on) = target_of(stack, result.intake);
    let runs_on: Vec<&str> = runs_on.iter().map(String::as_str).collect();
    let queued_unix = unix_now();
    let queued_at = boottime_now();
    let run = stack.world.sim.enqueue_workflow(WorkflowSpec {
        repo,
        name: format!("seq-{i}"),
        jobs: vec![job(format!("one-{i}"), &runs_on, 0, Some(command))],
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

    let calls = stack.timing.calls()?;
    let submit = calls[calls_before.min(calls.len())..]
        .iter()
        .find(|c| c.exit_status == 0 && c.ended >= queued_unix)
        .context("no sbatch call followed the job")?;
    result
        .queued_to_sbatch_secs
        .push(submit.ended - queued_unix);
    result.sbatch_call_secs.push(submit.ended - submit.started);
    if result.intake == Intake::Webhook {
        let relayed = stack.relay.relayed();
        let webhook = relayed[relayed_before..]
            .iter()
            .find(|r| r.job_id == Some(job_id) && r.action.as_deref() == Some("queued"))
            .context("the relay saw no queued webhook for the job")?;
        result
            .webhook_to_sbatch_secs
            .push(submit.ended - webhook.sent_at);
    }

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
