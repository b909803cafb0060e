//! Conformance of the simulator's runner scale set protocol against code nobody here wrote:
//! the crates.io client `scaleset` (a Rust port of GitHub's `actions/scaleset`) drives it over
//! HTTPS (the simulator's test CA, GHES layout as the client builds it for a non-github.com
//! host) through bootstrap, runner group, scale set, session, poll, acknowledge, acquire, JIT,
//! a fake runner running the job, session refresh on 401 and close.

mod common;

use std::time::Duration;

use common::{finish, RunnerRoot, ORG, PAT, REPO};
use github_sim::config::Enterprise;
use github_sim::{JobSpec, ScaleSetFaults, Sim, SimConfig, TestCa, WorkflowSpec};
use scaleset::{
    Client, Credentials, ExposeSecret, JitRunnerSetting, MessageId, MessageSession,
    RunnerScaleSetSpec, ScaleSetMessage,
};

const LABEL: &str = "slurm-conformance";

async fn https_sim(ca: &TestCa) -> Sim {
    let sim = Sim::start(SimConfig {
        tls: Some(ca.issue(&github_sim::tls::LOOPBACK_NAMES).unwrap()),
        enterprise: Some(Enterprise {
            host: "127.0.0.1".into(),
            version: "3.18.0".into(),
        }),
        message_poll_timeout: Duration::from_millis(400),
        // Under the client's 60 s refresh margin: every Actions call bootstraps anew.
        actions_admin_token_ttl: Duration::from_secs(30),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.add_repo(ORG, REPO);
    sim.add_pat(PAT, &["admin:org", "repo"]);
    sim
}

fn client(sim: &Sim, ca: &TestCa) -> Client {
    let cert = reqwest::Certificate::from_pem(ca.cert_pem().as_bytes()).unwrap();
    let http = scaleset::http_client_builder()
        .tls_certs_merge([cert])
        .build()
        .unwrap();
    let config_url = format!("https://{}/{ORG}", sim.addr());
    Client::builder(config_url, Credentials::personal_access_token(PAT).unwrap())
        .http_client(http)
        .build()
        .unwrap()
}

/// Polls until a message comes (each poll is a long poll; at most `polls` of them).
async fn next_message(
    session: &MessageSession,
    last: Option<MessageId>,
    polls: usize,
) -> ScaleSetMessage {
    for _ in 0..polls {
        if let Some(m) = session.get_message(last, 4).await.unwrap() {
            return m;
        }
    }
    panic!("no message after {polls} polls");
}

fn enqueue(sim: &Sim) -> u64 {
    let job = JobSpec {
        command: Some("true".into()),
        ..JobSpec::new("build", &[LABEL])
    };
    let run = sim
        .enqueue_workflow(WorkflowSpec {
            repo: format!("{ORG}/{REPO}"),
            name: "ci".into(),
            jobs: vec![job],
            delay_ms: 0,
        })
        .unwrap();
    run.job_ids[0]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_scaleset_crate_runs_a_job_through_the_simulator() {
    let ca = TestCa::new().unwrap();
    let sim = https_sim(&ca).await;
    let client = client(&sim, &ca);

    let group = client
        .get_runner_group_by_name("default")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(group.id.get(), 1);
    assert!(client
        .get_runner_scale_set_by_name(group.id, "slurm")
        .await
        .unwrap()
        .is_none());
    let spec = RunnerScaleSetSpec::new("slurm")
        .runner_group_id(group.id)
        .labels([LABEL, "linux"]);
    let set = client.create_runner_scale_set(&spec).await.unwrap();
    let found = client
        .get_runner_scale_set_by_name(group.id, "slurm")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, set.id);
    assert_eq!(
        client
            .get_runner_scale_set_by_id(set.id)
            .await
            .unwrap()
            .name,
        "slurm"
    );
    assert!(
        client.create_runner_scale_set(&spec).await.is_err(),
        "names are unique in a group"
    );

    let session = client
        .create_message_session(set.id, "conformance")
        .await
        .unwrap();
    let second = client
        .create_message_session(set.id, "intruder")
        .await
        .unwrap_err();
    assert!(second.is_conflict(), "{second}");
    assert!(session.info().statistics.is_some());
    assert!(
        session.get_message(None, 4).await.unwrap().is_none(),
        "nothing queued yet"
    );

    let job_id = enqueue(&sim);
    let offer = next_message(&session, None, 5).await;
    let available: Vec<_> = offer.jobs_available().cloned().collect();
    assert_eq!(available.len(), 1);
    assert_eq!(available[0].job.request_labels, vec![LABEL.to_string()]);
    assert_eq!(available[0].job.repository_name, REPO);
    assert_eq!(offer.statistics.unwrap().total_available_jobs, 1);
    session.delete_message(offer.id).await.unwrap();
    let request = available[0].job.runner_request_id;
    assert_ne!(
        request.get() as u64,
        job_id,
        "runner request ids are their own"
    );
    assert_eq!(
        session.acquire_jobs(&[request]).await.unwrap(),
        vec![request]
    );

    let assigned = next_message(&session, Some(offer.id), 5).await;
    assert_eq!(assigned.jobs_assigned().count(), 1);
    assert_eq!(assigned.statistics.unwrap().total_assigned_jobs, 1);
    session.delete_message(assigned.id).await.unwrap();

    let jit = client
        .generate_jit_config(set.id, &JitRunnerSetting::new("ss-runner-1"))
        .await
        .unwrap();
    let again = client
        .generate_jit_config(set.id, &JitRunnerSetting::new("ss-runner-1"))
        .await
        .unwrap_err();
    assert!(again.is_runner_exists(), "{again}");
    let runner = jit.runner.clone().unwrap();
    assert_eq!(runner.runner_scale_set_id, set.id);
    assert_eq!(
        client
            .get_runner_by_name("ss-runner-1")
            .await
            .unwrap()
            .unwrap()
            .id,
        runner.id
    );

    let root = RunnerRoot::new();
    let child = root.spawn(jit.encoded_jit_config.expose_secret());
    let (code, out, err) = finish(child, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "runner: {out}\n{err}");

    // The queue token expires: the client refreshes the session (PATCH) and polls again.
    sim.set_scaleset_faults(ScaleSetFaults {
        expire_queue_tokens: 1,
        ..ScaleSetFaults::default()
    });
    let mut last = assigned.id;
    let (mut started, mut completed) = (Vec::new(), Vec::new());
    while completed.is_empty() {
        let m = next_message(&session, Some(last), 5).await;
        started.extend(m.jobs_started().cloned());
        completed.extend(m.jobs_completed().cloned());
        session.delete_message(m.id).await.unwrap();
        last = m.id;
    }
    assert_eq!(started.len(), 1);
    assert_eq!(started[0].runner_name, "ss-runner-1");
    assert_eq!(completed[0].result, "succeeded");
    assert_eq!(completed[0].runner_name, "ss-runner-1");

    session.close().await.unwrap();
    let counters = sim.counters();
    let s = &counters.scaleset;
    assert_eq!(s.sessions_refreshed, 1);
    assert_eq!(
        (s.sessions_created, s.sessions_deleted, s.sessions_active),
        (1, 1, 0)
    );
    assert_eq!(s.session_conflicts, 1);
    assert!(s.admin_tokens_issued > 1, "the admin token was refreshed");
    assert_eq!(counters.job_runs[&job_id].assignments, 1);
    assert_eq!(counters.job_runs[&job_id].runner_names, vec!["ss-runner-1"]);
    let job = sim.job(job_id).unwrap();
    assert_eq!(job.conclusion.as_deref(), Some("success"));
    assert_eq!(job.runner_name.as_deref(), Some("ss-runner-1"));
    // A new session can open at once after a clean close.
    client
        .create_message_session(set.id, "next")
        .await
        .unwrap()
        .close()
        .await
        .unwrap();
}
