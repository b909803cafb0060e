//! `soak` (through `ci/soak`): thousands of GitHub jobs over both intakes, in ticket mode, on
//! the real cluster, while faults are injected (GitHub REST and scale set errors, webhook
//! faults, the dispatcher killed, Slurm's and MUNGE's daemons restarted, a runner cancelled,
//! the node lost); then the invariants, as a table and a JSON file. Exit status: 0 when every
//! invariant held, 1 when one did not, 2 when the soak itself could not run.

mod checks;
mod live;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use demo_bench::demo::stack::{random_hex, DispatcherSpec, SimWorld};
use demo_bench::demo::stopping::{self, OnStop};
use demo_bench::demo::workflow::LISTENED_ORG;
use demo_bench::soak::plan::{Plan, SplitMix64};
use demo_bench::soak::workload;
use e2e::dispatcher_config::RunnerCredentials;
use e2e::Cluster;
use github_sim::{Faults, ScaleSetFaults, SimConfig};

use live::{Ending, Soak};

#[derive(Parser, Debug)]
#[command(about = "Soak spank-gha under injected faults and check the invariants")]
struct Args {
    /// The short soak of the test command: 200 jobs, two kills, one slurmctld restart, no
    /// other daemon restart, no node loss (any flag given below still wins).
    #[arg(long)]
    short: bool,
    /// Seed of every random choice (default: from the clock; printed).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long)]
    jobs: Option<usize>,
    #[arg(long, default_value_t = 30)]
    repositories: usize,
    #[arg(long, default_value_t = 20)]
    rest_fault_percent: u32,
    #[arg(long, default_value_t = 10)]
    scaleset_fault_percent: u32,
    #[arg(long, default_value_t = 10)]
    webhook_fault_percent: u32,
    #[arg(long)]
    dispatcher_kills: Option<usize>,
    #[arg(long)]
    slurmctld_restarts: Option<usize>,
    #[arg(long)]
    slurmd_restarts: Option<usize>,
    #[arg(long)]
    munged_restarts: Option<usize>,
    #[arg(long)]
    runner_cancels: Option<usize>,
    #[arg(long)]
    node_losses: Option<usize>,
    #[arg(long, default_value_t = 60)]
    node_down_secs: u64,
    /// Give up on the workload after this many seconds.
    #[arg(long)]
    timeout_secs: Option<u64>,
    /// How long to wait for runners, Slurm jobs and work dirs to go after the workload.
    #[arg(long, default_value_t = 180)]
    cleanup_secs: u64,
    /// Where the JSON report goes (default: target/soak-report.json).
    #[arg(long)]
    json: Option<std::path::PathBuf>,
}

impl Args {
    fn plan(&self) -> Plan {
        let full = !self.short;
        let pick = |given: Option<usize>, full_n: usize, short_n: usize| {
            given.unwrap_or(if full { full_n } else { short_n })
        };
        Plan {
            seed: self.seed.unwrap_or_else(clock_seed),
            jobs: pick(self.jobs, 2000, 200),
            repositories: self.repositories,
            rest_fault_percent: self.rest_fault_percent,
            scaleset_fault_percent: self.scaleset_fault_percent,
            webhook_fault_percent: self.webhook_fault_percent,
            dispatcher_kills: pick(self.dispatcher_kills, 5, 2),
            slurmctld_restarts: pick(self.slurmctld_restarts, 2, 1),
            slurmd_restarts: pick(self.slurmd_restarts, 1, 0),
            munged_restarts: pick(self.munged_restarts, 1, 0),
            runner_cancels: pick(self.runner_cancels, 1, 1),
            node_losses: pick(self.node_losses, 1, 0),
            node_down_secs: self.node_down_secs,
        }
    }
}

fn print_plan(plan: &Plan, schedule: &[demo_bench::soak::plan::Scheduled]) {
    println!(
        "spank-gha soak: seed {} (rerun with --seed {}); {} jobs over {} repositories",
        plan.seed, plan.seed, plan.jobs, plan.repositories
    );
    for s in schedule {
        println!(
            "  at {:>4.1}% of the jobs: {}",
            s.at_share * 100.0,
            s.fault.name()
        );
    }
}

/// The JSON report, at `--json` or `target/soak-report.json`.
fn write_json(args: &Args, cluster: &Cluster, json: &serde_json::Value) -> Result<()> {
    let path = args
        .json
        .clone()
        .unwrap_or_else(|| cluster.repo_root().join("target/soak-report.json"));
    std::fs::write(&path, serde_json::to_vec_pretty(json)?)
        .with_context(|| format!("writing {}", path.display()))?;
    println!("  report: {}", path.display());
    Ok(())
}

