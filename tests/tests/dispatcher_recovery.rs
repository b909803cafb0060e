//! Restart recovery from each state a crash can leave a runner in, set up exactly:
//! - `minting`, but GitHub had already registered the runner (crash after generate-jitconfig);
//! - `submitting`, registered, no Slurm job (crash before sbatch): credential lost;
//! - `submitting`, and the Slurm job exists (crash after sbatch, before the database write).
//!
//! On start, the first two registrations are deleted, the third job (running, its runner
//! online and taking one of the two queued jobs) is adopted, and exactly one new runner is
//! made for the other job.

mod dispatcher_support;

use std::sync::Arc;
use std::time::Duration;

use dispatcher_support::{cluster, config_with, secrets_dir, start_sim, APP_ID, SECRET};
use e2e::dispatcher_config::Pool;
use e2e::Cluster;
use gha_dispatcher::clients::github::{Credentials, GithubClient};
use gha_dispatcher::config::Config;
use gha_dispatcher::model::{RunnerState, Scope};
use gha_dispatcher::store::{self as db, Db};
use gha_dispatcher::telemetry::Metrics;
use github_sim::model::{JobSpec, TimelineKind, WebhookTarget, WorkflowSpec};
use github_sim::{test_keys, Sim};
use test_support::wait_until_async;

const PREFIX: &str = "e2e-recover";

/// A simulator, and a dispatcher config (not yet started) using `prefix`.
async fn setup(prefix: &str) -> (&'static Cluster, Sim, tempfile::TempDir, Config) {
    let cluster = cluster();
    let sim = start_sim().await;
    let dir = secrets_dir();
    let config_text = config_with(
        dir.path(),
        &sim.url(),
        prefix,
        dispatcher_support::scaling(2, None),
        vec![Pool::new("cpu", &["linux"], 5)],
    )
    .to_toml()
    .unwrap();
    let config = Config::parse(&config_text).unwrap();
    (cluster, sim, dir, config)
}

