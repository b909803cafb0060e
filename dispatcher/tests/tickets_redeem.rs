//! `POST /tickets/redeem` over HTTP: the body limit and JSON errors (no munged needed), the
//! node's end notice (`POST /runners/job-ended`: root's alone, never replayed), and the
//! whole redemption against fake `squeue`/`scontrol` and the GitHub simulator, with real MUNGE
//! credentials from the test cluster's munged (`GHA_TEST_MUNGE_SOCKET`, default
//! /tmp/spank-gha-cluster/munge/run/munge.socket, as root: `ci/test` starts it). Without a
//! usable munged that test fails: it is never skipped.

use std::path::Path;
use std::sync::{Arc, Mutex};

use gha_dispatcher::api::{self, AppState};
use gha_dispatcher::clients::github::{Credentials, GithubClient};
use gha_dispatcher::clients::slurm::Slurm;
use gha_dispatcher::config::Config;
use gha_dispatcher::model::{now_secs, JobStatus, JobUpdate, RunnerState, SlurmState};
use gha_dispatcher::redeem::Ticket;
use gha_dispatcher::registrations::Registrations;
use gha_dispatcher::scale_sets::ScaleSets;
use gha_dispatcher::store::{self as db, Db};
use gha_dispatcher::telemetry::{Metrics, Telemetry};
use redeem_contract::{
    JobEndedNotice, RedeemRequest, JOB_ENDED_PATH, MAX_REQUEST_BYTES, REDEEM_PATH,
};
use reqwest::StatusCode;
use serde_json::Value;
use support::{munge, munge_socket, unmunge_payload};

mod support;

fn config(dir: &Path, munge_socket: &Path, api_url: &str) -> Config {
    support::ConfigBuilder::new(dir)
        .set(
            "server",
            "munge_socket",
            &format!("{:?}", munge_socket.display().to_string()),
        )
        .set("github", "api_url", &format!("{api_url:?}"))
        .set_path("slurm", "squeue", "squeue")
        .set_path("slurm", "scontrol", "scontrol")
        .pool("cpu", &["linux"], 4)
        .build()
}

/// `squeue`/`scontrol` that print what the test put in `<name>.out`.
fn fake_slurm(dir: &Path) {
    for name in ["squeue", "scontrol"] {
        support::script(
            &dir.join(name),
            &format!("cat '{}/{name}.out'", dir.display()),
        );
    }
}

struct Server {
    url: String,
    db: Db,
    metrics: Arc<Metrics>,
    http: reqwest::Client,
}

impl Server {
    async fn start(config: Config, token: &str) -> Server {
        let config = Arc::new(config);
        let db = Db::open_in_memory().unwrap();
        let metrics = Arc::new(Metrics::new());
        let github = Arc::new(
            GithubClient::new(
                &config.github.api_url,
                Credentials::Token(token.into()),
                metrics.clone(),
            )
            .unwrap(),
        );
        let shared = Arc::new(Mutex::new(Default::default()));
        let registrations = Registrations::new(
            db.clone(),
            github,
            Telemetry::new(metrics.clone(), shared.clone()),
            ScaleSets::default(),
            config.github.runner_group_id,
        );
        let state = AppState {
            config: config.clone(),
            db: db.clone(),
            webhook_secret: Arc::new(b"secret".to_vec()),
            metrics: metrics.clone(),
            wake: Arc::new(tokio::sync::Notify::new()),
            shared,
            admin_token: None,
            registrations,
            slurm: Slurm::new(config.slurm.clone()),
            scale_sets: ScaleSets::default(),
            console: Default::default(),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, api::router(state)).await });
        Server {
            url,
            db,
            metrics,
            http: reqwest::Client::new(),
        }
    }

    async fn redeem(&self, body: impl Into<reqwest::Body>) -> (StatusCode, String) {
        self.post(REDEEM_PATH, body).await
    }

    async fn post(&self, path: &str, body: impl Into<reqwest::Body>) -> (StatusCode, String) {
        let resp = self
            .http
            .post(format!("{}{path}", self.url))
            .header("Content-Type", "text/plain")
            .body(body)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.text().await.unwrap())
    }

    /// The refusal's status and error code (the body must be the JSON error).
    async fn refused(&self, body: impl Into<reqwest::Body>) -> (u16, String) {
        self.refused_at(REDEEM_PATH, body).await
    }

    async fn refused_at(&self, path: &str, body: impl Into<reqwest::Body>) -> (u16, String) {
        let (status, text) = self.post(path, body).await;
        let json: Value = serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}"));
        assert!(json["message"].is_string(), "{json}");
        (status.as_u16(), json["error"].as_str().unwrap_or("").into())
    }
}

