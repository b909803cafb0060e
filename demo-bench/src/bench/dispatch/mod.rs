//! Benchmarks of the whole path through `gha-dispatcher`: the simulator posts webhooks through
//! the recording relay, the dispatcher submits through the timing sbatch wrapper, and runners
//! start on the real cluster with the plugin. The same dispatcher has a second target,
//! organization [`LISTEN_ORG`], whose jobs reach it through the runner scale set listener
//! (no webhook: its deliveries are turned off while its jobs run), so both intakes are measured
//! side by side. One module per phase: one job at a time ([`sequential`]: latencies and API
//! calls per job, per intake), an idle window ([`idle`]: API calls per hour per target), a
//! burst of queued webhooks ([`burst`]) or of listened jobs ([`listener_burst`]), kill -9
//! during a listened burst ([`crash`]), 10,000 tracked jobs ([`tracked`]: memory) and a warm
//! pool's start latency beside a cold start ([`warm`]).
//! This module owns what they share: the running [`Stack`], the pools, and the API-call count.

mod burst;
mod crash;
mod drain;
mod idle;
mod listener_burst;
mod sequential;
mod tracked;
mod warm;

pub use burst::{burst, BurstResult, PoolFill};
pub use crash::{crash, CrashResult};
pub use drain::{drain, DrainResult, GANTT_FILE, TIMELINE_FILE};
pub use idle::{idle, IdleResult, TargetIdle};
pub use listener_burst::{listener_burst, ListenerBurstResult};
pub use sequential::{sequential, Intake, SequentialResult};
pub use tracked::{tracked, TrackedResult};
pub use warm::{warm, WarmResult};

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use github_sim::model::ScaleSetCounters;
use github_sim::{Counters, EndpointCount, JobSpec, SimConfig};
use serde::Serialize;

use crate::bench::relay::Relay;
use crate::bench::sbatch_timing::{which, SbatchTiming};
use crate::demo::leftovers::Leftovers;
use crate::demo::slurm::CancelOnDrop;
use crate::demo::stack::{random_hex, Dispatcher, DispatcherSpec, SimWorld};
use e2e::dispatcher_config::{DispatcherConfig, Pool, RunnerCredentials, Target};
use e2e::Cluster;

const REPO: &str = "widgets";
/// The organization the dispatcher listens for (runner scale sets), and its repository.
pub const LISTEN_ORG: &str = "labs";
const LISTEN_REPO: &str = "lab1";
pub(crate) const CPU: &[&str] = &["self-hosted", "linux", "x64"];
pub(crate) const LARGE: &[&str] = &["self-hosted", "linux", "x64", "large"];
pub(crate) const ARM: &[&str] = &["self-hosted", "linux", "arm64"];
const TRACKED: &[&str] = &["self-hosted", "linux", "tracked"];
const DRAIN: &[&str] = &["self-hosted", "linux", "drain"];
/// The drain pool's `max_runners`: the test node's CPUs (`ci/slurm-up`, GHA_CLUSTER_CPUS).
pub const DRAIN_SLOTS: u32 = 16;

/// The bench's pools: three for the burst, one small one that the 10,000 tracked jobs queue on,
/// and the drain's, as wide as the node.
pub fn pools() -> Vec<Pool> {
    let mut pools = three_pools();
    pools.push(Pool::new("tracked", &["linux", "tracked"], 2));
    pools.push(Pool::new("drain", &["linux", "drain"], DRAIN_SLOTS));
    pools
}

