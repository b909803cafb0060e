//! The scale set protocol's semantics and fault knobs, driven over plain HTTP with raw
//! requests (the REST API at the root, as for github.com): session conflicts (injected, and a
//! live session until its TTL), the expired queue token (401 until PATCH), redelivery, the
//! re-offer quirk (three times), the capacity header, the admin token's expiry, 5xx, acquire
//! answering fewer ids, and scale set jobs reserved to their set's runners.

mod common;

use std::time::Duration;

use common::{finish, world_with, RunnerRoot, World, ORG, PAT, REPO};
use github_sim::{JobSpec, ScaleSetFaults, SimConfig, WorkflowSpec};
use reqwest::StatusCode;
use serde_json::{json, Value};
use test_support::wait_until_async;

const LABEL: &str = "slurm";

fn config() -> SimConfig {
    SimConfig {
        message_poll_timeout: Duration::from_millis(150),
        scaleset_session_ttl: Duration::from_millis(600),
        ..SimConfig::default()
    }
}

/// A listener's view of the Actions service: service URL, admin token, scale set, session.
#[derive(Clone)]
struct Listener {
    http: reqwest::Client,
    service: String,
    admin: String,
    set_id: u64,
    queue_url: String,
    queue_token: String,
    session_id: String,
}

/// Registration token → runner-registration → `{url, token}`.
async fn admin_connection(w: &World) -> (String, String) {
    let r = w
        .post(
            &format!("/orgs/{ORG}/actions/runners/registration-token"),
            PAT,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let token = r.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_string();
    let body = json!({"url": format!("http://github.example/{ORG}"), "runner_event": "register"});
    let r = w
        .http
        .post(w.url("/actions/runner-registration"))
        .header("authorization", format!("RemoteAuth {token}"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    (
        v["url"].as_str().unwrap().to_string(),
        v["token"].as_str().unwrap().to_string(),
    )
}

impl Listener {
    async fn new(w: &World, name: &str) -> Listener {
        let (service, admin) = admin_connection(w).await;
        let mut l = Listener {
            http: w.http.clone(),
            service,
            admin,
            set_id: 0,
            queue_url: String::new(),
            queue_token: String::new(),
            session_id: String::new(),
        };
        let body = json!({"name": name, "runnerGroupId": 1, "labels": [{"name": LABEL, "type": "System"}]});
        let (status, set) = l
            .call("POST", "_apis/runtime/runnerscalesets", Some(body))
            .await;
        assert_eq!(status, StatusCode::OK, "{set}");
        l.set_id = set["id"].as_u64().unwrap();
        l
    }

    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let url = format!("{}{path}", self.service);
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = self
            .http
            .request(method, url)
            .query(&[("api-version", "6.0-preview")])
            .bearer_auth(&self.admin);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn open_session(&mut self) -> (StatusCode, Value) {
        let path = format!("_apis/runtime/runnerscalesets/{}/sessions", self.set_id);
        let (status, v) = self
            .call("POST", &path, Some(json!({"ownerName": "test"})))
            .await;
        if status == StatusCode::OK {
            self.adopt(&v);
        }
        (status, v)
    }

    fn adopt(&mut self, session: &Value) {
        self.session_id = session["sessionId"].as_str().unwrap().to_string();
        self.queue_url = session["messageQueueUrl"].as_str().unwrap().to_string();
        self.queue_token = session["messageQueueAccessToken"]
            .as_str()
            .unwrap()
            .to_string();
    }

    async fn refresh(&mut self) {
        let path = format!(
            "_apis/runtime/runnerscalesets/{}/sessions/{}",
            self.set_id, self.session_id
        );
        let (status, v) = self.call("PATCH", &path, None).await;
        assert_eq!(status, StatusCode::OK);
        self.adopt(&v);
    }

    /// One poll: status and the message (with its body parsed into `jobs`).
    async fn poll(&self, last: Option<u64>, capacity: u32) -> (StatusCode, Value) {
        let mut req = self
            .http
            .get(&self.queue_url)
            .bearer_auth(&self.queue_token);
        if let Some(last) = last {
            req = req.query(&[("lastMessageId", last)]);
        }
        let r = req
            .header("X-ScaleSetMaxCapacity", capacity.to_string())
            .send()
            .await
            .unwrap();
        let status = r.status();
        let mut v: Value = r.json().await.unwrap_or(Value::Null);
        if status == StatusCode::OK {
            v["jobs"] = serde_json::from_str(v["body"].as_str().unwrap()).unwrap();
        }
        (status, v)
    }

    async fn ack(&self, id: u64) -> StatusCode {
        let url = format!("{}/{id}", self.queue_url);
        self.http
            .delete(url)
            .bearer_auth(&self.queue_token)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn acquire(&self, ids: &[u64]) -> Vec<u64> {
        let url = format!(
            "{}_apis/runtime/runnerscalesets/{}/acquirejobs",
            self.service, self.set_id
        );
        let r = self
            .http
            .post(url)
            .bearer_auth(&self.queue_token)
            .json(ids)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: Value = r.json().await.unwrap();
        v["value"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap())
            .collect()
    }

    /// Polls and acknowledges until `n` job messages came (at most `polls` polls).
    async fn collect(&self, n: usize, polls: usize, capacity: u32) -> Vec<Value> {
        let mut jobs = Vec::new();
        for _ in 0..polls {
            let (status, m) = self.poll(None, capacity).await;
            if status == StatusCode::OK {
                jobs.extend(m["jobs"].as_array().unwrap().iter().cloned());
                assert_eq!(
                    self.ack(m["messageId"].as_u64().unwrap()).await,
                    StatusCode::NO_CONTENT
                );
            }
            if jobs.len() >= n {
                break;
            }
        }
        jobs
    }
}

fn enqueue(w: &World, n: usize) -> Vec<u64> {
    let jobs = (0..n)
        .map(|i| JobSpec::new(format!("job-{i}"), &[LABEL]))
        .collect();
    let spec = WorkflowSpec {
        repo: format!("{ORG}/{REPO}"),
        name: "ci".into(),
        jobs,
        delay_ms: 0,
    };
    w.sim.enqueue_workflow(spec).unwrap().job_ids
}

fn types(jobs: &[Value]) -> Vec<String> {
    jobs.iter()
        .map(|j| j["messageType"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn session_conflicts_injected_then_live_session_until_its_ttl() {
    let w = world_with(config()).await;
    let mut l = Listener::new(&w, "conflicts").await;
    w.sim.set_scaleset_faults(ScaleSetFaults {
        session_conflicts: 1,
        ..Default::default()
    });
    let (status, body) = l.open_session().await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["typeName"]
        .as_str()
        .unwrap()
        .ends_with("TaskAgentSessionConflictException"));
    assert_eq!(l.open_session().await.0, StatusCode::OK);
    // Abandoned without DELETE: 409 until the session's TTL has passed.
    assert_eq!(l.open_session().await.0, StatusCode::CONFLICT);
    let reopened = wait_until_async(
        "the abandoned session to expire",
        Duration::from_secs(10),
        || async {
            let mut again = l.clone();
            again.open_session().await.0 == StatusCode::OK
        },
    )
    .await;
    assert!(reopened.is_ok());
    let c = w.sim.counters().scaleset;
    // The injected one, the live session's, and the looks while waiting for the TTL.
    assert!(c.session_conflicts >= 2, "{c:?}");
    assert_eq!((c.sessions_expired, c.sessions_active), (1, 1), "{c:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_expired_queue_token_answers_401_until_the_session_is_refreshed() {
    let w = world_with(config()).await;
    let mut l = Listener::new(&w, "tokens").await;
    l.open_session().await;
    w.sim.set_scaleset_faults(ScaleSetFaults {
        expire_queue_tokens: 1,
        ..Default::default()
    });
    assert_eq!(l.poll(None, 2).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        l.poll(None, 2).await.0,
        StatusCode::UNAUTHORIZED,
        "still expired"
    );
    assert_eq!(l.ack(1).await, StatusCode::UNAUTHORIZED);
    l.refresh().await;
    assert_eq!(l.poll(None, 2).await.0, StatusCode::ACCEPTED);
    assert_eq!(w.sim.counters().scaleset.sessions_refreshed, 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn unacknowledged_messages_come_again_and_the_redelivery_fault_repeats_acked_ones() {
    let w = world_with(config()).await;
    let mut l = Listener::new(&w, "redelivery").await;
    l.open_session().await;
    enqueue(&w, 1);
    let (status, first) = l.poll(None, 5).await;
    assert_eq!(status, StatusCode::OK);
    let id = first["messageId"].as_u64().unwrap();
    let (_, again) = l.poll(None, 5).await;
    assert_eq!(
        again["messageId"].as_u64(),
        Some(id),
        "not acknowledged: delivered again"
    );
    assert_eq!(
        l.poll(Some(id), 5).await.0,
        StatusCode::ACCEPTED,
        "lastMessageId acknowledges"
    );
    w.sim.set_scaleset_faults(ScaleSetFaults {
        redeliver_messages: 1,
        ..Default::default()
    });
    let (status, repeated) = l.poll(Some(id), 5).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(repeated["messageId"].as_u64(), Some(id));
    assert_eq!(repeated["jobs"], first["jobs"]);
    let c = w.sim.counters().scaleset;
    assert_eq!(
        (c.messages_delivered, c.messages_redelivered, c.jobs_offered),
        (3, 1, 1)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_offer_not_acquired_comes_back_canceled_three_times_then_stays() {
    let w = world_with(config()).await;
    let mut l = Listener::new(&w, "quirk").await;
    l.open_session().await;
    w.sim.set_scaleset_faults(ScaleSetFaults {
        reoffer_after_ms: 50,
        ..Default::default()
    });
    enqueue(&w, 1);
    // 4 offers, and 3 × (JobAssigned, JobCompleted canceled) between them.
    let jobs = l.collect(10, 60, 5).await;
    let expected: Vec<&str> = ["JobAvailable", "JobAssigned", "JobCompleted"]
        .repeat(3)
        .into_iter()
        .chain(["JobAvailable"])
        .collect();
    assert_eq!(types(&jobs), expected);
    let guid = &jobs[0]["jobId"];
    assert!(
        jobs.iter().all(|j| &j["jobId"] == guid),
        "one job throughout"
    );
    for c in jobs.iter().filter(|j| j["messageType"] == "JobCompleted") {
        assert_eq!(c["result"], "canceled");
    }
    let requests: std::collections::BTreeSet<u64> = jobs
        .iter()
        .map(|j| j["runnerRequestId"].as_u64().unwrap())
        .collect();
    assert_eq!(requests.len(), 4, "a new request id per offer");
    assert_eq!(
        l.poll(None, 5).await.0,
        StatusCode::ACCEPTED,
        "no fourth re-offer"
    );
    let last = jobs[9]["runnerRequestId"].as_u64().unwrap();
    assert_eq!(l.acquire(&[last]).await, vec![last]);
    assert_eq!(w.sim.counters().scaleset.jobs_reoffered, 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn offers_stay_within_the_capacity_header() {
    let w = world_with(config()).await;
    let mut l = Listener::new(&w, "capacity").await;
    l.open_session().await;
    enqueue(&w, 3);
    let first = l.collect(1, 3, 1).await;
    assert_eq!(types(&first), ["JobAvailable"]);
    let request = first[0]["runnerRequestId"].as_u64().unwrap();
    assert_eq!(l.acquire(&[request]).await, vec![request]);
    let assigned = l.collect(1, 3, 1).await;
    assert_eq!(
        types(&assigned),
        ["JobAssigned"],
        "no offer beyond capacity 1"
    );
    assert_eq!(l.poll(None, 1).await.0, StatusCode::ACCEPTED);
    let (status, m) = l.poll(None, 3).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        types(m["jobs"].as_array().unwrap()),
        ["JobAvailable", "JobAvailable"]
    );
    let stats = &m["statistics"];
    assert_eq!(
        (
            stats["totalAvailableJobs"].as_u64(),
            stats["totalAssignedJobs"].as_u64()
        ),
        (Some(2), Some(1))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_admin_token_expires() {
    let w = world_with(SimConfig {
        actions_admin_token_ttl: Duration::from_secs(1),
        ..config()
    })
    .await;
    let l = Listener::new(&w, "admin").await;
    let expired = wait_until_async(
        "the admin token to expire",
        Duration::from_secs(10),
        || async {
            l.call("GET", "_apis/runtime/runnergroups/?groupName=Default", None)
                .await
                .0
                == StatusCode::UNAUTHORIZED
        },
    )
    .await;
    assert!(expired.is_ok());
    let (service, admin) = admin_connection(&w).await;
    assert_eq!(service, l.service);
    let fresh = Listener { admin, ..l };
    assert_eq!(
        fresh
            .call("GET", "_apis/runtime/runnerscalesets", None)
            .await
            .0,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn server_errors_and_acquire_answering_fewer_ids() {
    let w = world_with(config()).await;
    let mut l = Listener::new(&w, "faults").await;
    l.open_session().await;
    w.sim.set_scaleset_faults(ScaleSetFaults {
        server_errors: 2,
        ..Default::default()
    });
    assert_eq!(
        l.call("GET", "_apis/runtime/runnerscalesets", None).await.0,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(l.poll(None, 5).await.0, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        l.call("GET", "_apis/runtime/runnerscalesets", None).await.0,
        StatusCode::OK
    );
    enqueue(&w, 2);
    let offers = l.collect(2, 5, 5).await;
    let ids: Vec<u64> = offers
        .iter()
        .map(|j| j["runnerRequestId"].as_u64().unwrap())
        .collect();
    w.sim.set_scaleset_faults(ScaleSetFaults {
        acquire_fewer: 1,
        ..Default::default()
    });
    assert_eq!(l.acquire(&ids).await, vec![ids[0]]);
    let next = l.collect(2, 5, 5).await;
    assert_eq!(types(&next), ["JobAssigned", "JobAvailable"]);
    assert_eq!(
        next[1]["runnerRequestId"].as_u64(),
        Some(ids[1]),
        "offered again"
    );
    w.sim.set_scaleset_faults(ScaleSetFaults {
        server_error_percent: 100,
        ..Default::default()
    });
    let (status, _) = l.call("GET", "_apis/runtime/runnerscalesets", None).await;
    assert_eq!(
        status,
        StatusCode::SERVICE_UNAVAILABLE,
        "a 100 % error rate"
    );
    // Slow polls: a lower bound only (how fast the simulator is, is the benchmarks' business).
    w.sim.set_scaleset_faults(ScaleSetFaults {
        poll_delay_ms: 300,
        ..Default::default()
    });
    let started = std::time::Instant::now();
    l.poll(None, 5).await;
    assert!(started.elapsed() >= Duration::from_millis(300));
    let c = w.sim.counters().scaleset;
    assert_eq!(c.actions["GET _apis/runtime/runnerscalesets"].errors, 2);
    assert!(c.queue_polls >= 3 && c.queue_deletes >= 2, "{c:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_scale_set_job_runs_only_on_a_runner_of_its_set() {
    let w = world_with(SimConfig {
        message_poll_timeout: Duration::from_millis(300),
        ..SimConfig::default()
    })
    .await;
    let mut l = Listener::new(&w, "mine").await;
    l.open_session().await;
    // A REST JIT runner whose labels cover the job is listening before the job is queued.
    let token = w.installation_token().await;
    let (_, rest_cfg) = w.jit(&token, "rest-runner", &[LABEL]).await;
    let rest_root = RunnerRoot::new();
    let mut rest_runner = rest_root.spawn(&rest_cfg);
    let online = w
        .sim
        .wait_for(Duration::from_secs(10), |s| {
            s.runners
                .iter()
                .any(|r| r.name == "rest-runner" && r.status == "online")
        })
        .await;
    assert!(online);
    let job_id = enqueue(&w, 1)[0];
    let offer = l.collect(1, 5, 2).await;
    let request = offer[0]["runnerRequestId"].as_u64().unwrap();
    l.acquire(&[request]).await;
    let path = format!(
        "_apis/runtime/runnerscalesets/{}/generatejitconfig",
        l.set_id
    );
    let (status, jit) = l
        .call(
            "POST",
            &path,
            Some(json!({"name": "set-runner", "workFolder": "_work"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let set_root = RunnerRoot::new();
    let set_runner = set_root.spawn(jit["encodedJITConfig"].as_str().unwrap());
    let (code, out, err) = finish(set_runner, Duration::from_secs(30)).await;
    assert_eq!(code, 0, "{out}\n{err}");
    let job = w.sim.job(job_id).unwrap();
    assert_eq!(job.runner_name.as_deref(), Some("set-runner"));
    assert_eq!(w.sim.counters().job_runs[&job_id].assignments, 1);
    assert!(
        rest_runner.try_wait().unwrap().is_none(),
        "the REST runner got nothing"
    );
    rest_runner.kill().await.unwrap();
    let jobs = l.collect(3, 10, 2).await;
    assert_eq!(types(&jobs), ["JobAssigned", "JobStarted", "JobCompleted"]);
    assert_eq!(jobs[2]["result"], "succeeded");
}
