//! The GitHub client against the simulator: App and PAT auth, token caching, JIT configs,
//! 409 on a duplicate name, deletion, conditional requests, 5xx retries and rate limits.

use std::sync::Arc;
use std::time::Duration;

use gha_dispatcher::clients::github::{
    Credentials, DeleteOutcome, GithubClient, GithubError, MintError,
};
use gha_dispatcher::model::Scope;
use gha_dispatcher::telemetry::Metrics;
use github_sim::model::{AppSpec, InstallationSpec, JobSpec, WorkflowSpec};
use github_sim::{test_keys, Faults, Sim};

mod support;

const APP_ID: u64 = 4242;

async fn world() -> Sim {
    let sim = support::sim().await;
    sim.add_app(AppSpec {
        id: APP_ID,
        slug: "spank-gha".into(),
        public_key_pem: test_keys::APP_PUBLIC_KEY_PEM.into(),
    })
    .unwrap();
    sim.add_installation(InstallationSpec {
        app_id: APP_ID,
        account: "acme".into(),
        permissions: None,
    })
    .unwrap();
    sim
}

fn app_client(sim: &Sim) -> GithubClient {
    let key =
        jsonwebtoken::EncodingKey::from_rsa_pem(test_keys::APP_PRIVATE_KEY_PEM.as_bytes()).unwrap();
    GithubClient::new(
        &sim.url(),
        Credentials::App {
            app_id: APP_ID,
            key,
            installation_id: None,
        },
        Arc::new(Metrics::new()),
    )
    .unwrap()
}

fn org() -> Scope {
    Scope::Org("acme".into())
}

fn labels() -> Vec<String> {
    vec!["self-hosted".into(), "linux".into()]
}

