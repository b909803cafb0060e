//! The config file's shape as serde reads it: unknown keys are errors, and values whose
//! position a message may name are kept `Spanned`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use super::choices::{Intake, RunnerCredentials, UnmappedPolicy};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    pub(super) server: RawServer,
    #[serde(default)]
    pub(super) state: RawState,
    pub(super) github: RawGithub,
    pub(super) slurm: RawSlurm,
    #[serde(default)]
    pub(super) scaling: RawScaling,
    #[serde(default)]
    pub(super) pools: Vec<RawPool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawServer {
    pub(super) listen: Spanned<String>,
    pub(super) webhook_secret_file: Spanned<PathBuf>,
    pub(super) admin_token_file: Option<PathBuf>,
    pub(super) munge_socket: Option<PathBuf>,
    pub(super) console_dir: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawState {
    pub(super) db_path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGithub {
    #[serde(default = "default_api_url")]
    pub(super) api_url: Spanned<String>,
    pub(super) app_id: Option<Spanned<u64>>,
    pub(super) private_key_file: Option<Spanned<PathBuf>>,
    pub(super) installation_id: Option<u64>,
    pub(super) token_file: Option<Spanned<PathBuf>>,
    pub(super) ca_file: Option<Spanned<PathBuf>>,
    #[serde(default = "default_runner_group")]
    pub(super) runner_group_id: u64,
    #[serde(default = "default_prefix")]
    pub(super) runner_name_prefix: Spanned<String>,
    #[serde(default = "default_targets")]
    pub(super) targets: Spanned<Vec<RawTarget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    pub(super) org: Option<Spanned<String>>,
    pub(super) repo: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) repositories: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) intake: Intake,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSlurm {
    pub(super) job_script: Spanned<PathBuf>,
    #[serde(default = "default_sbatch")]
    pub(super) sbatch: PathBuf,
    #[serde(default = "default_squeue")]
    pub(super) squeue: PathBuf,
    #[serde(default = "default_scancel")]
    pub(super) scancel: PathBuf,
    #[serde(default = "default_scontrol")]
    pub(super) scontrol: PathBuf,
    #[serde(default)]
    pub(super) runner_credentials: RunnerCredentials,
    #[serde(default = "default_ticket_ttl")]
    pub(super) ticket_ttl_secs: Spanned<u64>,
    pub(super) user: Option<Spanned<String>>,
    pub(super) group: Option<String>,
    pub(super) min_uid: Option<Spanned<u32>>,
    #[serde(default)]
    pub(super) user_map: BTreeMap<String, Spanned<RawMapped>>,
    #[serde(default)]
    pub(super) unmapped: UnmappedPolicy,
    pub(super) output: Option<String>,
    pub(super) chdir: Option<PathBuf>,
}

/// A `user_map` value: `"user"` or `{ user = "..", account = ".." }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum RawMapped {
    User(String),
    Full {
        user: String,
        account: Option<String>,
    },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScaling {
    #[serde(default = "default_reconcile")]
    pub(super) reconcile_interval_secs: Spanned<u64>,
    #[serde(default = "default_boot_deadline")]
    pub(super) boot_deadline_secs: Spanned<u64>,
    #[serde(default = "default_submit_concurrency")]
    pub(super) submit_concurrency: Spanned<usize>,
    #[serde(default = "default_backoff_max")]
    pub(super) sbatch_backoff_max_secs: u64,
}

impl Default for RawScaling {
    fn default() -> Self {
        RawScaling {
            reconcile_interval_secs: default_reconcile(),
            boot_deadline_secs: default_boot_deadline(),
            submit_concurrency: default_submit_concurrency(),
            sbatch_backoff_max_secs: default_backoff_max(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPool {
    pub(super) name: Spanned<String>,
    pub(super) labels: Spanned<Vec<String>>,
    #[serde(default)]
    pub(super) priority: i64,
    pub(super) max_runners: Spanned<u32>,
    pub(super) image: Option<String>,
    pub(super) partition: Option<String>,
    pub(super) cpus: Option<u32>,
    pub(super) memory: Option<String>,
    pub(super) gres: Option<String>,
    pub(super) time_limit: Option<String>,
    pub(super) account: Option<String>,
    pub(super) qos: Option<String>,
    #[serde(default)]
    pub(super) extra_args: Vec<String>,
    #[serde(default)]
    pub(super) job_script_args: Vec<String>,
    pub(super) min_idle: Option<Spanned<u32>>,
    pub(super) warm_hours: Option<Spanned<String>>,
}

fn default_api_url() -> Spanned<String> {
    Spanned::new(0..0, "https://api.github.com".into())
}
fn default_targets() -> Spanned<Vec<RawTarget>> {
    Spanned::new(0..0, Vec::new())
}
fn default_runner_group() -> u64 {
    1
}
fn default_prefix() -> Spanned<String> {
    Spanned::new(0..0, "slurm".into())
}
fn default_sbatch() -> PathBuf {
    "sbatch".into()
}
fn default_squeue() -> PathBuf {
    "squeue".into()
}
fn default_scancel() -> PathBuf {
    "scancel".into()
}
fn default_scontrol() -> PathBuf {
    "scontrol".into()
}
fn default_ticket_ttl() -> Spanned<u64> {
    Spanned::new(0..0, 86_400)
}
fn default_reconcile() -> Spanned<u64> {
    Spanned::new(0..0, 30)
}
fn default_boot_deadline() -> Spanned<u64> {
    Spanned::new(0..0, 600)
}
fn default_submit_concurrency() -> Spanned<usize> {
    Spanned::new(0..0, 4)
}
fn default_backoff_max() -> u64 {
    60
}
