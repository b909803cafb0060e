//! Conformance against things nobody here wrote: every REST answer and webhook body the
//! simulator produces is validated with GitHub's published schemas (`@octokit/openapi`,
//! `@octokit/openapi-webhooks`, pinned, fetched from npm by `fixtures/fetch.sh`); the
//! `@octokit/webhooks-examples` `workflow_job` examples validate too; GitHub's signature vector.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use github_sim::{fixtures, test_keys, Faults};
use jsonschema::{Draft, Validator};
use serde_json::{json, Map, Value};

/// OpenAPI 3.0 schema → JSON Schema 2020-12: `nullable`, boolean exclusive bounds, refs to `$defs`.
fn to_json_schema(v: &Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.iter().map(to_json_schema).collect()),
        Value::Object(m) => {
            let mut out = Map::new();
            let mut nullable = false;
            for (k, val) in m {
                match (k.as_str(), val) {
                    ("nullable", Value::Bool(b)) => nullable = *b,
                    ("exclusiveMinimum" | "exclusiveMaximum", Value::Bool(_)) => {}
                    ("$ref", Value::String(r)) => {
                        out.insert(
                            k.clone(),
                            Value::String(r.replace("#/components/schemas/", "#/$defs/")),
                        );
                    }
                    ("example", _) => {}
                    _ => {
                        out.insert(k.clone(), to_json_schema(val));
                    }
                }
            }
            if nullable {
                match out.get("type").cloned() {
                    Some(Value::String(t)) => {
                        out.insert("type".into(), json!([t, "null"]));
                        if let Some(Value::Array(e)) = out.get_mut("enum") {
                            e.push(Value::Null);
                        }
                    }
                    _ => return json!({"anyOf": [{"type": "null"}, Value::Object(out)]}),
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

struct Spec {
    doc: Value,
    defs: Value,
    cache: HashMap<String, Validator>,
}

impl Spec {
    fn load(path: &std::path::Path) -> Spec {
        let doc: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let defs = to_json_schema(&doc["components"]["schemas"]);
        Spec {
            doc,
            defs,
            cache: HashMap::new(),
        }
    }

    /// The `$defs` a schema reaches through `$ref`s (the whole set is too big to compile each time).
    fn reachable_defs(&self, schema: &Value) -> Map<String, Value> {
        fn refs(v: &Value, out: &mut Vec<String>) {
            match v {
                Value::Object(m) => {
                    for (k, x) in m {
                        match (k.as_str(), x) {
                            ("$ref", Value::String(r)) => {
                                if let Some(n) = r.strip_prefix("#/$defs/") {
                                    out.push(n.to_string());
                                }
                            }
                            _ => refs(x, out),
                        }
                    }
                }
                Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
                _ => {}
            }
        }
        let mut todo = Vec::new();
        refs(schema, &mut todo);
        let mut defs = Map::new();
        while let Some(n) = todo.pop() {
            if defs.contains_key(&n) {
                continue;
            }
            let d = self.defs[&n].clone();
            refs(&d, &mut todo);
            defs.insert(n, d);
        }
        defs
    }

    fn validator(&mut self, key: &str, schema: &Value) -> &Validator {
        if !self.cache.contains_key(key) {
            let mut root = to_json_schema(schema);
            let defs = Value::Object(self.reachable_defs(&root));
            match &mut root {
                Value::Object(m) => {
                    m.insert("$defs".into(), defs);
                }
                _ => panic!("{key}: schema is not an object"),
            }
            let v = jsonschema::options()
                .with_draft(Draft::Draft202012)
                .build(&root)
                .unwrap_or_else(|e| panic!("schema {key}: {e}"));
            self.cache.insert(key.to_string(), v);
        }
        &self.cache[key]
    }

    fn check_component(&mut self, name: &str, body: &Value) -> Vec<String> {
        let schema = json!({"$ref": format!("#/$defs/{name}")});
        let v = self.validator(&format!("component {name}"), &schema);
        v.iter_errors(body)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect()
    }

    /// The documented response schema of an operation, if the status is documented.
    fn response_schema(&self, method: &str, template: &str, status: u16) -> Option<Value> {
        let op = &self.doc["paths"][template][method];
        assert!(
            op.is_object(),
            "{method} {template} is not in the OpenAPI description"
        );
        let mut resp = op["responses"][status.to_string()].clone();
        if let Some(r) = resp["$ref"].as_str() {
            let name = r.trim_start_matches("#/components/responses/");
            resp = self.doc["components"]["responses"][name].clone();
        }
        let s = resp["content"]["application/json"]["schema"].clone();
        (!s.is_null()).then_some(s)
    }
}

/// Validates one REST answer: the documented schema, or `basic-error` for undocumented errors.
fn check(
    spec: &mut Spec,
    seen: &mut Vec<String>,
    method: &str,
    template: &str,
    status: u16,
    body: &Value,
) {
    let key = format!("{method} {template} {status}");
    let errors = match spec.response_schema(method, template, status) {
        Some(schema) => {
            let v = spec.validator(&key, &schema);
            v.iter_errors(body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect()
        }
        None if status >= 400 => spec.check_component("basic-error", body),
        None => panic!("{key}: undocumented success status"),
    };
    assert!(errors.is_empty(), "{key}: {body}\n{errors:#?}");
    seen.push(key);
}

async fn call(req: reqwest::RequestBuilder) -> (u16, Value) {
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        },
    )
}

#[test]
fn signature_check_passes_githubs_test_vector() {
    let sig = github_sim::signature::sign_sha256(b"It's a Secret to Everybody", b"Hello, World!");
    assert_eq!(
        sig,
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    );
    assert!(github_sim::signature::verify_sha256(
        b"It's a Secret to Everybody",
        b"Hello, World!",
        &sig
    ));
    assert!(!github_sim::signature::verify_sha256(
        b"It's a Secret to Everybody",
        b"Hello, World?",
        &sig
    ));
}

#[test]
fn the_eight_workflow_job_examples_load_with_the_fields_an_autoscaler_reads() {
    let examples =
        fixtures::workflow_job_examples().expect("fixtures (npm registry needed the first time)");
    assert_eq!(examples.len(), 8);
    for ex in &examples {
        let action = ex["action"].as_str().unwrap();
        assert!(
            ["queued", "waiting", "in_progress", "completed"].contains(&action),
            "{action}"
        );
        let job = &ex["workflow_job"];
        assert!(
            job["id"].is_u64() && job["run_id"].is_u64() && job["labels"].is_array(),
            "{job}"
        );
        assert!(ex["repository"]["full_name"].is_string());
    }
    // These real (older) payloads lack fields the current schema requires (run_attempt,
    // workflow_name, head_branch, created_at): parsers must not require them.
    let paths = fixtures::ensure().unwrap();
    let mut hooks = Spec::load(&paths.webhooks_schema_json);
    let in_progress = examples
        .iter()
        .find(|e| e["action"] == "in_progress")
        .unwrap();
    let errs = hooks.check_component("webhook-workflow-job-in-progress", in_progress);
    assert!(errs.iter().any(|e| e.contains("run_attempt")), "{errs:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_rest_answer_and_webhook_matches_githubs_schemas() {
    let paths = fixtures::ensure().expect("fixtures (npm registry needed the first time)");
    let mut rest = tokio::task::spawn_blocking(move || Spec::load(&paths.openapi_json))
        .await
        .unwrap();
    let paths = fixtures::ensure().unwrap();
    let mut hooks_spec = Spec::load(&paths.webhooks_schema_json);
    let mut seen = Vec::new();

    let w = world().await;
    let hooks = receiver(&w.sim).await;
    let jwt = test_keys::app_jwt(APP_ID);
    let inst = w.installation_id;
    let repo_path = format!("/repos/{ORG}/{REPO}");

    let (s, b) = call(w.get(&format!("/orgs/{ORG}/installation"), &jwt)).await;
    check(
        &mut rest,
        &mut seen,
        "get",
        "/orgs/{org}/installation",
        s,
        &b,
    );
    let (s, b) = call(w.get(&format!("{repo_path}/installation"), &jwt)).await;
    check(
        &mut rest,
        &mut seen,
        "get",
        "/repos/{owner}/{repo}/installation",
        s,
        &b,
    );
    let (s, b) = call(w.post(&format!("/app/installations/{inst}/access_tokens"), &jwt)).await;
    check(
        &mut rest,
        &mut seen,
        "post",
        "/app/installations/{installation_id}/access_tokens",
        s,
        &b,
    );
    let token = b["token"].as_str().unwrap().to_string();

    let run = w
        .sim
        .enqueue_workflow(workflow(vec![
            job("build", &["self-hosted", "linux"], Some("sleep 0.5")),
            github_sim::JobSpec {
                needs: vec!["build".into()],
                ..job("test", &["self-hosted"], Some("true"))
            },
            job("other", &["self-hosted", "gpu"], None),
            github_sim::JobSpec {
                environment: Some("production".into()),
                ..job("deploy", &["self-hosted"], None)
            },
        ]))
        .unwrap();

    let jit = |name: &str| json!({"name": name, "runner_group_id": 1, "labels": ["self-hosted", "linux"]});
    let (s, b) = call(
        w.post(
            &format!("/orgs/{ORG}/actions/runners/generate-jitconfig"),
            &token,
        )
        .json(&jit("c-1")),
    )
    .await;
    check(
        &mut rest,
        &mut seen,
        "post",
        "/orgs/{org}/actions/runners/generate-jitconfig",
        s,
        &b,
    );
    let runner_id = b["runner"]["id"].as_u64().unwrap();
    let cfg = b["encoded_jit_config"].as_str().unwrap().to_string();
    let (s, b) = call(
        w.post(
            &format!("/orgs/{ORG}/actions/runners/generate-jitconfig"),
            &token,
        )
        .json(&jit("c-1")),
    )
    .await;
    assert_eq!(s, 409);
    check(
        &mut rest,
        &mut seen,
        "post",
        "/orgs/{org}/actions/runners/generate-jitconfig",
        s,
        &b,
    );
    let (s, b) = call(
        w.post(
            &format!("/orgs/{ORG}/actions/runners/generate-jitconfig"),
            &token,
        )
        .json(&json!({"name": "x"})),
    )
    .await;
    assert_eq!(s, 422);
    check(
        &mut rest,
        &mut seen,
        "post",
        "/orgs/{org}/actions/runners/generate-jitconfig",
        s,
        &b,
    );
    let (s, b) = call(
        w.post("/orgs/nope/actions/runners/generate-jitconfig", PAT)
            .json(&jit("y")),
    )
    .await;
    assert_eq!(s, 404);
    check(
        &mut rest,
        &mut seen,
        "post",
        "/orgs/{org}/actions/runners/generate-jitconfig",
        s,
        &b,
    );
    let (s, b) = call(
        w.post(
            &format!("{repo_path}/actions/runners/generate-jitconfig"),
            &token,
        )
        .json(&jit("r-1")),
    )
    .await;
    check(
        &mut rest,
        &mut seen,
        "post",
        "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
        s,
        &b,
    );
    let repo_runner = b["runner"]["id"].as_u64().unwrap();

    for (tpl, p) in [
        (
            "/orgs/{org}/actions/runners",
            format!("/orgs/{ORG}/actions/runners?per_page=1"),
        ),
        (
            "/repos/{owner}/{repo}/actions/runners",
            format!("{repo_path}/actions/runners"),
        ),
        (
            "/orgs/{org}/actions/runner-groups",
            format!("/orgs/{ORG}/actions/runner-groups"),
        ),
        (
            "/repos/{owner}/{repo}/actions/runs",
            format!("{repo_path}/actions/runs?status=queued"),
        ),
        (
            "/repos/{owner}/{repo}/actions/runs/{run_id}",
            format!("{repo_path}/actions/runs/{}", run.run_id),
        ),
        (
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            format!("{repo_path}/actions/runs/{}/jobs", run.run_id),
        ),
        (
            "/repos/{owner}/{repo}/actions/jobs/{job_id}",
            format!("{repo_path}/actions/jobs/{}", run.job_ids[0]),
        ),
        (
            "/repos/{owner}/{repo}/actions/jobs/{job_id}",
            format!("{repo_path}/actions/jobs/{}", run.job_ids[1]),
        ),
        (
            "/repos/{owner}/{repo}/actions/jobs/{job_id}",
            format!("{repo_path}/actions/jobs/{}", run.job_ids[3]),
        ),
        (
            "/orgs/{org}/actions/runners/{runner_id}",
            format!("/orgs/{ORG}/actions/runners/{runner_id}"),
        ),
        (
            "/repos/{owner}/{repo}/actions/runners/{runner_id}",
            format!("{repo_path}/actions/runners/{repo_runner}"),
        ),
        ("/rate_limit", "/rate_limit".to_string()),
    ] {
        let (s, b) = call(w.get(&p, &token)).await;
        assert_eq!(s, 200, "{p}: {b}");
        check(&mut rest, &mut seen, "get", tpl, s, &b);
    }
    for (tpl, p) in [
        (
            "/orgs/{org}/actions/runners/registration-token",
            format!("/orgs/{ORG}/actions/runners/registration-token"),
        ),
        (
            "/repos/{owner}/{repo}/actions/runners/registration-token",
            format!("{repo_path}/actions/runners/registration-token"),
        ),
    ] {
        let (s, b) = call(w.post(&p, &token)).await;
        check(&mut rest, &mut seen, "post", tpl, s, &b);
    }

    // Run the first job on a fake runner; look at the job and the runner while it runs.
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
    let (s, b) = call(w.get(
        &format!("{repo_path}/actions/jobs/{}", run.job_ids[0]),
        &token,
    ))
    .await;
    assert_eq!(b["status"], "in_progress");
    check(
        &mut rest,
        &mut seen,
        "get",
        "/repos/{owner}/{repo}/actions/jobs/{job_id}",
        s,
        &b,
    );
    let (s, b) = call(w.get(&format!("/orgs/{ORG}/actions/runners/{runner_id}"), &token)).await;
    assert_eq!(b["busy"], true);
    check(
        &mut rest,
        &mut seen,
        "get",
        "/orgs/{org}/actions/runners/{runner_id}",
        s,
        &b,
    );
    let (s, b) = call(w.delete(&format!("/orgs/{ORG}/actions/runners/{runner_id}"), &token)).await;
    assert_eq!(s, 422);
    check(
        &mut rest,
        &mut seen,
        "delete",
        "/orgs/{org}/actions/runners/{runner_id}",
        s,
        &b,
    );
    let (code, _, _) = finish(child, Duration::from_secs(20)).await;
    assert_eq!(code, 0);
    let (s, b) = call(w.get(
        &format!("{repo_path}/actions/jobs/{}", run.job_ids[0]),
        &token,
    ))
    .await;
    assert_eq!(b["conclusion"], "success");
    check(
        &mut rest,
        &mut seen,
        "get",
        "/repos/{owner}/{repo}/actions/jobs/{job_id}",
        s,
        &b,
    );
    let (s, b) = call(w.get(
        &format!("{repo_path}/actions/runs?status=in_progress"),
        &token,
    ))
    .await;
    check(
        &mut rest,
        &mut seen,
        "get",
        "/repos/{owner}/{repo}/actions/runs",
        s,
        &b,
    );
    let (s, b) = call(w.delete(
        &format!("{repo_path}/actions/runners/{repo_runner}"),
        &token,
    ))
    .await;
    assert_eq!((s, b), (204, Value::Null));

    // Cancel (202, then 409 once completed), a completed run, and error answers.
    let (s, b) = call(w.post(
        &format!("{repo_path}/actions/runs/{}/cancel", run.run_id),
        PAT,
    ))
    .await;
    assert_eq!(s, 202);
    check(
        &mut rest,
        &mut seen,
        "post",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
        s,
        &b,
    );
    let (s, b) = call(w.post(
        &format!("{repo_path}/actions/runs/{}/cancel", run.run_id),
        PAT,
    ))
    .await;
    assert_eq!(s, 409);
    check(
        &mut rest,
        &mut seen,
        "post",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
        s,
        &b,
    );
    let (s, b) = call(w.get(&format!("{repo_path}/actions/runs/{}", run.run_id), &token)).await;
    assert_eq!(b["conclusion"], "cancelled");
    check(
        &mut rest,
        &mut seen,
        "get",
        "/repos/{owner}/{repo}/actions/runs/{run_id}",
        s,
        &b,
    );
    let (s, b) = call(w.get(
        &format!("{repo_path}/actions/runs/{}/jobs?filter=all", run.run_id),
        &token,
    ))
    .await;
    check(
        &mut rest,
        &mut seen,
        "get",
        "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
        s,
        &b,
    );
    let (s, b) = call(w.get(&format!("{repo_path}/actions/jobs/1"), &token)).await;
    assert_eq!(s, 404);
    check(
        &mut rest,
        &mut seen,
        "get",
        "/repos/{owner}/{repo}/actions/jobs/{job_id}",
        s,
        &b,
    );
    let (s, b) = call(w.get(&format!("/orgs/{ORG}/actions/runners"), "ghs_bad")).await;
    assert_eq!(s, 401);
    check(
        &mut rest,
        &mut seen,
        "get",
        "/orgs/{org}/actions/runners",
        s,
        &b,
    );
    w.sim.set_faults(Faults {
        secondary_rate_limit: 1,
        primary_rate_limit: 1,
        server_errors: 1,
        ..Faults::default()
    });
    for expected in [502, 403, 403] {
        let (s, b) = call(w.get(&format!("/orgs/{ORG}/actions/runners"), &token)).await;
        assert_eq!(s, expected);
        check(
            &mut rest,
            &mut seen,
            "get",
            "/orgs/{org}/actions/runners",
            s,
            &b,
        );
    }

    // Webhook deliveries: the list and a redelivery.
    assert!(hooks.wait_count(5, Duration::from_secs(10)).await);
    let (s, b) = call(w.get("/app/hook/deliveries", &jwt)).await;
    check(&mut rest, &mut seen, "get", "/app/hook/deliveries", s, &b);
    let first = b[b.as_array().unwrap().len() - 1]["id"].as_u64().unwrap();
    let (s, b) = call(w.post(&format!("/app/hook/deliveries/{first}/attempts"), &jwt)).await;
    assert_eq!(s, 202);
    check(
        &mut rest,
        &mut seen,
        "post",
        "/app/hook/deliveries/{delivery_id}/attempts",
        s,
        &b,
    );

    // Every webhook body received so far.
    assert!(
        w.sim
            .wait_for_deliveries(Duration::from_secs(10), |d| d
                .iter()
                .all(|d| d.outcome != "pending"))
            .await
    );
    let received = hooks.all();
    let mut actions = std::collections::BTreeSet::new();
    for r in &received {
        let body = r.json();
        let action = body["action"].as_str().unwrap().to_string();
        let name = match action.as_str() {
            "in_progress" => "webhook-workflow-job-in-progress".to_string(),
            a => format!("webhook-workflow-job-{a}"),
        };
        let errs = hooks_spec.check_component(&name, &body);
        assert!(errs.is_empty(), "{name}: {errs:#?}");
        actions.insert(action);
    }
    assert_eq!(
        actions.into_iter().collect::<Vec<_>>(),
        ["completed", "in_progress", "queued", "waiting"]
    );
    eprintln!(
        "validated {} REST answers and {} webhook bodies",
        seen.len(),
        received.len()
    );
    // The checks can fail: a job without `id`, a runner with a string `busy`.
    let (_, mut job) = call(w.get(
        &format!("{repo_path}/actions/jobs/{}", run.job_ids[0]),
        &token,
    ))
    .await;
    job.as_object_mut().unwrap().remove("id");
    assert!(!rest.check_component("job", &job).is_empty());
    let (_, created) = call(
        w.post(
            &format!("/orgs/{ORG}/actions/runners/generate-jitconfig"),
            &token,
        )
        .json(&jit("c-2")),
    )
    .await;
    let mut runner = created["runner"].clone();
    assert!(rest.check_component("runner", &runner).is_empty());
    runner["busy"] = json!("no");
    assert!(!rest.check_component("runner", &runner).is_empty());
    let mut hook = received[0].json();
    hook["workflow_job"]["status"] = json!("pending");
    assert!(!hooks_spec
        .check_component("webhook-workflow-job-queued", &hook)
        .is_empty());
}
