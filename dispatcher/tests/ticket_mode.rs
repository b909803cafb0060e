//! The control loop in ticket mode, with fake `sbatch`/`squeue` and the GitHub simulator:
//! a queued job gets a runner whose sbatch carries `--gha-runner=ticket:<43>` and whose row
//! holds only the ticket's hash; nothing is minted before redemption; a job that ends without
//! redeeming is counted, costs no GitHub registration call, and the demand is met again; a
//! ticket that expires while its job is still pending has that job cancelled and replaced.

use std::path::Path;
use std::time::Duration;

use gha_dispatcher::clients::slurm::RUNNER_OPTION_ENV;
use gha_dispatcher::model::{now_secs, RunnerState, SlurmState};
use gha_dispatcher::redeem::ticket_hash;
use gha_dispatcher::store::{self as db, Db};
use github_sim::model::{JobSpec, WorkflowSpec};
use github_sim::Sim;
use redeem_contract::ISSUED_TICKET_LEN;
use support::script;

mod support;

/// Fake Slurm commands in `d`: sbatch records its arguments, one call per line, and the
/// `--gha-runner` value it found in its environment (`sbatch.env`); squeue shows the last
/// job as pending (as `nobody`, the configured user) until the test creates `ended`;
/// scancel records its arguments and ends the (only) job.
fn fake_slurm(d: &Path) {
    script(
        &d.join("sbatch"),
        &format!(
            "echo \"$*\" >> '{d}/sbatch.args'\n\
             echo \"${env}\" >> '{d}/sbatch.env'\necho 101",
            d = d.display(),
            env = RUNNER_OPTION_ENV,
        ),
    );
    let uid = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let squeue = r#"if [ -f '@DIR@/sbatch.args' ] && [ ! -f '@DIR@/ended' ]; then
  name=$(tail -n 1 '@DIR@/sbatch.args' | tr ' ' '\n' | sed -n 's/^--job-name=//p')
  printf '101|@UID@|PENDING|n/a||%s\n' "$name"; exit 0
fi
case "$1" in --jobs=*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;; esac
"#;
    script(
        &d.join("squeue"),
        &squeue
            .replace("@DIR@", &d.display().to_string())
            .replace("@UID@", &uid.to_string()),
    );
    script(
        &d.join("scancel"),
        &format!(
            "echo \"$*\" >> '{d}/scancel.args'\ntouch '{d}/ended'",
            d = d.display()
        ),
    );
}

async fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    support::wait_until(what, Duration::from_secs(20), cond).await
}

/// The simulator with one queued job, and the dispatcher (ticket mode, fake Slurm) in a
/// temporary directory.
async fn start() -> (Sim, tempfile::TempDir, gha_dispatcher::app::Running) {
    let sim = support::sim().await;
    sim.enqueue_workflow(WorkflowSpec {
        repo: "acme/widgets".into(),
        name: "ci".into(),
        jobs: vec![JobSpec::new("build", &["self-hosted", "linux"])],
        delay_ms: 0,
    })
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fake_slurm(d);
    let cfg = support::ConfigBuilder::new(d)
        .widgets_on_fake_slurm(&sim)
        .set("scaling", "reconcile_interval_secs", "1")
        .build();
    assert_eq!(cfg.db_path, dir.path().join("state.db"));
    let running = support::start(cfg).await;
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
    // The ticket is on no command line (anyone may read /proc/PID/cmdline): sbatch takes
    // it from its environment.
    assert!(
        !first.contains("gha-runner") && !first.contains("ticket:"),
        "{first}"
    );
    let env_values = std::fs::read_to_string(d.join("sbatch.env")).unwrap();
    let option = env_values.lines().next().unwrap();
    assert!(!first.contains(option), "{first}");
    let ticket = option.strip_prefix("ticket:").expect("a ticket reference");
    assert_eq!(ticket.len(), ISSUED_TICKET_LEN, "{option}");
    let name = first
        .split(' ')
        .find_map(|a| a.strip_prefix("--job-name="))
        .unwrap()
        .to_string();
    let db = Db::open(&db_path).unwrap();
    let read_row = || {
        let n = name.clone();
        db.with(move |c| db::runner(c, &n)).unwrap().unwrap()
    };
    // sbatch has answered; the dispatcher records its job id right after.
    wait_for("the submission recorded", || {
        read_row().state == RunnerState::Submitted
    })
    .await;
    let row = read_row();
    assert_eq!(
        row.ticket_hash.as_deref(),
        Some(ticket_hash(ticket).as_str())
    );
    assert_eq!(
        (row.state, row.slurm_job_id),
        (RunnerState::Submitted, Some(101))
    );
    assert_eq!(row.github_runner_id, None);
    assert!(row.ticket_expires_at.unwrap() > now_secs() + 86_000);
    assert!(
        sim.issued_jit_configs().is_empty(),
        "minted before redemption"
    );
    // The database and /status never hold the ticket itself.
    let status = support::admin_status(&url).await;
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
            .is_some_and(|r| r.slurm_state == Some(SlurmState::Pending))
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
            rusqlite::params![now_secs() - 1, n],
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