/// Sends the in-process dispatchers' log (debug) to `dir/dispatcher.log` and returns its
/// path. The subscriber is the process's: the other test of this binary, run beside this one,
/// logs there too (its runners are named `e2e-busy-…`).
fn log_to(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("dispatcher.log");
    if let Ok(file) = std::fs::File::create(&path) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("gha_dispatcher=debug")
            .with_ansi(false)
            .with_writer(std::sync::Mutex::new(file))
            .try_init();
    }
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn restart_recovers_every_interrupted_runner_state() {
    let (cluster, sim, dir, config) = setup(PREFIX).await;
    let log = log_to(dir.path());
    let jobs_dir = cluster.jobs_dir();
    let script = cluster.dir().join("libexec/gha-runner-job");

    // Two queued jobs, whose webhooks nobody received.
    let run = sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: "ci".into(),
            jobs: vec![
                JobSpec::new("a", &["self-hosted", "linux"]),
                JobSpec::new("b", &["self-hosted", "linux"]),
            ],
            delay_ms: 0,
        })
        .unwrap();

    // The states a crash leaves behind.
    let gh = GithubClient::with_ca(
        &sim.url(),
        Credentials::app_from_pem(APP_ID, test_keys::APP_PRIVATE_KEY_PEM.as_bytes(), None).unwrap(),
        Arc::new(Metrics::new()),
        Some(e2e::sim_world::test_ca().unwrap().cert_pem().as_bytes()),
    )
    .unwrap();
    let org = Scope::Org("acme".into());
    let labels = config.pools[0].labels.clone();
    // Unique, as the dispatcher's own names are: slurmctld remembers ended jobs for an hour,
    // and recovery adopts the first job submitted by a name.
    let unique = e2e::sim_world::random_hex(8).unwrap();
    let (minting, lost, adopt) = (
        format!("{PREFIX}-cpu-minting-{unique}"),
        format!("{PREFIX}-cpu-lost-{unique}"),
        format!("{PREFIX}-cpu-adopt-{unique}"),
    );
    let mut minted = Vec::new();
    for name in [&minting, &lost, &adopt] {
        minted.push(
            gh.generate_jitconfig(&org, name, &labels, 1)
                .await
                .ok()
                .unwrap(),
        );
    }
    let state = Db::open(&config.db_path).unwrap();
    state
        .with(|c| {
            db::insert_minting_runner(c, &minting, "cpu", "org:acme", None)?;
            db::insert_minting_runner(c, &lost, "cpu", "org:acme", None)?;
            db::set_runner_registered(c, &lost, minted[1].runner_id)?;
            db::insert_minting_runner(c, &adopt, "cpu", "org:acme", None)?;
            db::set_runner_registered(c, &adopt, minted[2].runner_id)
        })
        .unwrap();
    drop(state);
    let submitted = cluster
        .command("sbatch")
        .args([
            "--parsable",
            &format!("--job-name={adopt}"),
            &format!("--uid={}", cluster.test_user()),
        ])
        .arg(format!("--gid={}", cluster.test_user()))
        .arg(format!("--output={}/%x-%j.out", jobs_dir.display()))
        .arg(format!("--chdir={}", jobs_dir.display()))
        .arg(format!("--gha-runner={}", minted[2].encoded_jit_config))
        .arg(&script)
        .output()
        .unwrap();
    assert!(
        submitted.status.success(),
        "{}",
        String::from_utf8_lossy(&submitted.stderr)
    );
    let adopted_job: u64 = String::from_utf8_lossy(&submitted.stdout)
        .trim()
        .split(';')
        .next()
        .unwrap()
        .parse()
        .unwrap();

    // The adopted job is healthy before the restart: a job that dies at launch (the node
    // still settling after the previous test's node loss, say) would end before the first
    // pass, and its replacement would make the count below wrong for a reason that is not
    // the dispatcher's. Failing here names that reason. Its runner then takes a job at once.
    let output = jobs_dir.join(format!("{adopt}-{adopted_job}.out"));
    let online = wait_until_async(
        "the adopted job's runner to come online",
        Duration::from_secs(60),
        || {
            // From the timeline: the runner may be done with its job (and gone) by the next look.
            let online = sim.timeline().iter().any(|event| {
                event.what == TimelineKind::RunnerOnline
                    && event.runner.as_deref() == Some(adopt.as_str())
            });
            std::future::ready(Ok::<bool, String>(online))
        },
    )
    .await;
    if let Err(e) = online {
        panic!(
            "{e}\nSlurm's record: {}\njob output ({}):\n{}",
            cluster.job_record(adopted_job as u32).unwrap_or_default(),
            output.display(),
            std::fs::read_to_string(&output).unwrap_or_default()
        );
    }

    // Restart.
    let secrets = config.load_secrets().unwrap();
    let db_path = config.db_path.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gha_dispatcher::app::start(config, secrets, Some(listener))
        .await
        .unwrap();
    sim.set_webhook(WebhookTarget {
        url: format!("http://{}/webhook", running.local_addr),
        secret: SECRET.into(),
    });

    let ids = run.job_ids.clone();
    wait_until_async("both jobs to complete", Duration::from_secs(120), || {
        std::future::ready::<Result<bool, String>>({
            let open: Vec<_> = ids
                .iter()
                .filter(|id| sim.job(**id).unwrap().status != "completed")
                .collect();
            if open.is_empty() {
                Ok(true)
            } else {
                Err(format!("open: {open:?}"))
            }
        })
    })
    .await
    .unwrap();
    wait_until_async(
        "no registration and no Slurm job left",
        Duration::from_secs(90),
        || {
            std::future::ready::<Result<bool, String>>({
                let regs: Vec<String> = sim
                    .runners()
                    .into_iter()
                    .map(|r| r.name)
                    .filter(|n| n.starts_with(PREFIX))
                    .collect();
                let out = cluster
                    .command("squeue")
                    .args(["--noheader", "--all", "--format=%j"])
                    .output()
                    .unwrap();
                let slurm: Vec<String> = String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .filter(|l| l.starts_with(PREFIX))
                    .map(str::to_string)
                    .collect();
                if regs.is_empty() && slurm.is_empty() {
                    Ok(true)
                } else {
                    Err(format!("{regs:?} {slurm:?}"))
                }
            })
        },
    )
    .await
    .unwrap();
    let state = Db::open(&db_path).unwrap();
    let read_rows = || {
        state
            .with(|c| {
                Ok((
                    db::runner(c, &minting)?.unwrap(),
                    db::runner(c, &lost)?.unwrap(),
                    db::runner(c, &adopt)?.unwrap(),
                ))
            })
            .unwrap()
    };
    wait_until_async(
        "the adopted runner's row to be finished",
        Duration::from_secs(30),
        || {
            std::future::ready::<Result<bool, String>>(Ok(
                read_rows().2.state == RunnerState::Finished
            ))
        },
    )
    .await
    .unwrap();
    running.shutdown().await;
    let rows = read_rows();
    assert_eq!(rows.0.state, RunnerState::Abandoned);
    assert_eq!(rows.1.state, RunnerState::Abandoned);
    assert_eq!(
        rows.2.slurm_job_id,
        Some(adopted_job),
        "the Slurm job was adopted"
    );
    assert_eq!(rows.2.state, RunnerState::Finished);
    let served_by: Vec<String> = ids
        .iter()
        .map(|id| sim.job(*id).unwrap().runner_name.unwrap())
        .collect();
    // 3 before the restart, and one new runner for the job the adopted one did not take.
    assert_eq!(
        sim.counters().jit_configs_issued,
        4,
        "jobs served by {served_by:?}; the simulator's timeline: {:?}\nthe dispatcher's log:\n{}",
        sim.timeline(),
        test_support::logs::tail(&log, 80)
    );
    assert!(served_by.contains(&adopt), "{served_by:?}");
}

