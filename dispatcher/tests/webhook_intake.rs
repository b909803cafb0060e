//! `POST /webhook` over HTTP: signature before parsing, size limit, malformed bodies,
//! durable deduplicated recording; plus `/healthz`, `/metrics` and `/status`.

use std::time::Duration;

use gha_dispatcher::intake::signature::sign;
use gha_dispatcher::model::JobStatus;
use gha_dispatcher::store::{self, Db};

mod support;

const SECRET: &str = "webhook-secret-for-tests";

fn event(job_id: u64, action: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action,
        "workflow_job": {"id": job_id, "run_id": 1, "labels": ["self-hosted", "linux"], "status": action,
                         "runner_name": null},
        "repository": {"full_name": "acme/widgets"},
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn intake_rules() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::ConfigBuilder::new(dir.path())
        .webhook_secret(SECRET)
        .pool("gpu", &["gpu-only-label"], 1)
        .build();
    let db_path = cfg.db_path.clone();
    let running = support::start(cfg).await;
    let url = format!("http://{}", running.local_addr);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let post = |body: Vec<u8>, signature: Option<String>, delivery: &str, event: &str| {
        let mut req = http
            .post(format!("{url}/webhook"))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .body(body);
        if let Some(sig) = signature {
            req = req.header("X-Hub-Signature-256", sig);
        }
        req.send()
    };
    let deliveries = |path: &std::path::Path| {
        Db::open(path)
            .unwrap()
            .with(|c| {
                c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| {
                    r.get::<_, i64>(0)
                })
            })
            .unwrap()
    };

    // Wrong or missing signature: 401, nothing recorded.
    let body = event(11, "queued");
    let wrong = sign(b"not-the-secret", &body);
    assert_eq!(
        post(body.clone(), Some(wrong), "d-1", "workflow_job")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        post(body.clone(), None, "d-1", "workflow_job")
            .await
            .unwrap()
            .status(),
        401
    );
    // A malformed body with a bad signature is still a 401: nothing is parsed first.
    assert_eq!(
        post(
            b"{".to_vec(),
            Some("sha256=00".into()),
            "d-x",
            "workflow_job"
        )
        .await
        .unwrap()
        .status(),
        401
    );
    assert_eq!(deliveries(&db_path), 0);

    // Over 25 MB: 413.
    let huge = vec![b' '; 25 * 1024 * 1024 + 1];
    let sig = sign(SECRET.as_bytes(), &huge);
    assert_eq!(
        post(huge, Some(sig), "d-big", "workflow_job")
            .await
            .unwrap()
            .status(),
        413
    );

    // Signed but malformed: 400, nothing recorded.
    let bad = br#"{"action":"queued","workflow_job":{}}"#.to_vec();
    let sig = sign(SECRET.as_bytes(), &bad);
    assert_eq!(
        post(bad, Some(sig), "d-bad", "workflow_job")
            .await
            .unwrap()
            .status(),
        400
    );
    assert_eq!(deliveries(&db_path), 0);

    // Good: 202 and recorded; the same delivery again is acknowledged and ignored.
    let sig = sign(SECRET.as_bytes(), &body);
    let first = post(body.clone(), Some(sig.clone()), "d-1", "workflow_job")
        .await
        .unwrap();
    assert_eq!(first.status(), 202);
    let again = post(body.clone(), Some(sig), "d-1", "workflow_job")
        .await
        .unwrap();
    assert_eq!(again.status(), 202);
    assert_eq!(again.text().await.unwrap().trim(), "duplicate");
    assert_eq!(deliveries(&db_path), 1);
    let job = Db::open(&db_path)
        .unwrap()
        .with(|c| store::job(c, 11))
        .unwrap()
        .unwrap();
    assert_eq!(job.status, JobStatus::Queued);

    // Out of order: completed (new delivery id) then a late queued: stays completed.
    let done = event(11, "completed");
    let sig = sign(SECRET.as_bytes(), &done);
    assert_eq!(
        post(done, Some(sig), "d-2", "workflow_job")
            .await
            .unwrap()
            .status(),
        202
    );
    // (Not the bytes of d-1: a replayed body is a duplicate whatever its delivery id.)
    let mut late: serde_json::Value = serde_json::from_slice(&event(11, "queued")).unwrap();
    late["installation"] = serde_json::json!({"id": 1});
    let late = serde_json::to_vec(&late).unwrap();
    let sig = sign(SECRET.as_bytes(), &late);
    assert_eq!(
        post(late, Some(sig), "d-3", "workflow_job")
            .await
            .unwrap()
            .status(),
        202
    );
    let job = Db::open(&db_path)
        .unwrap()
        .with(|c| store::job(c, 11))
        .unwrap()
        .unwrap();
    assert_eq!(job.status, JobStatus::Completed);

    // ping is acknowledged.
    let ping = br#"{"zen":"Keep it logically awesome."}"#.to_vec();
    let sig = sign(SECRET.as_bytes(), &ping);
    assert_eq!(
        post(ping, Some(sig), "d-ping", "ping")
            .await
            .unwrap()
            .status(),
        202
    );

    assert_eq!(
        http.get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("gha_dispatcher_webhook_deliveries_total{outcome=\"bad_signature\"} 3"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gha_dispatcher_webhook_deliveries_total{outcome=\"duplicate\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gha_dispatcher_jobs_not_ours_total 2"),
        "{metrics}"
    );
    let status = support::admin_status(&url).await;
    assert_eq!(status["pools"][0]["name"], "gpu");
    assert!(!metrics.contains(SECRET) && !status.to_string().contains(SECRET));
    running.shutdown().await;
}