/// Calls at the same moment (the job poll runs beside the control loop) share one token mint
/// and one installation lookup: the end-to-end call budget counted two of each.
#[tokio::test(flavor = "multi_thread")]
async fn concurrent_calls_share_one_installation_token() {
    let sim = world().await;
    let gh = app_client(&sim);
    let scope = org();
    let (a, b, c) = tokio::join!(
        gh.list_runners(&scope),
        gh.list_runners(&scope),
        gh.list_runners(&scope)
    );
    for listed in [a, b, c] {
        listed.unwrap();
    }
    let counters = sim.counters();
    assert_eq!(
        (
            counters.calls("POST /app/installations/{installation_id}/access_tokens"),
            counters.calls("GET /orgs/{org}/installation"),
        ),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn app_auth_mints_jit_configs_and_caches_the_installation_token() {
    let sim = world().await;
    let gh = app_client(&sim);
    let a = gh
        .generate_jitconfig(&org(), "slurm-cpu-a", &labels(), 1)
        .await
        .unwrap();
    let b = gh
        .generate_jitconfig(&org(), "slurm-cpu-b", &labels(), 1)
        .await
        .unwrap();
    assert_ne!(a.runner_id, b.runner_id);
    let decoded = github_sim::jit::decode(&a.encoded_jit_config).unwrap();
    assert_eq!(decoded.runner.agent_name, "slurm-cpu-a");
    let counters = sim.counters();
    assert_eq!(
        counters.calls("POST /app/installations/{installation_id}/access_tokens"),
        1
    );
    assert_eq!(counters.calls("GET /orgs/{org}/installation"), 1);
    assert_eq!(
        counters.calls("POST /orgs/{org}/actions/runners/generate-jitconfig"),
        2
    );
    assert_eq!(
        gh.call_counts()["POST /orgs/{org}/actions/runners/generate-jitconfig"],
        2
    );
    let names: Vec<String> = sim.runners().into_iter().map(|r| r.name).collect();
    assert!(
        names.contains(&"slurm-cpu-a".to_string()) && names.contains(&"slurm-cpu-b".to_string())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn duplicate_name_is_409_then_found_by_name_and_deleted() {
    let sim = world().await;
    let gh = app_client(&sim);
    let first = gh
        .generate_jitconfig(&org(), "slurm-cpu-dup", &labels(), 1)
        .await
        .unwrap();
    let again = gh
        .generate_jitconfig(&org(), "slurm-cpu-dup", &labels(), 1)
        .await;
    assert!(matches!(again, Err(MintError::NameTaken)));
    let found = gh
        .find_runner(&org(), "slurm-cpu-dup")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.id, first.runner_id);
    assert_eq!(found.status, "offline");
    assert_eq!(
        gh.delete_runner(&org(), found.id).await.unwrap(),
        DeleteOutcome::Deleted
    );
    assert_eq!(
        gh.delete_runner(&org(), found.id).await.unwrap(),
        DeleteOutcome::AlreadyGone
    );
    assert!(gh
        .find_runner(&org(), "slurm-cpu-dup")
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn pat_auth_and_repo_scope() {
    let sim = world().await;
    let gh = GithubClient::new(
        &sim.url(),
        Credentials::Token("ghp_test_token".into()),
        Arc::new(Metrics::new()),
    )
    .unwrap();
    let repo = Scope::Repo {
        owner: "acme".into(),
        name: "widgets".into(),
    };
    let minted = gh
        .generate_jitconfig(&repo, "slurm-repo-1", &labels(), 1)
        .await
        .unwrap();
    let listed = gh.list_runners(&repo).await.unwrap();
    assert!(listed.iter().any(|r| r.id == minted.runner_id));
}

#[tokio::test(flavor = "multi_thread")]
async fn queued_jobs_are_polled_with_etags() {
    let sim = world().await;
    let gh = app_client(&sim);
    let run = sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: "ci".into(),
            jobs: vec![JobSpec::new("build", &["self-hosted", "linux"])],
            delay_ms: 0,
        })
        .unwrap();
    let jobs = gh.active_jobs(&org(), "acme/widgets").await.unwrap();
    assert_eq!(jobs.len(), 1);
    assert_eq!(jobs[0].job_id, run.job_ids[0]);
    assert_eq!(jobs[0].status, gha_dispatcher::model::JobStatus::Queued);
    let before = sim.counters();
    let again = gh.active_jobs(&org(), "acme/widgets").await.unwrap();
    assert_eq!(again, jobs);
    let after = sim.counters();
    let runs = "GET /repos/{owner}/{repo}/actions/runs";
    assert_eq!(
        after.api[runs].not_modified - before.api[runs].not_modified,
        2,
        "both run lists (queued, in_progress) should be 304 the second time"
    );
    let single = gh
        .job(&org(), "acme/widgets", run.job_ids[0])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        single.labels,
        vec!["self-hosted".to_string(), "linux".to_string()]
    );
    assert!(gh
        .job(&org(), "acme/widgets", 999_999)
        .await
        .unwrap()
        .is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_are_retried() {
    let sim = world().await;
    let gh = app_client(&sim);
    gh.list_runners(&org()).await.unwrap(); // token fetched before the faults
    sim.set_faults(Faults {
        server_errors: 2,
        ..Default::default()
    });
    let listed = gh.list_runners(&org()).await;
    assert!(listed.is_ok(), "{listed:?}");
    assert!(sim.counters().api["GET /orgs/{org}/actions/runners"].errors >= 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn persistent_server_errors_give_up_with_the_status() {
    let sim = world().await;
    let gh = app_client(&sim);
    gh.list_runners(&org()).await.unwrap();
    sim.set_faults(Faults {
        server_errors: 50,
        ..Default::default()
    });
    let err = gh.list_runners(&org()).await.unwrap_err();
    assert_eq!(err.status(), Some(502), "{err}");
    sim.set_faults(Faults::default());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_long_secondary_rate_limit_fails_calls_fast_until_retry_after() {
    let sim = world().await;
    let gh = app_client(&sim);
    gh.list_runners(&org()).await.unwrap();
    sim.set_faults(Faults {
        secondary_rate_limit: 1,
        secondary_retry_after_s: 30,
        ..Default::default()
    });
    let err = gh.list_runners(&org()).await.unwrap_err();
    assert!(
        matches!(err, GithubError::RateLimited { wait_secs: 30, .. }),
        "{err}"
    );
    // A long pause holds runner submission back (a runner started now could not redeem).
    assert!(gh.blocked_long().is_some());
    // While paused, calls fail fast without reaching GitHub.
    let calls = sim.counters().calls("GET /orgs/{org}/actions/runners");
    assert!(matches!(
        gh.list_runners(&org()).await,
        Err(GithubError::RateLimited { .. })
    ));
    assert_eq!(
        sim.counters().calls("GET /orgs/{org}/actions/runners"),
        calls
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_short_secondary_rate_limit_is_waited_out_and_the_call_sent_again() {
    let sim = world().await;
    let gh = app_client(&sim);
    gh.list_runners(&org()).await.unwrap();
    sim.set_faults(Faults {
        secondary_rate_limit: 1,
        secondary_retry_after_s: 2,
        ..Default::default()
    });
    let calls = sim.counters().calls("GET /orgs/{org}/actions/runners");
    let started = std::time::Instant::now();
    // The limited call sleeps through the pause, is sent again, and succeeds.
    let gh = Arc::new(gh);
    let call = tokio::spawn({
        let gh = gh.clone();
        async move { gh.list_runners(&org()).await }
    });
    support::wait_until("the pause", Duration::from_secs(10), || {
        gh.blocked_for().is_some()
    })
    .await;
    // Not a long pause: runner submission goes on through it (a redemption waits it out;
    // under a steady share of rate limits one is nearly always on).
    assert_eq!(gh.blocked_long(), None);
    call.await.expect("the call's task").unwrap();
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert_eq!(
        sim.counters().calls("GET /orgs/{org}/actions/runners"),
        calls + 2
    );
    assert!(gh.blocked_for().is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn primary_rate_limit_waits_for_reset() {
    let sim = world().await;
    let gh = app_client(&sim);
    gh.list_runners(&org()).await.unwrap();
    sim.set_faults(Faults {
        primary_rate_limit: 1,
        rate_limit_status: 429,
        ..Default::default()
    });
    let err = gh.list_runners(&org()).await.unwrap_err();
    assert!(matches!(err, GithubError::RateLimited { .. }), "{err}");
    assert!(gh.blocked_for().is_some());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_of_a_large_run_is_polled() {
    let sim = world().await;
    let gh = app_client(&sim);
    let jobs = (0..150)
        .map(|i| JobSpec::new(format!("j{i}"), &["self-hosted"]))
        .collect();
    let run = sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: "matrix".into(),
            jobs,
            delay_ms: 0,
        })
        .unwrap();
    let polled = gh.active_jobs(&org(), "acme/widgets").await.unwrap();
    let mut ids: Vec<u64> = polled.iter().map(|j| j.job_id).collect();
    ids.sort();
    let mut expected = run.job_ids.clone();
    expected.sort();
    assert_eq!(ids, expected);
}
