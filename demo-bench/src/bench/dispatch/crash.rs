//! kill -9 of the dispatcher during a burst on the listener target, as issue 13 asks: `jobs`
//! queued at once (the listener burst's mix of pools), the dispatcher killed `kills` times (each when another share of the jobs has
//! completed) and restarted on the same state; every restart meets the killed process's session
//! still active (409) until the simulator's `scaleset_session_ttl` lets it expire. Checked:
//! every GitHub job ran exactly once (`Counters.job_runs`), every Slurm job beyond one per
//! GitHub job ended without redeeming its ticket (the wrapper's record of accepted sbatch calls
//! against the JIT configs the scale sets issued) and was counted (`tickets_unredeemed`, summed
//! over the processes: each is scraped just before it is killed), and nothing is left
//! (registrations, Slurm jobs, work dirs, job-user processes, sessions).
//!
//! Runs on a [`Stack`] of its own, started with short protocol timers.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use github_sim::WorkflowSpec;
use serde::Serialize;
use test_support::wait_until;

use super::listener_burst::listened_jobs;
use super::{ProtocolDelta, Stack, LISTEN_ORG, LISTEN_REPO};

#[derive(Debug, Default, Serialize)]
pub struct CrashResult {
    pub jobs: usize,
    pub kills: usize,
    pub session_ttl_secs: u64,
    /// Burst jobs completed when each kill happened.
    pub killed_at_completed: Vec<usize>,
    /// After each restart: seconds until the listener had a session for every pool again.
    pub resumed_after_secs: Vec<f64>,
    pub session_conflicts: u64,
    pub sessions_expired: u64,
    pub drain_secs: Option<f64>,
    pub completed_success: usize,
    pub completed_other: usize,
    /// Burst jobs with `assignments == 1` / more than once / never.
    pub ran_once: usize,
    pub ran_more_than_once: Vec<u64>,
    pub never_ran: usize,
    /// Slurm jobs sbatch accepted (the timing wrapper's record).
    pub slurm_jobs_submitted: usize,
    /// JIT configs the scale sets issued (one per redeemed ticket).
    pub jit_configs_issued: u64,
    /// Submitted minus issued: Slurm jobs that ended without redeeming their ticket.
    pub unredeemed_by_record: i64,
    /// `gha_dispatcher_tickets_unredeemed_total`, summed over the dispatcher's lifetimes.
    pub unredeemed_by_metric: u64,
    pub leftovers: String,
    pub sessions_active_after_stop: u64,
    pub protocol: ProtocolDelta,
    /// Every check above held.
    pub all_checks_pass: bool,
}

