//! The burst: `count` queued webhooks released at the dispatcher within one second. Measured:
//! the answers, how fast each pool reaches its demand (or `max_runners`), that intake lost
//! nothing, how fast the jobs drain, and the dispatcher's CPU and API calls per job.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use github_sim::{JobSpec, WorkflowSpec};
use serde::Serialize;
use test_support::{wait_until, wait_until_every};

use super::{api_delta, job, Stack, ARM, CPU, LARGE, REPO};
use crate::bench::relay::unix_now;
use crate::demo::stack::ORG;
use crate::demo::stats::Summary;
use e2e::dispatcher_config::Pool;
use e2e::procfs::cpu_seconds;

#[derive(Debug, Default, Serialize)]
pub struct BurstResult {
    pub webhooks: usize,
    /// Seconds from the first to the last webhook sent.
    pub send_span_secs: f64,
    pub response_secs: Option<Summary>,
    pub non_2xx: usize,
    /// Per pool: demand, max_runners, the target (the smaller), seconds until reached.
    pub pools: BTreeMap<String, PoolFill>,
    /// Seconds from the first webhook until every pool had reached its target.
    pub all_pools_at_target_secs: Option<f64>,
    /// Seconds after the last answer until the dispatcher's queued jobs (from `/status`, the
    /// burst's pools) equalled the simulator's queued jobs of the burst: nothing lost at intake.
    pub intake_consistent_after_secs: Option<f64>,
    /// The last comparison: (dispatcher queued, simulator queued).
    pub intake_last_seen: (u64, u64),
    pub drain_secs: Option<f64>,
    pub completed_success: usize,
    pub completed_other: usize,
    pub dispatcher_cpu_secs: f64,
    pub dispatcher_cpu_ms_per_job: f64,
    pub api_calls_paid: u64,
    pub api_calls_per_job: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct PoolFill {
    pub demand: usize,
    pub max_runners: u32,
    pub target: usize,
    pub reached_after_secs: Option<f64>,
    pub peak: usize,
}

/// The pool a runner belongs to: the one whose labels are exactly the runner's, else the
/// largest one whose labels the runner all has.
pub(super) fn pool_of<'p>(pools: &'p [Pool], runner_labels: &[String]) -> Option<&'p Pool> {
    let runner: BTreeSet<String> = runner_labels
        .iter()
        .map(|l| l.to_ascii_lowercase())
        .filter(|l| l != "self-hosted")
        .collect();
    pools
        .iter()
        .filter(|p| {
            p.labels
                .iter()
                .all(|l| runner.contains(&l.to_ascii_lowercase()))
        })
        .max_by_key(|p| p.labels.len())
}

/// `count` queued webhooks released at the dispatcher within one second.
pub fn burst(stack: &mut Stack, count: usize, drain: Duration) -> Result<BurstResult> {
    let (jobs, demand) = burst_jobs(&stack.pools, count);
    let fills = fill_targets(&stack.pools, &demand);
    stack.relay.set_hold(true);
    let run = stack.world.sim.enqueue_workflow(WorkflowSpec {
        repo: format!("{ORG}/{REPO}"),
        name: "burst".into(),
        jobs,
        delay_ms: 0,
    })?;
    let relay = stack.relay.clone();
    wait_until(
        "the simulator to hand the burst to the relay",
        Duration::from_secs(120),
        || relay.held() >= count,
    )?;
    let before = stack.world.sim.counters();
    let relayed_before = stack.relay.relayed_count();
    let cpu_before = cpu_seconds(stack.dispatcher.pid())?;
    let mut observer = Observer {
        run_jobs: run.job_ids.iter().copied().collect(),
        started: unix_now(),
        fills,
        all_at_target: None,
    };
    let first_sent = release(stack, count, &mut observer)?;
    let burst_pools: BTreeSet<String> = demand.keys().cloned().collect();
    let (intake_consistent_after, intake_last_seen) =
        check_intake(stack, &mut observer, &burst_pools)?;
    let drained_at = drain_jobs(stack, &mut observer, count, drain)?;
    let cpu_after = cpu_seconds(stack.dispatcher.pid())?;
    let (paid, _, _) = api_delta(&before, &stack.world.sim.counters());
    let result = summarize(
        stack,
        observer,
        Measured {
            relayed_before,
            first_sent,
            intake_consistent_after,
            intake_last_seen,
            drained_at,
            cpu_secs: cpu_after - cpu_before,
            paid,
        },
    );
    if drained_at.is_none() {
        // Leave no burst work behind for the next phase.
        stack.world.sim.cancel_run(run.run_id)?;
    }
    Ok(result)
}

