//! The dispatcher's config file, typed: every table and key of `dispatcher.example.toml` that the
//! tests, the demo and the benchmarks set, rendered as the TOML `gha-dispatcher` reads
//! (`dispatcher/src/config.rs`). Fields left `None` or empty are left out, so the dispatcher's
//! defaults apply. [`DispatcherConfig::for_cluster`] fills in what running jobs on the test
//! cluster needs; callers change the rest field by field.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::Cluster;

/// A whole `gha-dispatcher` config.
#[derive(Debug, Clone, Serialize)]
pub struct DispatcherConfig {
    pub server: Server,
    pub state: State,
    pub github: Github,
    pub slurm: Slurm,
    pub scaling: Scaling,
    pub pools: Vec<Pool>,
}

/// `[server]`.
#[derive(Debug, Clone, Serialize)]
pub struct Server {
    /// `host:port`; port 0 lets the dispatcher (or the caller's listener) pick.
    pub listen: String,
    pub webhook_secret_file: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_token_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub munge_socket: Option<PathBuf>,
    /// The web console's built assets; `None`: the dispatcher's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub console_dir: Option<PathBuf>,
}

/// `[state]`.
#[derive(Debug, Clone, Serialize)]
pub struct State {
    pub db_path: PathBuf,
}

/// `[github]`: a GitHub App (`app_id` + `private_key_file`) or a token file.
#[derive(Debug, Clone, Serialize)]
pub struct Github {
    pub api_url: String,
    /// The CA that signed the simulator's certificate (`e2e::sim_world::write_test_ca`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub private_key_file: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installation_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_file: Option<PathBuf>,
    pub runner_name_prefix: String,
    pub targets: Vec<Target>,
}

/// One `[github] targets` entry: an organization's runners and the repositories polled.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    pub org: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub repositories: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intake: Option<Intake>,
}

/// How a target's jobs reach the dispatcher (`intake`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intake {
    Webhook,
    /// A runner scale set per pool, long-polled over outbound HTTPS.
    Listener,
}

impl Target {
    /// An organization whose jobs come through scale set listeners.
    pub fn listener(org: &str) -> Target {
        Target {
            org: org.into(),
            repositories: Vec::new(),
            intake: Some(Intake::Listener),
        }
    }
}

/// `[slurm]`.
#[derive(Debug, Clone, Serialize)]
pub struct Slurm {
    pub job_script: PathBuf,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbatch: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub squeue: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scontrol: Option<PathBuf>,
    pub runner_credentials: RunnerCredentials,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// `"owner/repo"` or `"owner"` → Unix user.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub user_map: BTreeMap<String, String>,
    /// `"service-user"` or `"refuse"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unmapped: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub chdir: Option<PathBuf>,
}

/// How runner jobs get their JIT config (`slurm.runner_credentials`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunnerCredentials {
    /// `ticket:<opaque>`, redeemed when the job starts at the plugin's `dispatcher_url`: the
    /// dispatcher must listen on the cluster's dispatcher address (see `DispatcherSlot`).
    Ticket,
    /// The JIT config inline on sbatch's command line; the dispatcher may listen anywhere.
    Inline,
}

/// `[scaling]`; `None` keeps the dispatcher's default.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Scaling {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reconcile_interval_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_deadline_secs: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub submit_concurrency: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sbatch_backoff_max_secs: Option<u64>,
}

/// One `[[pools]]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub name: String,
    /// Labels besides `self-hosted` (which the dispatcher always implies).
    pub labels: Vec<String>,
    pub max_runners: u32,
    /// Wins when several pools serve a job (higher first).
    #[serde(skip_serializing_if = "is_zero")]
    pub priority: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_limit: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub job_script_args: Vec<String>,
    /// Idle runners kept online per target (a warm pool); 0: none.
    #[serde(skip_serializing_if = "is_zero_u32")]
    pub min_idle: u32,
    /// When `min_idle` applies (UTC), e.g. `"Mon-Fri 08:00-20:00"`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warm_hours: Option<String>,
}

