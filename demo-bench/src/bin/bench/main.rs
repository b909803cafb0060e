//! `bench`: the README's benchmark command (through `ci/bench`). Measures, side by side in one
//! run on the real local Slurm and the GitHub simulator: the plugin's overhead (a cluster
//! without the plugin against one with it), the floor (bare `sbatch --wrap` submit-to-start),
//! and through `gha-dispatcher`: webhook → sbatch latency, queued → runner start, GitHub API
//! calls per job and per idle hour, a 1,000-webhook burst, and memory with 10,000 tracked jobs;
//! beside the webhook target, a listener target (runner scale sets, issue 13) in the same
//! dispatcher: its latency, calls, a 1,000-job burst, and kill -9 during a 200-job burst.
//! Writes `report.json` and `report.md`. Nothing here asserts a speed: numbers are reported
//! next to the goals, also when they fall short.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use demo_bench::bench::cluster_jobs::{restart_cluster, run_plugin_bench, time_jobs, JobTiming};
use demo_bench::bench::dispatch::{
    self, BurstResult, CrashResult, DrainResult, IdleResult, Intake, ListenerBurstResult,
    SequentialResult, Stack, TrackedResult, WarmResult,
};
use demo_bench::bench::report::{utc_now, Machine, Report};
use demo_bench::bench::slurm_load::{self, SlurmLoadResult};
use demo_bench::demo::stats::Summary;
use demo_bench::demo::stopping::{self, OnStop};
use e2e::dispatcher_config::RunnerCredentials;
use e2e::Cluster;
use github_sim::SimConfig;
use serde_json::json;

mod drain_report;
mod listener_metrics;
mod metrics;
mod optional_phases;
use drain_report::drain_section;
use listener_metrics::listener_metrics;
use metrics::metrics;
use optional_phases::{drain_only, drain_phase, slurm_load_phase, warm_phase};