/// The burst's jobs (70% cpu, 20% large, 10% arm) and how many of them each pool serves.
fn burst_jobs(pools: &[Pool], count: usize) -> (Vec<JobSpec>, BTreeMap<String, usize>) {
    let mix = [(CPU, 70usize), (LARGE, 20), (ARM, 10)];
    let mut jobs = Vec::with_capacity(count);
    let mut demand: BTreeMap<String, usize> = BTreeMap::new();
    for i in 0..count {
        let slot = i % 100;
        let labels = if slot < mix[0].1 {
            mix[0].0
        } else if slot < mix[0].1 + mix[1].1 {
            mix[1].0
        } else {
            mix[2].0
        };
        let runs_on: Vec<String> = labels.iter().map(|l| l.to_string()).collect();
        if let Some(pool) = pools
            .iter()
            .filter(|p| p.serves(&runs_on))
            .max_by_key(|p| p.priority)
        {
            *demand.entry(pool.name.clone()).or_default() += 1;
        }
        jobs.push(job(format!("burst-{i}"), labels, 1000, None));
    }
    (jobs, demand)
}

/// Each pool's fill target: its demand, capped at its `max_runners`.
pub(super) fn fill_targets(
    pools: &[Pool],
    demand: &BTreeMap<String, usize>,
) -> BTreeMap<String, PoolFill> {
    demand
        .iter()
        .map(|(name, demand)| {
            let max = pools
                .iter()
                .find(|p| &p.name == name)
                .map_or(0, |p| p.max_runners);
            let fill = PoolFill {
                demand: *demand,
                max_runners: max,
                target: (*demand).min(max as usize),
                reached_after_secs: None,
                peak: 0,
            };
            (name.clone(), fill)
        })
        .collect()
}

/// The burst as the simulator shows it, updated at every look.
pub(super) struct Observer {
    pub(super) run_jobs: BTreeSet<u64>,
    /// When the release began (seconds since the epoch).
    pub(super) started: f64,
    pub(super) fills: BTreeMap<String, PoolFill>,
    pub(super) all_at_target: Option<f64>,
}

impl Observer {
    /// One look: updates the pools' fill; returns how many burst jobs have completed.
    pub(super) fn observe(&mut self, stack: &mut Stack) -> Result<usize> {
        stack.ensure_dispatcher_alive()?;
        let snapshot = stack.world.sim.snapshot();
        let now = unix_now();
        let mut count_by_pool: BTreeMap<&str, usize> = BTreeMap::new();
        for runner in &snapshot.runners {
            if let Some(pool) = pool_of(&stack.pools, &runner.labels) {
                *count_by_pool.entry(pool.name.as_str()).or_default() += 1;
            }
        }
        for (name, fill) in self.fills.iter_mut() {
            let have = count_by_pool.get(name.as_str()).copied().unwrap_or(0);
            fill.peak = fill.peak.max(have);
            if fill.reached_after_secs.is_none() && have >= fill.target {
                fill.reached_after_secs = Some(now - self.started);
            }
        }
        if self.all_at_target.is_none()
            && self.fills.values().all(|f| f.reached_after_secs.is_some())
        {
            self.all_at_target = Some(now - self.started);
        }
        Ok(snapshot
            .jobs
            .iter()
            .filter(|j| self.run_jobs.contains(&j.id) && j.status == "completed")
            .count())
    }

    /// Polls `look` every `every` until it says done (or `timeout`), stopping at once on an
    /// error of the stack (a dead dispatcher), which a plain wait would only remember.
    pub(super) fn poll_until(
        &mut self,
        stack: &mut Stack,
        what: &str,
        (timeout, every): (Duration, Duration),
        mut look: impl FnMut(&mut Self, &mut Stack) -> Result<bool>,
    ) -> Result<bool> {
        let mut failure = None;
        let waited = wait_until_every(what, timeout, every, || match look(self, stack) {
            Ok(done) => done,
            Err(e) => {
                failure = Some(e);
                true
            }
        });
        match failure {
            Some(e) => Err(e),
            None => Ok(waited.is_ok()),
        }
    }
}

/// Releases the held webhooks at `count` per second, looking at the pools meanwhile (how fast
/// they fill is measured from the first look on); returns when the first webhook was sent.
fn release(stack: &mut Stack, count: usize, observer: &mut Observer) -> Result<f64> {
    stack.relay.set_hold(false);
    observer.started = unix_now();
    let task = {
        let relay = stack.relay.clone();
        stack
            .runtime
            .spawn(async move { relay.release(count as f64).await })
    };
    observer.poll_until(
        stack,
        "the burst's webhooks to be released",
        (Duration::from_secs(120), Duration::from_millis(50)),
        |observer, stack| {
            observer.observe(stack)?;
            Ok(task.is_finished())
        },
    )?;
    let first_sent = stack
        .runtime
        .block_on(task)
        .context("the burst release task failed")??;
    Ok(first_sent)
}