fn is_zero(n: &i64) -> bool {
    *n == 0
}

fn is_zero_u32(n: &u32) -> bool {
    *n == 0
}

impl Pool {
    pub fn new(name: &str, labels: &[&str], max_runners: u32) -> Pool {
        Pool {
            name: name.into(),
            labels: labels.iter().map(|l| l.to_string()).collect(),
            max_runners,
            priority: 0,
            cpus: None,
            time_limit: None,
            extra_args: Vec::new(),
            job_script_args: Vec::new(),
            min_idle: 0,
            warm_hours: None,
        }
    }

    /// A warm pool: `min_idle` idle runners, during `hours` when given.
    pub fn warm(mut self, min_idle: u32, hours: Option<&str>) -> Pool {
        self.min_idle = min_idle;
        self.warm_hours = hours.map(Into::into);
        self
    }

    pub fn time_limit(mut self, limit: &str) -> Pool {
        self.time_limit = Some(limit.into());
        self
    }

    pub fn extra_args(mut self, args: &[&str]) -> Pool {
        self.extra_args = args.iter().map(|a| a.to_string()).collect();
        self
    }

    pub fn job_script_args(mut self, args: &[&str]) -> Pool {
        self.job_script_args = args.iter().map(|a| a.to_string()).collect();
        self
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

/// Where the secrets and the state of one dispatcher are, and whom it talks to.
#[derive(Debug, Clone)]
pub struct Coordinates<'a> {
    /// GitHub's (the simulator's) API base URL.
    pub api_url: &'a str,
    /// The CA the dispatcher trusts besides the system's (`github.ca_file`).
    pub ca_file: Option<&'a Path>,
    pub app_id: u64,
    pub private_key_file: &'a Path,
    pub webhook_secret_file: &'a Path,
    pub db_path: &'a Path,
    pub runner_name_prefix: &'a str,
    /// The organization whose runners it manages, and its repositories (`owner/name`).
    pub org: &'a str,
    pub repositories: &'a [String],
}

impl DispatcherConfig {
    /// A config for the test cluster: a GitHub App on `at.org`, the cluster's job script, jobs
    /// as the cluster's test user with their output in its jobs directory, inline credentials,
    /// listening on any loopback port, default scaling, no pools yet.
    pub fn for_cluster(cluster: &Cluster, at: &Coordinates<'_>) -> DispatcherConfig {
        let user = cluster.test_user().to_string();
        DispatcherConfig {
            server: Server {
                listen: "127.0.0.1:0".into(),
                webhook_secret_file: at.webhook_secret_file.into(),
                admin_token_file: None,
                // `/status` takes root's credential from the cluster's munged.
                munge_socket: Some(cluster.munge_socket()),
                console_dir: None,
            },
            state: State {
                db_path: at.db_path.into(),
            },
            github: Github {
                api_url: at.api_url.into(),
                ca_file: at.ca_file.map(Path::to_path_buf),
                app_id: Some(at.app_id),
                private_key_file: Some(at.private_key_file.into()),
                installation_id: None,
                token_file: None,
                runner_name_prefix: at.runner_name_prefix.into(),
                targets: vec![Target {
                    org: at.org.into(),
                    repositories: at.repositories.to_vec(),
                    intake: None,
                }],
            },
            slurm: Slurm {
                job_script: cluster.job_script(),
                sbatch: None,
                squeue: None,
                scontrol: None,
                runner_credentials: RunnerCredentials::Inline,
                user: Some(user.clone()),
                group: Some(user),
                user_map: BTreeMap::new(),
                unmapped: None,
                output: Some(format!("{}/%x-%j.out", cluster.jobs_dir().display())),
                chdir: Some(cluster.jobs_dir()),
            },
            scaling: Scaling::default(),
            pools: Vec::new(),
        }
    }

