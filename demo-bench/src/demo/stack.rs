//! The running system the demo and the benchmark drive: the GitHub simulator (in-process, with
//! an organization, its repositories and an installed GitHub App) and the `gha-dispatcher`
//! binary started as an admin would start it (a generated TOML config, secrets in 0600 files,
//! SQLite state in a temporary directory), pointed at the test cluster.

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use github_sim::{AppSpec, InstallationSpec, Sim, SimConfig, WebhookTarget};

use e2e::Cluster;
use e2e::DispatcherSlot;

/// The organization every demo and bench repository lives in.
pub const ORG: &str = "acme";
/// The GitHub App the dispatcher authenticates as.
pub const APP_ID: u64 = 4242;

/// One `[[pools]]` entry of the generated dispatcher config.
#[derive(Debug, Clone)]
pub struct PoolSpec {
    pub name: String,
    /// Labels besides `self-hosted` (which the dispatcher always implies).
    pub labels: Vec<String>,
    pub max_runners: u32,
    /// Wins when several pools serve a job (higher first).
    pub priority: i64,
    pub cpus: Option<u32>,
    pub extra_args: Vec<String>,
}

impl PoolSpec {
    pub fn new(name: &str, labels: &[&str], max_runners: u32) -> PoolSpec {
        PoolSpec {
            name: name.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            max_runners,
            priority: 0,
            cpus: None,
            extra_args: Vec::new(),
        }
    }

    /// Does a job with `runs_on` labels belong to this pool (every label of the job is the
    /// pool's, `self-hosted` implied, case-insensitive)?
    pub fn serves(&self, runs_on: &[String]) -> bool {
        runs_on.iter().all(|label| {
            label.eq_ignore_ascii_case("self-hosted")
                || self.labels.iter().any(|l| l.eq_ignore_ascii_case(label))
        })
    }
}

/// The simulator with the world the dispatcher expects.
pub struct SimWorld {
    pub sim: Sim,
    pub installation_id: u64,
    pub repos: Vec<String>,
    pub webhook_secret: String,
}

impl SimWorld {
    /// Starts the simulator on a free loopback port with `ORG`, its `repos` (names without the
    /// owner) and the App installed on the organization. Webhooks are set later, once the
    /// receiver's address is known.
    pub async fn start(repos: &[&str]) -> Result<SimWorld> {
        let sim = Sim::start(SimConfig::default())
            .await
            .context("starting the GitHub simulator")?;
        sim.add_org(ORG);
        for repo in repos {
            sim.add_repo(ORG, repo);
        }
        sim.add_app(AppSpec {
            id: APP_ID,
            slug: "spank-gha".into(),
            public_key_pem: github_sim::test_keys::APP_PUBLIC_KEY_PEM.into(),
        })
        .context("registering the App with the simulator")?;
        let installation_id = sim
            .add_installation(InstallationSpec {
                app_id: APP_ID,
                account: ORG.into(),
                permissions: None,
            })
            .context("installing the App on the organization")?;
        Ok(SimWorld {
            sim,
            installation_id,
            repos: repos.iter().map(|r| format!("{ORG}/{r}")).collect(),
            webhook_secret: random_hex(24)?,
        })
    }

    /// Sends the App's webhooks to `url`, signed with this world's secret.
    pub fn send_webhooks_to(&self, url: &str) {
        self.sim.set_webhook(WebhookTarget {
            url: url.into(),
            secret: self.webhook_secret.clone(),
        });
    }
}

/// What the generated dispatcher config says besides the simulator's coordinates.
#[derive(Debug, Clone)]
pub struct DispatcherSpec {
    pub pools: Vec<PoolSpec>,
    /// Unique per run, so this run's runners and Slurm jobs can be told apart from others'.
    pub runner_name_prefix: String,
    /// `None` keeps the dispatcher's default.
    pub reconcile_interval_secs: Option<u64>,
    /// An `sbatch` to use instead of the one on PATH (the bench's timing wrapper).
    pub sbatch: Option<PathBuf>,
    pub credentials: RunnerCredentials,
}

