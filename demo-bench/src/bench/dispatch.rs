//! Benchmarks of the whole path through `gha-dispatcher`: the simulator posts webhooks through
//! the recording relay, the dispatcher submits through the timing sbatch wrapper, and runners
//! start on the real cluster with the plugin. Phases: one job at a time (latencies and API
//! calls per job), an idle window (API calls per hour), a burst of 1,000 queued webhooks, and
//! 10,000 tracked jobs (memory).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use github_sim::{Counters, JobSpec, WorkflowSpec};
use serde::Serialize;
use test_support::wait_until;

use crate::bench::relay::{unix_now, Relay};
use crate::bench::sbatch_timing::{which, SbatchTiming};
use crate::demo::leftovers::Leftovers;
use crate::demo::slurm::{self, CancelOnDrop};
use crate::demo::stack::{random_hex, Dispatcher, DispatcherSpec, SimWorld, ORG};
use crate::demo::stats::Summary;
use e2e::dispatcher_config::{Pool, RunnerCredentials};
use e2e::procfs::{boottime_now, clock_ticks_per_second, cpu_seconds, memory_mib};
use e2e::Cluster;

const REPO: &str = "widgets";
const CPU: &[&str] = &["self-hosted", "linux", "x64"];
const LARGE: &[&str] = &["self-hosted", "linux", "x64", "large"];
const ARM: &[&str] = &["self-hosted", "linux", "arm64"];
const TRACKED: &[&str] = &["self-hosted", "linux", "tracked"];

/// The bench's pools: three for the burst, one small one that the 10,000 tracked jobs queue on.
pub fn pools() -> Vec<Pool> {
    let mut cpu = Pool::new("cpu", &["linux", "x64"], 8);
    cpu.priority = 10;
    vec![
        cpu,
        Pool::new("large", &["linux", "x64", "large"], 4),
        Pool::new("arm", &["linux", "arm64"], 4),
        Pool::new("tracked", &["linux", "tracked"], 2),
    ]
}

/// The running stack for the dispatcher benchmarks.
pub struct Stack<'a> {
    pub cluster: &'a Cluster,
    pub runtime: &'a tokio::runtime::Runtime,
    pub world: SimWorld,
    pub relay: Relay,
    pub timing: SbatchTiming,
    pub dispatcher: Dispatcher,
    pub prefix: String,
    pub guard: CancelOnDrop<'a>,
    pub pools: Vec<Pool>,
    _state_dir: tempfile::TempDir,
}

impl<'a> Stack<'a> {
    pub fn start(
        cluster: &'a Cluster,
        runtime: &'a tokio::runtime::Runtime,
        credentials: RunnerCredentials,
    ) -> Result<Stack<'a>> {
        let world = runtime.block_on(SimWorld::start(&[REPO]))?;
        let relay = runtime.block_on(Relay::start())?;
        world.send_webhooks_to(&relay.url());
        let prefix = format!("bench-{}", random_hex(3)?);
        let timing = SbatchTiming::install(&cluster.jobs_dir().join(&prefix), &which("sbatch")?)?;
        let state_dir = tempfile::Builder::new()
            .prefix("spank-gha-bench-")
            .tempdir()
            .context("creating the dispatcher's state directory")?;
        let pools = pools();
        let spec = DispatcherSpec {
            pools: pools.clone(),
            runner_name_prefix: prefix.clone(),
            reconcile_interval_secs: None,
            sbatch: Some(timing.wrapper.clone()),
            credentials,
        };
        let dispatcher = Dispatcher::start(cluster, &world, &spec, state_dir.path())?;
        relay.set_target(&dispatcher.webhook_url());
        Ok(Stack {
            cluster,
            runtime,
            world,
            relay,
            timing,
            dispatcher,
            guard: CancelOnDrop {
                cluster,
                prefix: prefix.clone(),
                seen: BTreeSet::new(),
            },
            prefix,
            pools,
            _state_dir: state_dir,
        })
    }

    fn ensure_dispatcher_alive(&mut self) -> Result<()> {
        ensure!(
            self.dispatcher.is_running(),
            "gha-dispatcher exited; its log:\n{}",
            self.dispatcher.log_tail(30)
        );
        Ok(())
    }

    /// Waits until nothing of the run is left (runners that got no job end after the plugin's
    /// idle timeout).
    pub fn wait_quiet(&mut self, timeout: Duration) -> Result<Leftovers> {
        let ids = self.sbatch_job_ids()?;
        self.guard.seen.extend(ids);
        Leftovers::wait_until_none(
            self.cluster,
            &self.world.sim,
            &self.prefix,
            &self.guard.seen,
            timeout,
            &|| false,
        )
    }

    fn sbatch_job_ids(&self) -> Result<Vec<u32>> {
        Ok(self
            .timing
            .calls()?
            .iter()
            .filter_map(|c| c.job_id)
            .collect())
    }

    /// Stops the dispatcher, cancels what it left in Slurm, stops the simulator.
    pub fn stop(mut self) -> Result<()> {
        self.dispatcher.stop()?;
        self.guard
            .seen
            .extend(self.sbatch_job_ids().unwrap_or_default());
        self.guard.cancel_now()?;
        let Stack { world, runtime, .. } = self;
        runtime.block_on(world.sim.shutdown());
        Ok(())
    }
}