/// Nothing lost at intake: waits (at most 30 s) until the dispatcher holds as queued exactly the
/// burst jobs that the simulator still has queued. Returns how long that took (`None`: not
/// within 30 s) and the last (dispatcher, simulator) pair seen.
fn check_intake(
    stack: &mut Stack,
    observer: &mut Observer,
    burst_pools: &BTreeSet<String>,
) -> Result<(Option<f64>, (u64, u64))> {
    let answered_at = Instant::now();
    let mut last_seen = (0, 0);
    let consistent = observer.poll_until(
        stack,
        "the dispatcher's queue to match the simulator's",
        (Duration::from_secs(30), Duration::from_millis(200)),
        |observer, stack| {
            observer.observe(stack)?;
            let held: u64 = stack
                .dispatcher
                .queued_per_pool()?
                .iter()
                .filter(|(name, _)| burst_pools.contains(*name))
                .map(|(_, n)| n)
                .sum();
            let queued = stack
                .world
                .sim
                .snapshot()
                .jobs
                .iter()
                .filter(|j| observer.run_jobs.contains(&j.id) && j.status == "queued")
                .count() as u64;
            last_seen = (held, queued);
            Ok(held == queued)
        },
    )?;
    let after = consistent.then(|| answered_at.elapsed().as_secs_f64());
    Ok((after, last_seen))
}

/// Lets the burst's jobs run for at most `drain`; returns when the last one completed (seconds
/// after the release began), `None` if they did not all complete in time.
pub(super) fn drain_jobs(
    stack: &mut Stack,
    observer: &mut Observer,
    count: usize,
    drain: Duration,
) -> Result<Option<f64>> {
    let mut last_check = Instant::now();
    let drained = observer.poll_until(
        stack,
        "the burst's jobs to complete",
        (drain, Duration::from_millis(100)),
        |observer, stack| {
            let completed = observer.observe(stack)?;
            // Record what was submitted so far: it is all cancelled at the end, whatever happens.
            if last_check.elapsed() >= Duration::from_secs(5) {
                last_check = Instant::now();
                let ids = stack.sbatch_job_ids()?;
                stack.guard.seen.extend(ids);
            }
            Ok(completed == count)
        },
    )?;
    Ok(drained.then(|| unix_now() - observer.started))
}

/// What the burst measured besides the pools' fill.
struct Measured {
    relayed_before: usize,
    first_sent: f64,
    intake_consistent_after: Option<f64>,
    intake_last_seen: (u64, u64),
    drained_at: Option<f64>,
    cpu_secs: f64,
    paid: u64,
}

fn summarize(stack: &Stack, observer: Observer, m: Measured) -> BurstResult {
    let relayed = stack.relay.relayed();
    let answers: Vec<_> = relayed[m.relayed_before..]
        .iter()
        .filter(|r| {
            r.action.as_deref() == Some("queued")
                && r.job_id.is_some_and(|id| observer.run_jobs.contains(&id))
        })
        .collect();
    let send_span = answers
        .iter()
        .map(|r| r.sent_at)
        .fold(f64::NEG_INFINITY, f64::max)
        - m.first_sent;
    let snapshot = stack.world.sim.snapshot();
    let (success, other) = snapshot
        .jobs
        .iter()
        .filter(|j| observer.run_jobs.contains(&j.id) && j.status == "completed")
        .fold((0, 0), |(s, o), j| {
            if j.conclusion.as_deref() == Some("success") {
                (s + 1, o)
            } else {
                (s, o + 1)
            }
        });
    let finished = (success + other).max(1);
    BurstResult {
        webhooks: answers.len(),
        send_span_secs: send_span.max(0.0),
        response_secs: Summary::of(&answers.iter().map(|r| r.response_secs).collect::<Vec<_>>()),
        non_2xx: answers
            .iter()
            .filter(|r| !(200..300).contains(&r.status))
            .count(),
        pools: observer.fills,
        all_pools_at_target_secs: observer.all_at_target,
        intake_consistent_after_secs: m.intake_consistent_after,
        intake_last_seen: m.intake_last_seen,
        drain_secs: m.drained_at,
        completed_success: success,
        completed_other: other,
        dispatcher_cpu_secs: m.cpu_secs,
        dispatcher_cpu_ms_per_job: m.cpu_secs * 1000.0 / finished as f64,
        api_calls_paid: m.paid,
        api_calls_per_job: m.paid as f64 / finished as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::super::pools;
    use super::*;

    #[test]
    fn runners_are_counted_in_the_most_specific_pool() {
        let pools = pools();
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let pool = |l: &[&str]| pool_of(&pools, &labels(l)).map(|p| p.name.as_str());
        assert_eq!(pool(&["self-hosted", "linux", "x64"]), Some("cpu"));
        assert_eq!(
            pool(&["Self-Hosted", "linux", "x64", "large"]),
            Some("large")
        );
        assert_eq!(pool(&["linux", "arm64", "cpu"]), Some("arm"));
        assert_eq!(pool(&["windows"]), None);
    }
}