#[tokio::test]
async fn oversized_and_malformed_bodies_get_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    fake_slurm(dir.path());
    let server = Server::start(
        config(
            dir.path(),
            Path::new("/nonexistent/munge.socket"),
            "http://127.0.0.1:9",
        ),
        "unused",
    )
    .await;
    let big = "M".repeat(MAX_REQUEST_BYTES + 1);
    assert_eq!(server.refused(big).await, (413, "too_large".into()));
    assert_eq!(
        server.refused("hello").await,
        (403, "bad_credential".into())
    );
    assert_eq!(server.refused("").await, (403, "bad_credential".into()));
    assert_eq!(
        server.refused(vec![0xff, 0xfe]).await,
        (403, "bad_credential".into())
    );
    // Shaped like a credential, but munged cannot be reached: nothing is known about it.
    assert_eq!(
        server.refused("MUNGE:AAAA:").await,
        (503, "munge_unavailable".into())
    );
    let metrics = server.metrics.render();
    for needle in [
        "gha_dispatcher_ticket_redemptions_total{result=\"too_large\"} 1",
        "gha_dispatcher_ticket_redemptions_total{result=\"bad_credential\"} 3",
        "gha_dispatcher_ticket_redemptions_total{result=\"munge_unavailable\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
}

fn payload(ticket: &str, job_id: u32) -> String {
    RedeemRequest {
        ticket: ticket.into(),
        job_id,
    }
    .to_json()
}