#[derive(Parser, Debug)]
#[command(about = "Benchmark spank-gha on the local Slurm and the GitHub simulator")]
struct Args {
    /// Where report.json and report.md go.
    #[arg(long, default_value = "target/bench")]
    out: PathBuf,
    /// Jobs per variant for the plugin overhead and the floor.
    #[arg(long, default_value_t = 20)]
    overhead_jobs: usize,
    /// Do not restart the cluster without the plugin (no plugin-overhead baseline).
    #[arg(long)]
    no_restart: bool,
    /// Rounds of spank-gha/benches/bench-plugin (alternating no-plugin and plugin clusters).
    #[arg(long, default_value_t = 2)]
    plugin_bench_rounds: usize,
    /// Jobs bench-plugin times rootless dockerd with.
    #[arg(long, default_value_t = 3)]
    docker_jobs: usize,
    /// Jobs run one at a time through the dispatcher.
    #[arg(long, default_value_t = 20)]
    sequential_jobs: usize,
    /// Jobs run one at a time on a warm pool (min_idle), and as many cold starts (0: skip).
    #[arg(long, default_value_t = 20)]
    warm_jobs: usize,
    /// Seconds the dispatcher is watched with nothing queued.
    #[arg(long, default_value_t = 90)]
    idle_secs: u64,
    /// Queued webhooks released within one second.
    #[arg(long, default_value_t = 1000)]
    burst: usize,
    /// How long to let the burst's jobs run to completion (0: do not wait).
    #[arg(long, default_value_t = 120)]
    burst_drain_secs: u64,
    /// Jobs queued at once on the listener target (0: skip).
    #[arg(long, default_value_t = 1000)]
    listener_burst: usize,
    /// Jobs of the burst the dispatcher is killed during, in listener mode (0: skip).
    #[arg(long, default_value_t = 200)]
    crash_jobs: usize,
    /// How often the dispatcher is killed (-9) and restarted during that burst.
    #[arg(long, default_value_t = 3)]
    crash_kills: usize,
    /// The simulator's scaleset_session_ttl for that phase: how long a killed process's
    /// session blocks the next one (409).
    #[arg(long, default_value_t = 10)]
    crash_session_ttl_secs: u64,
    /// How long that phase waits for each share of its jobs, and for all of them.
    #[arg(long, default_value_t = 300)]
    crash_drain_secs: u64,
    /// One-second jobs drained through 16 slots, with per-job timelines (0: skip).
    #[arg(long, default_value_t = 1000)]
    drain: usize,
    /// Bare one-second sbatch jobs timed beside the drain: Slurm's own floor (0: skip).
    #[arg(long, default_value_t = 160)]
    drain_floor_jobs: usize,
    /// How long the drain (and its floor) may take.
    #[arg(long, default_value_t = 900)]
    drain_secs: u64,
    /// The drain's intake: `listener` (scale sets) or `webhook` (REST generate-jitconfig,
    /// which GitHub's secondary limit holds to 180 a minute).
    #[arg(long, default_value = "listener", value_parser = ["listener", "webhook"])]
    drain_intake: String,
    /// Only the drain and its floor (no cluster restart, no other dispatcher phase).
    #[arg(long)]
    drain_only: bool,
    /// Jobs the dispatcher tracks for the memory measurement.
    #[arg(long, default_value_t = 10_000)]
    tracked: usize,
    /// Skip everything that needs gha-dispatcher (cluster measurements only).
    #[arg(long)]
    cluster_only: bool,
    /// Held jobs of another user the Slurm-load phase adds to the cluster (0: skip the phase).
    #[arg(long, default_value_t = 0)]
    foreign_jobs: usize,
    /// That phase's idle window, per cluster state (seconds).
    #[arg(long, default_value_t = 120)]
    slurm_load_idle_secs: u64,
    /// Jobs of that phase's burst, per cluster state.
    #[arg(long, default_value_t = 5)]
    slurm_load_jobs: usize,
    /// Only the Slurm-load phase (with --foreign-jobs): no other measurement.
    #[arg(long)]
    slurm_load_only: bool,
    /// How the dispatcher hands runners their JIT config: `ticket` (redeemed when the job
    /// starts; the shipped default) or `inline` (on sbatch's command line).
    #[arg(long, default_value = "ticket", value_parser = ["ticket", "inline"])]
    credentials: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Ctrl-C, SIGTERM or SIGHUP: the dispatchers started so far are stopped and their Slurm
    // jobs cancelled before the bench exits (ci/bench then stops the cluster).
    if let Err(error) = stopping::watch(OnStop::StopStartedAndExit) {
        eprintln!("bench failed: watching for stop signals: {error}");
        return ExitCode::from(2);
    }
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench failed: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn say(text: impl AsRef<str>) {
    eprintln!("[bench] {}", text.as_ref());
}

fn summary_of(timings: &[JobTiming], pick: fn(&JobTiming) -> f64) -> Option<Summary> {
    Summary::of(&timings.iter().map(pick).collect::<Vec<_>>())
}

/// Everything measured, phase by phase; a phase that failed leaves its entry empty.
#[derive(Default)]
struct Measured {
    /// Stdout of spank-gha/benches/bench-plugin, when it ran.
    plugin_bench: Option<Vec<String>>,
    without_plugin: Option<Vec<JobTiming>>,
    with_plugin: Option<Vec<JobTiming>>,
    runner_jobs: Option<Vec<JobTiming>>,
    sequential: Option<SequentialResult>,
    sequential_listener: Option<SequentialResult>,
    warm: Option<WarmResult>,
    idle: Option<IdleResult>,
    burst: Option<BurstResult>,
    listener_burst: Option<ListenerBurstResult>,
    slurm_load: Option<SlurmLoadResult>,
    crash: Option<CrashResult>,
    drain: Option<DrainResult>,
    tracked: Option<TrackedResult>,
    leftovers: Option<String>,
    metrics_text: Option<String>,
    /// The plugin's own timing of each ticket redemption on the node (slurmd's log), seconds.
    ticket_redeem_secs: Vec<f64>,
}

/// The node-side redemption times the plugin logged ("runner ticket redeemed in 12.3 ms").
fn ticket_redeem_secs(cluster: &Cluster) -> Vec<f64> {
    let log = std::fs::read_to_string(cluster.dir().join("log/slurmd.log")).unwrap_or_default();
    log.lines()
        .filter_map(|l| {
            l.split_once("runner ticket redeemed in ")?
                .1
                .strip_suffix(" ms")
        })
        .filter_map(|ms| ms.trim().parse::<f64>().ok())
        .map(|ms| ms / 1000.0)
        .collect()
}

fn run(args: &Args) -> Result<()> {
    let started = Instant::now();
    let cluster = Cluster::shared();
    cluster.assert_node_healthy()?;
    let mut problems = Problems::default();
    let mut measured = Measured::default();
    if !args.slurm_load_only && !args.drain_only {
        measure_cluster(cluster, args, &mut measured, &mut problems)?;
    }
    if !args.cluster_only {
        measure_dispatcher(cluster, args, &mut measured, &mut problems)?;
    }

    let mut details = details(&measured);
    details["runner_credentials"] = serde_json::Value::String(args.credentials.clone());
    let report = Report {
        generated_at: utc_now(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        duration_secs: started.elapsed().as_secs_f64(),
        machine: Machine::describe(cluster.conf()),
        metrics: metrics(&measured, args)
            .into_iter()
            .chain(measured.slurm_load.iter().flat_map(slurm_load::metrics))
            .collect(),
        listener: listener_metrics(&measured, args),
        problems: problems.0,
        details,
        sections: measured.drain.iter().map(drain_section).collect(),
    };
    let out = report_dir(cluster, args);
    let (json_path, md_path) = report.write(&out)?;
    println!("{}", report.markdown());
    say(format!(
        "wrote {} and {}",
        json_path.display(),
        md_path.display()
    ));
    Ok(())
}

/// What failed, phase by phase (a failed phase is reported, the others still run).
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn record(&mut self, phase: &str, result: Result<()>) {
        if let Err(error) = result {
            say(format!("{phase} failed: {error:#}"));
            self.0.push(format!("{phase}: {error:#}"));
        }
    }
}

/// Metric 6 and the floor of metric 2: plain and `--gha-runner` jobs on the cluster, without
/// and with the plugin (restarting the cluster unless `--no-restart`).
fn measure_cluster(
    cluster: &Cluster,
    args: &Args,
    measured: &mut Measured,
    problems: &mut Problems,
) -> Result<()> {
    // 6: the plugin work's own benchmark when it exists (it alternates clusters without and
    // with the plugin); otherwise the same comparison here, once each.
    if !args.no_restart {
        problems.record(
            "plugin overhead (spank-gha/benches/bench-plugin)",
            (|| {
                say(format!(
                    "plugin overhead: spank-gha/benches/bench-plugin {} {} {} (restarts the cluster)",
                    args.overhead_jobs, args.plugin_bench_rounds, args.docker_jobs
                ));
                measured.plugin_bench = run_plugin_bench(
                    cluster,
                    args.overhead_jobs,
                    args.plugin_bench_rounds,
                    args.docker_jobs,
                )?;
                Ok(())
            })(),
        );
        if measured.plugin_bench.is_none() {
            problems.record(
                "plugin overhead (no-plugin cluster)",
                (|| {
                    say("restarting the cluster without the plugin");
                    restart_cluster(cluster, false)?;
                    say(format!(
                        "{} plain jobs without the plugin",
                        args.overhead_jobs
                    ));
                    measured.without_plugin = Some(time_jobs(cluster, &[], args.overhead_jobs, 2)?);
                    Ok(())
                })(),
            );
        }
        say("restarting the cluster with the plugin");
        restart_cluster(cluster, true).context("restarting the cluster with the plugin")?;
    }
    problems.record(
        "floor and plugin overhead (plugin cluster)",
        (|| {
            say(format!(
                "{} plain jobs with the plugin loaded",
                args.overhead_jobs
            ));
            measured.with_plugin = Some(time_jobs(cluster, &[], args.overhead_jobs, 2)?);
            say(format!(
                "{} --gha-runner jobs with the plugin",
                args.overhead_jobs
            ));
            let runner_option = format!("--gha-runner={}", sample_jit_config());
            measured.runner_jobs =
                Some(time_jobs(cluster, &[runner_option], args.overhead_jobs, 2)?);
            Ok(())
        })(),
    );

    Ok(())
}

/// Metrics 1 to 5: the simulator and `gha-dispatcher` on the cluster.
fn measure_dispatcher(
    cluster: &Cluster,
    args: &Args,
    measured: &mut Measured,
    problems: &mut Problems,
) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let credentials = match args.credentials.as_str() {
        "inline" => RunnerCredentials::Inline,
        _ => RunnerCredentials::Ticket,
    };
    match Stack::start(cluster, &runtime, credentials, SimConfig::default()) {
        Err(error) => problems.record("starting the simulator and gha-dispatcher", Err(error)),
        Ok(mut stack) if args.drain_only => {
            drain_only(cluster, args, &mut stack, measured, problems)
        }
        Ok(mut stack) => run_phases(cluster, args, &mut stack, measured, problems),
    };
    if args.crash_jobs > 0 && !args.slurm_load_only && !args.drain_only {
        problems.record(
            "kill -9 during a listened burst",
            crash_phase(cluster, &runtime, args, credentials, measured),
        );
    }
    Ok(())
}

