//! `demo`: the README's main command (through `ci/demo`). Runs the whole system on the local
//! single-node Slurm with the spank-gha plugin: the GitHub simulator, the `gha-dispatcher`
//! binary with SQLite state and a generated config, and a workload like a busy repository's
//! (70 jobs over three label sets, dependencies, a cancelled run, one Docker step). Shows live
//! progress, prints a summary, checks that nothing is left behind, and stops what it started.
//! Exit status: 0 when every job ended as expected and nothing was left, 1 otherwise, 2 when
//! the demo itself could not run.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use demo_bench::demo::leftovers::{plugin_docker_mode, Leftovers};
use demo_bench::demo::makespan::{summary_lines, PlannedRun};
use demo_bench::demo::progress::{Board, Frame};
use demo_bench::demo::slurm::{self, CancelOnDrop};
use demo_bench::demo::stack::{random_hex, Dispatcher, DispatcherSpec, SimWorld};
use demo_bench::demo::stats::Summary;
use demo_bench::demo::stopping::{self, OnStop, Stop};
use demo_bench::demo::tracker::Tracker;
use demo_bench::demo::workflow;
use e2e::dispatcher_config::RunnerCredentials;
use e2e::Cluster;
use github_sim::{Counters, RunCreated};

#[derive(Parser, Debug)]
#[command(about = "Run spank-gha end to end on the local Slurm with a 70-job workload")]
struct Args {
    /// Give up on the workload after this many seconds.
    #[arg(long, default_value_t = 600)]
    timeout_secs: u64,
    /// How long to wait for runners, Slurm jobs and work dirs to go away after the workload
    /// (a runner that got no job stops after the plugin's idle_timeout).
    #[arg(long, default_value_t = 120)]
    cleanup_secs: u64,
    /// Dispatcher reconciliation interval in seconds (default: the dispatcher's own default).
    #[arg(long)]
    reconcile_interval_secs: Option<u64>,
    /// Keep the simulator and dispatcher (and so the console) up after the summary, until
    /// Ctrl-C.
    #[arg(long)]
    keep: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("demo failed: {error:#}");
            ExitCode::from(2)
        }
    }
}

/// How the workload ended.
enum Ending {
    AllDone,
    TimedOut,
    Interrupted,
}

/// The queued workload and what the demo expects of it.
struct Workload {
    tracker: Tracker,
    /// Runs to cancel once the dispatcher has had their `queued` webhooks.
    to_cancel: Vec<RunCreated>,
    expected_cancelled: BTreeSet<u64>,
    total_jobs: usize,
    /// The runs meant to finish, for their makespan against their critical path.
    planned: Vec<PlannedRun>,
}

/// What the live phase saw.
struct Followed {
    ending: Ending,
    workload_secs: f64,
}

fn run(args: &Args) -> Result<bool> {
    let started = Instant::now();
    // First: from here on Ctrl-C, SIGTERM and SIGHUP stop the demo in order.
    let stop = stopping::watch(OnStop::Record).context("watching for stop signals")?;
    let cluster = Cluster::shared();
    cluster.assert_node_healthy()?;
    let runtime = demo_runtime()?;

    let world = runtime.block_on(SimWorld::start(&["widgets"]))?;
    world.add_org_with_app(workflow::LISTENED_ORG, &["gadgets"])?;
    let prefix = format!("demo-{}", random_hex(3)?);
    let state_dir = tempfile::Builder::new()
        .prefix("spank-gha-demo-")
        .tempdir()
        .context("creating the dispatcher's state directory")?;
    let mut dispatcher = start_dispatcher(args, cluster, &world, &prefix, state_dir.path())?;
    world.send_webhooks_to(&dispatcher.webhook_url());
    let mut slurm_guard = CancelOnDrop {
        cluster,
        prefix: prefix.clone(),
        seen: BTreeSet::new(),
    };

    let mut workload = enqueue_workload(&world)?;
    println!(
        "  queued {} jobs in 3 runs; the docs-preview run is cancelled once the dispatcher has its webhooks\n",
        workload.total_jobs
    );
    let followed = follow(
        &world,
        &mut dispatcher,
        &mut slurm_guard,
        &mut workload,
        &stop,
        Duration::from_secs(args.timeout_secs),
    )?;
    let leftovers =
        look_for_leftovers(args, &world, &slurm_guard, &followed, &|| stop.requested())?;
    let metrics = dispatcher.metrics().unwrap_or_default();
    let ok = summarize(args, &world, &workload, &followed, &leftovers, &metrics);
    keep_up(args, &stop, &dispatcher);
    let dispatcher_status = dispatcher.stop()?;
    if let Some(status) = dispatcher_status {
        println!(
            "  dispatcher:  stopped ({status}); log {}",
            dispatcher.log_path().display()
        );
    }
    println!(
        "  total time:  {:.1} s (start to stop)",
        started.elapsed().as_secs_f64()
    );
    if !ok {
        println!(
            "  dispatcher log (last lines):\n{}",
            dispatcher.log_tail(15)
        );
    }
    drop(slurm_guard);
    runtime.block_on(world.sim.shutdown());
    // Keep the state dir when something went wrong, so the log can be read.
    if !ok {
        let kept = state_dir.keep();
        println!(
            "  kept the dispatcher's state and log in {}",
            kept.display()
        );
    }
    println!("{}", if ok { "demo OK" } else { "demo FAILED" });
    Ok(ok)
}