#[tokio::test]
async fn a_ticket_is_redeemed_once_by_its_running_job_on_its_node() {
    let socket = munge_socket();
    let sim = support::sim().await;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fake_slurm(d);
    let server = Server::start(config(d, &socket, &sim.url()), support::TOKEN).await;

    // Two ticket runners of one pool and placement for one queued job.
    let (first, second) = (Ticket::issue(), Ticket::issue());
    let (first_hash, second_hash) = (first.hash().to_string(), second.hash().to_string());
    let (first, second) = (first.into_secret(), second.into_secret());
    server
        .db
        .with(move |c| {
            db::insert_ticket_runner(
                c,
                "slurm-cpu-1",
                "cpu",
                "org:acme",
                Some(7),
                &first_hash,
                now_secs() + 600,
            )?;
            db::set_runner_submitted(c, "slurm-cpu-1", 42)?;
            db::set_runner_slurm_state(c, "slurm-cpu-1", SlurmState::Running)?;
            db::insert_ticket_runner(
                c,
                "slurm-cpu-2",
                "cpu",
                "org:acme",
                Some(7),
                &second_hash,
                now_secs() + 600,
            )?;
            db::set_runner_submitted(c, "slurm-cpu-2", 43)?;
            db::set_runner_slurm_state(c, "slurm-cpu-2", SlurmState::Running)?;
            db::apply_job_update(
                c,
                &JobUpdate {
                    job_id: 7,
                    run_id: 1,
                    repo: "acme/widgets".into(),
                    labels: vec!["self-hosted".into(), "linux".into()],
                    status: JobStatus::Queued,
                    runner_name: None,
                    workflow: None,
                    created_at: None,
                    started_at: None,
                },
            )?;
            Ok(())
        })
        .unwrap();
    let nobody = nix::unistd::User::from_name("nobody")
        .unwrap()
        .unwrap()
        .uid
        .as_raw();
    let squeue_says = |job: u32, name: &str, state: &str, uid: u32| {
        let out = format!("{job}|{uid}|{state}|vm|vm|{name}\n");
        std::fs::write(d.join("squeue.out"), out).unwrap();
    };
    let slurm_says = |job: u32, name: &str, state: &str, node_addr: &str| {
        squeue_says(job, name, state, nobody);
        std::fs::write(
            d.join("scontrol.out"),
            format!("NodeName=vm Arch=x86_64 NodeAddr={node_addr} NodeHostName={node_addr} Version=22.05\n"),
        )
        .unwrap();
    };

    // Refusals before anything is marked.
    slurm_says(42, "slurm-cpu-1", "RUNNING", "127.0.0.1");
    let cred = |ticket: &str, job: u32| munge(&socket, &payload(ticket, job));
    assert_eq!(
        server.refused(cred("no-such-ticket", 42)).await,
        (404, "unknown_ticket".into())
    );
    assert_eq!(
        server.refused(cred(&first, 43)).await,
        (403, "wrong_job".into())
    );
    assert_eq!(
        server.refused(munge(&socket, "{\"ticket\": 1}")).await,
        (400, "bad_payload".into())
    );
    slurm_says(42, "slurm-cpu-1", "PENDING", "127.0.0.1");
    assert_eq!(
        server.refused(cred(&first, 42)).await,
        (409, "job_not_running".into())
    );
    slurm_says(42, "slurm-cpu-1", "RUNNING", "10.255.255.1");
    assert_eq!(
        server.refused(cred(&first, 42)).await,
        (403, "wrong_host".into())
    );
    // The attack: a job of the right id, but another user's (here root's) is refused...
    slurm_says(42, "slurm-cpu-1", "RUNNING", "127.0.0.1");
    squeue_says(42, "slurm-cpu-1", "RUNNING", 0);
    assert_eq!(
        server.refused(cred(&first, 42)).await,
        (403, "wrong_job".into())
    );
    // ...and so is a job merely named like a runner whose sbatch has no job id recorded
    // (a user who saw the ticket submits it in a job of that name, as the runner's user).
    let third = Ticket::issue();
    let third_hash = third.hash().to_string();
    let third = third.into_secret();
    server
        .db
        .with(move |c| {
            db::insert_ticket_runner(
                c,
                "slurm-cpu-3",
                "cpu",
                "org:acme",
                Some(7),
                &third_hash,
                now_secs() + 600,
            )
        })
        .unwrap();
    squeue_says(44, "slurm-cpu-3", "RUNNING", nobody);
    assert_eq!(
        server.refused(cred(&third, 44)).await,
        (403, "wrong_job".into())
    );
    // Not counted unredeemed: crash recovery adopts a live row's job by name, and its end
    // counts it. A row recovery gave up before Slurm had its job (a crash lost the sbatch's
    // answer) has no end to come: its job's refusal counts it, once.
    assert_eq!(server.metrics.tickets_unredeemed.get(), 0);
    server
        .db
        .with(|c| {
            db::set_runner_state(
                c,
                "slurm-cpu-3",
                RunnerState::Abandoned,
                Some("credential lost before sbatch"),
            )
        })
        .unwrap();
    assert_eq!(
        server.refused(cred(&third, 44)).await,
        (403, "wrong_job".into())
    );
    assert_eq!(server.metrics.tickets_unredeemed.get(), 1);

    // The real thing: a sealed JIT config, for root only.
    slurm_says(42, "slurm-cpu-1", "RUNNING", "127.0.0.1");
    let credential = cred(&first, 42);
    let (status, sealed) = server.redeem(credential.clone()).await;
    assert_eq!(status, StatusCode::OK, "{sealed}");
    assert!(sealed.starts_with("MUNGE:"), "{sealed}");
    assert!(!sealed.contains(&first));
    let jit = unmunge_payload(&socket, &sealed);
    assert!(
        !jit.is_empty() && !jit.contains(char::is_whitespace),
        "{jit}"
    );
    let row = server
        .db
        .with(|c| db::runner(c, "slurm-cpu-1"))
        .unwrap()
        .unwrap();
    assert!(row.ticket_redeemed_at.is_some() && row.github_runner_id.is_some());

    // Never twice: the same credential is a replay, a fresh one finds the ticket used.
    assert_eq!(
        server.refused(credential).await,
        (403, "bad_credential".into())
    );
    assert_eq!(
        server.refused(cred(&first, 42)).await,
        (409, "ticket_used".into())
    );

    // One queued job, and the first runner now covers it.
    slurm_says(43, "slurm-cpu-2", "RUNNING", "127.0.0.1");
    assert_eq!(
        server.refused(cred(&second, 43)).await,
        (410, "not_needed".into())
    );
    let metrics = server.metrics.render();
    assert!(
        metrics.contains("gha_dispatcher_ticket_redemptions_total{result=\"ok\"} 1"),
        "{metrics}"
    );
}

