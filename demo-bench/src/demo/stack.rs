//! The running system the demo and the benchmark drive: the GitHub simulator (in-process, with
//! an organization, its repositories and an installed GitHub App) and the `gha-dispatcher`
//! binary started as an admin would start it (a generated TOML config, secrets in 0600 files,
//! SQLite state in a temporary directory), pointed at the test cluster.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use e2e::dispatcher_config::{
    Coordinates, DispatcherConfig, Pool, RunnerCredentials, Scaling, Target,
};
use e2e::{Cluster, DispatcherSlot};
use test_support::wait_until;

pub use e2e::sim_world::{random_hex, SimWorld, APP_ID, ORG};

/// What the generated dispatcher config says besides the simulator's coordinates.
#[derive(Debug, Clone)]
pub struct DispatcherSpec {
    pub pools: Vec<Pool>,
    /// Unique per run, so this run's runners and Slurm jobs can be told apart from others'.
    pub runner_name_prefix: String,
    /// `None` keeps the dispatcher's default.
    pub reconcile_interval_secs: Option<u64>,
    /// An `sbatch` to use instead of the one on PATH (the bench's timing wrapper).
    pub sbatch: Option<PathBuf>,
    pub credentials: RunnerCredentials,
    /// Organizations (besides `ORG`, the webhook target) whose jobs come through scale set
    /// listeners; the App must be installed on each.
    pub listener_orgs: Vec<String>,
}

/// A running `gha-dispatcher serve`, stopped (TERM, then KILL) when dropped.
pub struct Dispatcher {
    child: Option<Child>,
    pid: u32,
    url: String,
    log: PathBuf,
    config: PathBuf,
    /// The cluster's munged: `/status` is for the admin, who proves it with root's credential.
    munge_socket: PathBuf,
    /// The console's admin token (0600, root's), when the console is built.
    admin_token_file: PathBuf,
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

impl Dispatcher {
    /// Writes the config and secrets into `dir`, starts the dispatcher and waits until its
    /// `/healthz` answers. `dir` must outlive the dispatcher (it holds the SQLite file).
    pub fn start(
        cluster: &Cluster,
        world: &SimWorld,
        spec: &DispatcherSpec,
        dir: &Path,
    ) -> Result<Dispatcher> {
        Dispatcher::start_adjusted(cluster, world, spec, dir, &|_| {})
    }

