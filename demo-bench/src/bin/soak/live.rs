//! The soak's live phase: the running system (simulator, dispatcher, cluster), the loop that
//! follows the workload, samples it and fires each scheduled fault when its share of the
//! workload has completed, and the faults that need the system (dispatcher kill -9 and
//! restart, a runner cancelled mid-job, the node lost) beside `soak::chaos`'s daemon restarts.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use demo_bench::demo::slurm::{self, CancelOnDrop};
use demo_bench::demo::stack::{Dispatcher, DispatcherSpec, SimWorld};
use demo_bench::demo::stopping::{self, Stop};
use demo_bench::soak::chaos;
use demo_bench::soak::plan::{Fault, Scheduled};
use demo_bench::soak::watch::Samples;
use e2e::Cluster;

/// Everything the live phase holds.
pub struct Soak<'a> {
    pub cluster: &'a Cluster,
    pub node: String,
    pub world: SimWorld,
    pub dispatcher: Dispatcher,
    pub spec: DispatcherSpec,
    pub state_dir: PathBuf,
    pub guard: CancelOnDrop<'a>,
    pub samples: Samples,
    /// Runner names whose GitHub job a fault failed on purpose, and the fault.
    pub causes_by_runner: BTreeMap<String, &'static str>,
    /// Faults fired, by name (what was actually done).
    pub injected: BTreeMap<&'static str, usize>,
    /// Faults that could not be fired (and why).
    pub not_injected: Vec<String>,
    /// `gha_dispatcher_tickets_unredeemed_total`, summed over the killed processes.
    pub unredeemed_counted: u64,
    /// Dispatcher processes that exited without being killed by the soak.
    pub unexpected_exits: usize,
    dispatcher_logs: usize,
}

/// How the live phase ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    AllDone,
    TimedOut,
    Interrupted,
}