/// The three pools of the burst and the soak (16 runners at most, the test node's 16 CPUs),
/// for jobs labelled [`CPU`], [`LARGE`] and [`ARM`].
pub fn three_pools() -> Vec<Pool> {
    let mut cpu = Pool::new("cpu", &["linux", "x64"], 8);
    cpu.priority = 10;
    vec![
        cpu,
        Pool::new("large", &["linux", "x64", "large"], 4),
        Pool::new("arm", &["linux", "arm64"], 4),
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
    spec: DispatcherSpec,
    state_dir: tempfile::TempDir,
}

/// The listener target beside the generated config's webhook target. The App's installation
/// is then looked up per organization (the generated config names `acme`'s, which would
/// answer 404 for `labs`).
fn with_listener(config: &mut DispatcherConfig) {
    config.github.targets.push(Target::listener(LISTEN_ORG));
    config.github.installation_id = None;
}

impl<'a> Stack<'a> {
    pub fn start(
        cluster: &'a Cluster,
        runtime: &'a tokio::runtime::Runtime,
        credentials: RunnerCredentials,
        sim_config: SimConfig,
    ) -> Result<Stack<'a>> {
        let world = runtime.block_on(SimWorld::start_with(&[REPO], sim_config))?;
        world.add_org_with_app(LISTEN_ORG, &[LISTEN_REPO])?;
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
            listener_orgs: Vec::new(),
        };
        let dispatcher =
            Dispatcher::start_adjusted(cluster, &world, &spec, state_dir.path(), &with_listener)?;
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
            spec,
            state_dir,
        })
    }

    /// `kill -9` of the dispatcher, then a new one on the same state and config, as systemd
    /// would restart it; the killed one's log is kept as `dispatcher.log.<n>` beside it.
    pub fn crash_and_restart(&mut self, n: usize) -> Result<()> {
        self.dispatcher.kill9()?;
        let log = self.dispatcher.log_path().to_owned();
        std::fs::copy(&log, log.with_extension(format!("log.{n}")))
            .with_context(|| format!("keeping {}", log.display()))?;
        self.start_dispatcher()
    }

    /// A new dispatcher on the same state and `spec`, webhooks relayed to it.
    fn start_dispatcher(&mut self) -> Result<()> {
        self.dispatcher = Dispatcher::start_adjusted(
            self.cluster,
            &self.world,
            &self.spec,
            self.state_dir.path(),
            &with_listener,
        )?;
        self.relay.set_target(&self.dispatcher.webhook_url());
        Ok(())
    }

    /// A graceful restart of the dispatcher on the same state with `pools` (the warm phase
    /// adds its pool, then retires it).
    pub fn restart_with_pools(&mut self, pools: Vec<Pool>) -> Result<()> {
        self.dispatcher.stop()?;
        self.spec.pools = pools;
        self.start_dispatcher()
    }

    /// Webhooks on (through the relay) or off (a firewalled site receives none: the listener
    /// phases run without them).
    pub fn webhooks(&self, on: bool) {
        if on {
            self.world.send_webhooks_to(&self.relay.url());
        } else {
            // The discard port: nothing listens, each delivery fails at once.
            self.world.send_webhooks_to("http://127.0.0.1:9/webhook");
        }
    }

    /// The name of `pool`'s scale set (jobs may say `runs-on: <it>`, as with
    /// actions-runner-controller).
    pub fn scale_set_label(&self, pool: &str) -> String {
        format!("{}-{pool}", self.prefix)
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
    endpoint_delta(&before.api, &after.api)
}

/// As [`api_delta`], for the calls whose path names `account` (`""`: the App's own calls,
/// such as installation tokens, which serve every target).
pub fn account_delta(
    before: &Counters,
    after: &Counters,
    account: &str,
) -> (u64, u64, BTreeMap<String, u64>) {
    let none = BTreeMap::new();
    endpoint_delta(
        before.api_by_account.get(account).unwrap_or(&none),
        after.api_by_account.get(account).unwrap_or(&none),
    )
}

fn endpoint_delta(
    before: &BTreeMap<String, EndpointCount>,
    after: &BTreeMap<String, EndpointCount>,
) -> (u64, u64, BTreeMap<String, u64>) {
    let mut paid = 0;
    let mut free = 0;
    let mut by_endpoint = BTreeMap::new();
    for (key, count) in after {
        if key.contains(" /_") {
            continue;
        }
        let old = before.get(key).cloned().unwrap_or_default();
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

/// The scale set protocol's traffic in `after` minus `before`: not REST, not rate-limited,
/// so counted apart.
#[derive(Debug, Default, Clone, Serialize)]
pub struct ProtocolDelta {
    /// Actions-service calls (scale sets, sessions, acquirejobs, generatejitconfig, runners).
    pub actions_calls: u64,
    pub actions_by_route: BTreeMap<String, u64>,
    /// Message-queue long polls and acknowledgements.
    pub queue_polls: u64,
    pub queue_deletes: u64,
    /// `POST /actions/runner-registration` (the bootstrap; also in the REST count).
    pub admin_tokens: u64,
}

impl ProtocolDelta {
    pub fn between(before: &ScaleSetCounters, after: &ScaleSetCounters) -> ProtocolDelta {
        let mut delta = ProtocolDelta {
            queue_polls: after.queue_polls.saturating_sub(before.queue_polls),
            queue_deletes: after.queue_deletes.saturating_sub(before.queue_deletes),
            admin_tokens: after
                .admin_tokens_issued
                .saturating_sub(before.admin_tokens_issued),
            ..ProtocolDelta::default()
        };
        for (route, count) in &after.actions {
            let old = before.actions.get(route).map_or(0, |c| c.calls);
            let calls = count.calls.saturating_sub(old);
            if calls > 0 {
                delta.actions_calls += calls;
                delta.actions_by_route.insert(route.clone(), calls);
            }
        }
        delta
    }
}

fn job(name: String, runs_on: &[&str], duration_ms: u64, command: Option<String>) -> JobSpec {
    let mut spec = JobSpec::new(name, runs_on);
    spec.duration_ms = duration_ms;
    spec.command = command;
    spec
}

#[cfg(test)]
mod tests {
    use super::*;

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