/// How runner jobs get their JIT config (`slurm.runner_credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerCredentials {
    /// `ticket:<opaque>`, redeemed when the job starts: the dispatcher listens on the
    /// cluster's dispatcher address (plugstack.conf's `dispatcher_url`), holding its slot.
    Ticket,
    /// The JIT config inline on sbatch's command line; the dispatcher takes any free port.
    Inline,
}

impl RunnerCredentials {
    pub fn config_value(self) -> &'static str {
        match self {
            RunnerCredentials::Ticket => "ticket",
            RunnerCredentials::Inline => "inline",
        }
    }
}

/// A running `gha-dispatcher serve`, stopped (TERM, then KILL) when dropped.
pub struct Dispatcher {
    child: Option<Child>,
    pid: u32,
    url: String,
    log: PathBuf,
    config: PathBuf,
    /// Held while a ticket-mode dispatcher runs (released after it stopped: fields drop
    /// after `Drop::drop`).
    _slot: Option<DispatcherSlot>,
}

/// The `gha-dispatcher` binary: `$GHA_DISPATCHER_BIN`, else the one built next to this driver.
pub fn dispatcher_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("GHA_DISPATCHER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().context("locating the running driver")?;
    let candidate = exe
        .parent()
        .context("the driver has no parent directory")?
        .join("gha-dispatcher");
    if !candidate.is_file() {
        bail!(
            "{} does not exist: build it with `cargo build --release -p gha-dispatcher` \
             (or set GHA_DISPATCHER_BIN)",
            candidate.display()
        );
    }
    Ok(candidate)
}

/// The runner job script the dispatcher submits: the copy `ci/slurm-up` installed in the
/// cluster (readable by the job user), else the one in the source tree.
pub fn job_script(cluster: &Cluster) -> Result<PathBuf> {
    let installed = cluster.dir().join("libexec/gha-runner-job");
    if installed.is_file() {
        return Ok(installed);
    }
    let source = cluster.repo_root().join("spank-gha/libexec/gha-runner-job");
    if source.is_file() {
        return Ok(source);
    }
    bail!(
        "no runner job script: neither {} nor {} exists",
        installed.display(),
        source.display()
    )
}

