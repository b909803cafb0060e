//! REST behaviour: auth, status codes, error bodies, paging, ETags, rate-limit headers.

mod common;

use std::time::Duration;

use common::*;
use github_sim::{test_keys, SimConfig};
use serde_json::{json, Value};
use test_support::wait_until_async;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_jwt_checks_follow_github() {
    let w = world().await;
    let path = format!("/orgs/{ORG}/installation");
    let now = chrono::Utc::now().timestamp();
    // Valid JWT: the installation.
    let r = w
        .get(&path, &test_keys::app_jwt(APP_ID))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["id"], w.installation_id);
    assert_eq!(v["app_id"], APP_ID);
    // Expired, too long, issued in the future, unknown issuer, missing: 401 with GitHub's body.
    for (jwt, needle) in [
        (
            test_keys::app_jwt_with(APP_ID, now - 700, now - 100),
            "'Expiration time'",
        ),
        (
            test_keys::app_jwt_with(APP_ID, now - 60, now + 900),
            "too far in the future",
        ),
        (
            test_keys::app_jwt_with(APP_ID, now + 300, now + 600),
            "'Issued at'",
        ),
        (test_keys::app_jwt(999), "'Issuer'"),
    ] {
        let r = w.get(&path, &jwt).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].as_str().unwrap().contains(needle), "{v}");
        assert!(v["documentation_url"].is_string());
    }
    // A JWT signed by another key is refused.
    let other = w
        .http
        .get(w.url(&path))
        .bearer_auth("eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOjQyNDJ9.AAAA")
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 401);
    let none = w.http.get(w.url(&path)).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let v: Value = none.json().await.unwrap();
    assert_eq!(v["message"], "Requires authentication");
    // Repo form and unknown org.
    let r = w
        .get(
            &format!("/repos/{ORG}/{REPO}/installation"),
            &test_keys::app_jwt(APP_ID),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = w
        .get("/orgs/nope/installation", &test_keys::app_jwt(APP_ID))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installation_tokens_expire_and_need_permissions() {
    let w = world_with(SimConfig {
        installation_token_ttl: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let token = w.installation_token().await;
    let path = format!("/orgs/{ORG}/actions/runners");
    assert_eq!(w.get(&path, &token).send().await.unwrap().status(), 200);
    // Another account is not visible to this installation.
    w.sim.add_org("other");
    assert_eq!(
        w.get("/orgs/other/actions/runners", &token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    // After expiry: 401 Bad credentials.
    let v: Value = wait_until_async("the token to expire", Duration::from_secs(5), || async {
        let r = w.get(&path, &token).send().await.unwrap();
        if r.status() == 401 {
            Some(r.json::<Value>().await.unwrap())
        } else {
            None
        }
    })
    .await
    .unwrap();
    assert_eq!(v["message"], "Bad credentials");
    // A read-only installation gets 403 on generate-jitconfig.
    let ro = w
        .sim
        .add_installation(github_sim::InstallationSpec {
            app_id: APP_ID,
            account: "readonly".into(),
            permissions: Some(
                [(
                    "organization_self_hosted_runners".to_string(),
                    "read".to_string(),
                )]
                .into(),
            ),
        })
        .unwrap();
    let r = w
        .post(
            &format!("/app/installations/{ro}/access_tokens"),
            &test_keys::app_jwt(APP_ID),
        )
        .send()
        .await
        .unwrap();
    let tok: Value = r.json().await.unwrap();
    let tok = tok["token"].as_str().unwrap();
    let r = w
        .post("/orgs/readonly/actions/runners/generate-jitconfig", tok)
        .json(&json!({"name": "x", "runner_group_id": 1, "labels": ["self-hosted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Resource not accessible by integration");
    // Unknown tokens: 401. PAT without admin:org: 403.
    assert_eq!(
        w.get(&path, "ghs_unknown").send().await.unwrap().status(),
        401
    );
    w.sim.add_pat("ghp_reponly", &["repo"]);
    assert_eq!(
        w.get(&path, "ghp_reponly").send().await.unwrap().status(),
        403
    );
    assert_eq!(w.get(&path, PAT).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jitconfig_duplicates_validation_and_delete() {
    let w = world().await;
    let token = w.installation_token().await;
    let (id, cfg) = w.jit(&token, "runner-1", &["self-hosted", "linux"]).await;
    let decoded = github_sim::jit::decode(&cfg).unwrap();
    assert_eq!(decoded.runner.agent_id, id);
    assert_eq!(decoded.runner.agent_name, "runner-1");
    assert_eq!(decoded.runner.work_folder, "_work");
    assert!(decoded.runner.server_url.starts_with(&w.sim.url()));
    // Duplicate name: 409.
    let jit_path = format!("/orgs/{ORG}/actions/runners/generate-jitconfig");
    let r = w
        .post(&jit_path, &token)
        .json(&json!({"name": "runner-1", "runner_group_id": 1, "labels": ["self-hosted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["message"], "Already exists");
    // Validation: 422 with errors.
    for body in [
        json!({"runner_group_id": 1, "labels": ["a"]}),
        json!({"name": "x", "labels": ["a"]}),
        json!({"name": "x", "runner_group_id": 1, "labels": []}),
        json!({"name": "x", "runner_group_id": 1, "labels": "a"}),
        json!({"name": "x", "runner_group_id": 1, "labels": (0..101).map(|i| i.to_string()).collect::<Vec<_>>()}),
    ] {
        let r = w.post(&jit_path, &token).json(&body).send().await.unwrap();
        assert_eq!(r.status(), 422, "{body}");
        let v: Value = r.json().await.unwrap();
        assert!(v["errors"].is_array());
    }
    // Unknown org: 404.
    let r = w
        .post("/orgs/nope/actions/runners/generate-jitconfig", PAT)
        .json(&json!({"name": "x", "runner_group_id": 1, "labels": ["a"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    // Repo-level JIT with a PAT.
    let r = w
        .post(&format!("/repos/{ORG}/{REPO}/actions/runners/generate-jitconfig"), PAT)
        .json(&json!({"name": "repo-runner", "runner_group_id": 1, "labels": ["self-hosted"], "work_folder": "w"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    // Delete: 204, then 404.
    let del = format!("/orgs/{ORG}/actions/runners/{id}");
    assert_eq!(w.delete(&del, &token).send().await.unwrap().status(), 204);
    assert_eq!(w.delete(&del, &token).send().await.unwrap().status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_busy_runner_is_422() {
    let w = world().await;
    let token = w.installation_token().await;
    let run = w.enqueue_one("long", &["self-hosted"], Some("sleep 30"));
    let (id, cfg) = w.jit(&token, "busy-1", &["self-hosted"]).await;
    let root = RunnerRoot::new();
    let child = root.spawn(&cfg);
    assert!(
        w.sim
            .wait_for(Duration::from_secs(10), |s| s
                .job(run.job_ids[0])
                .unwrap()
                .status
                == "in_progress")
            .await
    );
    let r = w
        .delete(&format!("/orgs/{ORG}/actions/runners/{id}"), &token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("still running a job"),
        "{v}"
    );
    w.sim.cancel_run(run.run_id).unwrap();
    let (code, out, _) = finish(child, Duration::from_secs(20)).await;
    assert_eq!(code, 0);
    assert!(out.contains("completed with result: Canceled"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paging_link_headers_and_name_filter() {
    let w = world().await;
    let token = w.installation_token().await;
    for i in 0..5 {
        w.jit(&token, &format!("r-{i}"), &["self-hosted"]).await;
    }
    let r = w
        .get(
            &format!("/orgs/{ORG}/actions/runners?per_page=2&page=2"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let link = r.headers()["link"].to_str().unwrap().to_string();
    assert!(link.contains("page=3>; rel=\"next\""), "{link}");
    assert!(link.contains("page=3>; rel=\"last\""), "{link}");
    assert!(link.contains("page=1>; rel=\"first\""), "{link}");
    assert!(link.contains("page=1>; rel=\"prev\""), "{link}");
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total_count"], 5);
    assert_eq!(v["runners"].as_array().unwrap().len(), 2);
    let r = w
        .get(&format!("/orgs/{ORG}/actions/runners?name=r-3"), &token)
        .send()
        .await
        .unwrap();
    assert!(r.headers().get("link").is_none());
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total_count"], 1);
    assert_eq!(v["runners"][0]["name"], "r-3");
    // per_page is capped at 100.
    let r = w
        .get(&format!("/orgs/{ORG}/actions/runners?per_page=500"), &token)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["runners"].as_array().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etag_304_is_free_and_counted_separately() {
    let w = world().await;
    let token = w.installation_token().await;
    let run = w.enqueue_one("a", &["self-hosted"], None);
    let path = format!("/repos/{ORG}/{REPO}/actions/runs?status=queued");
    let r = w.get(&path, &token).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    let remaining: u32 = r.headers()["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total_count"], 1);
    assert_eq!(v["workflow_runs"][0]["id"], run.run_id);
    let r = w
        .get(&path, &token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    let remaining_after: u32 = r.headers()["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(remaining_after, remaining, "a 304 must cost nothing");
    let c = w.sim.counters();
    let e = &c.api["GET /repos/{owner}/{repo}/actions/runs"];
    assert_eq!((e.calls, e.not_modified), (2, 1));
    // A change gives a new ETag and a 200.
    w.enqueue_one("b", &["self-hosted"], None);
    let r = w
        .get(&path, &token)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let rem3: u32 = r.headers()["x-ratelimit-remaining"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(rem3, remaining - 1);
    // /rate_limit is free.
    let r = w.get("/rate_limit", &token).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resources"]["core"]["remaining"], rem3);
    let r = w.get("/rate_limit", &token).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resources"]["core"]["remaining"], rem3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_runs_groups_and_cancel() {
    let w = world().await;
    let token = w.installation_token().await;
    let mut build = job("build", &["self-hosted"], None);
    build.duration_ms = 0;
    let mut test = job("test", &["self-hosted"], None);
    test.needs = vec!["build".into()];
    let run = w.sim.enqueue_workflow(workflow(vec![build, test])).unwrap();
    let r = w
        .get(
            &format!("/repos/{ORG}/{REPO}/actions/jobs/{}", run.job_ids[0]),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "queued");
    assert_eq!(v["labels"], json!(["self-hosted"]));
    assert!(v["runner_id"].is_null());
    let r = w
        .get(
            &format!("/repos/{ORG}/{REPO}/actions/jobs/{}", run.job_ids[1]),
            &token,
        )
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["status"], "pending");
    assert_eq!(
        w.get(&format!("/repos/{ORG}/{REPO}/actions/jobs/1"), &token)
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    let r = w
        .get(
            &format!(
                "/repos/{ORG}/{REPO}/actions/runs/{}/jobs?filter=latest",
                run.run_id
            ),
            &token,
        )
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["total_count"], 2);
    let r = w
        .get(&format!("/orgs/{ORG}/actions/runner-groups"), &token)
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["runner_groups"][0]["id"], 1);
    assert_eq!(v["runner_groups"][0]["name"], "Default");
    // Cancel through REST: 202, jobs cancelled, a second cancel is 409.
    let cancel = format!("/repos/{ORG}/{REPO}/actions/runs/{}/cancel", run.run_id);
    assert_eq!(w.post(&cancel, PAT).send().await.unwrap().status(), 202);
    let s = w.sim.snapshot();
    assert_eq!(
        s.job(run.job_ids[0]).unwrap().conclusion.as_deref(),
        Some("cancelled")
    );
    assert_eq!(
        s.job(run.job_ids[1]).unwrap().conclusion.as_deref(),
        Some("cancelled")
    );
    assert_eq!(w.post(&cancel, PAT).send().await.unwrap().status(), 409);
    // Registration token: 201 with expires_at.
    let r = w
        .post(
            &format!("/orgs/{ORG}/actions/runners/registration-token"),
            &token,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert!(v["token"].is_string() && v["expires_at"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secondary_points_budget_long_names_and_api_versions() {
    let w = world_with(SimConfig {
        secondary_points_per_minute: 10,
        ..SimConfig::default()
    })
    .await;
    let token = w.installation_token().await;
    // Two POSTs cost 5 points each; the third is over the per-endpoint minute budget.
    w.jit(&token, "p-1", &["self-hosted"]).await;
    w.jit(&token, "p-2", &["self-hosted"]).await;
    let r = w
        .post(
            &format!("/orgs/{ORG}/actions/runners/generate-jitconfig"),
            &token,
        )
        .json(&json!({"name": "p-3", "runner_group_id": 1, "labels": ["self-hosted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    let v: Value = r.json().await.unwrap();
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("secondary rate limit"));
    assert!(
        w.sim.runners().iter().all(|r| r.name != "p-3"),
        "a refused call changes nothing"
    );
    // Other endpoints have their own budget.
    assert_eq!(
        w.get(&format!("/orgs/{ORG}/actions/runners"), &token)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let w = world().await;
    let r = w
        .post(
            &format!("/orgs/{ORG}/actions/runners/generate-jitconfig"),
            PAT,
        )
        .json(&json!({"name": "x".repeat(65), "runner_group_id": 1, "labels": ["self-hosted"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let r = w
        .http
        .get(w.url(&format!("/orgs/{ORG}/actions/runners")))
        .bearer_auth(PAT)
        .header("x-github-api-version", "2019-01-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