/// Issue 13's crash check, on a stack of its own (the simulator's session TTL short).
fn crash_phase(
    cluster: &Cluster,
    runtime: &tokio::runtime::Runtime,
    args: &Args,
    credentials: RunnerCredentials,
    measured: &mut Measured,
) -> Result<()> {
    let ttl = Duration::from_secs(args.crash_session_ttl_secs.max(2));
    let sim_config = SimConfig {
        scaleset_session_ttl: ttl,
        // An empty poll must end well within the TTL, or a live session would expire.
        message_poll_timeout: (ttl / 2).min(Duration::from_secs(50)),
        ..SimConfig::default()
    };
    let mut stack = Stack::start(cluster, runtime, credentials, sim_config)?;
    say(format!(
        "kill -9 ×{} during a burst of {} listened jobs (session TTL {} s; dispatcher log {})",
        args.crash_kills,
        args.crash_jobs,
        ttl.as_secs(),
        stack.dispatcher.log_path().display()
    ));
    let drain = Duration::from_secs(args.crash_drain_secs);
    let result = dispatch::crash(&mut stack, args.crash_jobs, args.crash_kills, ttl, drain);
    let out = report_dir(cluster, args);
    if std::fs::create_dir_all(&out).is_ok() {
        let log = stack.dispatcher.log_path().to_owned();
        for n in 1..=args.crash_kills {
            let _ = std::fs::copy(
                log.with_extension(format!("log.{n}")),
                out.join(format!("dispatcher-crash.log.{n}")),
            );
        }
        let _ = std::fs::copy(&log, out.join("dispatcher-crash.log"));
    }
    measured.crash = Some(result?);
    stack.stop()
}

