//! The "done when": a 70-job workflow (1 setup job, 68 parallel jobs that need it, 1 final
//! job that needs them all) runs end to end on fake runners started by a trivial in-test
//! autoscaler that reacts to `workflow_job` webhooks and mints JIT configs over REST.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use github_sim::JobSpec;
use test_support::wait_until_async;

const MAX_RUNNERS: usize = 12;

/// A per-runner root like the lead's Slurm job makes: its own run.sh, `bin/` shared by symlink.
fn runner_root(shared: &Path, i: usize) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("runner-{i}-"))
        .tempdir()
        .unwrap();
    std::fs::copy(shared.join("run.sh"), dir.path().join("run.sh")).unwrap();
    std::os::unix::fs::symlink(shared.join("bin"), dir.path().join("bin")).unwrap();
    dir
}

/// The in-test autoscaler's state: demand seen in `queued` webhooks and the runners alive.
#[derive(Default)]
struct Autoscaler {
    seen_queued: HashSet<u64>,
    demand: usize,
    alive: Vec<(tokio::process::Child, tempfile::TempDir)>,
    started: usize,
    exit_codes: Vec<i32>,
}

impl Autoscaler {
    /// One look: count new demand, reap exited runners, start runners up to MAX_RUNNERS.
    async fn step(&mut self, w: &World, hooks: &Receiver, token: &str, install: &Path) {
        for (action, job_id) in hooks.actions() {
            if action == "queued" && self.seen_queued.insert(job_id) {
                self.demand += 1;
            }
        }
        let mut still = Vec::new();
        for (mut child, dir) in self.alive.drain(..) {
            match child.try_wait().unwrap() {
                Some(status) => self.exit_codes.push(status.code().unwrap_or(-1)),
                None => still.push((child, dir)),
            }
        }
        self.alive = still;
        while self.demand > 0 && self.alive.len() < MAX_RUNNERS {
            self.demand -= 1;
            self.started += 1;
            let name = format!("e2e-{}", self.started);
            let (_, cfg) = w.jit(token, &name, &["self-hosted", "linux", "x64"]).await;
            let dir = runner_root(install, self.started);
            let child = tokio::process::Command::new(dir.path().join("run.sh"))
                .arg("--jitconfig")
                .arg(&cfg)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .kill_on_drop(true)
                .spawn()
                .unwrap();
            self.alive.push((child, dir));
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seventy_jobs_run_end_to_end_with_a_trivial_autoscaler() {
    let w = world().await;
    let hooks = receiver(&w.sim).await;
    let token = w.installation_token().await;
    let install = RunnerRoot::new();

    let mut jobs = vec![JobSpec {
        ..job(
            "setup",
            &["self-hosted", "linux"],
            Some("test \"$GITHUB_ACTIONS\" = true"),
        )
    }];
    for i in 1..=68 {
        jobs.push(JobSpec {
            needs: vec!["setup".into()],
            ..job(
                &format!("test-{i}"),
                &["self-hosted", "Linux", "X64"],
                Some("echo \"$GITHUB_JOB on $RUNNER_NAME\""),
            )
        });
    }
    jobs.push(JobSpec {
        needs: (1..=68).map(|i| format!("test-{i}")).collect(),
        ..job("report", &["self-hosted"], Some("true"))
    });
    let run = w.sim.enqueue_workflow(workflow(jobs)).unwrap();
    assert_eq!(run.job_ids.len(), 70);

    // The autoscaler: one runner per queued job seen in a webhook, at most MAX_RUNNERS alive.
    let scaler = tokio::sync::Mutex::new(Autoscaler::default());
    wait_until_async(
        "the run to complete and every runner to exit",
        Duration::from_secs(120),
        || async {
            let mut s = scaler.lock().await;
            s.step(&w, &hooks, &token, install.dir.path()).await;
            let done = w
                .sim
                .snapshot()
                .runs
                .iter()
                .any(|r| r.id == run.run_id && r.status == "completed");
            if done && s.alive.is_empty() {
                Ok(true)
            } else {
                Err(format!("{} started, {:?}", s.started, w.sim.counters()))
            }
        },
    )
    .await
    .unwrap();
    let Autoscaler {
        started,
        exit_codes,
        ..
    } = scaler.into_inner();

    let s = w.sim.snapshot();
    let r = s.runs.iter().find(|r| r.id == run.run_id).unwrap();
    assert_eq!(r.conclusion.as_deref(), Some("success"));
    assert!(run
        .job_ids
        .iter()
        .all(|id| s.job(*id).unwrap().conclusion.as_deref() == Some("success")));
    assert_eq!(started, 70, "one runner per queued job");
    assert_eq!(exit_codes.len(), 70);
    assert!(exit_codes.iter().all(|c| *c == 0), "{exit_codes:?}");
    assert!(
        s.runners.is_empty(),
        "ephemeral runners unregister after their job: {:?}",
        s.runners
    );
    let c = w.sim.counters();
    assert_eq!(c.jit_configs_issued, 70);
    assert_eq!(c.runner_sessions, 70);
    assert!(
        w.sim
            .wait_for_deliveries(Duration::from_secs(10), |d| d.len() == 210
                && d.iter().all(|d| d.outcome == "delivered"))
            .await
    );
    // The setup job ran before every test job, and report after all of them.
    let setup_done = s.job(run.job_ids[0]).unwrap().completed_at.clone().unwrap();
    let report_start = s.job(run.job_ids[69]).unwrap().started_at.clone().unwrap();
    for id in &run.job_ids[1..69] {
        let j = s.job(*id).unwrap();
        assert!(j.started_at.as_deref().unwrap() >= setup_done.as_str());
        assert!(j.completed_at.as_deref().unwrap() <= report_start.as_str());
    }
}
