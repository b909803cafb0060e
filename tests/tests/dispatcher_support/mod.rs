//! Setup shared by the dispatcher end-to-end tests: the GitHub simulator as the dispatcher
//! expects it (`e2e::sim_world`), a directory holding the webhook secret and App key files, and
//! the dispatcher's config for the shared Slurm cluster (`e2e::dispatcher_config`).

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::Duration;

use e2e::dispatcher_config::{Coordinates, DispatcherConfig, Pool, Scaling};
use e2e::sim_world::{SimWorld, ORG};
use e2e::Cluster;
use github_sim::{test_keys, Sim};

pub use e2e::sim_world::APP_ID;
/// The webhook secret; tests also check that it never reaches a log.
pub const SECRET: &str = "dispatcher-e2e-webhook-secret";

/// The shared cluster, with `SLURM_CONF` pointing at it for in-process dispatchers (they
/// find the cluster like every Slurm client does).
pub fn cluster() -> &'static Cluster {
    static ENV: Once = Once::new();
    let cluster = Cluster::shared();
    ENV.call_once(|| std::env::set_var("SLURM_CONF", cluster.conf()));
    cluster
}

/// A simulator with org `acme`, repository `acme/widgets`, and the App installed on `acme`.
pub async fn start_sim() -> Sim {
    SimWorld::start(&["widgets"]).await.unwrap().sim
}

/// A temporary directory with `webhook-secret`, `app.pem` and the simulator's CA
/// (`github-ca.pem`); the state database goes there too.
pub fn secrets_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("webhook-secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("app.pem"), test_keys::APP_PRIVATE_KEY_PEM).unwrap();
    e2e::sim_world::write_test_ca(dir.path()).unwrap();
    dir
}

/// A dispatcher config: GitHub App on `acme/widgets` at `api_url`, secrets and database in
/// `dir` (see [`secrets_dir`]), runner names `<prefix>-...`, jobs as the cluster's test user,
/// inline credentials, no pools yet; it trusts the simulator's CA (`github-ca.pem` in `dir`).
pub fn base_config(dir: &Path, api_url: &str, prefix: &str) -> DispatcherConfig {
    DispatcherConfig::for_cluster(
        cluster(),
        &Coordinates {
            api_url,
            ca_file: Some(&dir.join("github-ca.pem")),
            app_id: APP_ID,
            private_key_file: &dir.join("app.pem"),
            webhook_secret_file: &dir.join("webhook-secret"),
            db_path: &dir.join("state.db"),
            runner_name_prefix: prefix,
            org: ORG,
            repositories: &[format!("{ORG}/widgets")],
        },
    )
}

/// [`base_config`] with `scaling` and `pools`.
pub fn config_with(
    dir: &Path,
    api_url: &str,
    prefix: &str,
    scaling: Scaling,
    pools: Vec<Pool>,
) -> DispatcherConfig {
    let mut config = base_config(dir, api_url, prefix);
    config.scaling = scaling;
    config.pools = pools;
    config
}

/// The dispatcher in this process on `config`, the simulator's webhooks sent to it; its URL.
pub async fn start_in_process(
    config: &DispatcherConfig,
    sim: &Sim,
) -> (gha_dispatcher::app::Running, String) {
    let config = gha_dispatcher::config::Config::parse(&config.to_toml().unwrap()).unwrap();
    let secrets = config.load_secrets().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gha_dispatcher::app::start(config, secrets, Some(listener))
        .await
        .unwrap();
    let url = format!("http://{}", running.local_addr);
    sim.set_webhook(github_sim::model::WebhookTarget {
        url: format!("{url}/webhook"),
        secret: SECRET.into(),
    });
    (running, url)
}

/// `reconcile_interval_secs` (and `boot_deadline_secs` when given), nothing else.
pub fn scaling(reconcile_interval_secs: u64, boot_deadline_secs: Option<u64>) -> Scaling {
    Scaling {
        reconcile_interval_secs: Some(reconcile_interval_secs),
        boot_deadline_secs,
        ..Scaling::default()
    }
}

/// The `gha-dispatcher` binary, built if needed, from this test's profile directory: the crash
/// and identity tests run it as a separate process, as an admin would.
pub fn dispatcher_binary() -> PathBuf {
    e2e::built::dispatcher().unwrap_or_else(|e| panic!("{e:#}"))
}

/// A Slurm job as `squeue` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmJob {
    pub id: u64,
    pub name: String,
    pub state: String,
}

/// Every Slurm job (any state) whose name starts with `<prefix>-`.
pub fn slurm_jobs(prefix: &str) -> Vec<SlurmJob> {
    let out = cluster()
        .command("squeue")
        .args(["--noheader", "--all", "--states=all", "--format=%i|%j|%T"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "squeue: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut p = l.trim().split('|');
            let id = p.next()?.parse().ok()?;
            let name = p.next()?.to_string();
            let state = p.next()?.to_string();
            name.starts_with(&format!("{prefix}-"))
                .then_some(SlurmJob { id, name, state })
        })
        .collect()
}

/// The `gha-dispatcher serve` binary running as its own process, its output in a log file.
pub struct Daemon {
    child: std::process::Child,
}

impl Daemon {
    pub fn spawn(config: &Path, log: &Path) -> Daemon {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let child = Command::new(dispatcher_binary())
            .args(["serve", "--config"])
            .arg(config)
            .env("SLURM_CONF", cluster().conf())
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        Daemon { child }
    }