/// The dispatcher phases in order, then its metrics text, its log, the leftover check and stop.
fn run_phases(
    cluster: &Cluster,
    args: &Args,
    stack: &mut Stack,
    measured: &mut Measured,
    problems: &mut Problems,
) {
    let log = stack.dispatcher.log_path().display().to_string();
    say(format!("dispatcher up (log {log})"));
    if slurm_load_phase(args, stack, measured, problems) {
        return after_phases(cluster, args, stack, measured, problems);
    }
    for (intake, through) in [
        (Intake::Webhook, "the dispatcher (webhooks)"),
        (Intake::Listener, "the scale set listener"),
    ] {
        problems.record(
            &format!("sequential jobs through {through}"),
            (|| {
                say(format!(
                    "{} jobs one at a time through {through}",
                    args.sequential_jobs
                ));
                let result = dispatch::sequential(stack, args.sequential_jobs, intake)?;
                match intake {
                    Intake::Webhook => measured.sequential = Some(result),
                    Intake::Listener => measured.sequential_listener = Some(result),
                }
                Ok(())
            })(),
        );
    }
    problems.record("warm pool", warm_phase(args, stack, measured));
    problems.record(
        "idle window",
        (|| {
            say("waiting for the sequential phase's runners to be gone");
            let left = stack.wait_quiet(Duration::from_secs(90))?;
            if !left.is_empty() {
                say(format!("still there before the idle window: {left}"));
            }
            say(format!(
                "watching the idle dispatcher for {} s",
                args.idle_secs
            ));
            measured.idle = Some(dispatch::idle(stack, Duration::from_secs(args.idle_secs))?);
            Ok(())
        })(),
    );
    problems.record(
        "burst",
        (|| {
            say(format!(
                "burst of {} queued webhooks within one second",
                args.burst
            ));
            measured.burst = Some(dispatch::burst(
                stack,
                args.burst,
                Duration::from_secs(args.burst_drain_secs),
            )?);
            Ok(())
        })(),
    );
    listener_burst_and_drain(cluster, args, stack, measured, problems);
    problems.record(
        "tracked jobs",
        (|| {
            say(format!(
                "{} queued jobs tracked by the dispatcher",
                args.tracked
            ));
            measured.tracked = Some(dispatch::tracked(stack, args.tracked)?);
            Ok(())
        })(),
    );
    after_phases(cluster, args, stack, measured, problems);
}