/// The value of the dispatcher's `tickets_unredeemed` counter (0 if unreadable).
/// Slurm jobs this dispatcher process counted as getting no JIT config (tickets never
/// redeemed, or spent on a mint GitHub failed).
pub fn unredeemed_metric(dispatcher: &Dispatcher) -> u64 {
    let text = dispatcher.metrics().unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("gha_dispatcher_tickets_unredeemed_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

impl<'a> Soak<'a> {
    pub fn new(
        cluster: &'a Cluster,
        world: SimWorld,
        spec: DispatcherSpec,
        state_dir: &Path,
    ) -> Result<Soak<'a>> {
        let node = chaos::node_name(cluster)?;
        let dispatcher = Dispatcher::start(cluster, &world, &spec, state_dir)?;
        world.send_webhooks_to(&dispatcher.webhook_url());
        let guard = CancelOnDrop {
            cluster,
            prefix: spec.runner_name_prefix.clone(),
            seen: BTreeSet::new(),
        };
        Ok(Soak {
            cluster,
            node,
            world,
            dispatcher,
            spec,
            state_dir: state_dir.to_path_buf(),
            guard,
            samples: Samples::default(),
            causes_by_runner: BTreeMap::new(),
            injected: BTreeMap::new(),
            not_injected: Vec::new(),
            unredeemed_counted: 0,
            unexpected_exits: 0,
            dispatcher_logs: 0,
        })
    }

    /// Stops the dispatcher, cancels what the run left in Slurm, stops the simulator.
    pub fn finish(self, runtime: &tokio::runtime::Runtime) {
        let Soak {
            world,
            dispatcher,
            guard,
            ..
        } = self;
        drop(dispatcher);
        drop(guard);
        runtime.block_on(world.sim.shutdown());
    }

    /// Every dispatcher log of the run (the current one and those of killed processes).
    pub fn dispatcher_log_paths(&self) -> Vec<PathBuf> {
        let mut paths: Vec<PathBuf> = (1..=self.dispatcher_logs)
            .map(|n| self.state_dir.join(format!("dispatcher.log.{n}")))
            .collect();
        paths.push(self.dispatcher.log_path().to_path_buf());
        paths
    }

    /// Starts a new dispatcher on the same state (the old log kept aside first). The old one
    /// is reaped and gives up the ticket port first (it may have died by itself).
    fn restart_dispatcher(&mut self) -> Result<()> {
        self.dispatcher.kill9()?;
        self.dispatcher_logs += 1;
        let kept = self
            .state_dir
            .join(format!("dispatcher.log.{}", self.dispatcher_logs));
        std::fs::rename(self.dispatcher.log_path(), &kept).context("keeping the log aside")?;
        self.dispatcher =
            Dispatcher::start(self.cluster, &self.world, &self.spec, &self.state_dir)?;
        Ok(())
    }

    fn kill_dispatcher(&mut self) -> Result<()> {
        self.unredeemed_counted += unredeemed_metric(&self.dispatcher);
        let pid = self.dispatcher.pid();
        self.dispatcher.kill9()?;
        stopping::forget_dispatcher(pid);
        self.restart_dispatcher()
    }

    /// A dispatcher that exited by itself is a finding; it is restarted so the run goes on.
    fn revive_dispatcher(&mut self) -> Result<()> {
        if self.dispatcher.is_running() {
            return Ok(());
        }
        eprintln!(
            "soak: the dispatcher exited by itself; its log:\n{}",
            self.dispatcher.log_tail(20)
        );
        self.unexpected_exits += 1;
        self.restart_dispatcher()
    }

    /// Runner names of the run's Slurm jobs that run now.
    fn running_runners(&self) -> Result<Vec<(u32, String)>> {
        Ok(slurm::run_jobs(self.cluster, &self.guard.prefix)?
            .into_iter()
            .filter(|j| j.state == "RUNNING")
            .map(|j| (j.id, j.name))
            .collect())
    }

    /// A runner job whose runner runs a GitHub job now, cancelled with scancel. `Ok(false)`
    /// when no runner is mid-job (tried again later).
    fn cancel_runner_mid_job(&mut self) -> Result<bool> {
        let busy: BTreeSet<String> = self
            .world
            .sim
            .jobs()
            .into_iter()
            .filter(|j| j.status == "in_progress")
            .filter_map(|j| j.runner_name)
            .collect();
        let running = self.running_runners()?;
        let Some((id, name)) = running.into_iter().find(|(_, n)| busy.contains(n)) else {
            return Ok(false);
        };
        self.causes_by_runner
            .insert(name, "runner cancelled mid-job (scancel)");
        slurm::cancel(self.cluster, &[id])?;
        Ok(true)
    }

    /// The node lost with runners on it, back after `down_for`. `Ok(false)` when no runner
    /// runs a GitHub job now (tried again later).
    fn lose_node(&mut self, down_for: Duration, stop: &Stop) -> Result<bool> {
        let running = self.running_runners()?;
        let busy = self
            .world
            .sim
            .jobs()
            .into_iter()
            .any(|j| j.status == "in_progress");
        if running.is_empty() || !busy {
            return Ok(false);
        }
        chaos::lose_node(self.cluster, &self.node)?;
        for (_, name) in running {
            self.causes_by_runner.insert(name, "node lost");
        }
        let back_at = Instant::now() + down_for;
        while Instant::now() < back_at && !stop.requested() {
            // The node stays down this long (a reboot); the rest of the system carries on.
            self.sample_now();
            std::thread::sleep(Duration::from_millis(500));
        }
        chaos::bring_node_back(self.cluster, &self.node)?;
        Ok(true)
    }

    /// Fires `fault`; `Ok(false)` when the moment does not allow it yet.
    pub fn fire(&mut self, fault: Fault, node_down: Duration, stop: &Stop) -> Result<bool> {
        let fired = match fault {
            Fault::KillDispatcher => self.kill_dispatcher().map(|()| true)?,
            Fault::RestartSlurmctld => chaos::restart_slurmctld(self.cluster).map(|()| true)?,
            Fault::RestartSlurmd => {
                if self.running_runners()?.is_empty() {
                    return Ok(false);
                }
                chaos::restart_slurmd(self.cluster, &self.node).map(|()| true)?
            }
            Fault::RestartMunged => chaos::restart_munged(self.cluster).map(|()| true)?,
            Fault::CancelRunnerMidJob => self.cancel_runner_mid_job()?,
            Fault::LoseNode => self.lose_node(node_down, stop)?,
        };
        if fired {
            *self.injected.entry(fault.name()).or_default() += 1;
        }
        Ok(fired)
    }

    /// One round of samples (secrets in Slurm records and environments, tickets, memory).
    pub fn sample_now(&mut self) {
        self.samples.harvest_tickets(self.cluster);
        self.samples
            .sample_slurm_records(self.cluster, &self.guard.prefix);
        self.samples.sample_environments(self.cluster);
        self.samples.sample_memory(self.dispatcher.pid());
        if let Ok(jobs) = slurm::run_jobs(self.cluster, &self.guard.prefix) {
            self.guard.seen.extend(jobs.iter().map(|j| j.id));
        }
    }

    /// Follows the workload until every job is completed, `timeout` passes or a stop signal
    /// arrives, firing the schedule on the way.
    pub fn follow(
        &mut self,
        total: usize,
        mut schedule: Vec<Scheduled>,
        node_down: Duration,
        timeout: Duration,
        stop: &Stop,
    ) -> Result<Ending> {
        schedule.reverse();
        let deadline = Instant::now() + timeout;
        let mut last_sample = Instant::now() - Duration::from_secs(10);
        let mut last_report = Instant::now();
        loop {
            if stop.requested() {
                self.not_injected
                    .extend(schedule.iter().map(|s| s.fault.name().to_owned()));
                return Ok(Ending::Interrupted);
            }
            self.revive_dispatcher()?;
            let completed = self
                .world
                .sim
                .jobs()
                .iter()
                .filter(|j| j.status == "completed")
                .count();
            let ending = if completed >= total {
                Some(Ending::AllDone)
            } else {
                (Instant::now() >= deadline).then_some(Ending::TimedOut)
            };
            if let Some(ending) = ending {
                self.not_injected
                    .extend(schedule.iter().map(|s| s.fault.name().to_owned()));
                return Ok(ending);
            }
            let share = completed as f64 / total as f64;
            if let Some(next) = schedule.last().copied() {
                if share >= next.at_share && self.fire(next.fault, node_down, stop)? {
                    println!("  [{:>5.1}%] {}", share * 100.0, next.fault.name());
                    schedule.pop();
                }
            }
            if last_sample.elapsed() >= Duration::from_secs(2) {
                self.sample_now();
                last_sample = Instant::now();
            }
            if last_report.elapsed() >= Duration::from_secs(30) {
                println!("  {completed} of {total} jobs completed");
                last_report = Instant::now();
            }
            // The loop's pace, not a wait for a condition.
            std::thread::sleep(Duration::from_millis(250));
        }
    }
}
