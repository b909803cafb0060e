//! Shared test support: a simulator set up with an org, repo, App, installation and PAT; an
//! HTTP client; a webhook receiver that records deliveries; fake runner processes.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use github_sim::{test_keys, AppSpec, InstallationSpec, Sim, SimConfig, WebhookTarget};
use serde_json::Value;
use test_support::wait_until_async;

pub const ORG: &str = "acme";
pub const REPO: &str = "widgets";
pub const APP_ID: u64 = 4242;
pub const PAT: &str = "ghp_testtoken0000000000000000000000000000";
pub const SECRET: &str = "webhook-secret";

pub struct World {
    pub sim: Sim,
    pub installation_id: u64,
    pub http: reqwest::Client,
}

pub async fn world() -> World {
    world_with(SimConfig::default()).await
}

pub async fn world_with(config: SimConfig) -> World {
    let sim = Sim::start(config).await.unwrap();
    sim.add_repo(ORG, REPO);
    sim.add_app(AppSpec {
        id: APP_ID,
        slug: "spank-gha".into(),
        public_key_pem: test_keys::APP_PUBLIC_KEY_PEM.into(),
    })
    .unwrap();
    let installation_id = sim
        .add_installation(InstallationSpec {
            app_id: APP_ID,
            account: ORG.into(),
            permissions: None,
        })
        .unwrap();
    sim.add_pat(PAT, &["admin:org", "repo"]);
    World {
        sim,
        installation_id,
        http: reqwest::Client::new(),
    }
}

impl World {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.sim.url(), path)
    }

    pub fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .get(self.url(path))
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
    }

    pub fn post(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28")
    }

    pub fn delete(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(self.url(path))
            .bearer_auth(token)
            .header("accept", "application/vnd.github+json")
    }

    /// A fresh installation access token, minted through the REST API with an App JWT.
    pub async fn installation_token(&self) -> String {
        let r = self
            .post(
                &format!("/app/installations/{}/access_tokens", self.installation_id),
                &test_keys::app_jwt(APP_ID),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let v: Value = r.json().await.unwrap();
        v["token"].as_str().unwrap().to_string()
    }

    /// `POST /orgs/{org}/actions/runners/generate-jitconfig`; returns (runner id, encoded config).
    pub async fn jit(&self, token: &str, name: &str, labels: &[&str]) -> (u64, String) {
        let r = self
            .post(
                &format!("/orgs/{ORG}/actions/runners/generate-jitconfig"),
                token,
            )
            .json(&serde_json::json!({"name": name, "runner_group_id": 1, "labels": labels}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201, "generate-jitconfig");
        let v: Value = r.json().await.unwrap();
        (
            v["runner"]["id"].as_u64().unwrap(),
            v["encoded_jit_config"].as_str().unwrap().to_string(),
        )
    }
}

/// One webhook delivery as received.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap()
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

#[derive(Clone, Default)]
pub struct Receiver {
    pub got: Arc<Mutex<Vec<Received>>>,
    /// Status to answer (default 200).
    pub status: Arc<Mutex<u16>>,
    /// Delay before answering.
    pub delay: Arc<Mutex<Duration>>,
}

impl Receiver {
    pub fn all(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }
    pub fn actions(&self) -> Vec<(String, u64)> {
        self.all()
            .iter()
            .map(|r| {
                let v = r.json();
                (
                    v["action"].as_str().unwrap().to_string(),
                    v["workflow_job"]["id"].as_u64().unwrap(),
                )
            })
            .collect()
    }
    pub async fn wait_count(&self, n: usize, timeout: Duration) -> bool {
        let what = format!("{n} webhook deliveries");
        wait_until_async(&what, timeout, || async {
            self.got.lock().unwrap().len() >= n
        })
        .await
        .is_ok()
    }
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let delay = *r.delay.lock().unwrap();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    r.got.lock().unwrap().push(Received { headers, body });
    StatusCode::from_u16(*r.status.lock().unwrap()).unwrap()
}

/// Starts a webhook receiver and points the simulator at it.
pub async fn receiver(sim: &Sim) -> Receiver {
    let r = Receiver {
        status: Arc::new(Mutex::new(200)),
        ..Default::default()
    };
    let app = Router::new()
        .route("/webhook", post(receive))
        .with_state(r.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    sim.set_webhook(WebhookTarget {
        url: format!("http://{addr}/webhook"),
        secret: SECRET.into(),
    });
    r
}

/// A fake runner installed in a fresh temporary root (run.sh + bin/Runner.Listener).
pub struct RunnerRoot {
    pub dir: tempfile::TempDir,
}

impl RunnerRoot {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        github_sim::runner_install::install(
            dir.path(),
            &PathBuf::from(env!("CARGO_BIN_EXE_fake-runner")),
        )
        .unwrap();
        Self { dir }
    }

    pub fn run_sh(&self) -> PathBuf {
        self.dir.path().join("run.sh")
    }

    /// Starts `run.sh` with the config in `ACTIONS_RUNNER_INPUT_JITCONFIG` (and another input
    /// variable beside it), with piped output.
    pub fn spawn_with_env_config(&self, jitconfig: &str) -> tokio::process::Child {
        tokio::process::Command::new(self.run_sh())
            .env("ACTIONS_RUNNER_INPUT_JITCONFIG", jitconfig)
            .env("ACTIONS_RUNNER_INPUT_NAME", "unused")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    /// Starts `run.sh --jitconfig <cfg>` with piped output.
    pub fn spawn(&self, jitconfig: &str) -> tokio::process::Child {
        tokio::process::Command::new(self.run_sh())
            .arg("--jitconfig")
            .arg(jitconfig)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }
}

/// Waits for a child with a deadline; returns (exit code, stdout, stderr).
pub async fn finish(child: tokio::process::Child, timeout: Duration) -> (i32, String, String) {
    let out = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .expect("runner did not exit in time")
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

impl World {
    /// Queues a one-job workflow in the test repository.
    pub fn enqueue_one(
        &self,
        name: &str,
        labels: &[&str],
        command: Option<&str>,
    ) -> github_sim::RunCreated {
        self.sim
            .enqueue_workflow(workflow(vec![job(name, labels, command)]))
            .unwrap()
    }
}

pub fn job(name: &str, labels: &[&str], command: Option<&str>) -> github_sim::JobSpec {
    github_sim::JobSpec {
        command: command.map(str::to_string),
        ..github_sim::JobSpec::new(name, labels)
    }
}

pub fn workflow(jobs: Vec<github_sim::JobSpec>) -> github_sim::WorkflowSpec {
    github_sim::WorkflowSpec {
        repo: format!("{ORG}/{REPO}"),
        name: "ci".into(),
        jobs,
        delay_ms: 0,
    }
}
