//! The runner scale set listener end to end: the dispatcher long-polls the simulator's
//! Actions service for a listener target (organization `labs`, no webhook reaches it), submits
//! ticket runners to the real cluster, and the runners' JIT configs come from the pool's scale
//! set. Beside it a webhook target (`acme`) runs in the same daemon. Then the faults the
//! protocol documents: a crash leaves its session active (409 until it expires), an expired
//! queue token (401), redelivered messages, and the re-offer quirk.
//!
//! Each test has its own simulator, database and runner-name prefix.

mod dispatcher_support;

use std::path::Path;
use std::time::Duration;

use test_support::wait_until_async;

use dispatcher_support::{base_config, cluster, secrets_dir, Daemon, SECRET};
use e2e::dispatcher_config::{DispatcherConfig, Pool, Scaling, Target};
use e2e::dispatcher_slot::DispatcherSlot;
use e2e::sim_world::SimWorld;
use github_sim::faults::ScaleSetFaults;
use github_sim::model::{JobSpec, WebhookTarget, WorkflowSpec};
use github_sim::{Sim, SimConfig};

const LISTENED: &str = "labs";
const LISTENED_REPO: &str = "labs/lab1";
const RUNS_ON: &[&str] = &["self-hosted", "linux", "x64"];

/// Short protocol timers: an abandoned session expires in 15 s, an empty poll ends in 2 s.
fn sim_config() -> SimConfig {
    SimConfig {
        scaleset_session_ttl: Duration::from_secs(15),
        message_poll_timeout: Duration::from_secs(2),
        ..SimConfig::default()
    }
}

/// The simulator (`acme/widgets` and `labs/lab1`, the App on both) and a ticket-mode config
/// with `acme` by webhook and `labs` by listener, one pool of `max` runners.
async fn world_and_config(prefix: &str, dir: &Path, max: u32) -> (SimWorld, DispatcherConfig) {
    let world = SimWorld::start_with(&["widgets"], sim_config())
        .await
        .unwrap();
    world.add_org_with_app(LISTENED, &["lab1"]).unwrap();
    let mut config = base_config(dir, &world.sim.url(), prefix).with_tickets(cluster());
    config.github.targets.push(Target::listener(LISTENED));
    config.scaling = Scaling {
        reconcile_interval_secs: Some(2),
        boot_deadline_secs: Some(60),
        ..Scaling::default()
    };
    config.pools = vec![Pool::new("cpu", &["linux", "x64"], max).time_limit("10:00")];
    (world, config)
}

/// `count` jobs of 3 s each (a job that ends within milliseconds of starting may be over
/// before its Slurm job's comment can be changed: see `accounting`).
/// One test's stack: the dispatcher slot (runner jobs redeem their tickets at the cluster's
/// one dispatcher address), the secrets and state directory, the simulator, the config and the
/// daemon running it.
struct Stack {
    slot: DispatcherSlot,
    dir: tempfile::TempDir,
    world: SimWorld,
    config: DispatcherConfig,
    daemon: Daemon,
}

async fn start(prefix: &str, max: u32) -> Stack {
    let slot = DispatcherSlot::acquire(cluster()).unwrap();
    let dir = secrets_dir();
    let (world, config) = world_and_config(prefix, dir.path(), max).await;
    let daemon = spawn_daemon(&config, dir.path(), &slot).await;
    Stack {
        slot,
        dir,
        world,
        config,
        daemon,
    }
}

fn enqueue(sim: &Sim, repo: &str, count: usize) -> Vec<u64> {
    let jobs = (0..count)
        .map(|i| {
            let mut job = JobSpec::new(format!("job-{i}"), RUNS_ON);
            job.duration_ms = 3000;
            job
        })
        .collect();
    sim.enqueue_workflow(WorkflowSpec {
        repo: repo.into(),
        name: "ci".into(),
        jobs,
        delay_ms: 0,
    })
    .unwrap()
    .job_ids
}

/// Every job completed with success on one of our runners, each taken by exactly one runner.
/// On failure the daemon's log (`log`, when it has one) is printed.
async fn wait_succeeded_once(sim: &Sim, ids: &[u64], prefix: &str, log: Option<&Path>) {
    let timeout = Duration::from_secs(120);
    let done = wait_until_async("every job to complete", timeout, || {
        let pending: Vec<String> = ids
            .iter()
            .filter_map(|id| sim.job(*id))
            .filter(|j| j.status != "completed")
            .map(|j| format!("{}:{}", j.id, j.status))
            .collect();
        async move {
            if pending.is_empty() {
                Ok(true)
            } else {
                Err(format!("not completed: {pending:?}"))
            }
        }
    })
    .await;
    if let (Err(e), Some(log)) = (&done, log) {
        panic!("{e:?}\n{}", log_tail(log));
    }
    done.unwrap();
    let runs = sim.counters().job_runs;
    for id in ids {
        let job = sim.job(*id).unwrap();
        assert_eq!(job.conclusion.as_deref(), Some("success"), "{job:?}");
        let runner = job.runner_name.clone().unwrap_or_default();
        assert!(runner.starts_with(prefix), "{job:?}");
        assert_eq!(runs[id].assignments, 1, "job {id} ran {:?}", runs[id]);
    }
}