/// After the phases: the dispatcher's metrics text and log, the ticket timings, and the
/// leftover check.
fn after_phases(
    cluster: &Cluster,
    args: &Args,
    stack: &mut Stack,
    measured: &mut Measured,
    problems: &mut Problems,
) {
    measured.metrics_text = stack.dispatcher.metrics().ok();
    measured.ticket_redeem_secs = ticket_redeem_secs(cluster);
    // Keep the dispatcher's log with the report (its state dir is temporary).
    let out = report_dir(cluster, args);
    if std::fs::create_dir_all(&out).is_ok() {
        let _ = std::fs::copy(stack.dispatcher.log_path(), out.join("dispatcher.log"));
    }
    say("waiting for runners, Slurm jobs and work dirs to be gone");
    match stack.wait_quiet(Duration::from_secs(120)) {
        Ok(left) => measured.leftovers = Some(left.to_string()),
        Err(error) => problems.record("leftover check", Err(error)),
    }
}

/// The burst on the listener target, once the webhook burst's runners are gone.
fn listener_burst(args: &Args, stack: &mut Stack, measured: &mut Measured) -> Result<()> {
    say("waiting for the webhook burst's runners to be gone");
    let left = stack.wait_quiet(Duration::from_secs(120))?;
    if !left.is_empty() {
        say(format!("still there before the listener burst: {left}"));
    }
    say(format!(
        "burst of {} jobs queued at once on the listener target",
        args.listener_burst
    ));
    measured.listener_burst = Some(dispatch::listener_burst(
        stack,
        args.listener_burst,
        Duration::from_secs(args.burst_drain_secs),
    )?);
    Ok(())
}

/// The listener burst and the drain, each unless its count is 0.
fn listener_burst_and_drain(
    cluster: &Cluster,
    args: &Args,
    stack: &mut Stack,
    measured: &mut Measured,
    problems: &mut Problems,
) {
    if args.listener_burst > 0 {
        problems.record("listener burst", listener_burst(args, stack, measured));
    }
    if args.drain > 0 {
        problems.record("drain", drain_phase(cluster, args, stack, measured));
    }
}

/// Where the report goes: `--out`, relative to the repository root.
fn report_dir(cluster: &Cluster, args: &Args) -> PathBuf {
    if args.out.is_absolute() {
        args.out.clone()
    } else {
        cluster.repo_root().join(&args.out)
    }
}

/// A JIT config in GitHub's format (the plugin may check it), pointing nowhere: the timed job
/// is `--wrap`, so no runner uses it.
fn sample_jit_config() -> String {
    use github_sim::jit::{CredentialsFile, JitConfig, RunnerFile};
    github_sim::jit::encode(&JitConfig {
        runner: RunnerFile {
            agent_id: 1,
            agent_name: "bench-overhead".into(),
            pool_id: 1,
            pool_name: "Default".into(),
            server_url: "http://127.0.0.1:9/_runner".into(),
            git_hub_url: "http://127.0.0.1:9/acme".into(),
            work_folder: "_work".into(),
            use_v2_flow: false,
            disable_update: true,
            ephemeral: true,
        },
        credentials: CredentialsFile {
            scheme: "OAuthAccessToken".into(),
            data: [("token".to_owned(), "bench-not-a-secret".to_owned())].into(),
        },
        rsa_params: json!({}),
    })
}

fn details(m: &Measured) -> serde_json::Value {
    let submetric = |t: &Option<Vec<JobTiming>>| {
        t.as_deref().map(|t| {
            json!({
                "submit_to_start_secs": summary_of(t, |j| j.submit_to_start_secs),
                "submit_to_end_secs": summary_of(t, |j| j.submit_to_end_secs),
                "jobs": t,
            })
        })
    };
    let dispatcher_histograms: Option<Vec<String>> = m.metrics_text.as_ref().map(|text| {
        text.lines()
            .filter(|l| !l.starts_with('#') && (l.contains("submit") || l.contains("start")))
            .map(str::to_owned)
            .collect()
    });
    json!({
        "plugin_bench_output": m.plugin_bench,
        "cluster_without_plugin": submetric(&m.without_plugin),
        "cluster_with_plugin": submetric(&m.with_plugin),
        "cluster_runner_option_jobs": submetric(&m.runner_jobs),
        "sequential": m.sequential,
        "sequential_listener": m.sequential_listener,
        "warm": m.warm,
        "idle": m.idle,
        "burst": m.burst,
        "listener_burst": m.listener_burst,
        "slurm_load": m.slurm_load,
        "crash": m.crash,
        "drain": m.drain,
        "tracked": m.tracked,
        "leftovers_after_run": m.leftovers,
        "dispatcher_metrics_submit_and_start_lines": dispatcher_histograms,
    })
}