impl Dispatcher {
    /// Writes the config and secrets into `dir`, starts the dispatcher and waits until its
    /// `/healthz` answers. `dir` must outlive the dispatcher (it holds the SQLite file).
    pub fn start(
        cluster: &Cluster,
        world: &SimWorld,
        spec: &DispatcherSpec,
        dir: &Path,
    ) -> Result<Dispatcher> {
        let slot = match spec.credentials {
            RunnerCredentials::Ticket => {
                let slot = DispatcherSlot::acquire(cluster)?;
                // Bound and released at once: the address is free for the dispatcher.
                let probe = std::net::TcpListener::bind(slot.addr())
                    .with_context(|| format!("the dispatcher address {} is in use", slot.addr()))?;
                drop(probe);
                Some(slot)
            }
            RunnerCredentials::Inline => None,
        };
        let port = match &slot {
            Some(slot) => slot.addr().port(),
            None => free_port()?,
        };
        let secret_file = dir.join("webhook-secret");
        write_private(&secret_file, world.webhook_secret.as_bytes())?;
        let key_file = dir.join("app-private-key.pem");
        write_private(
            &key_file,
            github_sim::test_keys::APP_PRIVATE_KEY_PEM.as_bytes(),
        )?;
        let text = config_toml(cluster, world, spec, port, dir, &secret_file, &key_file)?;
        let config = dir.join("dispatcher.toml");
        fs::write(&config, text).with_context(|| format!("writing {}", config.display()))?;

        let log = dir.join("dispatcher.log");
        let log_file =
            fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let binary = dispatcher_binary()?;
        let child = Command::new(&binary)
            .args(["serve", "--config"])
            .arg(&config)
            .env("SLURM_CONF", cluster.conf())
            .env(
                "RUST_LOG",
                std::env::var("GHA_DISPATCHER_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("duplicating the log file")?)
            .stderr(log_file)
            // Its own process group: a Ctrl-C in the terminal reaches the driver, which stops
            // the dispatcher in order, instead of killing everything at once.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut dispatcher = Dispatcher {
            pid: child.id(),
            child: Some(child),
            url: format!("http://127.0.0.1:{port}"),
            log,
            config,
            _slot: slot,
        };
        dispatcher.wait_healthy(Duration::from_secs(30))?;
        Ok(dispatcher)
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building an HTTP client")?;
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("checking the dispatcher")? {
                    bail!(
                        "gha-dispatcher exited ({status}) before it was healthy; its log ({}):\n{}",
                        self.log.display(),
                        self.log_tail(30)
                    );
                }
            }
            if let Ok(answer) = client.get(format!("{}/healthz", self.url)).send() {
                if answer.status().is_success() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                bail!(
                    "gha-dispatcher did not answer {}/healthz within {timeout:?}; its log:\n{}",
                    self.url,
                    self.log_tail(30)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `http://127.0.0.1:PORT`; webhooks go to `<url>/webhook`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn webhook_url(&self) -> String {
        format!("{}/webhook", self.url)
    }

    pub fn config_path(&self) -> &Path {
        &self.config
    }

    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Is the process still running?
    pub fn is_running(&mut self) -> bool {
        match self.child.as_mut() {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// The last `lines` lines of the dispatcher's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let mut text = String::new();
        if let Ok(mut file) = fs::File::open(&self.log) {
            let _ = file.read_to_string(&mut text);
        }
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The `/metrics` text, if the dispatcher serves it.
    pub fn metrics(&self) -> Result<String> {
        let answer = reqwest::blocking::get(format!("{}/metrics", self.url))
            .context("GET /metrics")?
            .error_for_status()
            .context("GET /metrics")?;
        answer.text().context("reading /metrics")
    }

    /// The dispatcher's `/status` document (pools with queued jobs and runners, runners).
    pub fn status(&self) -> Result<serde_json::Value> {
        let answer = reqwest::blocking::get(format!("{}/status", self.url))
            .context("GET /status")?
            .error_for_status()
            .context("GET /status")?;
        answer.json().context("reading /status as JSON")
    }

    /// Queued jobs the dispatcher holds as demand, per pool, from `/status`.
    pub fn queued_per_pool(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let status = self.status()?;
        let pools = status["pools"]
            .as_array()
            .context("/status has no pools list")?;
        Ok(pools
            .iter()
            .filter_map(|p| Some((p["name"].as_str()?.to_owned(), p["queued_jobs"].as_u64()?)))
            .collect())
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s. Idempotent.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        if let Some(status) = child.try_wait().context("checking the dispatcher")? {
            return Ok(Some(status));
        }
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait().context("waiting for the dispatcher")? {
                return Ok(Some(status));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("gha-dispatcher ignored SIGTERM for 15 s; killing it");
        let _ = child.kill();
        Ok(Some(child.wait().context("reaping the dispatcher")?))
    }
}

impl Drop for Dispatcher {
    fn drop(&mut self) {
        if let Err(error) = self.stop() {
            eprintln!("stopping gha-dispatcher: {error:#}");
        }
    }
}

/// The dispatcher's TOML config, in the format of `dispatcher/src/config.rs`.
fn config_toml(
    cluster: &Cluster,
    world: &SimWorld,
    spec: &DispatcherSpec,
    port: u16,
    dir: &Path,
    secret_file: &Path,
    key_file: &Path,
) -> Result<String> {
    use toml::{Table, Value};
    let path = |p: &Path| Value::String(p.display().to_string());
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());

    let mut server = Table::new();
    server.insert("listen".into(), Value::String(format!("127.0.0.1:{port}")));
    server.insert("webhook_secret_file".into(), path(secret_file));

    let mut state = Table::new();
    state.insert("db_path".into(), path(&dir.join("state.db")));

    let mut target = Table::new();
    target.insert("org".into(), Value::String(ORG.into()));
    target.insert("repositories".into(), strings(&world.repos));
    let mut github = Table::new();
    github.insert("api_url".into(), Value::String(world.sim.url()));
    github.insert("app_id".into(), Value::Integer(APP_ID as i64));
    github.insert("private_key_file".into(), path(key_file));
    github.insert(
        "installation_id".into(),
        Value::Integer(world.installation_id as i64),
    );
    github.insert(
        "runner_name_prefix".into(),
        Value::String(spec.runner_name_prefix.clone()),
    );
    github.insert("targets".into(), Value::Array(vec![Value::Table(target)]));

    let mut slurm = Table::new();
    slurm.insert("job_script".into(), path(&job_script(cluster)?));
    slurm.insert("user".into(), Value::String(cluster.test_user().into()));
    slurm.insert("group".into(), Value::String(cluster.test_user().into()));
    slurm.insert(
        "output".into(),
        Value::String(format!(
            "{}/{}-%j.out",
            cluster.jobs_dir().display(),
            spec.runner_name_prefix
        )),
    );
    slurm.insert("chdir".into(), path(&cluster.jobs_dir()));
    slurm.insert(
        "runner_credentials".into(),
        Value::String(spec.credentials.config_value().into()),
    );
    if spec.credentials == RunnerCredentials::Ticket {
        server.insert(
            "munge_socket".into(),
            path(&cluster.dir().join("munge/run/munge.socket")),
        );
    }
    if let Some(sbatch) = &spec.sbatch {
        slurm.insert("sbatch".into(), path(sbatch));
    }

    let mut scaling = Table::new();
    if let Some(secs) = spec.reconcile_interval_secs {
        scaling.insert(
            "reconcile_interval_secs".into(),
            Value::Integer(secs as i64),
        );
    }

    let pools = spec
        .pools
        .iter()
        .map(|p| {
            let mut pool = Table::new();
            pool.insert("name".into(), Value::String(p.name.clone()));
            pool.insert("labels".into(), strings(&p.labels));
            pool.insert(
                "max_runners".into(),
                Value::Integer(i64::from(p.max_runners)),
            );
            if p.priority != 0 {
                pool.insert("priority".into(), Value::Integer(p.priority));
            }
            if let Some(cpus) = p.cpus {
                pool.insert("cpus".into(), Value::Integer(i64::from(cpus)));
            }
            if !p.extra_args.is_empty() {
                pool.insert("extra_args".into(), strings(&p.extra_args));
            }
            Value::Table(pool)
        })
        .collect();

    let mut root = Table::new();
    root.insert("server".into(), Value::Table(server));
    root.insert("state".into(), Value::Table(state));
    root.insert("github".into(), Value::Table(github));
    root.insert("slurm".into(), Value::Table(slurm));
    if !scaling.is_empty() {
        root.insert("scaling".into(), Value::Table(scaling));
    }
    root.insert("pools".into(), Value::Array(pools));
    toml::to_string(&root).context("writing the dispatcher config as TOML")
}

/// A loopback port that was free a moment ago (the dispatcher binds it next).
pub fn free_port() -> Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener
        .local_addr()
        .context("reading the bound port")?
        .port())
}

/// A file only root can read: secrets never sit world-readable, even in a temp dir.
fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    fs::write(path, content).with_context(|| format!("writing {}", path.display()))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))
}

/// `bytes` random bytes from the kernel, as hex.
pub fn random_hex(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .context("reading /dev/urandom")?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pools_serve_jobs_whose_labels_they_all_have() {
        let pool = PoolSpec::new("cpu", &["linux", "X64"], 4);
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(pool.serves(&labels(&["self-hosted", "Linux", "x64"])));
        assert!(pool.serves(&labels(&["linux"])));
        assert!(!pool.serves(&labels(&["self-hosted", "linux", "gpu"])));
    }

    #[test]
    fn random_hex_has_the_asked_length() {
        let a = random_hex(8).unwrap();
        assert_eq!(a.len(), 16);
        assert_ne!(a, random_hex(8).unwrap());
    }
}