fn clock_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(1, |d| d.as_nanos() as u64)
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("soak failed: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// The simulator as the soak needs it: a runner that goes silent fails its job after 8 s (not
/// minutes), sessions of a killed dispatcher expire after 10 s.
fn sim_config() -> SimConfig {
    SimConfig {
        runner_offline_after: Duration::from_secs(8),
        scaleset_session_ttl: Duration::from_secs(10),
        message_poll_timeout: Duration::from_secs(5),
        ..SimConfig::default()
    }
}

/// The faults that stay on for the whole workload (the rest are events of the schedule).
fn steady_faults(world: &SimWorld, plan: &Plan) {
    world.sim.set_faults(Faults {
        fault_percent: plan.rest_fault_percent,
        delivery_fault_percent: plan.webhook_fault_percent,
        rate_limit_status: 429,
        secondary_retry_after_s: 1,
        primary_reset_s: 2,
        ..Faults::default()
    });
    world.sim.set_scaleset_faults(ScaleSetFaults {
        server_error_percent: plan.scaleset_fault_percent,
        ..ScaleSetFaults::default()
    });
}

/// The simulator: the webhook organization with `hooked`, the listened one with `listened`.
fn start_world(
    runtime: &tokio::runtime::Runtime,
    hooked: &[String],
    listened: &[String],
) -> Result<SimWorld> {
    let hooked: Vec<&str> = hooked.iter().map(String::as_str).collect();
    let world = runtime.block_on(SimWorld::start_with(&hooked, sim_config()))?;
    let listened: Vec<&str> = listened.iter().map(String::as_str).collect();
    world.add_org_with_app(LISTENED_ORG, &listened)?;
    Ok(world)
}

fn run(args: &Args) -> Result<bool> {
    let started = Instant::now();
    let stop = stopping::watch(OnStop::Record).context("watching for stop signals")?;
    let plan = args.plan();
    let schedule = plan.schedule();
    print_plan(&plan, &schedule);
    let cluster = Cluster::shared();
    cluster.assert_node_healthy()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (hooked, listened) = workload::repositories(plan.repositories);
    let world = start_world(&runtime, &hooked, &listened)?;
    let state_dir = tempfile::Builder::new()
        .prefix("spank-gha-soak-")
        .tempdir()
        .context("creating the dispatcher's state directory")?;
    let spec = DispatcherSpec {
        pools: workload::pools(),
        runner_name_prefix: format!("soak-{}", random_hex(3)?),
        reconcile_interval_secs: None,
        sbatch: None,
        credentials: RunnerCredentials::Ticket,
        listener_orgs: vec![LISTENED_ORG.to_string()],
    };
    let mut soak = Soak::new(cluster, world, spec, state_dir.path())?;
    println!(
        "  dispatcher {} (state and logs in {})",
        soak.dispatcher.url(),
        state_dir.path().display()
    );
    steady_faults(&soak.world, &plan);
    let mut rng = SplitMix64(plan.seed ^ 0x5EED);
    for spec in workload::runs(plan.jobs, &hooked, &listened, &mut rng) {
        soak.world
            .sim
            .enqueue_workflow(spec)
            .context("queueing a run")?;
    }
    let default_timeout = if args.short { 600 } else { 1800 };
    let timeout = Duration::from_secs(args.timeout_secs.unwrap_or(default_timeout));
    let node_down = Duration::from_secs(plan.node_down_secs);
    let ending = soak.follow(plan.jobs, schedule, node_down, timeout, &stop)?;
    let workload_secs = started.elapsed().as_secs_f64();
    // Quiet now: the end checks look at a system that is left alone.
    soak.world.sim.set_faults(Faults::default());
    soak.world
        .sim
        .set_scaleset_faults(ScaleSetFaults::default());
    let report = checks::check(&mut soak, &plan, ending, args, workload_secs, &stop)?;
    println!("{}", report.text);
    write_json(args, cluster, &report.json)?;
    println!("  run time {:.0} s", started.elapsed().as_secs_f64());
    let ok = report.ok && ending == Ending::AllDone;
    soak.finish(&runtime);
    if !ok {
        let kept = state_dir.keep();
        println!(
            "  kept the dispatcher's state and logs in {}",
            kept.display()
        );
    }
    println!("{}", if ok { "soak OK" } else { "soak FAILED" });
    Ok(ok)
}