/// The dispatcher's `tickets_unredeemed` counter now (0 if it cannot be read).
fn unredeemed_metric(stack: &Stack) -> u64 {
    let text = stack.dispatcher.metrics().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("gha_dispatcher_tickets_unredeemed_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Waits until the listener has opened a session for every pool since `created_before`
/// sessions were (a killed process's sessions stay active until they expire, so the active
/// count says nothing about the new one).
fn wait_listening(stack: &Stack, created_before: u64, timeout: Duration) -> Result<()> {
    let sets = stack.pools.len() as u64;
    let sim = &stack.world.sim;
    wait_until("a new session for every pool", timeout, || {
        sim.counters().scaleset.sessions_created >= created_before + sets
    })?;
    Ok(())
}

fn sessions_created(stack: &Stack) -> u64 {
    stack.world.sim.counters().scaleset.sessions_created
}

/// Burst jobs of the run completed now.
fn completed(stack: &Stack, ids: &BTreeSet<u64>) -> usize {
    stack
        .world
        .sim
        .snapshot()
        .jobs
        .iter()
        .filter(|j| ids.contains(&j.id) && j.status == "completed")
        .count()
}

/// The phase; `session_ttl` must be what the stack's simulator was started with.
pub fn crash(
    stack: &mut Stack,
    jobs: usize,
    kills: usize,
    session_ttl: Duration,
    drain: Duration,
) -> Result<CrashResult> {
    stack.webhooks(false);
    wait_listening(stack, 0, Duration::from_secs(60))?;
    let before = stack.world.sim.counters();
    let started = Instant::now();
    let run = stack.world.sim.enqueue_workflow(WorkflowSpec {
        repo: format!("{LISTEN_ORG}/{LISTEN_REPO}"),
        name: "crash-burst".into(),
        jobs: listened_jobs(stack, jobs).0,
        delay_ms: 0,
    })?;
    let ids: BTreeSet<u64> = run.job_ids.iter().copied().collect();
    let mut result = CrashResult {
        jobs,
        kills,
        session_ttl_secs: session_ttl.as_secs(),
        ..CrashResult::default()
    };
    for k in 1..=kills {
        let share = jobs * k / (kills + 1);
        wait_until(
            &format!("{share} of the crash burst's jobs to complete"),
            drain,
            || completed(stack, &ids) >= share,
        )?;
        result.unredeemed_by_metric += unredeemed_metric(stack);
        result.killed_at_completed.push(completed(stack, &ids));
        let created_before = sessions_created(stack);
        stack.crash_and_restart(k)?;
        let restarted = Instant::now();
        wait_listening(
            stack,
            created_before,
            session_ttl * 4 + Duration::from_secs(60),
        )?;
        result
            .resumed_after_secs
            .push(restarted.elapsed().as_secs_f64());
    }
    let drained = wait_until("the crash burst to complete", drain, || {
        completed(stack, &ids) == jobs
    });
    result.drain_secs = drained.is_ok().then(|| started.elapsed().as_secs_f64());
    if drained.is_err() {
        stack.world.sim.cancel_run(run.run_id)?;
    }
    check(stack, &ids, &before, &mut result)?;
    Ok(result)
}

/// Exactly once, the unredeemed accounted for, nothing left; then a clean stop ends the
/// sessions.
fn check(
    stack: &mut Stack,
    ids: &BTreeSet<u64>,
    before: &github_sim::Counters,
    result: &mut CrashResult,
) -> Result<()> {
    let snapshot = stack.world.sim.snapshot();
    for j in snapshot.jobs.iter().filter(|j| ids.contains(&j.id)) {
        match j.conclusion.as_deref() {
            Some("success") => result.completed_success += 1,
            _ if j.status == "completed" => result.completed_other += 1,
            _ => {}
        }
    }
    let left = stack.wait_quiet(Duration::from_secs(180))?;
    result.leftovers = left.to_string();
    result.unredeemed_by_metric += unredeemed_metric(stack);
    let after = stack.world.sim.counters();
    for id in ids {
        match after.job_runs.get(id).map_or(0, |r| r.assignments) {
            0 => result.never_ran += 1,
            1 => result.ran_once += 1,
            _ => result.ran_more_than_once.push(*id),
        }
    }
    let issued = |c: &github_sim::Counters| c.scaleset.runners_per_set.values().sum::<u64>();
    result.jit_configs_issued = issued(&after) - issued(before);
    result.slurm_jobs_submitted = stack
        .timing
        .calls()?
        .iter()
        .filter(|c| c.exit_status == 0 && c.job_id.is_some())
        .count();
    result.unredeemed_by_record =
        result.slurm_jobs_submitted as i64 - result.jit_configs_issued as i64;
    result.session_conflicts = after.scaleset.session_conflicts - before.scaleset.session_conflicts;
    result.sessions_expired = after.scaleset.sessions_expired - before.scaleset.sessions_expired;
    result.protocol = ProtocolDelta::between(&before.scaleset, &after.scaleset);
    stack.dispatcher.stop().context("stopping the dispatcher")?;
    result.sessions_active_after_stop = stack.world.sim.counters().scaleset.sessions_active;
    result.all_checks_pass = result.ran_once == ids.len()
        && result.completed_success == ids.len()
        && result.unredeemed_by_record >= 0
        && result.unredeemed_by_metric == result.unredeemed_by_record as u64
        && left.is_empty()
        && result.sessions_active_after_stop == 0;
    Ok(())
}
