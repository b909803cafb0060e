//! A warm pool (`min_idle`): the time from a job queued to its step running on a runner that
//! was already online and idle, beside the same time for a cold start (a runner made for the
//! job) in the same run. Both are measured the same way: the bench notes the Unix time just
//! before it queues the job, and the job's only step writes the Unix time it starts at (the
//! same host, the same clock), so the figure includes the runner receiving the job and
//! starting its step, as a user sees it.
//!
//! The dispatcher is restarted with the warm pool added for this phase, and again with the
//! pool's hours moved to another day when it ends, so it retires the idle runners itself and
//! the later phases run beside no warm runner.

use std::time::Duration;

use anyhow::{ensure, Context, Result};
use github_sim::WorkflowSpec;
use serde::Serialize;
use test_support::wait_until;

use super::{job, Stack, CPU, REPO};
use crate::bench::relay::unix_now;
use crate::demo::stack::ORG;
use e2e::dispatcher_config::Pool;

const WARM: &[&str] = &["self-hosted", "linux", "warm"];
/// Idle runners the warm pool keeps.
const MIN_IDLE: u32 = 2;

#[derive(Debug, Serialize)]
pub struct WarmResult {
    /// Queued → the job's step started, on a warm runner (seconds, one per job).
    pub warm_queued_to_step_secs: Vec<f64>,
    /// The same for a cold start: a runner submitted for the job.
    pub cold_queued_to_step_secs: Vec<f64>,
    /// Jobs whose step ran on a runner that was idle before the job was queued.
    pub warm_jobs_on_warm_runners: usize,
    /// The dispatcher's idle runner-seconds counter for the warm pool when the phase ended.
    pub idle_runner_seconds: Option<f64>,
}

/// The warm pool: `min_idle` 2, room for one more while a job runs.
fn warm_pool(hours: Option<&str>) -> Pool {
    Pool::new("warm", &["linux", "warm"], MIN_IDLE + 1)
        .time_limit("30:00")
        .warm(MIN_IDLE, hours)
}

/// `jobs` jobs one at a time on a warm pool, then `jobs` cold starts on the `cpu` pool.
pub fn warm(stack: &mut Stack, jobs: usize) -> Result<WarmResult> {
    let mut pools = stack.pools.clone();
    pools.push(warm_pool(None));
    stack.restart_with_pools(pools.clone())?;
    let mut result = WarmResult {
        warm_queued_to_step_secs: Vec::new(),
        cold_queued_to_step_secs: Vec::new(),
        warm_jobs_on_warm_runners: 0,
        idle_runner_seconds: None,
    };
    let measured = (0..jobs).try_for_each(|i| {
        let idle = wait_warm_runners_idle(stack)?;
        let (secs, runner) = queued_to_step(stack, &format!("warm-{i}"), WARM)?;
        result.warm_queued_to_step_secs.push(secs);
        result.warm_jobs_on_warm_runners += usize::from(idle.contains(&runner));
        anyhow::Ok(())
    });
    let measured = measured.and_then(|()| {
        (0..jobs).try_for_each(|i| {
            let (secs, _) = queued_to_step(stack, &format!("cold-{i}"), CPU)?;
            result.cold_queued_to_step_secs.push(secs);
            anyhow::Ok(())
        })
    });
    result.idle_runner_seconds = stack.dispatcher.metrics().ok().and_then(|text| {
        text.lines()
            .find_map(|l| {
                l.strip_prefix(r#"gha_dispatcher_warm_idle_runner_seconds_total{pool="warm"} "#)
            })
            .and_then(|v| v.trim().parse().ok())
    });
    // The pool's hours moved to another day: the dispatcher retires its idle runners.
    let last = pools.len() - 1;
    pools[last] = warm_pool(Some(&format!("{} 00:00-24:00", other_day())));
    stack.restart_with_pools(pools)?;
    measured?;
    wait_until("the warm runners retired", Duration::from_secs(60), || {
        warm_runners(stack, false).is_empty().then_some(())
    })?;
    Ok(result)
}

/// Our runners registered with the warm pool's labels and online (only idle ones when
/// `idle_only`).
fn warm_runners(stack: &Stack, idle_only: bool) -> Vec<String> {
    stack
        .world
        .sim
        .runners()
        .into_iter()
        .filter(|r| r.name.starts_with(&stack.prefix) && r.labels.iter().any(|l| l == "warm"))
        .filter(|r| r.status == "online" && !(idle_only && r.busy))
        .map(|r| r.name)
        .collect()
}

/// Waits for the pool's idle runners (a replacement for the last job's included).
fn wait_warm_runners_idle(stack: &Stack) -> Result<Vec<String>> {
    let idle = wait_until(
        "the warm pool's idle runners online",
        Duration::from_secs(90),
        || {
            let idle = warm_runners(stack, true);
            (idle.len() >= MIN_IDLE as usize).then_some(idle)
        },
    )?;
    Ok(idle)
}

/// Queues one job with `runs_on`, waits for it to succeed; the seconds from queued to its
/// step starting, and the runner that ran it.
fn queued_to_step(stack: &mut Stack, name: &str, runs_on: &[&str]) -> Result<(f64, String)> {
    // In the jobs dir (mode 1777): the step runs as the job user.
    let probe = stack
        .cluster
        .jobs_dir()
        .join(format!("{}-step-start-{name}", stack.prefix));
    let command = format!(
        "date +%s.%N > {p}.tmp && mv {p}.tmp {p}",
        p = probe.display()
    );
    let queued_at = unix_now();
    let run = stack.world.sim.enqueue_workflow(WorkflowSpec {
        repo: format!("{ORG}/{REPO}"),
        name: name.to_string(),
        jobs: vec![job(name.to_string(), runs_on, 0, Some(command))],
        delay_ms: 0,
    })?;
    let job_id = run.job_ids[0];
    let sim = &stack.world.sim;
    let done = wait_until(
        &format!("job {name} to complete"),
        Duration::from_secs(120),
        || sim.job(job_id).filter(|j| j.status == "completed"),
    )?;
    ensure!(
        done.conclusion.as_deref() == Some("success"),
        "job {name} ended {:?}; dispatcher log:\n{}",
        done.conclusion,
        stack.dispatcher.log_tail(20)
    );
    let text = std::fs::read_to_string(&probe)
        .with_context(|| format!("reading the step start probe {}", probe.display()))?;
    let _ = std::fs::remove_file(&probe);
    let started: f64 = text.trim().parse().context("the probe holds no time")?;
    Ok((started - queued_at, done.runner_name.unwrap_or_default()))
}

/// A day of the week that is not today (UTC), for hours that exclude now.
fn other_day() -> &'static str {
    let days_since_epoch = unix_now() as u64 / 86_400;
    // 1970-01-01 was a Thursday; three days on is never the same weekday.
    ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][((days_since_epoch + 3 + 3) % 7) as usize]
}
