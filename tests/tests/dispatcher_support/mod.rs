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
