//! The dispatcher end to end: the GitHub simulator (in-process) sends webhooks to the
//! dispatcher (in-process, running as root), which submits `sbatch --gha-runner=...
//! --uid=gha-ci` jobs to the real single-node Slurm with the real spank-gha plugin; the
//! simulator's fake runner runs in those jobs, takes a job, runs it and exits.
//!
//! Each test has its own simulator, database and runner-name prefix, so tests sharing the
//! cluster never see each other's Slurm jobs or runners.

mod dispatcher_support;

use std::path::Path;
use std::time::Duration;

use test_support::wait_until_async;

use dispatcher_support::{base_config, cluster, secrets_dir, start_sim, SECRET};
use e2e::dispatcher_config::{DispatcherConfig, Pool, Scaling};
use gha_dispatcher::app::Running;
use github_sim::model::{JobSpec, RunCreated, WorkflowSpec};
use github_sim::{Faults, Sim};

/// Short timers so that hygiene and reconciliation happen within a test's time.
const FAST_SCALING: Scaling = Scaling {
    reconcile_interval_secs: Some(2),
    boot_deadline_secs: Some(15),
    submit_concurrency: None,
    sbatch_backoff_max_secs: Some(2),
};

struct Harness {
    sim: Sim,
    dispatcher: Option<Running>,
    /// Holds the database and secret files for as long as the dispatcher runs.
    _dir: tempfile::TempDir,
    prefix: String,
    config: DispatcherConfig,
    url: String,
}

impl Harness {
    /// A dispatcher with `pools`; `sbatch` overrides the sbatch command.
    async fn start(prefix: &str, pools: Vec<Pool>, sbatch: Option<&Path>) -> Harness {
        Self::start_with(prefix, pools, sbatch, FAST_SCALING).await
    }

    /// As [`Harness::start`], with the `[scaling]` given.
    async fn start_with(
        prefix: &str,
        pools: Vec<Pool>,
        sbatch: Option<&Path>,
        scaling: Scaling,
    ) -> Harness {
        let sim = start_sim().await;
        let dir = secrets_dir();
        let mut config = base_config(dir.path(), &sim.url(), prefix);
        config.slurm.sbatch = sbatch.map(Path::to_path_buf);
        config.scaling = scaling;
        config.pools = pools;
        let mut h = Harness {
            sim,
            dispatcher: None,
            _dir: dir,
            prefix: prefix.to_string(),
            config,
            url: String::new(),
        };
        h.start_dispatcher().await;
        h
    }

    async fn start_dispatcher(&mut self) {
        let (running, url) = dispatcher_support::start_in_process(&self.config, &self.sim).await;
        self.url = url;
        self.dispatcher = Some(running);
    }

    fn enqueue(&self, jobs: Vec<JobSpec>) -> RunCreated {
        self.sim
            .enqueue_workflow(WorkflowSpec {
                repo: "acme/widgets".into(),
                name: "ci".into(),
                jobs,
                delay_ms: 0,
            })
            .unwrap()
    }

    /// Our Slurm jobs (by name prefix): (id, name, state).
    fn our_slurm_jobs(&self) -> Vec<(u64, String, String)> {
        let out = cluster()
            .command("squeue")
            .args(["--noheader", "--all", "--format=%i|%j|%T"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "squeue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| {
                let mut p = l.trim().split('|');
                let id = p.next()?.parse().ok()?;
                let name = p.next()?.to_string();
                let state = p.next()?.to_string();
                name.starts_with(&format!("{}-", self.prefix))
                    .then_some((id, name, state))
            })
            .collect()
    }

    fn our_registrations(&self) -> Vec<String> {
        self.sim
            .runners()
            .into_iter()
            .map(|r| r.name)
            .filter(|n| n.starts_with(&format!("{}-", self.prefix)))
            .collect()
    }

    async fn status(&self) -> serde_json::Value {
        dispatcher_support::get_json(&format!("{}/status", self.url)).await
    }