fn demo_runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")
}

/// What the run left: after a finished workload, waits (up to `--cleanup-secs`) for the
/// runner jobs to end and clean up; otherwise looks once.
fn look_for_leftovers(
    args: &Args,
    world: &SimWorld,
    guard: &CancelOnDrop<'_>,
    followed: &Followed,
    give_up: &dyn Fn() -> bool,
) -> Result<Leftovers> {
    let (cluster, prefix) = (guard.cluster, guard.prefix.as_str());
    match followed.ending {
        Ending::AllDone => {
            println!(
                "all jobs done in {:.1} s; waiting for runner jobs to end and clean up",
                followed.workload_secs
            );
            Leftovers::wait_until_none(
                cluster,
                &world.sim,
                prefix,
                &guard.seen,
                Duration::from_secs(args.cleanup_secs),
                give_up,
            )
        }
        Ending::TimedOut | Ending::Interrupted => {
            Leftovers::collect(cluster, &world.sim, prefix, &guard.seen)
        }
    }
}

/// Starts `gha-dispatcher` (ticket mode, the demo's pools) and prints what runs where.
fn start_dispatcher(
    args: &Args,
    cluster: &Cluster,
    world: &SimWorld,
    prefix: &str,
    state_dir: &std::path::Path,
) -> Result<Dispatcher> {
    let docker_mode = plugin_docker_mode(cluster);
    let docker_args = match docker_mode.as_str() {
        "on-request" => vec!["--gha-docker".to_owned()],
        _ => Vec::new(),
    };
    let spec = DispatcherSpec {
        pools: workflow::pools(docker_args),
        runner_name_prefix: prefix.to_string(),
        reconcile_interval_secs: args.reconcile_interval_secs,
        sbatch: None,
        credentials: RunnerCredentials::Ticket,
        listener_orgs: vec![workflow::LISTENED_ORG.to_string()],
    };
    println!("spank-gha demo");
    println!(
        "  Slurm:       {} (plugin docker mode: {docker_mode})",
        cluster.conf().display()
    );
    println!(
        "  GitHub sim:  {} (org acme with widgets by webhook, org labs with gadgets by scale set listener, App {})",
        world.sim.url(),
        demo_bench::demo::stack::APP_ID
    );
    let dispatcher = Dispatcher::start(cluster, world, &spec, state_dir)?;
    println!(
        "  dispatcher:  {} (pid {}, config {}, log {})",
        dispatcher.url(),
        dispatcher.pid(),
        dispatcher.config_path().display(),
        dispatcher.log_path().display()
    );
    println!(
        "  console:     {} (log in with the admin token in {})",
        dispatcher.console_url(),
        dispatcher.admin_token_file().display()
    );
    if docker_mode != "on-request" && docker_mode != "rootless" {
        println!(
            "  note: the plugin runs with docker={docker_mode} on this cluster, so the Docker step has no daemon and will fail"
        );
    }
    Ok(dispatcher)
}

