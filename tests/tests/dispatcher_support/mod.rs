//! Setup shared by the dispatcher end-to-end tests: the GitHub simulator with org `acme`,
//! repository `acme/widgets`, the App and its installation; a directory holding the webhook
//! secret and App key files; and the dispatcher's config text for the shared Slurm cluster.

// Each test binary includes this module and uses only part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Once;
use std::time::{Duration, Instant};

use e2e::Cluster;
use github_sim::model::{AppSpec, InstallationSpec};
use github_sim::{test_keys, Sim, SimConfig};

pub const APP_ID: u64 = 4242;
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
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.add_org("acme");
    sim.add_repo("acme", "widgets");
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

/// A temporary directory with `webhook-secret` and `app.pem`; the state database goes there too.
pub fn secrets_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("webhook-secret"), SECRET).unwrap();
    std::fs::write(dir.path().join("app.pem"), test_keys::APP_PRIVATE_KEY_PEM).unwrap();
    dir
}

/// What differs between the tests' dispatcher configs.
pub struct ConfigSpec<'a> {
    /// Holds the secret files and the database (see [`secrets_dir`]).
    pub dir: &'a Path,
    pub api_url: &'a str,
    pub listen: &'a str,
    pub prefix: &'a str,
    /// `sbatch` command; the real one on PATH when `None`.
    pub sbatch: Option<&'a Path>,
    /// Lines of the `[scaling]` table.
    pub scaling: &'a str,
    /// The `[[pools]]` tables.
    pub pools: &'a str,
}

/// A dispatcher config: GitHub App on `acme/widgets`, jobs as the cluster's test user.
pub fn config_text(spec: &ConfigSpec<'_>) -> String {
    let cluster = cluster();
    format!(
        r#"
[server]
listen = "{listen}"
webhook_secret_file = "{d}/webhook-secret"
[state]
db_path = "{d}/state.db"
[github]
api_url = "{api}"
app_id = {APP_ID}
private_key_file = "{d}/app.pem"
runner_name_prefix = "{prefix}"
targets = [{{ org = "acme", repositories = ["acme/widgets"] }}]
[slurm]
job_script = "{script}"
sbatch = "{sbatch}"
user = "{user}"
group = "{user}"
output = "{jobs}/%x-%j.out"
chdir = "{jobs}"
runner_credentials = "inline"
[scaling]
{scaling}
{pools}
"#,
        listen = spec.listen,
        d = spec.dir.display(),
        api = spec.api_url,
        prefix = spec.prefix,
        script = cluster.dir().join("libexec/gha-runner-job").display(),
        sbatch = spec
            .sbatch
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "sbatch".into()),
        user = cluster.test_user(),
        jobs = cluster.jobs_dir().display(),
        scaling = spec.scaling,
        pools = spec.pools,
    )
}

/// Poll `check` until it holds or `timeout` passes (never a fixed sleep).
pub async fn eventually(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, String>,
) {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        match check() {
            Ok(true) => return,
            Ok(false) => {}
            Err(e) => last = e,
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}; last: {last}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The `gha-dispatcher` binary, built if needed, from this test's profile directory: the crash
/// and identity tests run it as a separate process, as an admin would.
pub fn dispatcher_binary() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "gha-dispatcher",
            "--bin",
            "gha-dispatcher",
        ])
        .current_dir(Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap())
        .status()
        .expect("running cargo build");
    assert!(status.success(), "building gha-dispatcher failed");
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("gha-dispatcher");
    assert!(bin.is_file(), "{} missing", bin.display());
    bin
}

/// `[slurm] runner_credentials = "inline"`, as [`config_text`] writes it.
const INLINE_CREDENTIALS: &str = "runner_credentials = \"inline\"";

/// `text` (from [`config_text`]) with late-binding tickets: jobs carry `ticket:<opaque>` and
/// redeem it at the dispatcher, which decodes their MUNGE credentials with the cluster's munged.
pub fn with_tickets(text: &str) -> String {
    assert!(
        text.contains(INLINE_CREDENTIALS),
        "not a config_text config"
    );
    let text = text.replace(INLINE_CREDENTIALS, "runner_credentials = \"ticket\"");
    if text.contains("munge_socket") {
        return text;
    }
    text.replace(
        "[state]\n",
        &format!("munge_socket = \"{}\"\n[state]\n", munge_socket().display()),
    )
}

/// The cluster's munged socket.
pub fn munge_socket() -> PathBuf {
    cluster().dir().join("munge/run/munge.socket")
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
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A MUNGE credential carrying `payload`, made by `user` (root when `None`) through `socket`.
pub fn munge_credential(user: Option<&str>, socket: &Path, payload: &str) -> String {
    use std::io::Write;
    let mut command = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", "munge"]);
            c
        }
        None => Command::new("munge"),
    };
    let mut child = command
        .arg(format!("--socket={}", socket.display()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(payload.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "munge failed");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
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

/// A second munged in the cluster's MUNGE domain (same key) that stamps its credentials with
/// another origin address: credentials "from another host".
pub struct OtherHostMunged {
    child: std::process::Child,
    dir: tempfile::TempDir,
}

impl OtherHostMunged {
    pub const ORIGIN: &'static str = "127.0.0.2";

    pub fn start() -> OtherHostMunged {
        use std::os::unix::fs::PermissionsExt;
        use std::os::unix::process::CommandExt;
        let munge = nix::unistd::User::from_name("munge")
            .unwrap()
            .expect("user munge exists (Debian's munge package)");
        let dir = tempfile::Builder::new()
            .prefix("munge-other-host")
            .tempdir_in("/tmp")
            .unwrap();
        let key = dir.path().join("munge.key");
        std::fs::copy(cluster().dir().join("munge/munge.key"), &key).unwrap();
        for sub in ["run", "log", "lib"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        // munged insists: everything its own, nothing writable by others, key 0600.
        for (path, mode) in [
            (dir.path().to_path_buf(), 0o755),
            (dir.path().join("run"), 0o755),
            (dir.path().join("log"), 0o700),
            (dir.path().join("lib"), 0o700),
            (key.clone(), 0o600),
        ] {
            nix::unistd::chown(&path, Some(munge.uid), Some(munge.gid)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let d = dir.path().display();
        let child = Command::new("munged")
            .args([
                "--foreground".to_string(),
                format!("--socket={d}/run/socket"),
                format!("--key-file={d}/munge.key"),
                format!("--pid-file={d}/run/munged.pid"),
                format!("--log-file={d}/log/munged.log"),
                format!("--seed-file={d}/lib/munged.seed"),
                format!("--origin={}", Self::ORIGIN),
            ])
            .uid(munge.uid.as_raw())
            .gid(munge.gid.as_raw())
            .stdin(std::process::Stdio::null())
            // It logs to its --log-file as well; keep the test output readable.
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let munged = OtherHostMunged { child, dir };
        let socket = munged.socket();
        e2e::wait_for(
            "the second munged's socket",
            Duration::from_secs(10),
            || Ok(socket.exists().then_some(())),
        )
        .unwrap();
        munged
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/socket")
    }
}

impl Drop for OtherHostMunged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// `GET <url>`'s JSON body (a test's view of `/status`).
pub async fn get_json(url: &str) -> serde_json::Value {
    reqwest::get(url).await.unwrap().json().await.unwrap()
}