/// Paid GitHub REST calls and free 304s in `after` minus `before` (runner protocol and the
/// simulator's control API excluded).
pub fn api_delta(before: &Counters, after: &Counters) -> (u64, u64, BTreeMap<String, u64>) {
    let mut paid = 0;
    let mut free = 0;
    let mut by_endpoint = BTreeMap::new();
    for (key, count) in &after.api {
        if key.contains(" /_") {
            continue;
        }
        let old = before.api.get(key).cloned().unwrap_or_default();
        let calls = count.calls.saturating_sub(old.calls);
        let not_modified = count.not_modified.saturating_sub(old.not_modified);
        paid += calls - not_modified.min(calls);
        free += not_modified;
        if calls > not_modified {
            by_endpoint.insert(key.clone(), calls - not_modified);
        }
    }
    (paid, free, by_endpoint)
}

fn job(name: String, runs_on: &[&str], duration_ms: u64, command: Option<String>) -> JobSpec {
    let mut spec = JobSpec::new(name, runs_on);
    spec.duration_ms = duration_ms;
    spec.command = command;
    spec
}

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
    let ticks = clock_ticks_per_second();
    let before = stack.world.sim.counters();
    let mut result = SequentialResult {
        jobs,
        ..SequentialResult::default()
    };
    for i in 0..jobs {
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
        let text = std::fs::read_to_string(&probe)
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
        let _ = std::fs::remove_file(&probe);
        result
            .queued_to_runner_start_secs
            .push(started_ticks / ticks - queued_at);

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
    }
    let after = stack.world.sim.counters();
    let (paid, free, by_endpoint) = api_delta(&before, &after);
    result.api_calls_paid = paid;
    result.api_calls_304 = free;
    result.api_calls_by_endpoint = by_endpoint;
    Ok(result)
}

#[derive(Debug, Default, Serialize)]
pub struct IdleResult {
    pub window_secs: f64,
    pub targets: usize,
    pub api_calls_paid: u64,
    pub api_calls_304: u64,
    pub api_calls_by_endpoint: BTreeMap<String, u64>,
    pub paid_per_hour_per_target: f64,
}