/// The daemon log's last lines.
fn log_tail(log: &Path) -> String {
    format!(
        "daemon log, last lines:\n{}",
        test_support::logs::tail(log, 80)
    )
}

/// Our Slurm jobs (any state) as `scontrol show job -o` prints them, by job name.
fn slurm_records(prefix: &str) -> Vec<(String, String)> {
    dispatcher_support::slurm_jobs(prefix)
        .into_iter()
        .map(|j| {
            let out = cluster()
                .command("scontrol")
                .args(["show", "job", "-o", &j.id.to_string()])
                .output()
                .unwrap();
            (j.name, String::from_utf8_lossy(&out.stdout).into_owned())
        })
        .collect()
}

/// No Slurm job of ours, no registration, no open session.
async fn wait_nothing_left(sim: &Sim, prefix: &str) {
    wait_until_async("nothing left", Duration::from_secs(90), || {
        let active: Vec<_> = dispatcher_support::slurm_jobs(prefix)
            .into_iter()
            .filter(|j| {
                !["COMPLETED", "CANCELLED", "FAILED", "TIMEOUT"].contains(&j.state.as_str())
            })
            .collect();
        let registered: Vec<String> = sim
            .runners()
            .into_iter()
            .map(|r| r.name)
            .filter(|n| n.starts_with(prefix))
            .collect();
        async move {
            if active.is_empty() && registered.is_empty() {
                Ok(true)
            } else {
                Err(format!("slurm {active:?}, registrations {registered:?}"))
            }
        }
    })
    .await
    .unwrap();
}