    async fn metrics(&self) -> String {
        dispatcher_support::get_text(&format!("{}/metrics", self.url)).await
    }

    async fn wait_jobs_succeed(&self, ids: &[u64], timeout: Duration) {
        let ids = ids.to_vec();
        wait_until_async("every job to complete", timeout, || {
            let jobs: Vec<_> = ids.iter().map(|id| self.sim.job(*id).unwrap()).collect();
            async move {
                let pending: Vec<String> = jobs
                    .iter()
                    .filter(|j| j.status != "completed")
                    .map(|j| format!("{}:{}", j.id, j.status))
                    .collect();
                if pending.is_empty() {
                    Ok(true)
                } else {
                    Err(format!("not completed: {pending:?}"))
                }
            }
        })
        .await
        .unwrap();
        for id in &ids {
            let job = self.sim.job(*id).unwrap();
            assert_eq!(
                job.conclusion.as_deref(),
                Some("success"),
                "job {id}: {job:?}"
            );
            assert!(
                job.runner_name
                    .as_deref()
                    .unwrap_or("")
                    .starts_with(&self.prefix),
                "{job:?}"
            );
        }
    }

    /// Nothing of ours left: no Slurm job, no runner registration.
    async fn wait_nothing_left(&self, timeout: Duration) {
        wait_until_async(
            "no Slurm job and no registration left over",
            timeout,
            || {
                let jobs = self.our_slurm_jobs();
                let regs = self.our_registrations();
                async move {
                    if jobs.is_empty() && regs.is_empty() {
                        Ok(true)
                    } else {
                        Err(format!("slurm jobs {jobs:?}, registrations {regs:?}"))
                    }
                }
            },
        )
        .await
        .unwrap();
    }

    /// A directory the job user can write to, outside the cluster's directory.
    fn marker_dir(&self) -> tempfile::TempDir {
        let d = tempfile::Builder::new()
            .prefix(&self.prefix)
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::set_permissions(
            d.path(),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        d
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        // Leave nothing behind on the shared cluster even when a test failed.
        for (id, _, _) in self.our_slurm_jobs() {
            let _ = cluster().command("scancel").arg(id.to_string()).status();
        }
    }
}

fn cpu_pool() -> Vec<Pool> {
    vec![Pool::new("cpu", &["linux", "x64"], 4).time_limit("10:00")]
}

fn job(name: &str, command: Option<String>) -> JobSpec {
    JobSpec {
        command,
        ..JobSpec::new(name, &["self-hosted", "Linux"])
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn happy_path_queued_webhook_becomes_a_slurm_job_that_runs_it_as_gha_ci() {
    let h = Harness::start("e2e-happy", cpu_pool(), None).await;
    let markers = h.marker_dir();
    let marker = markers.path().join("whoami");
    let run = h.enqueue(vec![job(
        "build",
        Some(format!(
            "echo \"$(id -un) HOME=$HOME USER=$USER\" > {}",
            marker.display()
        )),
    )]);
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(90))
        .await;

    // The job runs as gha-ci with gha-ci's own identity, not the root dispatcher's HOME.
    let user = cluster().test_user();
    let home = nix::unistd::User::from_name(user).unwrap().unwrap().dir;
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap().trim(),
        format!("{user} HOME={} USER={user}", home.display())
    );
    let counters = h.sim.counters();
    assert_eq!(
        counters.jit_configs_issued, 1,
        "exactly one runner for one job"
    );
    h.wait_nothing_left(Duration::from_secs(60)).await;

    // The Slurm job was tied to the runner and the GitHub job, and ran as gha-ci.
    let status = h.status().await;
    let runner = &status["runners"][0];
    let slurm_id = runner["slurm_job_id"].as_u64().unwrap();
    // MinJobAge=3600 on the test cluster: the finished job's record is still there.
    let record = cluster().job_record(slurm_id as u32).unwrap();
    assert!(
        record.contains(&format!("JobName={}", runner["name"].as_str().unwrap())),
        "{record}"
    );
    assert!(
        record.contains(&format!("job={}", run.job_ids[0])),
        "{record}"
    );
    assert!(record.contains("UserId=gha-ci"), "{record}");
    assert!(!record.contains(SECRET));
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("gha_dispatcher_queue_to_submit_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gha_dispatcher_sbatch_submissions_total 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gha_dispatcher_queue_to_runner_start_seconds_count 1"),
        "{metrics}"
    );

