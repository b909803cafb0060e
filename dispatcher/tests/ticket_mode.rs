//! The control loop in ticket mode, with fake `sbatch`/`squeue` and the GitHub simulator:
//! a queued job gets a runner whose sbatch carries `--gha-runner=ticket:<43>` and whose row
//! holds only the ticket's hash; nothing is minted before redemption; a job that ends without
//! redeeming is counted, costs no GitHub registration call, and the demand is met again; a
//! ticket that expires while its job is still pending has that job cancelled and replaced.

use std::path::Path;
use std::time::{Duration, Instant};

use gha_dispatcher::config::Config;
use gha_dispatcher::db::{self, Db, RunnerState};
use gha_dispatcher::tickets::{ticket_hash, TICKET_LEN};
use github_sim::model::{JobSpec, WorkflowSpec};
use github_sim::{Sim, SimConfig};

fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).unwrap();
}

fn config(d: &Path, api_url: &str) -> Config {
    std::fs::write(d.join("secret"), "webhook-secret").unwrap();
    std::fs::write(d.join("token"), "ghp_test_token").unwrap();
    // sbatch records its arguments, one call per line; squeue shows the last job as pending
    // until the test creates `ended`.
    script(
        &d.join("sbatch"),
        &format!(
            "echo \"$*\" >> '{d}/sbatch.args'\necho 101",
            d = d.display()
        ),
    );
    script(
        &d.join("squeue"),
        &format!(
            "[ -f '{d}/sbatch.args' ] || exit 0\n[ -f '{d}/ended' ] && exit 0\n\
             name=$(tail -n 1 '{d}/sbatch.args' | tr ' ' '\\n' | sed -n 's/^--job-name=//p')\n\
             echo \"101|$name|PENDING|c\"",
            d = d.display()
        ),
    );
    // scancel records its arguments and ends the (only) job.
    script(
        &d.join("scancel"),
        &format!(
            "echo \"$*\" >> '{d}/scancel.args'\ntouch '{d}/ended'",
            d = d.display()
        ),
    );
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
webhook_secret_file = "{d}/secret"
[state]
db_path = "{d}/state.db"
[github]
api_url = "{api_url}"
token_file = "{d}/token"
targets = [{{ org = "acme", repositories = ["acme/widgets"] }}]
[slurm]
job_script = "/nonexistent/job"
sbatch = "{d}/sbatch"
squeue = "{d}/squeue"
scancel = "{d}/scancel"
[scaling]
reconcile_interval_secs = 1
[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 1
"#,
        d = d.display()
    );
    Config::parse(&text).unwrap()
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The simulator with one queued job, and the dispatcher (ticket mode, fake Slurm) in a
/// temporary directory.
async fn start() -> (Sim, tempfile::TempDir, gha_dispatcher::app::Running) {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.add_org("acme");
    sim.add_repo("acme", "widgets");
    sim.add_pat("ghp_test_token", &["admin:org", "repo"]);
    sim.enqueue_workflow(WorkflowSpec {
        repo: "acme/widgets".into(),
        name: "ci".into(),
        jobs: vec![JobSpec::new("build", &["self-hosted", "linux"])],
        delay_ms: 0,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &sim.url());
    assert_eq!(cfg.db_path, dir.path().join("state.db"));
    let secrets = cfg.load_secrets().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gha_dispatcher::app::start(cfg, secrets, Some(listener))
        .await
        .unwrap();
    (sim, dir, running)
}

#[tokio::test(flavor = "multi_thread")]
async fn ticket_runners_are_submitted_without_minting() {
    let (sim, dir, running) = start().await;
    let d = dir.path();
    let db_path = d.join("state.db");
    let url = format!("http://{}", running.local_addr);
    let args_file = d.join("sbatch.args");
    let calls = || {
        std::fs::read_to_string(&args_file)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    wait_for("sbatch", || !calls().is_empty()).await;

    let first = calls()[0].clone();
    let option = first
        .split(' ')
        .find_map(|a| a.strip_prefix("--gha-runner="))
        .expect("a --gha-runner option");
    let ticket = option.strip_prefix("ticket:").expect("a ticket reference");
    assert_eq!(ticket.len(), TICKET_LEN, "{option}");
    let name = first
        .split(' ')
        .find_map(|a| a.strip_prefix("--job-name="))
        .unwrap()
        .to_string();
    let db = Db::open(&db_path).unwrap();
    let n = name.clone();
    let row = db.with(move |c| db::runner(c, &n)).unwrap().unwrap();
    assert_eq!(
        row.ticket_hash.as_deref(),
        Some(ticket_hash(ticket).as_str())
    );
    assert_eq!(
        (row.state, row.slurm_job_id),
        (RunnerState::Submitted, Some(101))
    );
    assert_eq!(row.github_runner_id, None);
    assert!(row.ticket_expires_at.unwrap() > db::now_secs() + 86_000);
    assert!(
        sim.issued_jit_configs().is_empty(),
        "minted before redemption"
    );
    // The database and /status never hold the ticket itself.
    let status: serde_json::Value = reqwest::get(format!("{url}/status"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!status.to_string().contains(ticket));
    let runner = status["runners"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == name.as_str())
        .unwrap()
        .clone();
    assert_eq!(runner["ticket"], "waiting");
    let raw = std::fs::read(&db_path).unwrap();
    assert!(!raw.windows(ticket.len()).any(|w| w == ticket.as_bytes()));

    // The job ends without redeeming: counted, finished, no registration call, and the
    // still-queued job gets a new runner.
    std::fs::write(d.join("ended"), "").unwrap();
    let n = name.clone();
    wait_for("the runner to finish", || {
        let n = n.clone();
        db.with(move |c| db::runner(c, &n))
            .unwrap()
            .is_some_and(|r| r.state == RunnerState::Finished)
    })
    .await;
    let metrics = reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gha_dispatcher_tickets_unredeemed_total 1"),
        "{metrics}"
    );
    std::fs::remove_file(d.join("ended")).unwrap();
    wait_for("a second runner", || calls().len() >= 2).await;
    let counters = format!("{:?}", sim.counters());
    assert!(!counters.contains("DELETE"), "{counters}");
    assert!(!counters.contains("generate-jitconfig"), "{counters}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pending_job_whose_ticket_expired_is_cancelled_and_replaced() {
    let (_sim, dir, running) = start().await;
    let d = dir.path();
    let db_path = d.join("state.db");
    let read_lines = |file: &str| {
        std::fs::read_to_string(d.join(file))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    wait_for("sbatch", || !read_lines("sbatch.args").is_empty()).await;
    let name = read_lines("sbatch.args")[0]
        .split(' ')
        .find_map(|a| a.strip_prefix("--job-name="))
        .unwrap()
        .to_string();
    let db = Db::open(&db_path).unwrap();
    let n = name.clone();
    wait_for("the pending state to be recorded", || {
        let n = n.clone();
        db.with(move |c| db::runner(c, &n))
            .unwrap()
            .is_some_and(|r| r.slurm_state.as_deref() == Some("PENDING"))
    })
    .await;
    assert!(
        read_lines("scancel.args").is_empty(),
        "cancelled before expiry"
    );

    // The ticket's lifetime runs out while the job still waits.
    let n = name.clone();
    db.with(move |c| {
        c.execute(
            "UPDATE runners SET ticket_expires_at = ?1 WHERE name = ?2",
            rusqlite::params![db::now_secs() - 1, n],
        )
        .map(drop)
    })
    .unwrap();
    wait_for("scancel of the pending job", || {
        read_lines("scancel.args")
            .iter()
            .any(|l| l == "--state=PENDING 101")
    })
    .await;
    let n = name.clone();
    wait_for("the runner to finish", || {
        let n = n.clone();
        db.with(move |c| db::runner(c, &n))
            .unwrap()
            .is_some_and(|r| r.state == RunnerState::Finished)
    })
    .await;
    std::fs::remove_file(d.join("ended")).unwrap();
    wait_for("a runner with a fresh ticket", || {
        read_lines("sbatch.args").len() >= 2
    })
    .await;
    let second = read_lines("sbatch.args")[1].clone();
    assert!(!second.contains(&name), "{second}");
    running.shutdown().await;
}
