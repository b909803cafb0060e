//! Each fault knob, shown by its effect; plus webhook timeouts, failures and redelivery.

mod common;

use std::time::{Duration, Instant};

use common::*;
use github_sim::{test_keys, Faults, SimConfig};
use serde_json::{json, Value};

const T: Duration = Duration::from_secs(10);

fn one_job() -> github_sim::WorkflowSpec {
    workflow(vec![job("j", &["self-hosted"], None)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drop_loses_a_delivery_and_redelivery_brings_it_back() {
    let w = world().await;
    let hooks = receiver(&w.sim).await;
    w.sim.set_faults(Faults {
        drop_deliveries: 1,
        ..Faults::default()
    });
    w.sim.enqueue_workflow(one_job()).unwrap();
    w.sim.enqueue_workflow(one_job()).unwrap();
    assert!(hooks.wait_count(1, T).await);
    assert!(
        w.sim
            .wait_for_deliveries(T, |d| d.len() == 2
                && d.iter().all(|d| d.outcome != "pending"))
            .await
    );
    let log = w.sim.deliveries();
    assert_eq!(log[0].outcome, "dropped");
    assert_eq!(log[1].outcome, "delivered");
    assert_eq!(hooks.all().len(), 1, "the dropped delivery must not arrive");
    assert_eq!(w.sim.counters().deliveries_dropped, 1);
    // GitHub's redelivery endpoint (App JWT): 202, same GUID, marked as a redelivery.
    let r = w
        .post(
            &format!("/app/hook/deliveries/{}/attempts", log[0].id),
            &test_keys::app_jwt(APP_ID),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(hooks.wait_count(2, T).await);
    assert_eq!(hooks.all()[1].header("x-github-delivery"), log[0].guid);
    let r = w
        .get("/app/hook/deliveries", &test_keys::app_jwt(APP_ID))
        .send()
        .await
        .unwrap();
    let items: Vec<Value> = r.json().await.unwrap();
    assert!(items
        .iter()
        .any(|d| d["redelivery"] == true && d["guid"] == log[0].guid.as_str()));
    // And through the library / control API.
    let again = w.sim.redeliver(log[1].id).unwrap();
    assert!(hooks.wait_count(3, T).await);
    assert!(w
        .sim
        .deliveries()
        .iter()
        .any(|d| d.id == again && d.redelivery));
    let r = w
        .http
        .post(w.url(&format!("/_sim/deliveries/{}/redeliver", log[1].id)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    assert!(hooks.wait_count(4, T).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicate_sends_the_same_guid_twice() {
    let w = world().await;
    let hooks = receiver(&w.sim).await;
    w.sim.set_faults(Faults {
        duplicate_deliveries: 1,
        ..Faults::default()
    });
    w.sim.enqueue_workflow(one_job()).unwrap();
    assert!(hooks.wait_count(2, T).await);
    let got = hooks.all();
    assert_eq!(
        got[0].header("x-github-delivery"),
        got[1].header("x-github-delivery")
    );
    assert_eq!(got[0].body, got[1].body);
    assert_eq!(w.sim.counters().deliveries_duplicated, 1);
    // Only the next one: the knob is spent.
    w.sim.enqueue_workflow(one_job()).unwrap();
    assert!(hooks.wait_count(3, T).await);
    assert!(w.sim.wait_for_deliveries(T, |d| d.len() == 3).await);
    assert_eq!(hooks.all().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delay_holds_each_delivery_back() {
    let w = world().await;
    let hooks = receiver(&w.sim).await;
    w.sim.set_faults(Faults {
        delivery_delay_ms: 400,
        ..Faults::default()
    });
    let start = Instant::now();
    w.sim.enqueue_workflow(one_job()).unwrap();
    assert!(hooks.wait_count(1, T).await);
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "arrived after {:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reorder_sends_held_deliveries_newest_first() {
    let w = world().await;
    let hooks = receiver(&w.sim).await;
    w.sim.set_faults(Faults {
        reorder_deliveries: 3,
        ..Faults::default()
    });
    let run = w
        .sim
        .enqueue_workflow(workflow(vec![
            job("a", &["self-hosted"], None),
            job("b", &["self-hosted"], None),
            job("c", &["self-hosted"], None),
        ]))
        .unwrap();
    assert!(hooks.wait_count(3, T).await);
    let ids: Vec<u64> = hooks.actions().iter().map(|(_, id)| *id).collect();
    let mut expected = run.job_ids.clone();
    expected.reverse();
    assert_eq!(ids, expected);
    // Fewer than N: flushed after the window.
    w.sim.set_faults(Faults {
        reorder_deliveries: 5,
        reorder_window_ms: 200,
        ..Faults::default()
    });
    w.sim.enqueue_workflow(one_job()).unwrap();
    assert!(hooks.wait_count(4, T).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_timeouts_and_error_answers_count_as_failed() {
    let w = world_with(SimConfig {
        webhook_timeout: Duration::from_millis(200),
        ..SimConfig::default()
    })
    .await;
    let hooks = receiver(&w.sim).await;
    *hooks.delay.lock().unwrap() = Duration::from_millis(1500);
    w.sim.enqueue_workflow(one_job()).unwrap();
    assert!(
        w.sim
            .wait_for_deliveries(T, |d| d.len() == 1 && d[0].outcome == "failed")
            .await
    );
    assert_eq!(w.sim.deliveries()[0].status, "timed out");
    *hooks.delay.lock().unwrap() = Duration::ZERO;
    *hooks.status.lock().unwrap() = 500;
    w.sim.enqueue_workflow(one_job()).unwrap();
    assert!(
        w.sim
            .wait_for_deliveries(T, |d| d.len() == 2 && d[1].outcome == "failed")
            .await
    );
    let d = &w.sim.deliveries()[1];
    assert_eq!(
        (d.status.as_str(), d.status_code),
        ("Invalid HTTP Response: 500", 500)
    );
    assert_eq!(w.sim.counters().deliveries_failed, 2);
    // GitHub does not retry by itself.
    assert_eq!(w.sim.deliveries().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_answer_5xx_for_the_next_calls_and_respect_the_path_filter() {
    let w = world().await;
    let path = format!("/orgs/{ORG}/actions/runners");
    w.sim.set_faults(Faults {
        server_errors: 2,
        ..Faults::default()
    });
    for _ in 0..2 {
        let r = w.get(&path, PAT).send().await.unwrap();
        assert_eq!(r.status(), 502);
        let v: Value = r.json().await.unwrap();
        assert!(v["message"].is_string());
    }
    assert_eq!(w.get(&path, PAT).send().await.unwrap().status(), 200);
    w.sim.set_faults(Faults {
        server_errors: 1,
        server_error_status: 500,
        only_path_contains: Some("/actions/runs".into()),
        ..Faults::default()
    });
    assert_eq!(w.get(&path, PAT).send().await.unwrap().status(), 200);
    let r = w
        .get(&format!("/repos/{ORG}/{REPO}/actions/runs"), PAT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        w.sim.counters().api["GET /orgs/{org}/actions/runners"].errors,
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_and_secondary_rate_limit_answers_carry_real_headers() {
    let w = world().await;
    let path = format!("/orgs/{ORG}/actions/runners");
    w.sim.set_faults(Faults {
        primary_rate_limit: 1,
        rate_limit_status: 429,
        ..Faults::default()
    });
    let r = w.get(&path, PAT).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let reset: i64 = r.headers()["x-ratelimit-reset"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(reset > chrono::Utc::now().timestamp());
    let v: Value = r.json().await.unwrap();
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("API rate limit exceeded"));
    w.sim.set_faults(Faults {
        secondary_rate_limit: 1,
        secondary_retry_after_s: 7,
        ..Faults::default()
    });
    let r = w.get(&path, PAT).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["retry-after"], "7");
    let v: Value = r.json().await.unwrap();
    assert!(v["message"]
        .as_str()
        .unwrap()
        .contains("secondary rate limit"));
    assert_eq!(w.get(&path, PAT).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_slows_every_call() {
    let w = world().await;
    w.sim.set_faults(Faults {
        latency_ms: 300,
        ..Faults::default()
    });
    let start = Instant::now();
    assert_eq!(
        w.get(&format!("/orgs/{ORG}/actions/runners"), PAT)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_budget_runs_out_and_304s_and_rate_limit_are_free() {
    let w = world().await;
    let token = w.installation_token().await;
    w.sim.set_faults(Faults {
        rate_limit_budget: Some(3),
        ..Faults::default()
    });
    let path = format!("/orgs/{ORG}/actions/runners");
    let r = w.get(&path, &token).send().await.unwrap();
    assert_eq!(r.headers()["x-ratelimit-limit"], "3");
    assert_eq!(r.headers()["x-ratelimit-remaining"], "2");
    assert_eq!(r.headers()["x-ratelimit-resource"], "core");
    let etag = r.headers()["etag"].to_str().unwrap().to_string();
    for _ in 0..3 {
        let r = w
            .get(&path, &token)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304);
        assert_eq!(r.headers()["x-ratelimit-remaining"], "2");
    }
    let r = w.get("/rate_limit", &token).send().await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["resources"]["core"]["remaining"], 2);
    assert_eq!(
        w.get(&path, &token).send().await.unwrap().headers()["x-ratelimit-remaining"],
        "1"
    );
    assert_eq!(
        w.get(&path, &token).send().await.unwrap().headers()["x-ratelimit-remaining"],
        "0"
    );
    let r = w.get(&path, &token).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert_eq!(r.headers()["x-ratelimit-remaining"], "0");
    let v: Value = r.json().await.unwrap();
    assert!(v["message"]
        .as_str()
        .unwrap()
        .starts_with("API rate limit exceeded"));
    // Budgets are per credential: the PAT still has its own.
    assert_eq!(w.get(&path, PAT).send().await.unwrap().status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_api_and_scenarios_set_faults_and_enqueue_work() {
    let w = world().await;
    let hooks = receiver(&w.sim).await;
    let r = w
        .http
        .put(w.url("/_sim/faults"))
        .json(&json!({"duplicate_deliveries": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let f: Faults = w
        .http
        .get(w.url("/_sim/faults"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(f.duplicate_deliveries, 1);
    let r = w
        .http
        .post(w.url("/_sim/scenario"))
        .json(&json!({
            "faults": {"duplicate_deliveries": 1},
            "repos": ["acme/other"],
            "workflows": [{"repo": "acme/other", "name": "wide", "jobs": [
                {"name": "m", "runs_on": ["self-hosted"], "count": 3}
            ]}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["runs"][0]["job_ids"].as_array().unwrap().len(), 3);
    assert!(hooks.wait_count(4, T).await, "3 queued + 1 duplicate");
    let state: Value = w
        .http
        .get(w.url("/_sim/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names: Vec<&str> = state["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["m-1", "m-2", "m-3"]);
    let c: Value = w
        .http
        .get(w.url("/_sim/counters"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["deliveries_duplicated"], 1);
    // Bad input: a clear error, nothing changed.
    let r = w
        .http
        .post(w.url("/_sim/workflows"))
        .json(&json!({"repo": "acme/nope", "name": "x", "jobs": [{"name": "a", "runs_on": ["x"]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: Value = r.json().await.unwrap();
    assert!(v["message"].as_str().unwrap().contains("acme/nope"));
    assert_eq!(w.sim.jobs().len(), 3);
}