    /// As [`Dispatcher::start`], with `adjust` applied to the generated config before it is
    /// written (the bench adds a listener target this way).
    pub fn start_adjusted(
        cluster: &Cluster,
        world: &SimWorld,
        spec: &DispatcherSpec,
        dir: &Path,
        adjust: &dyn Fn(&mut DispatcherConfig),
    ) -> Result<Dispatcher> {
        let slot = match spec.credentials {
            RunnerCredentials::Ticket => {
                let slot = DispatcherSlot::acquire(cluster)?;
                slot.ensure_free()?;
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
        let files = ConfigFiles {
            dir,
            secret: &secret_file,
            key: &key_file,
        };
        let text = config_toml(cluster, world, spec, port, &files, adjust)?;
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
            munge_socket: cluster.munge_socket(),
            admin_token_file: dir.join("admin-token"),
            _slot: slot,
        };
        super::stopping::register_dispatcher(dispatcher.pid, &spec.runner_name_prefix);
        dispatcher.wait_healthy(Duration::from_secs(30))?;
        Ok(dispatcher)
    }

    fn wait_healthy(&mut self, timeout: Duration) -> Result<()> {
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .context("building an HTTP client")?;
        let healthz = format!("{}/healthz", self.url);
        let answered = wait_until(&format!("{healthz} to answer"), timeout, || {
            // An exited dispatcher ends the wait at once, with its reason.
            if let Some(child) = self.child.as_mut() {
                match child.try_wait() {
                    Ok(Some(status)) => return Some(Err(status.to_string())),
                    Ok(None) => {}
                    Err(e) => return Some(Err(format!("checking the dispatcher: {e}"))),
                }
            }
            let healthy = client
                .get(&healthz)
                .send()
                .is_ok_and(|answer| answer.status().is_success());
            healthy.then_some(Ok(()))
        });
        match answered {
            Ok(Ok(())) => Ok(()),
            Ok(Err(exited)) => bail!(
                "gha-dispatcher exited ({exited}) before it was healthy; its log ({}):\n{}",
                self.log.display(),
                self.log_tail(30)
            ),
            Err(timed_out) => bail!("{timed_out}; its log:\n{}", self.log_tail(30)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// `http://127.0.0.1:PORT`; webhooks go to `<url>/webhook`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The web console, as a browser on this machine opens it (localhost: a secure context,
    /// so its Secure session cookie works over plain HTTP).
    pub fn console_url(&self) -> String {
        self.url.replace("127.0.0.1", "localhost") + "/console/"
    }

    /// The file holding the admin token the console's login asks for.
    pub fn admin_token_file(&self) -> &Path {
        &self.admin_token_file
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
        test_support::logs::tail(&self.log, lines)
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
        let credential = e2e::munge::munge_credential(None, &self.munge_socket, "")
            .context("a MUNGE credential for /status")?;
        let answer = reqwest::blocking::Client::new()
            .get(format!("{}/status", self.url))
            .header("Authorization", format!("MUNGE {credential}"))
            .send()
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

    /// `kill -9`, as a crash would end it: reaped, and the ticket slot given up, so another
    /// dispatcher can start on the same state directory (as systemd would restart it).
    pub fn kill9(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            // `Child::kill` is SIGKILL on Unix.
            child.kill().context("killing the dispatcher")?;
            child.wait().context("reaping the killed dispatcher")?;
        }
        self._slot = None;
        Ok(())
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s. Idempotent.
    pub fn stop(&mut self) -> Result<Option<ExitStatus>> {
        let Some(mut child) = self.child.take() else {
            return Ok(None);
        };
        let status = self.stop_child(&mut child);
        if status.is_ok() {
            super::stopping::forget_dispatcher(self.pid);
            // Stopped: the cluster's dispatcher slot is free for the next one (a restart).
            self._slot = None;
        }
        status
    }

    fn stop_child(&mut self, child: &mut Child) -> Result<Option<ExitStatus>> {
        if let Some(status) = child.try_wait().context("checking the dispatcher")? {
            return Ok(Some(status));
        }
        let pid = nix::unistd::Pid::from_raw(self.pid as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let exited = wait_until("the dispatcher to exit", Duration::from_secs(15), || {
            child.try_wait().context("waiting for the dispatcher")
        });
        if let Ok(status) = exited {
            return Ok(Some(status));
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

/// Where the generated config's files are: its directory and the two secrets in it.
struct ConfigFiles<'a> {
    dir: &'a Path,
    secret: &'a Path,
    key: &'a Path,
}

/// The dispatcher's config (`e2e::dispatcher_config`) for this world and spec, then `adjust`.
fn config_toml(
    cluster: &Cluster,
    world: &SimWorld,
    spec: &DispatcherSpec,
    port: u16,
    files: &ConfigFiles<'_>,
    adjust: &dyn Fn(&mut DispatcherConfig),
) -> Result<String> {
    let (dir, secret_file, key_file) = (files.dir, files.secret, files.key);
    let ca_file = e2e::sim_world::write_test_ca(dir)?;
    let coordinates = Coordinates {
        api_url: &world.sim.url(),
        ca_file: Some(&ca_file),
        app_id: APP_ID,
        private_key_file: key_file,
        webhook_secret_file: secret_file,
        db_path: &dir.join("state.db"),
        runner_name_prefix: &spec.runner_name_prefix,
        org: ORG,
        repositories: &world.repos,
    };
    let mut config = DispatcherConfig::for_cluster(cluster, &coordinates);
    if spec.credentials == RunnerCredentials::Ticket {
        config = config.with_tickets(cluster);
    }
    let script = &config.slurm.job_script;
    ensure!(
        script.is_file(),
        "no runner job script at {}",
        script.display()
    );
    config.server.listen = format!("127.0.0.1:{port}");
    let token_file = dir.join("admin-token");
    write_private(&token_file, random_hex(16)?.as_bytes())?;
    config.server.admin_token_file = Some(token_file);
    // The console's assets as `ci/demo` builds them (console/dist).
    config.server.console_dir = Some(cluster.repo_root().join("console/dist"));
    if spec.listener_orgs.is_empty() {
        config.github.installation_id = Some(world.installation_id);
    }
    for org in &spec.listener_orgs {
        config.github.targets.push(Target::listener(org));
    }
    let jobs = cluster.jobs_dir();
    config.slurm.output = Some(format!(
        "{}/{}-%j.out",
        jobs.display(),
        spec.runner_name_prefix
    ));
    config.slurm.sbatch = spec.sbatch.clone();
    config.scaling = Scaling {
        reconcile_interval_secs: spec.reconcile_interval_secs,
        ..Scaling::default()
    };
    config.pools = spec.pools.clone();
    adjust(&mut config);
    config
        .to_toml()
        .context("writing the dispatcher config as TOML")
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