    // Quiet period: once clean-up is over, full reconciliations cost nothing (every poll
    // answers 304).
    let wait_two_passes = || async {
        let from = h.status().await["last_full_reconcile_at"].as_i64().unwrap();
        wait_until_async("two more full passes", Duration::from_secs(30), || async {
            let last = h.status().await["last_full_reconcile_at"]
                .as_i64()
                .unwrap_or(0);
            Ok(last >= from + 4)
        })
        .await
        .unwrap();
    };
    wait_two_passes().await;
    let before = h.sim.counters().api;
    wait_two_passes().await;
    let after = h.sim.counters().api;
    let mut charged = Vec::new();
    let mut free = 0;
    for (endpoint, count) in &after {
        let old = before.get(endpoint).cloned().unwrap_or_default();
        let calls = count.calls - old.calls;
        let not_modified = count.not_modified - old.not_modified;
        free += not_modified;
        if calls > not_modified {
            charged.push((endpoint.clone(), calls - not_modified));
        }
    }
    assert!(free > 0, "no polling happened");
    assert!(
        charged.is_empty(),
        "calls that cost rate limit while idle: {charged:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn missed_webhook_is_found_by_reconciliation() {
    let h = Harness::start("e2e-missed", cpu_pool(), None).await;
    h.sim.set_faults(Faults {
        drop_deliveries: 1,
        ..Default::default()
    });
    let run = h.enqueue(vec![job("build", Some("true".into()))]);
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(90))
        .await;
    assert!(
        h.sim.counters().deliveries_dropped >= 1,
        "the queued delivery was dropped"
    );
    assert_eq!(h.sim.counters().jit_configs_issued, 1);
    h.wait_nothing_left(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_and_reordered_deliveries_make_one_runner_per_job() {
    let h = Harness::start("e2e-dupes", cpu_pool(), None).await;
    h.sim.set_faults(Faults {
        duplicate_deliveries: 20,
        reorder_deliveries: 3,
        ..Default::default()
    });
    let run = h.enqueue(vec![job("a", None), job("b", None), job("c", None)]);
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(120))
        .await;
    assert!(h.sim.counters().deliveries_duplicated >= 1);
    assert_eq!(
        h.sim.counters().jit_configs_issued,
        3,
        "one runner per job despite duplicates"
    );
    let metrics = h.metrics().await;
    let duplicates = dispatcher_support::metric(
        &metrics,
        "gha_dispatcher_webhook_deliveries_total{outcome=\"duplicate\"}",
    );
    assert!(duplicates.is_some_and(|n| n >= 1.0), "{metrics}");
    h.wait_nothing_left(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn cancelled_before_start_surplus_pending_jobs_are_cancelled() {
    // `--begin` keeps the runner jobs pending, as on a busy cluster.
    let pool = vec![Pool::new("later", &["linux"], 4).extra_args(&["--begin=now+1hour"])];
    let h = Harness::start("e2e-cancel", pool, None).await;
    let run = h.enqueue(vec![job("a", None), job("b", None)]);
    wait_until_async("two pending Slurm jobs", Duration::from_secs(60), || {
        let jobs = h.our_slurm_jobs();
        async move { Ok(jobs.len() == 2 && jobs.iter().all(|j| j.2 == "PENDING")) }
    })
    .await
    .unwrap();
    h.sim.cancel_run(run.run_id).unwrap();
    h.wait_nothing_left(Duration::from_secs(60)).await;
    assert!(h
        .metrics()
        .await
        .contains("gha_dispatcher_runners_cancelled_total 2"));
    assert_eq!(h.sim.counters().jit_configs_issued, 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn full_pool_respects_max_runners_then_drains() {
    let pool = vec![Pool::new("one", &["linux"], 1)];
    let h = Harness::start("e2e-full", pool, None).await;
    let run = h.enqueue(vec![job("a", None), job("b", None), job("c", None)]);
    let ids = run.job_ids.clone();
    let mut max_seen = 0;
    wait_until_async(
        "all three jobs to complete through a pool of one",
        Duration::from_secs(180),
        || {
            // A runner whose job completed is done even while its Slurm job ends: its slot
            // is free as soon as GitHub reports the job completed.
            let finished: Vec<String> = ids
                .iter()
                .map(|id| h.sim.job(*id).unwrap())
                .filter(|j| j.status == "completed")
                .filter_map(|j| j.runner_name)
                .collect();
            let slurm = h
                .our_slurm_jobs()
                .into_iter()
                .filter(|(_, name, _)| !finished.contains(name))
                .count();
            let regs = h.our_registrations().len();
            max_seen = max_seen.max(slurm);
            let done = finished.len() == ids.len();
            async move {
                if slurm > 1 {
                    return Err(format!("{slurm} Slurm jobs at once"));
                }
                Ok(done && regs <= 1)
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(max_seen, 1);
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(5))
        .await;
    assert_eq!(h.sim.counters().jit_configs_issued, 3);
    h.wait_nothing_left(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sbatch_failing_then_recovering_keeps_the_demand() {
    // While the flag file exists, the real sbatch talks to a controller port nobody
    // listens on, so it fails the way it does when slurmctld is down.
    let work = tempfile::tempdir().unwrap();
    let flag = work.path().join("controller-down");
    std::fs::write(&flag, "").unwrap();
    let broken_conf = work.path().join("slurm.conf");
    let conf = std::fs::read_to_string(cluster().conf()).unwrap();
    let broken: String = conf
        .lines()
        .filter(|l| !l.starts_with("SlurmctldPort"))
        .chain(["SlurmctldPort=9"])
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(&broken_conf, broken).unwrap();
    let wrapper = work.path().join("sbatch");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nif [ -e {flag} ]; then SLURM_CONF={broken} exec sbatch \"$@\"; fi\nexec sbatch \"$@\"\n",
            flag = flag.display(),
            broken = broken_conf.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();

    let h = Harness::start("e2e-sbatch", cpu_pool(), Some(&wrapper)).await;
    let run = h.enqueue(vec![job("build", None)]);
    wait_until_async(
        "an sbatch failure to be reported",
        Duration::from_secs(90),
        || async {
            let status = h.status().await;
            Ok(status["last_sbatch_error"].as_str().is_some())
        },
    )
    .await
    .unwrap();
    let status = h.status().await;
    let error = status["last_sbatch_error"].as_str().unwrap().to_string();
    assert!(error.contains("sbatch"), "{error}");
    assert!(
        !error.contains("--gha-runner=ey"),
        "no credential in errors: {error}"
    );
    let failures =
        dispatcher_support::metric(&h.metrics().await, "gha_dispatcher_sbatch_failures_total");
    assert!(failures.is_some_and(|n| n >= 1.0), "{failures:?}");
    assert_eq!(h.sim.job(run.job_ids[0]).unwrap().status, "queued");

    std::fs::remove_file(&flag).unwrap();
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(120))
        .await;
    assert_eq!(
        h.sim.counters().jit_configs_issued,
        1,
        "the minted runner was retried, not re-minted"
    );
    h.wait_nothing_left(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn github_server_errors_and_rate_limits_are_survived() {
    let h = Harness::start("e2e-ghfaults", cpu_pool(), None).await;
    h.sim.set_faults(Faults {
        server_errors: 3,
        secondary_rate_limit: 2,
        secondary_retry_after_s: 2,
        ..Default::default()
    });
    let run = h.enqueue(vec![job("a", None), job("b", None)]);
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(120))
        .await;
    let api = h.sim.counters().api;
    let errors: u64 = api.values().map(|c| c.errors).sum();
    assert!(errors >= 5, "faults fired: {api:?}");
    h.wait_nothing_left(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn runner_that_never_comes_online_is_cancelled_and_deregistered() {
    // A runner root whose run.sh never connects: the job runs, the runner never shows up.
    let root = cluster().jobs_dir().join("never-online-runner");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\nexec sleep 600\n").unwrap();
    std::fs::set_permissions(
        root.join("run.sh"),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let runner_root = root.display().to_string();
    let pool =
        vec![Pool::new("stuck", &["linux"], 1).job_script_args(&["--runner-root", &runner_root])];
    let h = Harness::start("e2e-stuck", pool, None).await;
    let run = h.enqueue(vec![job("a", None)]);
    wait_until_async(
        "the stuck runner's Slurm job to run",
        Duration::from_secs(60),
        || {
            let jobs = h.our_slurm_jobs();
            async move { Ok(jobs.iter().any(|j| j.2 == "RUNNING")) }
        },
    )
    .await
    .unwrap();
    wait_until_async(
        "the boot deadline to reap it",
        Duration::from_secs(90),
        || async {
            let reaped = dispatcher_support::metric(
                &h.metrics().await,
                "gha_dispatcher_runners_reaped_total{reason=\"boot_deadline\"}",
            );
            Ok(reaped.is_some_and(|n| n >= 1.0))
        },
    )
    .await
    .unwrap();
    // The demand is still there, so a new runner follows; stop the dispatcher and check
    // that the reaped one left nothing behind.
    let status = h.status().await;
    let reaped: Vec<String> = status["runners"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "abandoned")
        .map(|r| r["name"].as_str().unwrap().to_string())
        .collect();
    assert!(!reaped.is_empty(), "{status}");
    wait_until_async(
        "the reaped runner's job and registration to be gone",
        Duration::from_secs(60),
        || {
            let jobs = h.our_slurm_jobs();
            let regs = h.our_registrations();
            let reaped = reaped.clone();
            async move {
                Ok(!jobs.iter().any(|j| reaped.contains(&j.1))
                    && !regs.iter().any(|r| reaped.contains(r)))
            }
        },
    )
    .await
    .unwrap();
    // Each reaped registration was deleted once, not again by the leftover sweep that
    // follows in the same pass (its listing predates the delete). Counters first: a runner
    // is marked abandoned before its DELETE.
    let from = h.status().await["last_full_reconcile_at"]
        .as_i64()
        .unwrap_or(0);
    wait_until_async(
        "the reaping pass to end",
        Duration::from_secs(30),
        || async {
            let last = h.status().await["last_full_reconcile_at"]
                .as_i64()
                .unwrap_or(0);
            Ok(last > from)
        },
    )
    .await
    .unwrap();
    let deletes = h
        .sim
        .counters()
        .calls("DELETE /orgs/{org}/actions/runners/{runner_id}");
    let abandoned = h.status().await["runners"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["state"] == "abandoned")
        .count() as u64;
    assert!(
        deletes <= abandoned,
        "{deletes} DELETE calls for {abandoned} reaped runners"
    );
    h.sim.cancel_run(run.run_id).unwrap();
}

/// GitHub calls so far that cost rate limit (every answer but a 304), by endpoint.
fn charged_calls(sim: &Sim) -> Vec<(String, u64)> {
    sim.counters()
        .api
        .into_iter()
        .map(|(endpoint, c)| (endpoint, c.calls - c.not_modified))
        .filter(|(_, n)| *n > 0)
        .collect()
}

/// A dispatcher with one pool of a single runner slot, whose periodic full pass is 5 minutes
/// away: within a test's deadline, only the prompt paths can free the slot.
async fn one_slot_pool_without_periodic_passes(prefix: &str) -> Harness {
    Harness::start_with(
        prefix,
        vec![Pool::new("one", &["linux"], 1)],
        None,
        dispatcher_support::scaling(300, Some(120)),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_takes_the_next_job_as_soon_as_its_runner_finishes() {
    // The periodic pass is 5 minutes away: only the `completed` webhook (or the squeue
    // check while the pool is full) can free the single slot within the deadline.
    let h = one_slot_pool_without_periodic_passes("e2e-prompt").await;
    let run = h.enqueue(vec![job("a", None), job("b", None), job("c", None)]);
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(60))
        .await;
    assert_eq!(h.sim.counters().jit_configs_issued, 3);
    let runners: std::collections::BTreeSet<String> = run
        .job_ids
        .iter()
        .filter_map(|id| h.sim.job(*id).unwrap().runner_name)
        .collect();
    assert_eq!(
        runners.len(),
        3,
        "one ephemeral runner per job: {runners:?}"
    );
    h.wait_nothing_left(Duration::from_secs(60)).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn jobs_cost_at_most_two_github_calls_each_and_no_runner_deletes() {
    const JOBS: usize = 8;
    // Full passes during and after the run (their clean-up is what is counted), but not
    // so many that polling outweighs the jobs.
    let h = Harness::start_with(
        "e2e-calls",
        cpu_pool(),
        None,
        dispatcher_support::scaling(5, Some(60)),
    )
    .await;
    let jobs = (0..JOBS).map(|i| job(&format!("j{i}"), None)).collect();
    let run = h.enqueue(jobs);
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(120))
        .await;
    h.wait_nothing_left(Duration::from_secs(60)).await;
    // Two more full passes after everything ended: clean-up of finished runners is done.
    for _ in 0..2 {
        let from = h.status().await["last_full_reconcile_at"]
            .as_i64()
            .unwrap_or(0);
        wait_until_async("another full pass", Duration::from_secs(30), || async {
            let last = h.status().await["last_full_reconcile_at"]
                .as_i64()
                .unwrap_or(0);
            Ok(last > from)
        })
        .await
        .unwrap();
    }
    assert_eq!(h.sim.counters().jit_configs_issued, JOBS as u64);
    let charged = charged_calls(&h.sim);
    let total: u64 = charged.iter().map(|(_, n)| n).sum();
    eprintln!("{JOBS} jobs: {total} GitHub calls (304s excluded): {charged:?}");
    let deletes: Vec<_> = charged
        .iter()
        .filter(|(endpoint, _)| endpoint.starts_with("DELETE"))
        .collect();
    assert!(
        deletes.is_empty(),
        "ephemeral runners that ran their job were deleted: {deletes:?}"
    );
    assert!(
        total <= 2 * JOBS as u64,
        "{total} calls for {JOBS} jobs: {charged:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_pool_notices_ended_slurm_jobs_without_webhooks() {
    // Once the queued deliveries are in, every later delivery is lost: no `completed`
    // webhook frees the slot, and the periodic pass is 5 minutes away, so only the squeue
    // check run while the pool is full can start the next runner in time.
    let h = one_slot_pool_without_periodic_passes("e2e-squeue").await;
    let run = h.enqueue(vec![job("a", None), job("b", None), job("c", None)]);
    let ids = run.job_ids.clone();
    wait_until_async("the queued deliveries", Duration::from_secs(30), || {
        let delivered = h
            .sim
            .deliveries()
            .into_iter()
            .filter(|d| d.action.as_deref() == Some("queued") && d.outcome == "delivered")
            .filter(|d| d.job_id.is_some_and(|j| ids.contains(&j)))
            .count();
        async move { Ok(delivered == 3) }
    })
    .await
    .unwrap();
    h.sim.set_faults(Faults {
        drop_deliveries: 10_000,
        ..Default::default()
    });
    h.wait_jobs_succeed(&run.job_ids, Duration::from_secs(60))
        .await;
    assert!(h.sim.counters().deliveries_dropped >= 2);
}
