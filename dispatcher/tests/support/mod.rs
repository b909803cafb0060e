//! What the dispatcher's integration tests share: a config builder (every test writes the
//! same TOML with a few changes), fake Slurm commands, the GitHub simulator, a started
//! dispatcher, MUNGE helpers and polling.
//!
//! Each test binary uses part of it.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use gha_dispatcher::app::Running;
use gha_dispatcher::config::Config;
use github_sim::model::{JobSpec, WorkflowSpec};
use github_sim::{Sim, SimConfig};

/// The token the simulator accepts (see [`sim`]).
pub const TOKEN: &str = "ghp_test_token";
/// The admin token every built config names (`server.admin_token_file`).
pub const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// `GET <url>/status` with the admin token.
#[allow(dead_code)]
pub async fn admin_status(url: &str) -> serde_json::Value {
    reqwest::Client::new()
        .get(format!("{url}/status"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// A config file for a dispatcher in a temporary directory: secrets, database and any fake
/// command live there. Defaults: listen on any port, an unreachable GitHub, the `acme`
/// organization, Slurm commands that do not exist, reconcile hourly, one pool `cpu`
/// (`linux`, 1 runner). Change any key with [`ConfigBuilder::set`].
pub struct ConfigBuilder {
    dir: PathBuf,
    /// Section name, then its `key = value` lines (values in TOML syntax).
    sections: Vec<(&'static str, Vec<(String, String)>)>,
    pools: Vec<Vec<(String, String)>>,
    webhook_secret: String,
    token: String,
}

fn quoted(path: &Path) -> String {
    format!("{:?}", path.display().to_string())
}

impl ConfigBuilder {
    pub fn new(dir: &Path) -> ConfigBuilder {
        let d = |name: &str| quoted(&dir.join(name));
        let kv = |k: &str, v: String| (k.to_string(), v);
        ConfigBuilder {
            dir: dir.to_path_buf(),
            sections: vec![
                (
                    "server",
                    vec![
                        kv("listen", "\"127.0.0.1:0\"".into()),
                        kv("webhook_secret_file", d("secret")),
                        kv("admin_token_file", d("admin-token")),
                    ],
                ),
                ("state", vec![kv("db_path", d("state.db"))]),
                (
                    "github",
                    vec![
                        kv("api_url", "\"http://127.0.0.1:9\"".into()),
                        kv("token_file", d("token")),
                        kv("targets", "[{ org = \"acme\" }]".into()),
                    ],
                ),
                (
                    "slurm",
                    vec![
                        kv("job_script", "\"/nonexistent/job\"".into()),
                        kv("sbatch", "\"/nonexistent/sbatch\"".into()),
                        kv("squeue", "\"/nonexistent/squeue\"".into()),
                        kv("scancel", "\"/nonexistent/scancel\"".into()),
                        // In every passwd database, and not a system account (uid 65534).
                        kv("user", "\"nobody\"".into()),
                    ],
                ),
                (
                    "scaling",
                    vec![kv("reconcile_interval_secs", "3600".into())],
                ),
            ],
            pools: vec![vec![
                kv("name", "\"cpu\"".into()),
                kv("labels", "[\"linux\"]".into()),
                kv("max_runners", "1".into()),
            ]],
            webhook_secret: "webhook-secret".into(),
            token: "ghp_unused".into(),
        }
    }

    /// Set `key` of `[section]` to `value` (TOML syntax: strings quoted).
    pub fn set(mut self, section: &str, key: &str, value: &str) -> ConfigBuilder {
        let lines = match self.sections.iter_mut().find(|(s, _)| *s == section) {
            Some((_, lines)) => lines,
            None => panic!("no section [{section}] in the builder"),
        };
        match lines.iter_mut().find(|(k, _)| k == key) {
            Some(line) => line.1 = value.to_string(),
            None => lines.push((key.to_string(), value.to_string())),
        }
        self
    }

    /// Set `key` of `[section]` to a path in the test's directory.
    pub fn set_path(self, section: &str, key: &str, file: &str) -> ConfigBuilder {
        let value = quoted(&self.dir.join(file));
        self.set(section, key, &value)
    }

    /// Replace the pools with one pool.
    pub fn pool(mut self, name: &str, labels: &[&str], max_runners: u32) -> ConfigBuilder {
        self.pools.clear();
        self.and_pool(name, labels, max_runners)
    }

    /// Add a pool.
    pub fn and_pool(mut self, name: &str, labels: &[&str], max_runners: u32) -> ConfigBuilder {
        let labels: Vec<String> = labels.iter().map(|l| format!("{l:?}")).collect();
        self.pools.push(vec![
            ("name".into(), format!("{name:?}")),
            ("labels".into(), format!("[{}]", labels.join(", "))),
            ("max_runners".into(), max_runners.to_string()),
        ]);
        self
    }

    /// The simulator's `acme/widgets` as the only target, with the token the simulator
    /// accepts, and the fake `sbatch`, `squeue` and `scancel` in the test's directory.
    pub fn widgets_on_fake_slurm(self, sim: &Sim) -> ConfigBuilder {
        self.token(TOKEN)
            .set("github", "api_url", &format!("{:?}", sim.url()))
            .set(
                "github",
                "targets",
                r#"[{ org = "acme", repositories = ["acme/widgets"] }]"#,
            )
            .set_path("slurm", "sbatch", "sbatch")
            .set_path("slurm", "squeue", "squeue")
            .set_path("slurm", "scancel", "scancel")
    }

    /// The content of the webhook secret file.
    pub fn webhook_secret(mut self, secret: &str) -> ConfigBuilder {
        self.webhook_secret = secret.into();
        self
    }

    /// The content of the GitHub token file.
    pub fn token(mut self, token: &str) -> ConfigBuilder {
        self.token = token.into();
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        let mut text = String::new();
        for (section, lines) in &self.sections {
            text.push_str(&format!("[{section}]\n"));
            for (k, v) in lines {
                text.push_str(&format!("{k} = {v}\n"));
            }
            text.push('\n');
        }
        for pool in &self.pools {
            text.push_str("[[pools]]\n");
            for (k, v) in pool {
                text.push_str(&format!("{k} = {v}\n"));
            }
        }
        text
    }

    /// Write the secret files and the config file (`config.toml`); its path.
    pub fn write(&self) -> PathBuf {
        std::fs::write(self.dir.join("secret"), &self.webhook_secret).unwrap();
        std::fs::write(self.dir.join("token"), &self.token).unwrap();
        std::fs::write(self.dir.join("admin-token"), ADMIN_TOKEN).unwrap();
        let path = self.dir.join("config.toml");
        std::fs::write(&path, self.text()).unwrap();
        path
    }

    /// Write the files and parse the config.
    pub fn build(&self) -> Config {
        self.write();
        Config::parse(&self.text()).unwrap_or_else(|e| panic!("{e}\n{}", self.text()))
    }
}

/// The 1-based line of `text` that contains `needle`.
pub fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in\n{text}"))
        + 1
}

/// An executable shell script at `path`.
pub fn script(path: &Path, body: &str) {
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    let mut perms = std::fs::metadata(path).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(path, perms).unwrap();
}

/// Start the dispatcher on a free port of 127.0.0.1.
pub async fn start(config: Config) -> Running {
    let secrets = config.load_secrets().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    gha_dispatcher::app::start(config, secrets, Some(listener))
        .await
        .unwrap()
}

/// The GitHub simulator with the `acme` organization, its `widgets` repository and a
/// personal token ([`TOKEN`]) that may manage both.
pub async fn sim() -> Sim {
    let sim = Sim::start(SimConfig::default()).await.unwrap();
    sim.add_org("acme");
    sim.add_repo("acme", "widgets");
    sim.add_pat(TOKEN, &["admin:org", "repo"]);
    sim
}

/// A fake Slurm in `d` (see [`ConfigBuilder::widgets_on_fake_slurm`]): sbatch records each
/// job name in `d/names` and answers job id 101; squeue knows no job (each runner's job
/// "ended" at once); scancel does nothing. For tests about what the dispatcher asks of
/// GitHub and when it submits, not about runners running.
pub fn fake_slurm(d: &Path) {
    script(
        &d.join("sbatch"),
        &format!(
            "printf '%s\\n' \"$@\" | sed -n 's/^--job-name=//p' >> '{}/names'\necho 101",
            d.display()
        ),
    );
    script(
        &d.join("squeue"),
        "case \"$1\" in --jobs=*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;; esac",
    );
    script(&d.join("scancel"), "true");
}

/// One workflow run of one job on `acme/widgets`, `runs-on: [self-hosted, linux]`.
pub fn queue_one_job(sim: &Sim) {
    sim.enqueue_workflow(WorkflowSpec {
        repo: "acme/widgets".into(),
        name: "ci".into(),
        jobs: vec![JobSpec::new("build", &["self-hosted", "linux"])],
        delay_ms: 0,
    })
    .expect("enqueueing a run");
}

/// Waits, through the project's one wait helper, until `cond` holds; panics naming `what`
/// after `timeout`.
pub async fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    test_support::wait_until_async(what, timeout, || std::future::ready(cond()))
        .await
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The test cluster's munged (`GHA_TEST_MUNGE_SOCKET`, default
/// /tmp/spank-gha-cluster/munge/run/munge.socket), usable as root. Fails (never skips) when
/// there is none: `ci/test` starts it.
pub fn munge_socket() -> PathBuf {
    let socket = std::env::var_os("GHA_TEST_MUNGE_SOCKET")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/tmp/spank-gha-cluster/munge/run/munge.socket".into());
    let usable = socket.exists()
        && nix::unistd::getuid().is_root()
        && std::process::Command::new("munge")
            .arg(format!("--socket={}", socket.display()))
            .arg("--no-input")
            .output()
            .is_ok_and(|o| o.status.success());
    assert!(
        usable,
        "no usable munged at {} (run as root with the test cluster up: ci/slurm-up)",
        socket.display()
    );
    socket
}

/// A MUNGE credential carrying `payload`.
pub fn munge(socket: &Path, payload: &str) -> String {
    test_support::munge::run("munge", None, socket, &[], payload.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// The payload of a MUNGE credential.
pub fn unmunge_payload(socket: &Path, credential: &str) -> String {
    let args = ["--metadata=/dev/null"];
    test_support::munge::run("unmunge", None, socket, &args, credential.as_bytes())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Like [`sim`], but serving HTTPS with a certificate from `ca` (for 127.0.0.1, ::1 and
/// localhost), as a GitHub Enterprise Server when `enterprise` is given.
pub async fn tls_sim(
    ca: &github_sim::TestCa,
    enterprise: Option<github_sim::config::Enterprise>,
) -> Sim {
    let sim = Sim::start(SimConfig {
        tls: Some(ca.issue(&github_sim::tls::LOOPBACK_NAMES).unwrap()),
        enterprise,
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.add_org("acme");
    sim.add_repo("acme", "widgets");
    sim.add_pat(TOKEN, &["admin:org", "repo"]);
    sim
}

/// Total REST calls the simulator has answered.
pub fn api_calls(sim: &Sim) -> u64 {
    sim.counters().api.values().map(|c| c.calls).sum()
}