    /// Late-binding tickets: jobs carry `ticket:<opaque>` and redeem it at the dispatcher,
    /// which decodes their MUNGE credentials with the cluster's munged.
    pub fn with_tickets(mut self, cluster: &Cluster) -> DispatcherConfig {
        self.slurm.runner_credentials = RunnerCredentials::Ticket;
        self.server.munge_socket = Some(cluster.munge_socket());
        self
    }

    /// The TOML text `gha-dispatcher` reads. Fails only on a path that is not UTF-8.
    pub fn to_toml(&self) -> Result<String, toml::ser::Error> {
        toml::to_string(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> DispatcherConfig {
        DispatcherConfig {
            server: Server {
                listen: "127.0.0.1:0".into(),
                webhook_secret_file: "/d/webhook-secret".into(),
                admin_token_file: None,
                munge_socket: Some("/m/munge.socket".into()),
                console_dir: None,
            },
            state: State {
                db_path: "/d/state.db".into(),
            },
            github: Github {
                api_url: "https://127.0.0.1:1".into(),
                ca_file: Some("/d/github-ca.pem".into()),
                app_id: Some(4242),
                private_key_file: Some("/d/app.pem".into()),
                installation_id: None,
                token_file: None,
                runner_name_prefix: "e2e".into(),
                targets: vec![Target {
                    org: "acme".into(),
                    repositories: vec!["acme/widgets".into()],
                    intake: None,
                }],
            },
            slurm: Slurm {
                job_script: "/c/libexec/gha-runner-job".into(),
                sbatch: None,
                squeue: None,
                scontrol: None,
                runner_credentials: RunnerCredentials::Ticket,
                user: Some("gha-ci".into()),
                group: Some("gha-ci".into()),
                user_map: [("acme/widgets".to_string(), "gha-ci-2".to_string())].into(),
                unmapped: Some("refuse".into()),
                output: Some("/c/jobs/%x-%j.out".into()),
                chdir: Some("/c/jobs".into()),
            },
            scaling: Scaling {
                reconcile_interval_secs: Some(2),
                ..Scaling::default()
            },
            pools: vec![Pool::new("cpu", &["linux", "x64"], 4)
                .time_limit("10:00")
                .extra_args(&["--begin=now+1hour"])],
        }
    }

    #[test]
    fn renders_the_tables_and_keys_the_dispatcher_reads() {
        let text = sample().to_toml().unwrap();
        let v: toml::Table = text.parse().unwrap();
        assert_eq!(
            v["server"]["munge_socket"].as_str(),
            Some("/m/munge.socket")
        );
        assert!(v["server"].get("admin_token_file").is_none());
        assert_eq!(v["github"]["app_id"].as_integer(), Some(4242));
        assert_eq!(v["github"]["ca_file"].as_str(), Some("/d/github-ca.pem"));
        assert_eq!(
            v["github"]["targets"][0]["repositories"][0].as_str(),
            Some("acme/widgets")
        );
        assert_eq!(v["slurm"]["runner_credentials"].as_str(), Some("ticket"));
        assert_eq!(
            v["slurm"]["user_map"]["acme/widgets"].as_str(),
            Some("gha-ci-2")
        );
        assert_eq!(
            v["scaling"]["reconcile_interval_secs"].as_integer(),
            Some(2)
        );
        assert!(v["scaling"].get("boot_deadline_secs").is_none());
        let pool = &v["pools"][0];
        assert_eq!(pool["name"].as_str(), Some("cpu"));
        assert_eq!(pool["time_limit"].as_str(), Some("10:00"));
        assert!(pool.get("priority").is_none());
        assert!(pool.get("job_script_args").is_none());
    }

    #[test]
    fn pools_serve_jobs_whose_labels_they_all_have() {
        let pool = Pool::new("cpu", &["linux", "X64"], 4);
        let labels = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(pool.serves(&labels(&["self-hosted", "Linux", "x64"])));
        assert!(pool.serves(&labels(&["linux"])));
        assert!(!pool.serves(&labels(&["self-hosted", "linux", "gpu"])));
    }
}