    /// SIGKILL, as a crash.
    pub fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM, as systemd stops it, and wait for it to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
        self.child.wait().unwrap()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port that was free a moment ago (a dispatcher binary binds it next).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until the dispatcher at `url` answers `/healthz`.
pub async fn healthy(url: &str) {
    let url = format!("{url}/healthz");
    let what = format!("the dispatcher to answer {url}");
    test_support::wait_until_async(&what, Duration::from_secs(30), || async {
        reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await
    .unwrap();
}

/// A directory in /tmp that every job user may write a marker file into (mode 1777; not the
/// cluster's, which a concurrent `ci/slurm-up` may recreate).
pub fn markers_dir(prefix: &str) -> tempfile::TempDir {
    let d = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    std::fs::set_permissions(
        d.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o1777),
    )
    .unwrap();
    d
}

/// A MUNGE credential carrying `payload`, made by `user` (root when `None`) through `socket`.
pub fn munge_credential(user: Option<&str>, socket: &Path, payload: &str) -> String {
    e2e::munge::munge_credential(user, socket, payload).unwrap()
}

/// The cluster's munged socket.
pub fn munge_socket() -> PathBuf {
    cluster().munge_socket()
}

/// The redemption payload a node sends: `{"ticket": .., "job_id": ..}`.
pub fn redemption_payload(ticket: &str, job_id: u64) -> String {
    serde_json::json!({ "ticket": ticket, "job_id": job_id }).to_string()
}

/// `POST <dispatcher>/tickets/redeem` with `credential`: (status, body).
pub async fn redeem(dispatcher: &str, credential: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(format!("{dispatcher}/tickets/redeem"))
        .header("content-type", "text/plain")
        .body(credential.to_string())
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.text().await.unwrap_or_default())
}

/// The `error` code of a refused redemption's JSON answer.
pub fn refusal_code(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_string))
        .unwrap_or_else(|| format!("<not a JSON refusal: {body}>"))
}

/// The `--gha-runner` value of Slurm job `job_id`, read as root from slurmctld's state
/// directory: what anyone who copies Slurm's records gets.
pub fn runner_option_from_state_dir(job_id: u64) -> String {
    let path = cluster().dir().join(format!(
        "state/hash.{}/job.{job_id}/environment",
        job_id % 10
    ));
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    bytes
        .split(|b| *b == 0)
        .filter_map(|var| std::str::from_utf8(var).ok())
        .find_map(|var| var.strip_prefix("_SLURM_SPANK_OPTION_spank_gha_gha_runner="))
        .unwrap_or_else(|| panic!("no --gha-runner value in {}", path.display()))
        .to_string()
}

/// A second munged whose credentials come "from another host" (see `e2e::munge`).
pub fn other_host_munged() -> e2e::munge::OtherHostMunged {
    e2e::munge::OtherHostMunged::start(cluster()).unwrap()
}

/// A redemption request that reached the [`RedeemGate`], waiting for the test to let it on.
pub struct HeldRedemption {
    pub credential: String,
    reply: tokio::sync::oneshot::Sender<(u16, String)>,
}

impl HeldRedemption {
    /// Pass it to the dispatcher and its answer back to the node; returns that answer.
    pub async fn forward(self, dispatcher: &str) -> (u16, String) {
        let answer = redeem(dispatcher, &self.credential).await;
        let _ = self.reply.send(answer.clone());
        answer
    }
}

/// A relay on the dispatcher slot in front of the real dispatcher: it hands each node's
/// redemption request to the test, which forwards it when it chooses (and may replay it).
pub struct RedeemGate {
    held: tokio::sync::mpsc::UnboundedReceiver<HeldRedemption>,
    server: tokio::task::JoinHandle<()>,
}

impl RedeemGate {
    pub fn start(listener: tokio::net::TcpListener) -> RedeemGate {
        use axum::extract::State;
        type Tx = tokio::sync::mpsc::UnboundedSender<HeldRedemption>;
        async fn hold(
            State(tx): State<Tx>,
            credential: String,
        ) -> (axum::http::StatusCode, String) {
            let (reply, answer) = tokio::sync::oneshot::channel();
            if tx.send(HeldRedemption { credential, reply }).is_err() {
                return (axum::http::StatusCode::BAD_GATEWAY, "gate closed".into());
            }
            match answer.await {
                Ok((status, body)) => (
                    axum::http::StatusCode::from_u16(status)
                        .unwrap_or(axum::http::StatusCode::BAD_GATEWAY),
                    body,
                ),
                Err(_) => (
                    axum::http::StatusCode::BAD_GATEWAY,
                    "dropped by the test".into(),
                ),
            }
        }
        let (tx, held) = tokio::sync::mpsc::unbounded_channel();
        let router = axum::Router::new()
            .route("/tickets/redeem", axum::routing::post(hold))
            .with_state(tx);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        RedeemGate { held, server }
    }

    /// The next node request, within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> HeldRedemption {
        tokio::time::timeout(timeout, self.held.recv())
            .await
            .expect("no redemption request reached the gate in time")
            .expect("gate closed")
    }
}

impl Drop for RedeemGate {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// `GET <url>`'s body as text (a test's view of `/metrics`).
pub async fn get_text(url: &str) -> String {
    reqwest::get(url).await.unwrap().text().await.unwrap()
}

/// `GET <url>`'s JSON body (a test's view of `/status`), as an admin: with root's MUNGE
/// credential.
pub async fn get_json(url: &str) -> serde_json::Value {
    let credential = munge_credential(None, &munge_socket(), "");
    reqwest::Client::new()
        .get(url)
        .header("Authorization", format!("MUNGE {credential}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The value of one series (`name{labels}` exactly as rendered) in a `/metrics` text, if
/// exported. Known series are exported at zero from the start, so a test asks for the value.
pub fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .find_map(|v| v.trim().parse().ok())
}