/// Nothing queued: counts what the dispatcher asks GitHub during `window`.
pub fn idle(stack: &mut Stack, window: Duration) -> Result<IdleResult> {
    let before = stack.world.sim.counters();
    let start = Instant::now();
    // Measuring over a span of time is the point here, not waiting for a condition.
    std::thread::sleep(window);
    let window_secs = start.elapsed().as_secs_f64();
    stack.ensure_dispatcher_alive()?;
    let after = stack.world.sim.counters();
    let (paid, free, by_endpoint) = api_delta(&before, &after);
    let targets = 1;
    Ok(IdleResult {
        window_secs,
        targets,
        api_calls_paid: paid,
        api_calls_304: free,
        api_calls_by_endpoint: by_endpoint,
        paid_per_hour_per_target: paid as f64 * 3600.0 / window_secs / targets as f64,
    })
}

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
fn pool_of<'p>(pools: &'p [Pool], runner_labels: &[String]) -> Option<&'p Pool> {
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
        if let Some(pool) = stack
            .pools
            .iter()
            .filter(|p| p.serves(&runs_on))
            .max_by_key(|p| p.priority)
        {
            *demand.entry(pool.name.clone()).or_default() += 1;
        }
        jobs.push(job(format!("burst-{i}"), labels, 1000, None));
    }
    let mut fills: BTreeMap<String, PoolFill> = demand
        .iter()
        .map(|(name, demand)| {
            let max = stack
                .pools
                .iter()
                .find(|p| &p.name == name)
                .map_or(0, |p| p.max_runners);
            (
                name.clone(),
                PoolFill {
                    demand: *demand,
                    max_runners: max,
                    target: (*demand).min(max as usize),
                    reached_after_secs: None,
                    peak: 0,
                },
            )
        })
        .collect();

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
    stack.relay.set_hold(false);
    let started = unix_now();
    let release = {
        let relay = stack.relay.clone();
        stack
            .runtime
            .spawn(async move { relay.release(count as f64).await })
    };

    let run_jobs: BTreeSet<u64> = run.job_ids.iter().copied().collect();
    let mut all_at_target = None;
    // One look at the simulator: updates the pools' fill, returns how many burst jobs are done.
    let mut observe = |stack: &mut Stack, all_at_target: &mut Option<f64>| -> Result<usize> {
        stack.ensure_dispatcher_alive()?;
        let snapshot = stack.world.sim.snapshot();
        let now = unix_now();
        let mut count_by_pool: BTreeMap<&str, usize> = BTreeMap::new();
        for runner in &snapshot.runners {
            if let Some(pool) = pool_of(&stack.pools, &runner.labels) {
                *count_by_pool.entry(pool.name.as_str()).or_default() += 1;
            }
        }
        for (name, fill) in fills.iter_mut() {
            let have = count_by_pool.get(name.as_str()).copied().unwrap_or(0);
            fill.peak = fill.peak.max(have);
            if fill.reached_after_secs.is_none() && have >= fill.target {
                fill.reached_after_secs = Some(now - started);
            }
        }
        if all_at_target.is_none() && fills.values().all(|f| f.reached_after_secs.is_some()) {
            *all_at_target = Some(now - started);
        }
        Ok(snapshot
            .jobs
            .iter()
            .filter(|j| run_jobs.contains(&j.id) && j.status == "completed")
            .count())
    };
    while !release.is_finished() {
        observe(stack, &mut all_at_target)?;
        std::thread::sleep(Duration::from_millis(50));
    }
    let first_sent = stack
        .runtime
        .block_on(release)
        .context("the burst release task failed")??;

    // Nothing lost at intake: the dispatcher holds as queued exactly the burst jobs that the
    // simulator still has queued.
    let burst_pools: BTreeSet<String> = demand.keys().cloned().collect();
    let answered_at = Instant::now();
    let mut intake_consistent_after = None;
    let mut intake_last_seen = (0, 0);
    while answered_at.elapsed() < Duration::from_secs(30) {
        observe(stack, &mut all_at_target)?;
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
            .filter(|j| run_jobs.contains(&j.id) && j.status == "queued")
            .count() as u64;
        intake_last_seen = (held, queued);
        if held == queued {
            intake_consistent_after = Some(answered_at.elapsed().as_secs_f64());
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    // Then let the jobs run, for at most `drain`.
    let drain_deadline = Instant::now() + drain;
    let mut drained_at = None;
    let mut last_check = Instant::now();
    loop {
        let completed = observe(stack, &mut all_at_target)?;
        if completed == count {
            drained_at = Some(unix_now() - started);
            break;
        }
        if Instant::now() >= drain_deadline {
            break;
        }
        if last_check.elapsed() >= Duration::from_secs(5) {
            last_check = Instant::now();
            let ids = stack.sbatch_job_ids()?;
            stack.guard.seen.extend(ids);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu_after = cpu_seconds(stack.dispatcher.pid())?;
    let after = stack.world.sim.counters();
    let (paid, _, _) = api_delta(&before, &after);

    let relayed = stack.relay.relayed();
    let burst_answers: Vec<_> = relayed[relayed_before..]
        .iter()
        .filter(|r| {
            r.action.as_deref() == Some("queued")
                && r.job_id.is_some_and(|id| run_jobs.contains(&id))
        })
        .collect();
    let send_span = burst_answers
        .iter()
        .map(|r| r.sent_at)
        .fold(f64::NEG_INFINITY, f64::max)
        - first_sent;
    let snapshot = stack.world.sim.snapshot();
    let (success, other) = snapshot
        .jobs
        .iter()
        .filter(|j| run_jobs.contains(&j.id) && j.status == "completed")
        .fold((0, 0), |(s, o), j| {
            if j.conclusion.as_deref() == Some("success") {
                (s + 1, o)
            } else {
                (s, o + 1)
            }
        });
    let finished = (success + other).max(1);
    if drained_at.is_none() {
        // Leave no burst work behind for the next phase.
        stack.world.sim.cancel_run(run.run_id)?;
    }
    Ok(BurstResult {
        webhooks: burst_answers.len(),
        send_span_secs: send_span.max(0.0),
        response_secs: Summary::of(
            &burst_answers
                .iter()
                .map(|r| r.response_secs)
                .collect::<Vec<_>>(),
        ),
        non_2xx: burst_answers
            .iter()
            .filter(|r| !(200..300).contains(&r.status))
            .count(),
        pools: fills,
        all_pools_at_target_secs: all_at_target,
        intake_consistent_after_secs: intake_consistent_after,
        intake_last_seen,
        drain_secs: drained_at,
        completed_success: success,
        completed_other: other,
        dispatcher_cpu_secs: cpu_after - cpu_before,
        dispatcher_cpu_ms_per_job: (cpu_after - cpu_before) * 1000.0 / finished as f64,
        api_calls_paid: paid,
        api_calls_per_job: paid as f64 / finished as f64,
    })
}

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
    let answered_2xx = answers_by_status
        .iter()
        .filter(|(status, _)| (200..300).contains(*status))
        .map(|(_, n)| n)
        .sum();
    // RSS over the 5 s after every webhook was answered (the dispatcher reconciles and scales).
    let mut rss_max: f64 = 0.0;
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        stack.ensure_dispatcher_alive()?;
        rss_max = rss_max.max(memory_mib(pid)?.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    let (_, hwm) = memory_mib(pid)?;
    let cpu_after = cpu_seconds(pid)?;
    let dispatcher_queued = stack.dispatcher.queued_per_pool()?.get("tracked").copied();

    // Cancel the run; its `completed` webhooks go through the relay at speed too.
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

#[cfg(test)]
mod tests {
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

    #[test]
    fn api_delta_counts_304_as_free_and_skips_private_routes() {
        use github_sim::EndpointCount;
        let mut before = Counters::default();
        before.api.insert(
            "GET /repos/{owner}/{repo}/actions/runs".into(),
            EndpointCount {
                calls: 2,
                not_modified: 1,
                errors: 0,
            },
        );
        let mut after = before.clone();
        after.api.insert(
            "GET /repos/{owner}/{repo}/actions/runs".into(),
            EndpointCount {
                calls: 6,
                not_modified: 4,
                errors: 0,
            },
        );
        after.api.insert(
            "POST /_runner/sessions".into(),
            EndpointCount {
                calls: 50,
                not_modified: 0,
                errors: 0,
            },
        );
        let (paid, free, by) = api_delta(&before, &after);
        assert_eq!((paid, free), (1, 3));
        assert_eq!(by.len(), 1);
    }
}