/// Two submitted runners whose jobs (42, 43) run.
fn two_running_runners(db: &Db) {
    db.with(|c| {
        for (name, job) in [("slurm-cpu-1", 42), ("slurm-cpu-2", 43)] {
            let hash = Ticket::issue().hash().to_string();
            db::insert_ticket_runner(c, name, "cpu", "org:acme", Some(7), &hash, now_secs() + 600)?;
            db::set_runner_submitted(c, name, job)?;
            db::set_runner_slurm_state(c, name, SlurmState::Running)?;
        }
        Ok(())
    })
    .unwrap();
}

#[tokio::test]
async fn only_roots_fresh_notice_ends_a_runner_job() {
    let socket = munge_socket();
    let dir = tempfile::tempdir().unwrap();
    fake_slurm(dir.path());
    let server = Server::start(config(dir.path(), &socket, "http://127.0.0.1:9"), "unused").await;
    two_running_runners(&server.db);
    let notice = |job: u32| JobEndedNotice { ended_job_id: job }.to_json();
    let state_of = |name: &'static str| {
        let row = server
            .db
            .with(move |c| db::runner(c, name))
            .unwrap()
            .unwrap();
        (row.state.as_str().to_string(), row.slurm_state)
    };
    let running = ("submitted".to_string(), Some(SlurmState::Running));

    // The attack: a cluster user signs a notice for someone's runner with its own credential.
    let forged =
        test_support::munge::run("munge", Some("nobody"), &socket, &[], notice(42).as_bytes())
            .unwrap();
    assert_eq!(
        server.refused_at(JOB_ENDED_PATH, forged).await,
        (403, "not_root".into())
    );
    assert_eq!(state_of("slurm-cpu-1"), running);
    // Root's notice for a job this dispatcher never submitted, or a redemption's payload.
    let stranger = munge(&socket, &notice(99));
    assert_eq!(
        server.refused_at(JOB_ENDED_PATH, stranger).await,
        (403, "wrong_job".into())
    );
    let redemption = munge(&socket, &payload("abc", 42));
    assert_eq!(
        server.refused_at(JOB_ENDED_PATH, redemption).await,
        (400, "bad_payload".into())
    );
    assert_eq!(state_of("slurm-cpu-1"), running);

    // The epilog's notice: the runner is finished, its job seen over (not asked about again).
    let real = munge(&socket, &notice(42));
    let (status, body) = server.post(JOB_ENDED_PATH, real.clone()).await;
    assert_eq!(status, StatusCode::NO_CONTENT, "{body}");
    assert_eq!(
        state_of("slurm-cpu-1"),
        ("finished".to_string(), Some(SlurmState::Completed))
    );
    // Replayed (to end the other runner, or again): MUNGE refuses a credential seen before,
    // and the job id it names is inside what it signed.
    assert_eq!(
        server.refused_at(JOB_ENDED_PATH, real).await,
        (403, "bad_credential".into())
    );
    assert_eq!(state_of("slurm-cpu-2"), running);
    // A fresh notice for a runner already over changes nothing.
    let again = munge(&socket, &notice(42));
    assert_eq!(
        server.post(JOB_ENDED_PATH, again).await.0,
        StatusCode::NO_CONTENT
    );
    let metrics = server.metrics.render();
    for needle in [
        "gha_dispatcher_job_end_notices_total{result=\"not_root\"} 1",
        "gha_dispatcher_job_end_notices_total{result=\"finished\"} 1",
        "gha_dispatcher_job_end_notices_total{result=\"already_final\"} 1",
        "gha_dispatcher_job_end_notices_total{result=\"bad_credential\"} 1",
    ] {
        assert!(metrics.contains(needle), "{needle} missing from\n{metrics}");
    }
}
