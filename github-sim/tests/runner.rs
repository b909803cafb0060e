//! The fake runner against the simulator: output lines, environment, exit codes, signals,
//! label matching, JIT expiry, `needs`, cancellation.

mod common;

use std::time::Duration;

use common::*;
use github_sim::SimConfig;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

const T: Duration = Duration::from_secs(20);

fn signal(child: &tokio::process::Child, sig: Signal) {
    kill(Pid::from_raw(child.id().unwrap() as i32), sig).unwrap();
}

fn assert_in_order(out: &str, needles: &[&str]) {
    let mut at = 0;
    for n in needles {
        match out[at..].find(n) {
            Some(i) => at += i + n.len(),
            None => panic!("{n:?} missing (in order) in:\n{out}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runs_one_job_with_the_real_lines_and_environment() {
    let w = world().await;
    let hooks = receiver(&w.sim).await;
    let token = w.installation_token().await;
    let cmd = "echo \"ENV $GITHUB_ACTIONS $CI $GITHUB_JOB $GITHUB_RUN_ID $GITHUB_REPOSITORY $RUNNER_NAME\"; echo \"PWD $(pwd)\"; echo \"WS $GITHUB_WORKSPACE\"; echo \"TMP $RUNNER_TEMP\"; echo to-stderr >&2";
    let run = w.enqueue_one("build", &["self-hosted", "linux"], Some(cmd));
    let (runner_id, cfg) = w.jit(&token, "rn-1", &["self-hosted", "linux"]).await;
    let root = RunnerRoot::new();
    let (code, out, err) = finish(root.spawn(&cfg), T).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert_in_order(
        &out,
        &[
            "√ Connected to GitHub",
            "Current runner version: '",
            "Z: Listening for Jobs",
            "Z: Running job: build",
            "ENV true true build",
            "Z: Job build completed with result: Succeeded",
        ],
    );
    assert!(
        out.contains(&format!(
            "ENV true true build {} {ORG}/{REPO} rn-1",
            run.run_id
        )),
        "{out}"
    );
    let ws = root.dir.path().join("_work").join(REPO).join(REPO);
    assert!(out.contains(&format!("PWD {}", ws.display())), "{out}");
    assert!(out.contains(&format!("WS {}", ws.display())), "{out}");
    assert!(
        out.contains(&format!(
            "TMP {}",
            root.dir.path().join("_work/_temp").display()
        )),
        "{out}"
    );
    assert!(err.contains("to-stderr"));
    let j = w.sim.job(run.job_ids[0]).unwrap();
    assert_eq!(
        (j.status.as_str(), j.conclusion.as_deref()),
        ("completed", Some("success"))
    );
    assert_eq!(j.runner_id, Some(runner_id));
    assert_eq!(j.runner_name.as_deref(), Some("rn-1"));
    // Ephemeral: the registration is gone after its job.
    assert!(w.sim.runners().iter().all(|r| r.id != runner_id));
    // Webhooks: queued, in_progress, completed, in that order, with the runner filled in.
    assert!(hooks.wait_count(3, T).await);
    let got = hooks.all();
    let actions: Vec<String> = got
        .iter()
        .map(|r| r.json()["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["queued", "in_progress", "completed"]);
    let done = got[2].json();
    assert_eq!(done["workflow_job"]["conclusion"], "success");
    assert_eq!(done["workflow_job"]["runner_name"], "rn-1");
    assert_eq!(done["installation"]["id"], w.installation_id);
    for r in &got {
        assert_eq!(r.header("x-github-event"), "workflow_job");
        assert_eq!(
            r.header("x-github-hook-installation-target-type"),
            "integration"
        );
        assert_eq!(
            r.header("x-github-hook-installation-target-id"),
            APP_ID.to_string()
        );
        assert!(r.header("user-agent").starts_with("GitHub-Hookshot/"));
        assert!(github_sim::signature::verify_sha256(
            SECRET.as_bytes(),
            &r.body,
            &r.header("x-hub-signature-256")
        ));
        assert!(r.header("x-hub-signature").starts_with("sha1="));
        assert_eq!(r.header("x-github-delivery").len(), 36);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_step_fails_the_job() {
    let w = world().await;
    let token = w.installation_token().await;
    let run = w.enqueue_one("bad", &["self-hosted"], Some("exit 3"));
    let (_, cfg) = w.jit(&token, "rn-f", &["self-hosted"]).await;
    let (code, out, _) = finish(RunnerRoot::new().spawn(&cfg), T).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("Job bad completed with result: Failed"),
        "{out}"
    );
    assert_eq!(
        w.sim.job(run.job_ids[0]).unwrap().conclusion.as_deref(),
        Some("failure")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_in_the_environment_is_taken_and_hidden_from_steps() {
    let w = world().await;
    let token = w.installation_token().await;
    let run = w.enqueue_one(
        "env",
        &["self-hosted"],
        Some("echo \"INPUTS [$(env | grep -c ^ACTIONS_RUNNER_INPUT_)]\""),
    );
    let (_, cfg) = w.jit(&token, "rn-env", &["self-hosted"]).await;
    let (code, out, err) = finish(RunnerRoot::new().spawn_with_env_config(&cfg), T).await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("INPUTS [0]"), "{out}");
    assert!(!out.contains(&cfg) && !err.contains(&cfg));
    assert_eq!(
        w.sim.job(run.job_ids[0]).unwrap().conclusion.as_deref(),
        Some("success")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_refused_with_exit_1() {
    let root = RunnerRoot::new();
    for bad in [
        "not base64 !!!",
        "e30=",         /* {} */
        "bm90IGpzb24=", /* not json */
    ] {
        let (code, out, err) = finish(root.spawn(bad), T).await;
        assert_eq!(code, 1, "{bad}: {out} {err}");
        assert!(!err.trim().is_empty());
        assert!(!out.contains("Listening for Jobs"));
    }
    let (code, _, err) = finish(root.spawn(""), T).await;
    assert_eq!(code, 1);
    assert!(err.contains("Not configured"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_while_idle_exits_0() {
    let w = world().await;
    let token = w.installation_token().await;
    let (id, cfg) = w.jit(&token, "rn-idle", &["self-hosted"]).await;
    let root_child = RunnerRoot::new();
    let child = root_child.spawn(&cfg);
    assert!(
        w.sim
            .wait_for(T, |s| s
                .runners
                .iter()
                .any(|r| r.id == id && r.status == "online"))
            .await
    );
    signal(&child, Signal::SIGINT);
    let (code, out, _) = finish(child, T).await;
    assert_eq!(code, 0);
    assert!(out.contains("Exiting..."), "{out}");
    assert!(
        w.sim
            .wait_for(T, |s| s
                .runners
                .iter()
                .any(|r| r.id == id && r.status == "offline"))
            .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_running_fails_the_job_with_the_shutdown_message() {
    let w = world().await;
    let token = w.installation_token().await;
    let run = w.enqueue_one("long", &["self-hosted"], Some("sleep 60"));
    let (_, cfg) = w.jit(&token, "rn-term", &["self-hosted"]).await;
    let root_child = RunnerRoot::new();
    let child = root_child.spawn(&cfg);
    assert!(
        w.sim
            .wait_for(T, |s| s.job(run.job_ids[0]).unwrap().status
                == "in_progress")
            .await
    );
    // The simulator marks the job in progress when it hands it out; the runner has it once
    // it made the job's `_temp`. A signal before that finds it still listening (`Exiting...`):
    // a CI run saw it.
    let temp = root_child.dir.path().join("_work/_temp");
    test_support::wait_until_async("the runner to start the job", T, || {
        std::future::ready(temp.is_dir())
    })
    .await
    .unwrap();
    signal(&child, Signal::SIGTERM);
    let (code, out, _) = finish(child, T).await;
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains("The runner has received a shutdown signal"),
        "{out}"
    );
    assert!(
        out.contains("Job long completed with result: Failed"),
        "{out}"
    );
    let j = w.sim.job(run.job_ids[0]).unwrap();
    assert_eq!(j.conclusion.as_deref(), Some("failure"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_go_to_any_runner_whose_labels_cover_them_case_insensitively() {
    let w = world().await;
    let token = w.installation_token().await;
    let gpu = w.enqueue_one("gpu", &["self-hosted", "GPU"], Some("true"));
    // A runner without the gpu label stays idle.
    let (cpu_id, cpu_cfg) = w.jit(&token, "cpu", &["self-hosted", "linux"]).await;
    let root_cpu = RunnerRoot::new();
    let cpu = root_cpu.spawn(&cpu_cfg);
    assert!(
        w.sim
            .wait_for(T, |s| s
                .runners
                .iter()
                .any(|r| r.id == cpu_id && r.status == "online"))
            .await
    );
    // A runner with more labels, other case, takes it.
    let (_, gpu_cfg) = w
        .jit(&token, "gpu-box", &["Self-Hosted", "gpu", "big"])
        .await;
    let (code, out, _) = finish(RunnerRoot::new().spawn(&gpu_cfg), T).await;
    assert_eq!(code, 0);
    assert!(out.contains("Running job: gpu"));
    assert_eq!(
        w.sim.job(gpu.job_ids[0]).unwrap().runner_name.as_deref(),
        Some("gpu-box")
    );
    assert!(w.sim.runners().iter().any(|r| r.id == cpu_id && !r.busy));
    // Not bound: a second job is taken by the idle cpu runner that was made "for" nothing.
    let second = w.enqueue_one("plain", &["SELF-HOSTED"], Some("true"));
    let (code, out, _) = finish(cpu, T).await;
    assert_eq!(code, 0);
    assert!(out.contains("Running job: plain"));
    assert_eq!(
        w.sim.job(second.job_ids[0]).unwrap().runner_id,
        Some(cpu_id)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_jit_configs_expire() {
    let w = world_with(SimConfig {
        jit_config_ttl: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let token = w.installation_token().await;
    let (id, cfg) = w.jit(&token, "late", &["self-hosted"]).await;
    assert!(
        w.sim
            .wait_for(T, |s| s.runners.iter().all(|r| r.id != id))
            .await
    );
    assert_eq!(w.sim.counters().jit_configs_expired, 1);
    let (code, _, err) = finish(RunnerRoot::new().spawn(&cfg), T).await;
    assert_eq!(code, 1);
    assert!(err.contains("deleted"), "{err}");
    // A config used in time does not expire while connected.
    let (id2, cfg2) = w.jit(&token, "early", &["self-hosted"]).await;
    let root_child = RunnerRoot::new();
    let child = root_child.spawn(&cfg2);
    assert!(
        w.sim
            .wait_for(T, |s| s
                .runners
                .iter()
                .any(|r| r.id == id2 && r.status == "online"))
            .await
    );
    let run = w.enqueue_one("j", &["self-hosted"], Some("true"));
    let (code, _, _) = finish(child, T).await;
    assert_eq!(code, 0);
    assert_eq!(
        w.sim.job(run.job_ids[0]).unwrap().conclusion.as_deref(),
        Some("success")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn needs_wait_for_success_and_failures_skip_dependents() {
    let w = world().await;
    let token = w.installation_token().await;
    let a = job("a", &["self-hosted"], Some("exit 1"));
    let mut b = job("b", &["self-hosted"], Some("true"));
    b.needs = vec!["a".into()];
    let mut c = job("c", &["self-hosted"], Some("true"));
    c.needs = vec!["b".into()];
    let ok1 = job("ok1", &["self-hosted"], Some("true"));
    let mut ok2 = job("ok2", &["self-hosted"], Some("true"));
    ok2.needs = vec!["ok1".into()];
    let run = w
        .sim
        .enqueue_workflow(workflow(vec![a, b, c, ok1, ok2]))
        .unwrap();
    let s = w.sim.snapshot();
    let st = |i: usize| s.job(run.job_ids[i]).unwrap().status.clone();
    assert_eq!(
        [st(0), st(1), st(2), st(3), st(4)],
        ["queued", "pending", "pending", "queued", "pending"]
    );
    for i in 0..3 {
        let (_, cfg) = w.jit(&token, &format!("n-{i}"), &["self-hosted"]).await;
        let (code, _, _) = finish(RunnerRoot::new().spawn(&cfg), T).await;
        assert_eq!(code, 0);
    }
    let s = w.sim.snapshot();
    let concl = |i: usize| {
        s.job(run.job_ids[i])
            .unwrap()
            .conclusion
            .clone()
            .unwrap_or_default()
    };
    assert_eq!(
        [concl(0), concl(1), concl(2), concl(3), concl(4)],
        ["failure", "skipped", "skipped", "success", "success"]
    );
    let r = s.runs.iter().find(|r| r.id == run.run_id).unwrap();
    assert_eq!(
        (r.status.as_str(), r.conclusion.as_deref()),
        ("completed", Some("failure"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_job_root_with_symlinked_bin_uses_its_own_work_folder() {
    let w = world().await;
    let token = w.installation_token().await;
    let shared = RunnerRoot::new();
    let job_root = tempfile::tempdir().unwrap();
    std::fs::copy(shared.run_sh(), job_root.path().join("run.sh")).unwrap();
    std::os::unix::fs::symlink(shared.dir.path().join("bin"), job_root.path().join("bin")).unwrap();
    w.enqueue_one("pwd", &["self-hosted"], Some("pwd"));
    let (_, cfg) = w.jit(&token, "per-job", &["self-hosted"]).await;
    let child = tokio::process::Command::new(job_root.path().join("run.sh"))
        .arg("--jitconfig")
        .arg(&cfg)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let (code, out, _) = finish(child, T).await;
    assert_eq!(code, 0);
    assert!(
        out.contains(&format!(
            "{}/_work/{REPO}/{REPO}",
            job_root.path().display()
        )),
        "{out}"
    );
    assert!(!shared.dir.path().join("_work").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_run_stops_its_running_job() {
    let w = world().await;
    let token = w.installation_token().await;
    let run = w
        .sim
        .enqueue_workflow(workflow(vec![
            job("running", &["self-hosted"], Some("sleep 60")),
            job("waiting", &["self-hosted"], Some("true")),
        ]))
        .unwrap();
    let (_, cfg) = w.jit(&token, "c-1", &["self-hosted"]).await;
    let root_child = RunnerRoot::new();
    let child = root_child.spawn(&cfg);
    assert!(
        w.sim
            .wait_for(T, |s| s.job(run.job_ids[0]).unwrap().status
                == "in_progress")
            .await
    );
    w.sim.cancel_run(run.run_id).unwrap();
    let (code, out, _) = finish(child, T).await;
    assert_eq!(code, 0);
    assert!(
        out.contains("Job running completed with result: Canceled"),
        "{out}"
    );
    let s = w.sim.snapshot();
    assert_eq!(
        s.job(run.job_ids[0]).unwrap().conclusion.as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        s.job(run.job_ids[1]).unwrap().conclusion.as_deref(),
        Some("cancelled")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_that_dies_goes_offline_and_its_job_fails() {
    let w = world_with(SimConfig {
        runner_offline_after: Duration::from_millis(1200), // > the runner's 0.5 s heartbeat
        ..SimConfig::default()
    })
    .await;
    let hooks = receiver(&w.sim).await;
    let token = w.installation_token().await;
    let mut long = job("long", &["self-hosted"], None);
    long.duration_ms = 60_000; // the runner's own sleep: no step process outlives SIGKILL
    let run = w.sim.enqueue_workflow(workflow(vec![long])).unwrap();
    let (busy_id, busy_cfg) = w.jit(&token, "dies-busy", &["self-hosted"]).await;
    let root_busy = RunnerRoot::new();
    let busy = root_busy.spawn(&busy_cfg);
    assert!(
        w.sim
            .wait_for(T, |s| s.job(run.job_ids[0]).unwrap().status
                == "in_progress")
            .await
    );
    let (idle_id, idle_cfg) = w.jit(&token, "dies-idle", &["other"]).await;
    let root_idle = RunnerRoot::new();
    let idle = root_idle.spawn(&idle_cfg);
    assert!(
        w.sim
            .wait_for(T, |s| s
                .runners
                .iter()
                .any(|r| r.id == idle_id && r.status == "online"))
            .await
    );
    // Still online while alive (heartbeats and polls keep it fresh) for longer than the threshold.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let s = w.sim.snapshot();
    assert!(
        s.runners
            .iter()
            .any(|r| r.id == busy_id && r.status == "online" && r.busy),
        "{s:#?}"
    );
    assert!(s
        .runners
        .iter()
        .any(|r| r.id == idle_id && r.status == "online"));
    signal(&busy, Signal::SIGKILL);
    signal(&idle, Signal::SIGKILL);
    assert!(
        w.sim
            .wait_for(T, |s| s.job(run.job_ids[0]).unwrap().conclusion.as_deref()
                == Some("failure"))
            .await
    );
    // With GitHub's words, naming the runner.
    let failed = w.sim.snapshot().job(run.job_ids[0]).unwrap().clone();
    assert_eq!(
        failed.annotation.as_deref(),
        Some(github_sim::lost_communication("dies-busy").as_str()),
        "{failed:?}"
    );
    assert!(
        w.sim
            .wait_for(T, |s| s
                .runners
                .iter()
                .any(|r| r.id == idle_id && r.status == "offline"))
            .await
    );
    assert!(
        w.sim.runners().iter().all(|r| r.id != busy_id),
        "the ephemeral runner is gone"
    );
    assert!(hooks.wait_count(3, T).await);
    assert_eq!(
        hooks.all()[2].json()["workflow_job"]["conclusion"],
        "failure"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_nobody_takes_are_cancelled_after_the_queue_timeout() {
    let w = world_with(SimConfig {
        queue_timeout: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let hooks = receiver(&w.sim).await;
    let run = w.enqueue_one("lonely", &["self-hosted", "nowhere"], None);
    assert!(
        w.sim
            .wait_for(T, |s| s.job(run.job_ids[0]).unwrap().conclusion.as_deref()
                == Some("cancelled"))
            .await
    );
    assert!(hooks.wait_count(2, T).await);
    assert_eq!(
        hooks
            .actions()
            .iter()
            .map(|(a, _)| a.as_str())
            .collect::<Vec<_>>(),
        ["queued", "completed"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_config_twice_is_a_session_conflict_and_a_used_one_is_gone() {
    let w = world().await;
    let token = w.installation_token().await;
    let (id, cfg) = w.jit(&token, "twice", &["self-hosted"]).await;
    let root_first = RunnerRoot::new();
    let first = root_first.spawn(&cfg);
    assert!(
        w.sim
            .wait_for(T, |s| s
                .runners
                .iter()
                .any(|r| r.id == id && r.status == "online"))
            .await
    );
    let (code, _, err) = finish(RunnerRoot::new().spawn(&cfg), T).await;
    assert_eq!(code, 5, "{err}");
    assert!(err.contains("session"), "{err}");
    // The first one runs a job; afterwards the registration is gone and the config is dead.
    w.enqueue_one("once", &["self-hosted"], Some("true"));
    let (code, _, _) = finish(first, T).await;
    assert_eq!(code, 0);
    let (code, _, err) = finish(RunnerRoot::new().spawn(&cfg), T).await;
    assert_eq!(code, 1);
    assert!(err.contains("deleted"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waiting_for_its_environment_runs_only_after_approval() {
    let w = world().await;
    let hooks = receiver(&w.sim).await;
    let token = w.installation_token().await;
    let deploy = github_sim::JobSpec {
        environment: Some("production".into()),
        ..job("deploy", &["self-hosted"], Some("true"))
    };
    let run = w.sim.enqueue_workflow(workflow(vec![deploy])).unwrap();
    let (id, cfg) = w.jit(&token, "env-runner", &["self-hosted"]).await;
    let root = RunnerRoot::new();
    let child = root.spawn(&cfg);
    assert!(
        w.sim
            .wait_for(T, |s| s
                .runners
                .iter()
                .any(|r| r.id == id && r.status == "online"))
            .await
    );
    let s = w.sim.snapshot();
    assert_eq!(s.job(run.job_ids[0]).unwrap().status, "waiting");
    assert_eq!(s.runs[0].status, "waiting");
    assert!(s.runners.iter().any(|r| r.id == id && !r.busy));
    let r = w
        .http
        .post(w.url(&format!("/_sim/jobs/{}/approve", run.job_ids[0])))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let (code, out, _) = finish(child, T).await;
    assert_eq!(code, 0);
    assert!(out.contains("Running job: deploy"));
    assert!(hooks.wait_count(4, T).await);
    let actions: Vec<String> = hooks.actions().into_iter().map(|(a, _)| a).collect();
    assert_eq!(actions, ["waiting", "queued", "in_progress", "completed"]);
    assert!(
        w.sim.approve_job(run.job_ids[0]).is_err(),
        "only a waiting job can be approved"
    );
}