/// A runner whose Slurm job the database sees gone while GitHub says it is running a job
/// is not deleted (that would fail the job): the registration stays, the job succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn a_busy_runner_is_never_deleted() {
    let (cluster, sim, _dir, config) = setup("e2e-busy").await;
    let name = "e2e-busy-cpu-stale".to_string();
    let gh = GithubClient::with_ca(
        &sim.url(),
        Credentials::app_from_pem(APP_ID, test_keys::APP_PRIVATE_KEY_PEM.as_bytes(), None).unwrap(),
        Arc::new(Metrics::new()),
        Some(e2e::sim_world::test_ca().unwrap().cert_pem().as_bytes()),
    )
    .unwrap();
    let org = Scope::Org("acme".into());
    let minted = gh
        .generate_jitconfig(&org, &name, &config.pools[0].labels, 1)
        .await
        .ok()
        .unwrap();

    // A real Slurm job id that has already ended, recorded as this runner's job.
    let ended = cluster.sbatch(&["--wrap=true"]).unwrap();
    cluster
        .wait_for_end(ended.id, Duration::from_secs(60))
        .unwrap();
    let state = Db::open(&config.db_path).unwrap();
    state
        .with(|c| {
            db::insert_minting_runner(c, &name, "cpu", "org:acme", None)?;
            db::set_runner_registered(c, &name, minted.runner_id)?;
            db::set_runner_submitted(c, &name, u64::from(ended.id))
        })
        .unwrap();

    // The runner itself runs outside Slurm (a private copy of the fake runner) and takes a
    // job that lasts a few seconds.
    let root = tempfile::tempdir().unwrap();
    github_sim::runner_install::install(
        root.path(),
        &cluster.dir().join("runner/bin/Runner.Listener"),
    )
    .unwrap();
    let run = sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: "ci".into(),
            jobs: vec![JobSpec {
                duration_ms: 6000,
                ..JobSpec::new("long", &["self-hosted", "linux"])
            }],
            delay_ms: 0,
        })
        .unwrap();
    let mut runner = std::process::Command::new(root.path().join("run.sh"))
        .arg("--jitconfig")
        .arg(&minted.encoded_jit_config)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let job_id = run.job_ids[0];
    wait_until_async(
        "the runner to take the job",
        Duration::from_secs(30),
        || {
            std::future::ready::<Result<bool, String>>(Ok(sim
                .job(job_id)
                .unwrap()
                .runner_name
                .as_deref()
                == Some(name.as_str())))
        },
    )
    .await
    .unwrap();

    let secrets = config.load_secrets().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gha_dispatcher::app::start(config, secrets, Some(listener))
        .await
        .unwrap();
    sim.set_webhook(WebhookTarget {
        url: format!("http://{}/webhook", running.local_addr),
        secret: SECRET.into(),
    });
    let read_row = || state.with(|c| db::runner(c, &name)).unwrap().unwrap();
    wait_until_async(
        "the dispatcher to see the Slurm job gone",
        Duration::from_secs(30),
        || {
            std::future::ready::<Result<bool, String>>(
                Ok(read_row().state == RunnerState::Finished),
            )
        },
    )
    .await
    .unwrap();
    wait_until_async("the job to finish", Duration::from_secs(60), || {
        std::future::ready::<Result<bool, String>>({
            Ok(sim.job(job_id).unwrap().status == "completed")
        })
    })
    .await
    .unwrap();
    assert_eq!(
        sim.job(job_id).unwrap().conclusion.as_deref(),
        Some("success")
    );
    let deletes = sim
        .counters()
        .api
        .get("DELETE /orgs/{org}/actions/runners/{runner_id}")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        deletes.calls - deletes.errors,
        0,
        "a busy runner was deleted: {deletes:?}"
    );
    assert!(runner.wait().unwrap().success());
    running.shutdown().await;
}
