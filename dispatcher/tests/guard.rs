//! Attacks from the network on the real daemon: a captured webhook delivery replayed under
//! a new `X-GitHub-Delivery` id; `/status` read without being an admin; repository names
//! looked for in `/metrics`.

use std::time::Duration;

use gha_dispatcher::intake::signature::sign;
use gha_dispatcher::store::Db;

mod support;

const SECRET: &str = "webhook-secret-for-guard";

fn event(job_id: u64, action: &str) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "action": action,
        "workflow_job": {"id": job_id, "run_id": 1, "labels": ["self-hosted", "linux"],
                         "status": action, "runner_name": null},
        "repository": {"full_name": "secretorg/private-repo"},
    }))
    .unwrap()
}

async fn post(url: &str, body: &[u8], delivery: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .post(format!("{url}/webhook"))
        .header("X-GitHub-Event", "workflow_job")
        .header("X-GitHub-Delivery", delivery)
        .header("X-Hub-Signature-256", sign(SECRET.as_bytes(), body))
        .body(body.to_vec())
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

fn deliveries(db_path: &std::path::Path) -> i64 {
    Db::open(db_path)
        .unwrap()
        .with(|c| c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replayed_delivery_under_a_new_id_is_not_recorded_again_even_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let builder = support::ConfigBuilder::new(dir.path())
        .webhook_secret(SECRET)
        .set("github", "targets", r#"[{ org = "secretorg" }]"#);
    let cfg = builder.build();
    let db_path = cfg.db_path.clone();
    let running = support::start(cfg).await;
    let url = format!("http://{}", running.local_addr);

    let captured = event(21, "queued");
    assert_eq!(post(&url, &captured, "d-genuine").await.0, 202);
    assert_eq!(deliveries(&db_path), 1);
    // The attack: the captured bytes and signature, under a fresh delivery id.
    let (status, text) = post(&url, &captured, "d-replayed-1").await;
    assert_eq!((status, text.trim()), (202, "duplicate"));
    assert_eq!(deliveries(&db_path), 1);
    // A genuinely new delivery is still recorded.
    assert_eq!(post(&url, &event(21, "in_progress"), "d-next").await.0, 202);
    assert_eq!(deliveries(&db_path), 2);
    running.shutdown().await;

    // A restart keeps what it saw.
    let running = support::start(builder.build()).await;
    let url = format!("http://{}", running.local_addr);
    let (status, text) = post(&url, &captured, "d-replayed-2").await;
    assert_eq!((status, text.trim()), (202, "duplicate"));
    assert_eq!(deliveries(&db_path), 2);
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn status_is_for_the_admin_and_metrics_name_no_repository() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::ConfigBuilder::new(dir.path())
        .webhook_secret(SECRET)
        .set("github", "targets", r#"[{ org = "secretorg" }]"#)
        .build();
    let running = support::start(cfg).await;
    let url = format!("http://{}", running.local_addr);
    assert_eq!(post(&url, &event(31, "queued"), "d-1").await.0, 202);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();

    // The attack: read /status with no credential, a wrong token, or a non-root's MUNGE
    // credential (here a garbage one: refused before anything is read).
    let get = |auth: Option<&'static str>| {
        let mut req = http.get(format!("{url}/status"));
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        req.send()
    };
    for (auth, expected) in [
        (None, 401),
        (Some("Bearer not-the-admin-token"), 403),
        (Some("Basic YWRtaW46YWRtaW4="), 401),
    ] {
        let resp = get(auth).await.unwrap();
        assert_eq!(resp.status().as_u16(), expected, "{auth:?}");
        let body = resp.text().await.unwrap();
        assert!(!body.contains("secretorg"), "{body}");
        assert!(
            serde_json::from_str::<serde_json::Value>(&body).unwrap()["error"].is_string(),
            "{body}"
        );
    }
    // The admin reads it.
    let status = support::admin_status(&url).await;
    assert!(status["pools"].is_array(), "{status}");

    let metrics = http
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("gha_dispatcher_"), "{metrics}");
    assert!(!metrics.contains("secretorg"), "{metrics}");
    running.shutdown().await;
}
