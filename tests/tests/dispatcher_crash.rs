//! `kill -9` of the dispatcher in the middle of a burst, then a restart on the same state
//! database: every job runs exactly once, and no Slurm job or runner registration is left.
//!
//! The dispatcher runs as the built `gha-dispatcher serve` binary (so it can really be
//! SIGKILLed), against the in-process GitHub simulator and the real Slurm with the plugin.
//! `GHA_E2E_BURST` sets the burst size (default 200).

mod dispatcher_support;

use std::collections::BTreeMap;
use std::time::Duration;

use dispatcher_support::{
    base_config, cluster, free_port, healthy, markers_dir, secrets_dir, start_sim, Daemon, SECRET,
};
use e2e::dispatcher_config::{Pool, Scaling};
use e2e::Cluster;
use github_sim::model::{JobSpec, WebhookTarget, WorkflowSpec};
use test_support::wait_until_async;

const PREFIX: &str = "e2e-crash";

fn our_slurm_jobs(cluster: &Cluster) -> Vec<String> {
    let out = cluster
        .command("squeue")
        .args(["--noheader", "--all", "--format=%i|%j|%T"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&format!("|{PREFIX}-")))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn kill_9_during_a_burst_then_restart_runs_every_job_exactly_once() {
    let burst: usize = std::env::var("GHA_E2E_BURST")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let cluster = cluster();
    let sim = start_sim().await;
    let dir = secrets_dir();
    let d = dir.path();
    // Where each job records that it ran, writable by the job user.
    let markers = markers_dir("gha-crash-markers");
    let ran = markers.path().join("ran");
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let config = d.join("config.toml");
    std::fs::write(&config, {
        let mut c = base_config(d, &sim.url(), PREFIX);
        c.server.listen = format!("127.0.0.1:{port}");
        c.scaling = Scaling {
            reconcile_interval_secs: Some(2),
            boot_deadline_secs: Some(120),
            sbatch_backoff_max_secs: Some(2),
            submit_concurrency: Some(4),
        };
        c.pools = vec![Pool::new("cpu", &["linux"], 40).time_limit("10:00")];
        c.to_toml().unwrap()
    })
    .unwrap();
    let log = d.join("dispatcher.log");
    let mut daemon = Daemon::spawn(&config, &log);
    healthy(&url).await;
    sim.set_webhook(WebhookTarget {
        url: format!("{url}/webhook"),
        secret: SECRET.into(),
    });

    let jobs: Vec<JobSpec> = (0..burst)
        .map(|i| JobSpec {
            command: Some(format!("echo \"$GITHUB_JOB\" >> {}", ran.display())),
            ..JobSpec::new(format!("job-{i}"), &["self-hosted", "linux"])
        })
        .collect();
    let run = sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: "burst".into(),
            jobs,
            delay_ms: 0,
        })
        .unwrap();

    // Kill three times while the burst is under way (at 20 %, 45 % and 70 % of the jobs
    // done), restarting on the same database each time; deliveries sent while the
    // dispatcher is down fail, so reconciliation must make up for them.
    let mut kills = Vec::new();
    for percent in [20, 45, 70] {
        let kill_at = burst * percent / 100;
        wait_until_async("the burst to progress", Duration::from_secs(300), || {
            std::future::ready::<Result<bool, String>>({
                let done = sim
                    .jobs()
                    .iter()
                    .filter(|j| j.status == "completed")
                    .count();
                Ok(done >= kill_at)
            })
        })
        .await
        .unwrap();
        daemon.kill9();
        let done_at_kill = sim
            .jobs()
            .iter()
            .filter(|j| j.status == "completed")
            .count();
        assert!(
            done_at_kill < burst,
            "the burst finished before the kill; use a bigger GHA_E2E_BURST"
        );
        kills.push(done_at_kill);
        daemon = Daemon::spawn(&config, &log);
        healthy(&url).await;
    }

    let ids = run.job_ids.clone();
    wait_until_async(
        "every job of the burst to complete",
        Duration::from_secs(900),
        || {
            std::future::ready::<Result<bool, String>>({
                let jobs = sim.jobs();
                let open: Vec<u64> = jobs
                    .iter()
                    .filter(|j| ids.contains(&j.id) && j.status != "completed")
                    .map(|j| j.id)
                    .collect();
                if open.is_empty() {
                    Ok(true)
                } else {
                    Err(format!(
                        "{} not completed, e.g. {:?}",
                        open.len(),
                        &open[..open.len().min(5)]
                    ))
                }
            })
        },
    )
    .await
    .unwrap();
    for job in sim.jobs().iter().filter(|j| ids.contains(&j.id)) {
        assert_eq!(job.conclusion.as_deref(), Some("success"), "{job:?}");
    }

    // Exactly once: every job's command ran once.
    let text = std::fs::read_to_string(&ran).unwrap();
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for line in text.lines() {
        *counts.entry(line.trim()).or_default() += 1;
    }
    assert_eq!(counts.len(), burst, "jobs that ran: {}", counts.len());
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "jobs that ran more than once: {twice:?}");

    // Nothing left: idle surplus runners time out in the job script, then are deregistered.
    wait_until_async(
        "no Slurm job and no registration left over",
        Duration::from_secs(180),
        || {
            std::future::ready::<Result<bool, String>>({
                let slurm = our_slurm_jobs(cluster);
                let regs: Vec<String> = sim
                    .runners()
                    .into_iter()
                    .map(|r| r.name)
                    .filter(|n| n.starts_with(PREFIX))
                    .collect();
                if slurm.is_empty() && regs.is_empty() {
                    Ok(true)
                } else {
                    Err(format!("slurm {slurm:?} registrations {regs:?}"))
                }
            })
        },
    )
    .await
    .unwrap();
    let issued = sim.counters().jit_configs_issued as usize;
    // Runners minted but not submitted at a kill (at most submit_concurrency = 4 each time)
    // are deregistered and replaced; nothing else is minted twice.
    assert!(
        issued >= burst && issued <= burst + 3 * 4,
        "JIT configs issued: {issued} for {burst} jobs"
    );
    eprintln!("burst {burst}: killed with {kills:?} jobs done; JIT configs issued: {issued}");
    // Latency numbers of the last dispatcher process, for the record.
    let metrics = dispatcher_support::get_text(&format!("{url}/metrics")).await;
    for line in metrics.lines().filter(|l| {
        (l.contains("queue_to_submit_seconds_") || l.contains("queue_to_runner_start_seconds_"))
            && (l.contains("_sum") || l.contains("_count"))
    }) {
        eprintln!("  {line}");
    }
    daemon.kill9();

    // No duplicate runner: every Slurm job submitted served exactly one GitHub job.
    let runners_used: std::collections::BTreeSet<String> = sim
        .jobs()
        .into_iter()
        .filter_map(|j| j.runner_name)
        .collect();
    assert_eq!(runners_used.len(), burst);
    let state = gha_dispatcher::store::Db::open(&d.join("state.db")).unwrap();
    let submitted = state
        .with(|c| {
            let mut stmt = c.prepare(
                "SELECT name, state, slurm_job_id, slurm_state, ever_online, busy, assigned_job_id, last_error, created_at
                 FROM runners WHERE slurm_job_id IS NOT NULL",
            )?;
            let rows = stmt.query_map([], |r| {
                Ok(format!(
                    "{} state={} slurm={:?}/{:?} ever_online={} busy={} job={:?} err={:?} created={}",
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, Option<i64>>(2)?,
                    r.get::<_, Option<String>>(3)?,
                    r.get::<_, bool>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, Option<i64>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, i64>(8)?,
                ))
            })?;
            rows.collect::<Result<Vec<_>, _>>()
        })
        .unwrap();
    let unused: Vec<&String> = submitted
        .iter()
        .filter(|line| {
            !runners_used
                .iter()
                .any(|n| line.starts_with(&format!("{n} ")))
        })
        .collect();
    assert!(
        submitted.len() == burst && unused.is_empty(),
        "{} Slurm jobs submitted for {burst} GitHub jobs; without a job: {unused:#?}",
        submitted.len()
    );

    // No secret reached the log: webhook secret, App key, installation tokens, JIT configs
    // (base64 of a JSON map starting with `{".credentials"` or `{".runner"`).
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(
        log_text.contains("runner submitted"),
        "the log is the dispatcher's"
    );
    for needle in [
        SECRET,
        "PRIVATE KEY",
        "ghs_",
        "--gha-runner=",
        "eyIuY3JlZGVudGlhbHMi",
        "eyIucnVubmVyIj",
    ] {
        assert!(
            !log_text.contains(needle),
            "the dispatcher log contains {needle:?}"
        );
    }
}
