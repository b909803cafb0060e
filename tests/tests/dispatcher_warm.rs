//! Warm pools on the real cluster: a pool with `min_idle = 2` brings two idle runners online
//! with no job queued; a job runs on one of them and a replacement is submitted; the pool
//! never holds more than `max_runners` Slurm jobs; a warm runner outlives the cluster's
//! `idle_timeout` (30 s in ci/slurm-up's plugstack: the `--warm` flag lifts the idle stop) and
//! is rotated before the pool's 1-minute `time_limit` (no Slurm job ends TIMEOUT); outside
//! `warm_hours` the dispatcher retires every idle runner and nothing is left.
//!
//! The dispatcher runs in-process (as root) against the simulator, like dispatcher_e2e.rs.

mod dispatcher_support;

use std::time::Duration;

use test_support::wait_until_async;

use dispatcher_support::{
    base_config, cluster, get_json, get_text, metric, secrets_dir, slurm_jobs, start_in_process,
    start_sim, SlurmJob,
};
use e2e::dispatcher_config::{Pool, Scaling};
use gha_dispatcher::app::Running;
use github_sim::model::{JobSpec, WorkflowSpec};
use github_sim::Sim;

const PREFIX: &str = "e2e-warm";
const MAX_RUNNERS: usize = 3;
/// The cluster's plugstack `idle_timeout` (ci/lib/plugin-fixtures.sh) plus its stop grace.
const CLUSTER_IDLE_STOP_SECS: u64 = 30 + 3;
/// The pool's Slurm time limit ("1": one minute).
const TIME_LIMIT_SECS: u64 = 60;

struct Warm {
    sim: Sim,
    dispatcher: Option<Running>,
    dir: tempfile::TempDir,
    url: String,
}

impl Warm {
    async fn start(sim: Sim, dir: tempfile::TempDir, hours: Option<&str>) -> Warm {
        let mut w = Warm {
            sim,
            dispatcher: None,
            dir,
            url: String::new(),
        };
        w.launch(hours).await;
        w
    }

    /// A dispatcher with the warm pool (warm during `hours` when given) on this simulator
    /// and database; one already running is shut down first.
    async fn launch(&mut self, hours: Option<&str>) {
        if let Some(running) = self.dispatcher.take() {
            running.shutdown().await;
        }
        let mut config = base_config(self.dir.path(), &self.sim.url(), PREFIX);
        config.scaling = Scaling {
            reconcile_interval_secs: Some(2),
            boot_deadline_secs: Some(30),
            submit_concurrency: None,
            sbatch_backoff_max_secs: Some(2),
        };
        config.pools = vec![Pool::new("warm", &["linux", "x64"], MAX_RUNNERS as u32)
            .time_limit("1")
            .warm(2, hours)];
        let (running, url) = start_in_process(&config, &self.sim).await;
        self.url = url;
        self.dispatcher = Some(running);
    }

    async fn warm_status(&self) -> serde_json::Value {
        get_json(&format!("{}/status", self.url)).await["warm_pools"]["warm"].clone()
    }

    /// Our runners registered and online in the simulator, idle or busy.
    fn online(&self) -> Vec<(String, bool)> {
        self.sim
            .runners()
            .into_iter()
            .filter(|r| r.name.starts_with(PREFIX) && r.status == "online")
            .map(|r| (r.name, r.busy))
            .collect()
    }
}

impl Drop for Warm {
    fn drop(&mut self) {
        // Leave nothing behind on the shared cluster even when the test failed.
        for job in active(&slurm_jobs(PREFIX)) {
            let _ = cluster()
                .command("scancel")
                .arg(job.id.to_string())
                .status();
        }
    }
}

/// Jobs holding (or about to hold) an allocation.
fn active(jobs: &[SlurmJob]) -> Vec<SlurmJob> {
    jobs.iter()
        .filter(|j| matches!(j.state.as_str(), "PENDING" | "CONFIGURING" | "RUNNING"))
        .cloned()
        .collect()
}

/// Our Slurm jobs, failing the test when the pool ever holds more than `max_runners`, or
/// any job of ours ended at its time limit.
fn checked_jobs() -> Result<Vec<SlurmJob>, String> {
    let jobs = slurm_jobs(PREFIX);
    let live = active(&jobs);
    assert!(live.len() <= MAX_RUNNERS, "above max_runners: {live:?}");
    let timed_out: Vec<&SlurmJob> = jobs.iter().filter(|j| j.state == "TIMEOUT").collect();
    assert!(
        timed_out.is_empty(),
        "a runner hit its time limit: {timed_out:?}"
    );
    Ok(jobs)
}

