//! A GitHub Enterprise Server: `api_url = "https://HOST/api/v3"` with the server's private CA
//! in `github.ca_file`. Its webhooks (which carry `X-GitHub-Enterprise-Host` and
//! `X-GitHub-Enterprise-Version`) are accepted, and a queued job, read from `/api/v3`, gets a
//! runner submitted to (fake) Slurm.

mod support;

use std::time::Duration;

use github_sim::config::Enterprise;
use github_sim::model::{JobSpec, WorkflowSpec};
use github_sim::{TestCa, WebhookTarget};
use support::script;
use test_support::wait_until_async;

#[tokio::test(flavor = "multi_thread")]
async fn a_queued_job_on_an_enterprise_server_gets_a_runner() {
    let ca = TestCa::new().unwrap();
    let enterprise = Enterprise {
        host: "ghes.example.com".into(),
        version: "3.14.0".into(),
    };
    let sim = support::tls_sim(&ca, Some(enterprise)).await;
    assert!(
        sim.url().starts_with("https://") && sim.url().ends_with("/api/v3"),
        "{}",
        sim.url()
    );
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("ca.pem"), ca.cert_pem()).unwrap();
    let args = d.join("sbatch.args");
    script(
        &d.join("sbatch"),
        &format!("echo \"$*\" >> '{}'\necho 101", args.display()),
    );
    script(&d.join("squeue"), "exit 0");
    let config = support::ConfigBuilder::new(d)
        .token(support::TOKEN)
        .set("github", "api_url", &format!("{:?}", sim.url()))
        .set_path("github", "ca_file", "ca.pem")
        .set(
            "github",
            "targets",
            r#"[{ org = "acme", repositories = ["acme/widgets"] }]"#,
        )
        .set_path("slurm", "sbatch", "sbatch")
        .set_path("slurm", "squeue", "squeue")
        .build();
    let running = support::start(config).await;
    sim.set_webhook(WebhookTarget {
        url: format!("http://{}/webhook", running.local_addr),
        secret: "webhook-secret".into(),
    });
    sim.enqueue_workflow(WorkflowSpec {
        repo: "acme/widgets".into(),
        name: "ci".into(),
        jobs: vec![JobSpec::new("build", &["self-hosted", "linux"])],
        delay_ms: 0,
    })
    .unwrap();

    let submitted = wait_until_async("sbatch", Duration::from_secs(30), || {
        let args = args.clone();
        async move { std::fs::read_to_string(&args).is_ok_and(|a| !a.is_empty()) }
    })
    .await;
    let deliveries = sim.deliveries();
    submitted.unwrap();
    assert!(!deliveries.is_empty());
    for d in &deliveries {
        assert_eq!(
            (d.outcome.as_str(), d.status_code),
            ("delivered", 202),
            "{d:?}"
        );
    }
    // The dispatcher's reads went to the Enterprise Server's /api/v3 routes (a call outside
    // the prefix would be a 404, never counted under GitHub's route names).
    let calls = sim.counters();
    assert!(
        calls.calls("GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs") >= 1,
        "{:?}",
        calls.api.keys().collect::<Vec<_>>()
    );
}