/// Queues the demo's runs and starts following their jobs.
fn enqueue_workload(world: &SimWorld) -> Result<Workload> {
    let mut workload = Workload {
        tracker: Tracker::default(),
        to_cancel: Vec::new(),
        expected_cancelled: BTreeSet::new(),
        total_jobs: 0,
        planned: Vec::new(),
    };
    for run in workflow::runs() {
        let without_needs: Vec<bool> = run.spec.jobs.iter().map(|j| j.needs.is_empty()).collect();
        let at = Instant::now();
        let spec = run.spec.clone();
        let created = world
            .sim
            .enqueue_workflow(run.spec)
            .context("queueing a workflow run")?;
        if !run.cancel_when_queued {
            workload
                .planned
                .push(PlannedRun::new(&spec, &created.job_ids));
        }
        workload.total_jobs += created.job_ids.len();
        workload.tracker.enqueued(
            created
                .job_ids
                .iter()
                .zip(&without_needs)
                .filter(|(_, free)| **free)
                .map(|(id, _)| *id),
            at,
        );
        if run.cancel_when_queued {
            workload.expected_cancelled.extend(&created.job_ids);
            workload.to_cancel.push(created);
        }
    }
    Ok(workload)
}

/// Cancels the runs whose `queued` webhooks have all reached the dispatcher.
fn cancel_told_runs(world: &SimWorld, to_cancel: &mut Vec<RunCreated>) -> Result<()> {
    if to_cancel.is_empty() {
        return Ok(());
    }
    let told: BTreeSet<u64> = world
        .sim
        .deliveries()
        .iter()
        .filter(|d| d.action.as_deref() == Some("queued") && d.outcome == "delivered")
        .filter_map(|d| d.job_id)
        .collect();
    let mut still = Vec::new();
    for run in to_cancel.drain(..) {
        if run.job_ids.iter().all(|id| told.contains(id)) {
            world
                .sim
                .cancel_run(run.run_id)
                .context("cancelling a run")?;
        } else {
            still.push(run);
        }
    }
    *to_cancel = still;
    Ok(())
}

/// The Slurm side of the live board, from `squeue` at most every 500 ms; slurmctld may be busy
/// for a moment, so only a failure lasting 30 s is an error.
#[derive(Default)]
struct SlurmView {
    last_squeue: Option<Instant>,
    failing_since: Option<Instant>,
}

impl SlurmView {
    fn refresh(&mut self, guard: &mut CancelOnDrop<'_>, frame: &mut Frame) -> Result<()> {
        if self
            .last_squeue
            .is_some_and(|at| at.elapsed() < Duration::from_millis(500))
        {
            return Ok(());
        }
        self.last_squeue = Some(Instant::now());
        match slurm::run_jobs(guard.cluster, &guard.prefix) {
            Ok(jobs) => {
                guard.seen.extend(jobs.iter().map(|j| j.id));
                frame.slurm_pending = jobs.iter().filter(|j| j.state == "PENDING").count();
                frame.slurm_running = jobs.len() - frame.slurm_pending;
                self.failing_since = None;
            }
            Err(error) => {
                let since = *self.failing_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_secs(30) {
                    return Err(error.context("squeue has failed for 30 s"));
                }
            }
        }
        Ok(())
    }
}