/// Seconds Slurm says job `id` has run (squeue's `%M`: [days-][hours:]minutes:seconds).
fn run_secs(id: u64) -> u64 {
    let out = cluster()
        .command("squeue")
        .args([
            "--noheader",
            "--states=all",
            "--format=%M",
            "-j",
            &id.to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (days, clock) = text.split_once('-').unwrap_or(("0", &text));
    let secs = clock
        .split(':')
        .fold(0, |acc, part| acc * 60 + part.parse::<u64>().unwrap_or(0));
    days.parse::<u64>().unwrap_or(0) * 86_400 + secs
}

/// The Slurm job of runner `name`.
fn job_of(name: &str) -> SlurmJob {
    slurm_jobs(PREFIX)
        .into_iter()
        .find(|j| j.name == name)
        .unwrap_or_else(|| panic!("no Slurm job named {name}"))
}

async fn wait_for(what: &str, secs: u64, check: impl Fn() -> Result<bool, String>) {
    wait_until_async(what, Duration::from_secs(secs), || {
        let result = checked_jobs().and_then(|_| check());
        async move { result }
    })
    .await
    .unwrap();
}

/// Two idle runners online with nothing queued, each with its own Slurm job.
async fn two_idle(w: &Warm, what: &str, secs: u64) -> Vec<String> {
    wait_for(what, secs, || {
        let idle: Vec<_> = w.online().into_iter().filter(|(_, busy)| !busy).collect();
        Ok(idle.len() == 2)
    })
    .await;
    let status = w.warm_status().await;
    assert_eq!(status["target"], 2, "{status}");
    w.online().into_iter().map(|(name, _)| name).collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_warm_pool_keeps_two_idle_runners_rotates_them_and_retires_them_outside_its_hours() {
    let mut w = Warm::start(start_sim().await, secrets_dir(), None).await;

    // 1. Two idle runners come online with no job queued.
    let warm = two_idle(&w, "two warm runners online", 90).await;
    assert!(w.sim.jobs().is_empty());

    // 2. A job runs on one of them; a replacement is submitted and comes online.
    let run = w
        .sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: "ci".into(),
            jobs: vec![JobSpec {
                command: Some("true".into()),
                ..JobSpec::new("build", &["self-hosted", "linux"])
            }],
            delay_ms: 0,
        })
        .unwrap();
    let job_id = run.job_ids[0];
    wait_for("the job done", 60, || {
        let job = w.sim.job(job_id).unwrap();
        Ok(job.status == "completed")
    })
    .await;
    let job = w.sim.job(job_id).unwrap();
    assert_eq!(job.conclusion.as_deref(), Some("success"), "{job:?}");
    let ran_on = job.runner_name.clone().unwrap_or_default();
    assert!(
        warm.contains(&ran_on),
        "ran on {ran_on}, not a warm runner {warm:?}"
    );
    let after_job = two_idle(&w, "a replacement online beside the other warm runner", 60).await;
    let kept = warm.iter().find(|n| **n != ran_on).unwrap().clone();
    assert!(after_job.contains(&kept), "{after_job:?}");
    assert!(
        after_job.iter().any(|n| !warm.contains(n)),
        "no replacement: {after_job:?}"
    );

    // 3. The warm runner that stayed idle outlives the cluster's idle stop...
    let kept_job = job_of(&kept).id;
    wait_for(
        "the idle warm runner past the cluster's idle_timeout",
        60,
        || {
            let online = w.online().iter().any(|(n, busy)| *n == kept && !busy);
            let running = job_of(&kept).state == "RUNNING";
            if !(online && running) {
                return Err(format!(
                    "{kept} stopped while idle (online {online}, running {running})"
                ));
            }
            Ok(run_secs(kept_job) > CLUSTER_IDLE_STOP_SECS + 5)
        },
    )
    .await;
    // ...and is rotated before its time limit: registration removed, job ended, replaced.
    wait_for("the idle warm runner rotated", 60, || {
        Ok(active(&slurm_jobs(PREFIX)).iter().all(|j| j.id != kept_job))
    })
    .await;
    let lived = run_secs(kept_job);
    assert!(
        lived < TIME_LIMIT_SECS,
        "rotated after {lived} s, limit {TIME_LIMIT_SECS} s"
    );
    assert!(!w.online().iter().any(|(n, _)| *n == kept));
    two_idle(&w, "two warm runners again after the rotation", 60).await;
    let metrics = get_text(&format!("{}/metrics", w.url)).await;
    let rotated = r#"gha_dispatcher_runners_reaped_total{reason="warm_rotated"}"#;
    assert!(metric(&metrics, rotated).unwrap_or(0.0) >= 1.0, "{metrics}");
    let idle_cost = r#"gha_dispatcher_warm_idle_runner_seconds_total{pool="warm"}"#;
    assert!(
        metric(&metrics, idle_cost).unwrap_or(0.0) > 2.0 * 30.0,
        "{metrics}"
    );

    // 4. Outside its hours (a day other than today) the pool keeps none: all retired.
    let today = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        / 86_400
        + 3)
        % 7;
    let other_day = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"][(today as usize + 3) % 7];
    w.launch(Some(&format!("{other_day} 00:00-24:00"))).await;
    wait_for("every warm runner retired", 60, || {
        let jobs = active(&slurm_jobs(PREFIX));
        let online = w.online();
        if jobs.is_empty() && online.is_empty() {
            Ok(true)
        } else {
            Err(format!("slurm jobs {jobs:?}, online {online:?}"))
        }
    })
    .await;
    assert_eq!(w.warm_status().await["target"], 0);
    assert!(w.sim.runners().iter().all(|r| !r.name.starts_with(PREFIX)));
    checked_jobs().unwrap();
}