fn cancel_all(prefix: &str) {
    for j in dispatcher_support::slurm_jobs(prefix) {
        let _ = cluster().command("scancel").arg(j.id.to_string()).status();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn listener_and_webhook_targets_share_a_daemon_and_slurm_comments_name_what_ran() {
    let prefix = "e2e-listen";
    let Stack {
        slot,
        dir,
        world,
        config: _,
        mut daemon,
    } = start(prefix, 4).await;
    let sim = &world.sim;
    // Webhooks reach the dispatcher for both organizations; `labs` is the listener's alone.
    sim.set_webhook(WebhookTarget {
        url: format!("http://{}/webhook", slot.addr()),
        secret: SECRET.into(),
    });
    let log = dir.path().join("log");
    let listened = enqueue(sim, LISTENED_REPO, 3);
    let webhooked = enqueue(sim, "acme/widgets", 2);
    let all: Vec<u64> = listened.iter().chain(&webhooked).copied().collect();
    wait_succeeded_once(sim, &all, prefix, Some(&log)).await;

    let counters = sim.counters();
    let scale = &counters.scaleset;
    assert_eq!(scale.scale_sets_created, 1, "{scale:?}");
    assert_eq!(scale.sessions_active, 1, "{scale:?}");
    assert!(scale.jobs_acquired >= 3, "{scale:?}");
    let set_runners: u64 = scale.runners_per_set.values().sum();
    assert_eq!(
        set_runners, 3,
        "one scale set runner per listened job, none for webhook jobs: {scale:?}"
    );
    assert_eq!(counters.jit_configs_issued, 5, "{counters:?}");

    // Accounting: each Slurm job that ran a GitHub job says which, in both modes.
    let records = slurm_records(prefix);
    for id in &all {
        let job = sim.job(*id).unwrap();
        let runner = job.runner_name.clone().unwrap();
        let (_, record) = records
            .iter()
            .find(|(name, _)| *name == runner)
            .unwrap_or_else(|| panic!("no Slurm job named {runner}: {records:?}"));
        let repo = if listened.contains(id) {
            LISTENED_REPO
        } else {
            "acme/widgets"
        };
        assert!(
            record.contains(&format!("ran repo={repo} ")),
            "job {id} on {runner}: {record}\n{}",
            log_tail(&log)
        );
        assert!(record.contains(&format!("run={}", job.run_id)), "{record}");
        if webhooked.contains(id) {
            assert!(record.contains(&format!("job={id}")), "{record}");
        }
    }

    // A clean stop (SIGTERM, as systemd stops it) deletes the session: the next start need
    // not wait for it.
    assert!(daemon.terminate().success());
    let scale = sim.counters().scaleset;
    assert_eq!(scale.sessions_active, 0, "{scale:?}");
    assert!(scale.sessions_deleted >= 1, "{scale:?}");
    wait_nothing_left(sim, prefix).await;
    cancel_all(prefix);
}

/// A daemon process on `config` (written to `dir/config.toml`), logging to `dir/log`,
/// listening on the dispatcher slot's address.
async fn spawn_daemon(config: &DispatcherConfig, dir: &Path, slot: &DispatcherSlot) -> Daemon {
    // The daemon binds the slot itself, once the previous holder's listener is gone.
    drop(slot.listen().await.unwrap());
    let mut config = config.clone();
    config.server.listen = slot.addr().to_string();
    let path = dir.join("config.toml");
    std::fs::write(&path, config.to_toml().unwrap()).unwrap();
    Daemon::spawn(&path, &dir.join("log"))
}

async fn wait_counter(sim: &Sim, what: &str, cond: impl Fn(&github_sim::Counters) -> bool) {
    wait_until_async(what, Duration::from_secs(60), || {
        let counters = sim.counters();
        let held = cond(&counters);
        let scale = counters.scaleset;
        async move {
            if held {
                Ok(true)
            } else {
                Err(format!("{scale:?}"))
            }
        }
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_listener_waits_out_its_session_and_faults_never_run_a_job_twice() {
    let prefix = "e2e-lkill";
    let Stack {
        slot,
        dir,
        world,
        config,
        mut daemon,
    } = start(prefix, 3).await;
    let sim = &world.sim;
    wait_counter(sim, "a session", |c| c.scaleset.sessions_active == 1).await;
    let first = enqueue(sim, LISTENED_REPO, 3);
    wait_until_async("a runner submitted", Duration::from_secs(60), || {
        let n = dispatcher_support::slurm_jobs(prefix).len();
        async move {
            if n > 0 {
                Ok(true)
            } else {
                Err("none".to_string())
            }
        }
    })
    .await
    .unwrap();

    // kill -9: the session stays active on GitHub's side until it expires.
    dispatcher_support::dispatcher_binary();
    daemon.kill9();
    let conflicts_before = sim.counters().scaleset.session_conflicts;
    let mut daemon = spawn_daemon(&config, dir.path(), &slot).await;
    wait_counter(sim, "the restarted daemon refused (409)", |c| {
        c.scaleset.session_conflicts > conflicts_before
    })
    .await;
    wait_succeeded_once(sim, &first, prefix, Some(&dir.path().join("log"))).await;
    let log = std::fs::read_to_string(dir.path().join("log")).unwrap();
    assert!(
        log.contains("still active (409)"),
        "the wait is visible in the log"
    );

    // An expired queue token and redelivered messages: each job still runs once.
    sim.set_scaleset_faults(ScaleSetFaults {
        expire_queue_tokens: 1,
        redeliver_messages: 2,
        ..ScaleSetFaults::default()
    });
    let second = enqueue(sim, LISTENED_REPO, 2);
    wait_succeeded_once(sim, &second, prefix, Some(&dir.path().join("log"))).await;
    let scale = sim.counters().scaleset;
    assert!(scale.sessions_refreshed >= 1, "{scale:?}");
    assert!(scale.messages_redelivered >= 1, "{scale:?}");
    let set_runners: u64 = scale.runners_per_set.values().sum();
    assert_eq!(set_runners, 5, "one registration per job: {scale:?}");

    // SIGTERM, as systemd stops it: the session is deleted.
    assert!(daemon.terminate().success());
    assert_eq!(sim.counters().scaleset.sessions_active, 0);
    wait_nothing_left(sim, prefix).await;
    cancel_all(prefix);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_reoffer_quirk_leaks_no_runner_and_counts_no_job_twice() {
    let prefix = "e2e-lquirk";
    let Stack {
        slot: _slot,
        dir,
        world,
        config: _,
        mut daemon,
    } = start(prefix, 3).await;
    let sim = &world.sim;
    wait_counter(sim, "a session", |c| c.scaleset.sessions_active == 1).await;
    // The Actions service fails for a while after the offer, so the job is not acquired in
    // time: GitHub answers with JobAssigned then JobCompleted "canceled" and offers the job
    // again (at most three times).
    sim.set_scaleset_faults(ScaleSetFaults {
        server_errors: 8,
        reoffer_after_ms: 500,
        ..ScaleSetFaults::default()
    });
    let ids = enqueue(sim, LISTENED_REPO, 1);
    wait_succeeded_once(sim, &ids, prefix, Some(&dir.path().join("log"))).await;
    let scale = sim.counters().scaleset;
    assert!(scale.jobs_reoffered >= 1, "the quirk happened: {scale:?}");
    let set_runners: u64 = scale.runners_per_set.values().sum();
    assert_eq!(set_runners, 1, "one registration for one job: {scale:?}");
    assert!(daemon.terminate().success());
    wait_nothing_left(sim, prefix).await;
    cancel_all(prefix);
}