/// The live phase: follows the jobs on a board (every 100 ms) until all are done, `timeout`
/// passes or the demo is interrupted, cancelling the runs meant to be cancelled on the way.
fn follow(
    world: &SimWorld,
    dispatcher: &mut Dispatcher,
    guard: &mut CancelOnDrop<'_>,
    workload: &mut Workload,
    stop: &Stop,
    timeout: Duration,
) -> Result<Followed> {
    let workload_start = Instant::now();
    let deadline = workload_start + timeout;
    let mut board = Board::new();
    let mut frame = Frame::default();
    let mut slurm_view = SlurmView::default();
    let ending = loop {
        if stop.requested() {
            break Ending::Interrupted;
        }
        if !dispatcher.is_running() {
            bail!(
                "gha-dispatcher exited during the demo; its log:\n{}",
                dispatcher.log_tail(30)
            );
        }
        let now = Instant::now();
        let snapshot = world.sim.snapshot();
        workload.tracker.observe(&snapshot.jobs, now);
        cancel_told_runs(world, &mut workload.to_cancel)?;
        slurm_view.refresh(guard, &mut frame)?;
        let (per_set, total) = workload.tracker.tally();
        frame.elapsed = workload_start.elapsed();
        frame.per_set = per_set;
        frame.total = total;
        frame.runners_registered = snapshot.runners.len();
        board.show(&frame);
        if frame.total.done() == workload.total_jobs && workload.to_cancel.is_empty() {
            break Ending::AllDone;
        }
        if now >= deadline {
            break Ending::TimedOut;
        }
        // The board's refresh rate, not a wait for a condition.
        std::thread::sleep(Duration::from_millis(100));
    };
    let workload_secs = workload_start.elapsed().as_secs_f64();
    frame.slurm_pending = 0;
    frame.slurm_running = 0;
    board.finish(&frame);
    println!();
    Ok(Followed {
        ending,
        workload_secs,
    })
}

/// Prints the summary; true when every job ended as planned and nothing was left.
fn summarize(
    args: &Args,
    world: &SimWorld,
    workload: &Workload,
    followed: &Followed,
    leftovers: &Leftovers,
    metrics: &str,
) -> bool {
    let counters = world.sim.counters();
    let tracker = &workload.tracker;
    let (_, total) = tracker.tally();
    let total_jobs = workload.total_jobs;
    let expected_cancelled = &workload.expected_cancelled;
    let cancelled_as_expected = tracker
        .jobs()
        .iter()
        .filter(|(id, job)| {
            expected_cancelled.contains(id) && job.conclusion.as_deref() == Some("cancelled")
        })
        .count();
    let expected_successes = total_jobs - expected_cancelled.len();
    let workload_secs = followed.workload_secs;
    let ok = matches!(followed.ending, Ending::AllDone)
        && total.succeeded == expected_successes
        && cancelled_as_expected == expected_cancelled.len()
        && total.failed == 0
        && total.skipped == 0
        && leftovers.is_empty();

    println!("Summary");
    match followed.ending {
        Ending::AllDone => println!("  workload:    finished in {workload_secs:.1} s"),
        Ending::TimedOut => println!("  workload:    NOT finished after {} s", args.timeout_secs),
        Ending::Interrupted => println!("  workload:    interrupted after {workload_secs:.1} s"),
    }
    println!(
        "  jobs:        {} succeeded, {} failed, {} cancelled, {} skipped, {} not done (of {total_jobs}; expected {expected_successes} succeeded, {} cancelled)",
        total.succeeded,
        total.failed,
        total.cancelled,
        total.skipped,
        total_jobs - total.done(),
        expected_cancelled.len()
    );
    print_failed_jobs(tracker);
    match Summary::of(&tracker.queue_to_start_secs()) {
        Some(s) => println!(
            "  queue → runner start: p50 {:.2} s, p95 {:.2} s, max {:.2} s over {} jobs (seen by polling the simulator every 100 ms)",
            s.p50, s.p95, s.max, s.count
        ),
        None => println!("  queue → runner start: no job was taken by a runner"),
    }
    for line in summary_lines(&workload.planned, &world.sim.timeline()) {
        println!("  makespan:    {line}");
    }
    print_api_calls(&counters, total_jobs);
    print_intakes(world, &counters);
    println!(
        "  webhooks:    {} sent, {} failed",
        counters.deliveries_sent, counters.deliveries_failed
    );
    println!("  tickets:     {}", ticket_summary(metrics));
    println!("  leftovers:   {leftovers}");
    ok
}

