//! The dispatcher's load on slurmctld, on the real cluster with the real plugin and
//! `gha-dispatcher serve` in ticket mode: its Slurm queries name only its own jobs (by id) or
//! its runner user, never the whole queue; and a runner job's end reaches it through the
//! node's epilog notice (`gha-redeem --job-ended`, MUNGE-signed by root), with the Slurm poll
//! an hour away and no `completed` webhook (none is configured), so nothing else could have
//! told it.
//!
//! Its `squeue` and `scontrol` are recording wrappers around the real ones (`slurm.squeue`,
//! `slurm.scontrol`): every argv is kept. Holds the cluster's dispatcher slot.

mod dispatcher_support;

use std::path::Path;
use std::time::Duration;

use dispatcher_support::{base_config, cluster, secrets_dir, start_sim, Daemon};
use e2e::dispatcher_config::Pool;
use e2e::DispatcherSlot;
use github_sim::model::{JobSpec, WorkflowSpec};
use test_support::wait_until_async;

const WAIT: Duration = Duration::from_secs(120);

/// A wrapper named `program` in `dir` that appends its argv to `<program>.argv`, then runs
/// the real one.
fn recording(dir: &Path, program: &str) -> std::path::PathBuf {
    let real = cluster()
        .command("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .unwrap();
    let real = String::from_utf8(real.stdout).unwrap().trim().to_string();
    assert!(!real.is_empty(), "no {program} on PATH");
    let wrapper = dir.join(program);
    let log = dir.join(format!("{program}.argv"));
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$*\" >> '{}'\nexec {real} \"$@\"\n",
            log.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    wrapper
}

fn recorded(dir: &Path, program: &str) -> Vec<String> {
    std::fs::read_to_string(dir.join(format!("{program}.argv")))
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

async fn metric(url: &str, line_start: &str) -> f64 {
    let text = dispatcher_support::get_text(&format!("{url}/metrics")).await;
    text.lines()
        .find_map(|l| l.strip_prefix(line_start))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_runner_end_arrives_by_epilog_notice_and_queries_name_only_our_jobs() {
    let cluster = cluster();
    let slot = DispatcherSlot::acquire(cluster).unwrap();
    drop(slot.listen().await.unwrap());
    let prefix = format!("e2e-load{:04x}", std::process::id() & 0xffff);
    let sim = start_sim().await;
    // Queued before the dispatcher starts, and no webhook target: its first pass reads the
    // job from GitHub, and no `completed` event will ever tell it that the job is done.
    let run = sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: "load".into(),
            jobs: vec![JobSpec::new("one", &["self-hosted", "linux"])],
            delay_ms: 0,
        })
        .unwrap();
    let dir = secrets_dir();
    let mut config = base_config(dir.path(), &sim.url(), &prefix).with_tickets(cluster);
    config.server.listen = slot.addr().to_string();
    // The poll fallback an hour away: only the first (start-up) pass asks Slurm on a timer.
    config.scaling = dispatcher_support::scaling(3600, Some(600));
    config.pools = vec![Pool::new("cpu", &["linux"], 2).time_limit("10:00")];
    config.slurm.squeue = Some(recording(dir.path(), "squeue"));
    config.slurm.scontrol = Some(recording(dir.path(), "scontrol"));
    let path = dir.path().join("dispatcher.toml");
    std::fs::write(&path, config.to_toml().unwrap()).unwrap();
    let log = dir.path().join("dispatcher.log");
    let _daemon = Daemon::spawn(&path, &log);
    let url = format!("http://{}", slot.addr());
    let show_log = || std::fs::read_to_string(&log).unwrap_or_default();

    wait_until_async("the GitHub job to succeed", WAIT, || async {
        match sim.job(run.job_ids[0]).map(|j| (j.status, j.conclusion)) {
            Some((status, Some(conclusion))) if status == "completed" => {
                assert_eq!(conclusion, "success", "{}", show_log());
                Ok(true)
            }
            other => Err(format!("{other:?}")),
        }
    })
    .await
    .unwrap();
    // The runner's Slurm job ends after its job; the epilog tells the dispatcher.
    let finished = "gha_dispatcher_job_end_notices_total{result=\"finished\"} ";
    wait_until_async(
        "the epilog's end notice to finish the runner",
        WAIT,
        || async {
            let n = metric(&url, finished).await;
            if n >= 1.0 {
                Ok(true)
            } else {
                Err(show_log())
            }
        },
    )
    .await
    .unwrap();
    assert!(
        show_log().contains("the node's epilog said"),
        "{}",
        show_log()
    );

    // Every query named one of our jobs or our runner user; none read the whole queue.
    let ours: Vec<u64> = dispatcher_support::slurm_jobs(&prefix)
        .iter()
        .map(|j| j.id)
        .collect();
    assert!(!ours.is_empty(), "no runner job of ours in Slurm");
    let uid = nix::unistd::User::from_name(cluster.test_user())
        .unwrap()
        .unwrap()
        .uid;
    let squeues = recorded(dir.path(), "squeue");
    assert!(
        !squeues.is_empty(),
        "the redemption asks squeue about its job"
    );
    for argv in &squeues {
        let by_id = ours
            .iter()
            .any(|id| argv.starts_with(&format!("--jobs={id} ")));
        let by_user = argv.starts_with(&format!("--user={uid} --name={prefix}-"));
        assert!(by_id || by_user, "squeue {argv}");
        assert!(
            !argv.contains("--all") && !argv.contains("--json"),
            "squeue {argv}"
        );
    }
    for argv in recorded(dir.path(), "scontrol") {
        let own_job = ours.iter().any(|id| argv.contains(&format!("JobId={id} ")));
        assert!(
            argv.starts_with("show node -o ") || own_job,
            "scontrol {argv}"
        );
    }
    // With no `completed` event the dispatcher still counts the job as demand and may have
    // submitted a second runner; it is not left to idle on the shared cluster.
    for id in ours {
        let _ = cluster.scancel(id as u32);
    }
    cluster.assert_node_healthy().unwrap();
}