/// Each intake's jobs, and what the listener's protocol cost.
fn print_intakes(world: &SimWorld, counters: &github_sim::Counters) {
    let jobs = world.sim.jobs();
    for (org, intake) in [
        (demo_bench::demo::stack::ORG, "webhook"),
        (workflow::LISTENED_ORG, "listener"),
    ] {
        let ours: Vec<_> = jobs
            .iter()
            .filter(|j| j.repo.starts_with(&format!("{org}/")))
            .collect();
        let succeeded = ours
            .iter()
            .filter(|j| j.conclusion.as_deref() == Some("success"))
            .count();
        println!(
            "  {intake:<9}    org {org}: {succeeded} of {} jobs succeeded",
            ours.len()
        );
    }
    let s = &counters.scaleset;
    let actions: u64 = s.actions.values().map(|c| c.calls).sum();
    println!(
        "  scale sets:  {} created, {} sessions, {} message polls and {} acknowledgements, {} other Actions-service calls, {} jobs acquired",
        s.scale_sets_created, s.sessions_created, s.queue_polls, s.queue_deletes, actions, s.jobs_acquired
    );
}

/// The jobs that ended other than succeeded, cancelled or skipped.
fn print_failed_jobs(tracker: &Tracker) {
    let failed: Vec<String> = tracker
        .jobs()
        .iter()
        .filter(|(_, j)| {
            j.status == "completed"
                && !matches!(
                    j.conclusion.as_deref(),
                    Some("success") | Some("cancelled") | Some("skipped")
                )
        })
        .map(|(id, j)| {
            format!(
                "{id} ({}, {})",
                j.label_set,
                j.conclusion.as_deref().unwrap_or("?")
            )
        })
        .collect();
    if !failed.is_empty() {
        println!("  failed jobs: {}", failed.join(", "));
    }
}

/// GitHub REST calls (runner protocol and control API excluded), 304s shown apart as free.
fn print_api_calls(counters: &Counters, jobs: usize) {
    let mut paid = 0;
    let mut free = 0;
    let mut by_endpoint: BTreeMap<&str, u64> = BTreeMap::new();
    for (key, count) in &counters.api {
        if key.contains(" /_") {
            continue;
        }
        paid += count.calls - count.not_modified;
        free += count.not_modified;
        if count.calls > count.not_modified {
            by_endpoint.insert(key, count.calls - count.not_modified);
        }
    }
    println!(
        "  GitHub API:  {paid} calls ({:.2} per job), plus {free} answered 304 (free)",
        paid as f64 / jobs.max(1) as f64
    );
    for (key, calls) in by_endpoint {
        println!("               {calls:>5}  {key}");
    }
}

/// `--keep` (unless stopped already): say where the console is, and wait for Ctrl-C (or
/// SIGTERM, or the terminal closing).
fn keep_up(args: &Args, stop: &Stop, dispatcher: &Dispatcher) {
    if !args.keep || stop.requested() {
        return;
    }
    println!(
        "\n--keep: the simulator, the dispatcher and the console stay up; console {} (admin token in {}); Ctrl-C stops them",
        dispatcher.console_url(),
        dispatcher.admin_token_file().display()
    );
    while !stop.requested() {
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Ticket redemptions from the dispatcher's `/metrics`: "63 redeemed; refused: …; 1 job ended
/// unredeemed".
fn ticket_summary(metrics: &str) -> String {
    let value = |line: &str| line.rsplit(' ').next().and_then(|v| v.parse::<f64>().ok());
    let mut redeemed = 0.0;
    let mut refused = Vec::new();
    let mut unredeemed = 0.0;
    for line in metrics.lines() {
        if let Some(rest) = line.strip_prefix("gha_dispatcher_ticket_redemptions_total{result=\"") {
            let (result, _) = rest.split_once('"').unwrap_or((rest, ""));
            let n = value(line).unwrap_or(0.0);
            if result == "ok" {
                redeemed = n;
            } else {
                refused.push(format!("{n} {result}"));
            }
        } else if line.starts_with("gha_dispatcher_tickets_unredeemed_total ") {
            unredeemed = value(line).unwrap_or(0.0);
        }
    }
    if metrics.is_empty() {
        return "unknown (no /metrics from the dispatcher)".into();
    }
    let refused = if refused.is_empty() {
        "none refused".to_string()
    } else {
        format!("refused: {}", refused.join(", "))
    };
    format!(
        "{redeemed} redeemed at job start, {refused}, {unredeemed} runner jobs ended unredeemed \
         (no JIT config on any sbatch command line or in Slurm)"
    )
}
