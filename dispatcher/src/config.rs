//! Configuration: the TOML file's shape, its validation, and loading secrets from files.
//!
//! Every problem is reported with the key path and the line it is on, and all validation
//! problems are collected so `check-config` shows them together.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

use crate::db::RepoUser;

pub const DEFAULT_DB_PATH: &str = "/var/lib/gha-dispatcher/state.db";
/// A ticket must outlive at least a short queue wait and the node's redemption.
pub const MIN_TICKET_TTL_SECS: u64 = 60;

/// One problem found in the config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    pub key: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}: {}", self.key, self.message),
            None => write!(f, "{}: {}", self.key, self.message),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config:\n{}", issues.iter().map(|i| format!("  {i}")).collect::<Vec<_>>().join("\n"))]
    Invalid { issues: Vec<ConfigIssue> },
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    state: RawState,
    github: RawGithub,
    slurm: RawSlurm,
    #[serde(default)]
    scaling: RawScaling,
    #[serde(default)]
    pools: Vec<RawPool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    listen: Spanned<String>,
    webhook_secret_file: Spanned<PathBuf>,
    admin_token_file: Option<PathBuf>,
    munge_socket: Option<PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    db_path: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGithub {
    #[serde(default = "default_api_url")]
    api_url: Spanned<String>,
    app_id: Option<Spanned<u64>>,
    private_key_file: Option<Spanned<PathBuf>>,
    installation_id: Option<u64>,
    token_file: Option<Spanned<PathBuf>>,
    #[serde(default = "default_runner_group")]
    runner_group_id: u64,
    #[serde(default = "default_prefix")]
    runner_name_prefix: Spanned<String>,
    #[serde(default = "default_targets")]
    targets: Spanned<Vec<RawTarget>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    org: Option<Spanned<String>>,
    repo: Option<Spanned<String>>,
    #[serde(default)]
    repositories: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlurm {
    job_script: Spanned<PathBuf>,
    #[serde(default = "default_sbatch")]
    sbatch: PathBuf,
    #[serde(default = "default_squeue")]
    squeue: PathBuf,
    #[serde(default = "default_scancel")]
    scancel: PathBuf,
    #[serde(default = "default_scontrol")]
    scontrol: PathBuf,
    #[serde(default)]
    runner_credentials: RunnerCredentials,
    #[serde(default = "default_ticket_ttl")]
    ticket_ttl_secs: Spanned<u64>,
    user: Option<String>,
    group: Option<String>,
    #[serde(default)]
    user_map: BTreeMap<String, Spanned<RawMapped>>,
    #[serde(default)]
    unmapped: UnmappedPolicy,
    output: Option<String>,
    chdir: Option<PathBuf>,
}

/// A `user_map` value: `"user"` or `{ user = "..", account = ".." }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawMapped {
    User(String),
    Full {
        user: String,
        account: Option<String>,
    },
}

/// What jobs of a repository with no `user_map`/API entry do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnmappedPolicy {
    /// Run as `slurm.user` (the service user).
    #[default]
    ServiceUser,
    /// Give them no runner; counted in `jobs_refused_total{reason="unmapped"}` and `/status`.
    Refuse,
}

/// How a runner's job gets its JIT config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunnerCredentials {
    /// `--gha-runner=ticket:<opaque>`: the node redeems the ticket when the job starts
    /// (`POST /tickets/redeem`), and only then is the JIT config minted.
    #[default]
    Ticket,
    /// `--gha-runner=<JIT config>`, minted before `sbatch` (kept in slurmctld's state).
    Inline,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScaling {
    #[serde(default = "default_reconcile")]
    reconcile_interval_secs: Spanned<u64>,
    #[serde(default = "default_boot_deadline")]
    boot_deadline_secs: Spanned<u64>,
    #[serde(default = "default_submit_concurrency")]
    submit_concurrency: Spanned<usize>,
    #[serde(default = "default_backoff_max")]
    sbatch_backoff_max_secs: u64,
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
struct RawPool {
    name: Spanned<String>,
    labels: Spanned<Vec<String>>,
    #[serde(default)]
    priority: i64,
    max_runners: Spanned<u32>,
    image: Option<String>,
    partition: Option<String>,
    cpus: Option<u32>,
    memory: Option<String>,
    gres: Option<String>,
    time_limit: Option<String>,
    account: Option<String>,
    qos: Option<String>,
    #[serde(default)]
    extra_args: Vec<String>,
    #[serde(default)]
    job_script_args: Vec<String>,
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

/// Where runners are registered: an organization or a single repository.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Scope {
    Org(String),
    Repo { owner: String, name: String },
}

impl Scope {
    /// The account that owns the scope (where the App is installed).
    pub fn owner(&self) -> &str {
        match self {
            Scope::Org(org) => org,
            Scope::Repo { owner, .. } => owner,
        }
    }

    /// The REST path prefix for runner endpoints of this scope.
    pub fn api_prefix(&self) -> String {
        match self {
            Scope::Org(org) => format!("/orgs/{org}"),
            Scope::Repo { owner, name } => format!("/repos/{owner}/{name}"),
        }
    }

    /// A stable text form stored in the database: `org:<org>` or `repo:<owner>/<name>`.
    pub fn key(&self) -> String {
        match self {
            Scope::Org(org) => format!("org:{org}"),
            Scope::Repo { owner, name } => format!("repo:{owner}/{name}"),
        }
    }

    pub fn from_key(key: &str) -> Option<Scope> {
        if let Some(org) = key.strip_prefix("org:") {
            return Some(Scope::Org(org.to_string()));
        }
        let repo = key.strip_prefix("repo:")?;
        let (owner, name) = repo.split_once('/')?;
        Some(Scope::Repo {
            owner: owner.to_string(),
            name: name.to_string(),
        })
    }
}

/// A configured target: runners are registered at `scope`, queued jobs are polled in `repositories`.
#[derive(Debug, Clone)]
pub struct Target {
    pub scope: Scope,
    pub repositories: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum AuthConfig {
    App {
        app_id: u64,
        private_key_file: PathBuf,
        installation_id: Option<u64>,
    },
    Token {
        token_file: PathBuf,
    },
}

#[derive(Debug, Clone)]
pub struct GithubConfig {
    pub api_url: String,
    pub auth: AuthConfig,
    pub runner_group_id: u64,
    pub runner_name_prefix: String,
    pub targets: Vec<Target>,
}

impl GithubConfig {
    /// The scope whose runners serve jobs of `repo_full_name`, if the repository is ours.
    /// A repository target wins over an organization target.
    pub fn scope_for_repo(&self, repo_full_name: &str) -> Option<Scope> {
        let (owner, name) = repo_full_name.split_once('/')?;
        let repo_scope = self.targets.iter().find(|t| {
            matches!(&t.scope, Scope::Repo { owner: o, name: n }
                if o.eq_ignore_ascii_case(owner) && n.eq_ignore_ascii_case(name))
        });
        if let Some(t) = repo_scope {
            return Some(t.scope.clone());
        }
        self.targets
            .iter()
            .find(|t| matches!(&t.scope, Scope::Org(org) if org.eq_ignore_ascii_case(owner)))
            .map(|t| t.scope.clone())
    }
}

#[derive(Debug, Clone)]
pub struct SlurmConfig {
    pub job_script: PathBuf,
    pub sbatch: PathBuf,
    pub squeue: PathBuf,
    pub scancel: PathBuf,
    /// For `scontrol show node` (the addresses of a ticket's node).
    pub scontrol: PathBuf,
    pub runner_credentials: RunnerCredentials,
    /// How long a ticket stays redeemable after its runner was created.
    pub ticket_ttl_secs: u64,
    pub user: Option<String>,
    pub group: Option<String>,
    /// The seed of the repository mapping (`owner` or `owner/repo` to user and account);
    /// at start, entries whose key is not in the database yet are added (see `usermap`).
    pub user_map: Vec<RepoUser>,
    pub unmapped: UnmappedPolicy,
    pub output: Option<String>,
    pub chdir: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ScalingConfig {
    pub reconcile_interval_secs: u64,
    pub boot_deadline_secs: u64,
    pub submit_concurrency: usize,
    pub sbatch_backoff_max_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    /// Lower-cased labels, `self-hosted` included.
    pub labels: Vec<String>,
    pub priority: i64,
    pub max_runners: u32,
    pub image: Option<String>,
    pub partition: Option<String>,
    pub cpus: Option<u32>,
    pub memory: Option<String>,
    pub gres: Option<String>,
    pub time_limit: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub extra_args: Vec<String>,
    /// Arguments after the job script (e.g. `--idle-timeout 60`).
    pub job_script_args: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub webhook_secret_file: PathBuf,
    /// The token `POST /repositories/:user` needs; without it the mapping is read-only.
    pub admin_token_file: Option<PathBuf>,
    /// munged's socket for `unmunge`; `None`: munge's compiled-in default.
    pub munge_socket: Option<PathBuf>,
    pub db_path: PathBuf,
    pub github: GithubConfig,
    pub slurm: SlurmConfig,
    pub scaling: ScalingConfig,
    pub pools: Vec<PoolConfig>,
}

/// Secrets read from the files the config names. `Debug` never shows them.
#[derive(Clone)]
pub struct Secrets {
    pub webhook_secret: Vec<u8>,
    pub github: GithubSecret,
    pub admin_token: Option<String>,
}

#[derive(Clone)]
pub enum GithubSecret {
    AppKeyPem(Vec<u8>),
    Token(String),
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secrets(<redacted>)")
    }
}

struct Issues<'a> {
    source: &'a str,
    list: Vec<ConfigIssue>,
}

impl Issues<'_> {
    fn at(
        &mut self,
        key: impl Into<String>,
        span: std::ops::Range<usize>,
        message: impl Into<String>,
    ) {
        let line = if span.is_empty() && span.start == 0 {
            None
        } else {
            Some(line_of(self.source, span.start))
        };
        self.list.push(ConfigIssue {
            key: key.into(),
            line,
            message: message.into(),
        });
    }
}

fn line_of(source: &str, offset: usize) -> usize {
    let end = offset.min(source.len());
    source.as_bytes()[..end]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

/// The key written on `line` (text before `=`, or a `[table]` header), for parse errors.
fn key_on_line(source: &str, line: usize) -> String {
    let text = source
        .lines()
        .nth(line.saturating_sub(1))
        .unwrap_or("")
        .trim();
    match text.split_once('=') {
        Some((key, _)) => key.trim().to_string(),
        None => text.to_string(),
    }
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text)
    }

    /// Parse and validate the file's text, collecting every problem.
    pub fn parse(source: &str) -> Result<Config, ConfigError> {
        let raw: RawConfig = match toml::from_str(source) {
            Ok(raw) => raw,
            Err(err) => {
                let line = err.span().map(|s| line_of(source, s.start));
                let key = line
                    .map(|l| key_on_line(source, l))
                    .filter(|k| !k.is_empty())
                    .unwrap_or_else(|| "<document>".into());
                return Err(ConfigError::Invalid {
                    issues: vec![ConfigIssue {
                        key,
                        line,
                        message: err.message().trim().to_string(),
                    }],
                });
            }
        };
        let mut issues = Issues {
            source,
            list: Vec::new(),
        };

        let listen = match raw.server.listen.get_ref().parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(e) => {
                issues.at(
                    "server.listen",
                    raw.server.listen.span(),
                    format!("not a socket address: {e}"),
                );
                None
            }
        };

        let api_url = raw
            .github
            .api_url
            .get_ref()
            .trim_end_matches('/')
            .to_string();
        if !(api_url.starts_with("http://") || api_url.starts_with("https://")) {
            issues.at(
                "github.api_url",
                raw.github.api_url.span(),
                "must start with http:// or https://",
            );
        }
        let auth = match (
            &raw.github.app_id,
            &raw.github.private_key_file,
            &raw.github.token_file,
        ) {
            (Some(app_id), Some(key), None) => Some(AuthConfig::App {
                app_id: *app_id.get_ref(),
                private_key_file: key.get_ref().clone(),
                installation_id: raw.github.installation_id,
            }),
            (None, None, Some(token)) => Some(AuthConfig::Token {
                token_file: token.get_ref().clone(),
            }),
            (Some(app_id), None, _) => {
                issues.at(
                    "github.app_id",
                    app_id.span(),
                    "an App needs github.private_key_file too",
                );
                None
            }
            (None, Some(key), _) => {
                issues.at(
                    "github.private_key_file",
                    key.span(),
                    "needs github.app_id too",
                );
                None
            }
            (Some(app_id), Some(_), Some(_)) => {
                issues.at(
                    "github.token_file",
                    app_id.span(),
                    "give either an App (app_id + private_key_file) or token_file, not both",
                );
                None
            }
            (None, None, None) => {
                issues.at(
                    "github",
                    0..0,
                    "needs app_id + private_key_file, or token_file",
                );
                None
            }
        };
        let prefix = raw.github.runner_name_prefix.get_ref().clone();
        if !valid_name(&prefix) || prefix.len() > 20 {
            issues.at(
                "github.runner_name_prefix",
                raw.github.runner_name_prefix.span(),
                "1 to 20 characters of letters, digits, '-', '_', '.'",
            );
        }

        let mut targets = Vec::new();
        if raw.github.targets.get_ref().is_empty() {
            issues.at(
                "github.targets",
                raw.github.targets.span(),
                "at least one target ({ org = \"..\" } or { repo = \"owner/name\" }) is required",
            );
        }
        for (i, t) in raw.github.targets.get_ref().iter().enumerate() {
            let key = format!("github.targets[{i}]");
            match (&t.org, &t.repo) {
                (Some(org), None) => {
                    if !valid_name(org.get_ref()) {
                        issues.at(
                            format!("{key}.org"),
                            org.span(),
                            "not a valid organization login",
                        );
                    }
                    let mut repositories = Vec::new();
                    for r in &t.repositories {
                        match r.get_ref().split_once('/') {
                            Some((o, n))
                                if o.eq_ignore_ascii_case(org.get_ref()) && valid_name(n) =>
                            {
                                repositories.push(r.get_ref().clone())
                            }
                            _ => issues.at(
                                format!("{key}.repositories"),
                                r.span(),
                                format!("{:?} must be \"{}/<repo>\"", r.get_ref(), org.get_ref()),
                            ),
                        }
                    }
                    targets.push(Target {
                        scope: Scope::Org(org.get_ref().clone()),
                        repositories,
                    });
                }
                (None, Some(repo)) => match repo.get_ref().split_once('/') {
                    Some((o, n)) if valid_name(o) && valid_name(n) => targets.push(Target {
                        scope: Scope::Repo {
                            owner: o.into(),
                            name: n.into(),
                        },
                        repositories: vec![repo.get_ref().clone()],
                    }),
                    _ => issues.at(format!("{key}.repo"), repo.span(), "must be \"owner/name\""),
                },
                (Some(org), Some(_)) => issues.at(key, org.span(), "give org or repo, not both"),
                (None, None) => issues.at(key, raw.github.targets.span(), "needs org or repo"),
            }
        }

        let mut user_map = Vec::new();
        for (k, v) in &raw.slurm.user_map {
            let key = format!("slurm.user_map.\"{k}\"");
            if let Err(e) = crate::usermap::check_key(k) {
                issues.at(&key, v.span(), e);
            }
            let (user, account) = match v.get_ref() {
                RawMapped::User(u) => (u.clone(), None),
                RawMapped::Full { user, account } => (user.clone(), account.clone()),
            };
            if user.is_empty() {
                issues.at(&key, v.span(), "empty user name");
            }
            if user_map
                .iter()
                .any(|e: &RepoUser| e.repo_key.eq_ignore_ascii_case(k))
            {
                issues.at(&key, v.span(), "mapped twice (names are case-insensitive)");
            }
            user_map.push(RepoUser {
                repo_key: k.clone(),
                unix_user: user,
                account,
            });
        }
        if !raw.slurm.job_script.get_ref().is_absolute() {
            issues.at(
                "slurm.job_script",
                raw.slurm.job_script.span(),
                "must be an absolute path",
            );
        }

        if *raw.slurm.ticket_ttl_secs.get_ref() < MIN_TICKET_TTL_SECS {
            issues.at(
                "slurm.ticket_ttl_secs",
                raw.slurm.ticket_ttl_secs.span(),
                format!("must be at least {MIN_TICKET_TTL_SECS}"),
            );
        }

        let s = &raw.scaling;
        if *s.reconcile_interval_secs.get_ref() == 0 {
            issues.at(
                "scaling.reconcile_interval_secs",
                s.reconcile_interval_secs.span(),
                "must be at least 1",
            );
        }
        if *s.boot_deadline_secs.get_ref() < 10 {
            issues.at(
                "scaling.boot_deadline_secs",
                s.boot_deadline_secs.span(),
                "must be at least 10",
            );
        }
        if *s.submit_concurrency.get_ref() == 0 {
            issues.at(
                "scaling.submit_concurrency",
                s.submit_concurrency.span(),
                "must be at least 1",
            );
        }

        let mut pools = Vec::new();
        let mut names = HashSet::new();
        if raw.pools.is_empty() {
            issues.at("pools", 0..0, "at least one [[pools]] entry is required");
        }
        for (i, p) in raw.pools.iter().enumerate() {
            let key = format!("pools[{i}]");
            let name = p.name.get_ref().clone();
            if !valid_name(&name) || name.len() > 20 {
                issues.at(
                    format!("{key}.name"),
                    p.name.span(),
                    "1 to 20 characters of letters, digits, '-', '_', '.'",
                );
            } else if !names.insert(name.to_ascii_lowercase()) {
                issues.at(
                    format!("{key}.name"),
                    p.name.span(),
                    format!("pool {name:?} is defined twice"),
                );
            }
            if p.labels.get_ref().iter().any(|l| l.trim().is_empty()) {
                issues.at(
                    format!("{key}.labels"),
                    p.labels.span(),
                    "labels must not be empty strings",
                );
            }
            if *p.max_runners.get_ref() == 0 {
                issues.at(
                    format!("{key}.max_runners"),
                    p.max_runners.span(),
                    "must be at least 1",
                );
            }
            let mut labels: Vec<String> = p
                .labels
                .get_ref()
                .iter()
                .map(|l| l.trim().to_lowercase())
                .collect();
            labels.push("self-hosted".into());
            labels.sort();
            labels.dedup();
            pools.push(PoolConfig {
                name,
                labels,
                priority: p.priority,
                max_runners: *p.max_runners.get_ref(),
                image: p.image.clone(),
                partition: p.partition.clone(),
                cpus: p.cpus,
                memory: p.memory.clone(),
                gres: p.gres.clone(),
                time_limit: p.time_limit.clone(),
                account: p.account.clone(),
                qos: p.qos.clone(),
                extra_args: p.extra_args.clone(),
                job_script_args: p.job_script_args.clone(),
            });
        }

        if !issues.list.is_empty() {
            return Err(ConfigError::Invalid {
                issues: issues.list,
            });
        }
        let (Some(listen), Some(auth)) = (listen, auth) else {
            unreachable!("a missing value always records an issue")
        };
        Ok(Config {
            listen,
            webhook_secret_file: raw.server.webhook_secret_file.get_ref().clone(),
            admin_token_file: raw.server.admin_token_file,
            munge_socket: raw.server.munge_socket,
            db_path: raw.state.db_path.unwrap_or_else(|| DEFAULT_DB_PATH.into()),
            github: GithubConfig {
                api_url,
                auth,
                runner_group_id: raw.github.runner_group_id,
                runner_name_prefix: prefix,
                targets,
            },
            slurm: SlurmConfig {
                job_script: raw.slurm.job_script.get_ref().clone(),
                sbatch: raw.slurm.sbatch,
                squeue: raw.slurm.squeue,
                scancel: raw.slurm.scancel,
                scontrol: raw.slurm.scontrol,
                runner_credentials: raw.slurm.runner_credentials,
                ticket_ttl_secs: *raw.slurm.ticket_ttl_secs.get_ref(),
                user: raw.slurm.user,
                group: raw.slurm.group,
                user_map,
                unmapped: raw.slurm.unmapped,
                output: raw.slurm.output,
                chdir: raw.slurm.chdir,
            },
            scaling: ScalingConfig {
                reconcile_interval_secs: *s.reconcile_interval_secs.get_ref(),
                boot_deadline_secs: *s.boot_deadline_secs.get_ref(),
                submit_concurrency: *s.submit_concurrency.get_ref(),
                sbatch_backoff_max_secs: s.sbatch_backoff_max_secs.max(1),
            },
            pools,
        })
    }

    /// Read the secret files. Errors name the file and key, never the content.
    pub fn load_secrets(&self) -> Result<Secrets, ConfigError> {
        let mut list = Vec::new();
        let mut read = |key: &str, path: &Path| -> Option<Vec<u8>> {
            match std::fs::read(path) {
                Ok(bytes) if bytes.iter().all(|b| b.is_ascii_whitespace()) => {
                    list.push(ConfigIssue {
                        key: key.into(),
                        line: None,
                        message: format!("{} is empty", path.display()),
                    });
                    None
                }
                Ok(bytes) => Some(bytes),
                Err(e) => {
                    list.push(ConfigIssue {
                        key: key.into(),
                        line: None,
                        message: format!("cannot read {}: {e}", path.display()),
                    });
                    None
                }
            }
        };
        let webhook = read("server.webhook_secret_file", &self.webhook_secret_file);
        let admin_token = self.admin_token_file.as_ref().and_then(|path| {
            read("server.admin_token_file", path)
                .map(|b| String::from_utf8_lossy(trim_ascii(&b)).into_owned())
        });
        let github = match &self.github.auth {
            AuthConfig::App {
                private_key_file, ..
            } => read("github.private_key_file", private_key_file).map(GithubSecret::AppKeyPem),
            AuthConfig::Token { token_file } => read("github.token_file", token_file)
                .map(|b| GithubSecret::Token(String::from_utf8_lossy(&b).trim().to_string())),
        };
        if let GithubSecret::AppKeyPem(pem) = github
            .as_ref()
            .unwrap_or(&GithubSecret::Token(String::new()))
        {
            if jsonwebtoken::EncodingKey::from_rsa_pem(pem).is_err() {
                list.push(ConfigIssue {
                    key: "github.private_key_file".into(),
                    line: None,
                    message: "not an RSA private key in PEM format".into(),
                });
            }
        }
        match (webhook, github) {
            (Some(webhook), Some(github)) if list.is_empty() => Ok(Secrets {
                webhook_secret: trim_ascii(&webhook).to_vec(),
                github,
                admin_token,
            }),
            _ => Err(ConfigError::Invalid { issues: list }),
        }
    }
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
listen = "127.0.0.1:8080"
webhook_secret_file = "/etc/gha/secret"

[github]
app_id = 42
private_key_file = "/etc/gha/key.pem"
targets = [{ org = "acme", repositories = ["acme/widgets"] }, { repo = "other/thing" }]

[slurm]
job_script = "/usr/libexec/spank-gha/gha-runner-job"
user = "gha-ci"
group = "gha-ci"
user_map = { "other/thing" = "alice", "acme" = { user = "bob", account = "proj" } }

[[pools]]
name = "cpu"
labels = ["Linux", "X64"]
max_runners = 4

[[pools]]
name = "gpu"
labels = ["linux", "gpu"]
priority = 10
max_runners = 2
gres = "gpu:1"
"#;

    #[test]
    fn the_shipped_example_is_valid() {
        let cfg = Config::parse(include_str!("../dispatcher.example.toml")).unwrap();
        assert_eq!(cfg.pools.len(), 2);
        assert_eq!(cfg.db_path, PathBuf::from(DEFAULT_DB_PATH));
    }

    #[test]
    fn parses_a_good_file() {
        let cfg = Config::parse(GOOD).unwrap();
        assert_eq!(cfg.db_path, PathBuf::from(DEFAULT_DB_PATH));
        assert_eq!(cfg.pools[0].labels, vec!["linux", "self-hosted", "x64"]);
        assert_eq!(cfg.github.targets.len(), 2);
        assert_eq!(
            cfg.github.scope_for_repo("acme/widgets"),
            Some(Scope::Org("acme".into()))
        );
        assert_eq!(
            cfg.github.scope_for_repo("Other/Thing"),
            Some(Scope::Repo {
                owner: "other".into(),
                name: "thing".into()
            })
        );
        assert_eq!(cfg.github.scope_for_repo("stranger/x"), None);
        assert_eq!(
            cfg.slurm.user_map,
            vec![
                RepoUser {
                    repo_key: "acme".into(),
                    unix_user: "bob".into(),
                    account: Some("proj".into())
                },
                RepoUser {
                    repo_key: "other/thing".into(),
                    unix_user: "alice".into(),
                    account: None
                },
            ]
        );
        assert_eq!(cfg.slurm.unmapped, UnmappedPolicy::ServiceUser);
        let bad = GOOD.replace(
            "\"other/thing\" = \"alice\"",
            "\"other/th ing\" = \"alice\"",
        );
        let Err(ConfigError::Invalid { issues }) = Config::parse(&bad) else {
            panic!("bad user_map key accepted")
        };
        assert!(
            issues[0].key.contains("other/th ing") && issues[0].line == Some(15),
            "{issues:?}"
        );
    }

    #[test]
    fn reports_every_semantic_error_with_key_and_line() {
        let bad = GOOD
            .replace("listen = \"127.0.0.1:8080\"", "listen = \"nowhere\"")
            .replace("max_runners = 4", "max_runners = 0")
            .replace("name = \"gpu\"", "name = \"cpu\"");
        let Err(ConfigError::Invalid { issues }) = Config::parse(&bad) else {
            panic!("expected issues")
        };
        let keys: Vec<_> = issues.iter().map(|i| (i.key.as_str(), i.line)).collect();
        assert!(keys.contains(&("server.listen", Some(3))), "{keys:?}");
        assert!(
            keys.contains(&("pools[0].max_runners", Some(20))),
            "{keys:?}"
        );
        assert!(keys.contains(&("pools[1].name", Some(23))), "{keys:?}");
        assert_eq!(issues.len(), 3);
    }

    #[test]
    fn syntax_and_unknown_keys_report_key_and_line() {
        let bad = GOOD.replace("max_runners = 2", "max_runner = 2");
        let Err(ConfigError::Invalid { issues }) = Config::parse(&bad) else {
            panic!("expected issues")
        };
        assert_eq!(issues[0].key, "max_runner");
        assert_eq!(issues[0].line, Some(26));
        assert!(
            issues[0].message.contains("unknown field"),
            "{}",
            issues[0].message
        );

        let bad = GOOD.replace("app_id = 42", "app_id = \"forty\"");
        let Err(ConfigError::Invalid { issues }) = Config::parse(&bad) else {
            panic!("expected issues")
        };
        assert_eq!(
            (issues[0].key.as_str(), issues[0].line),
            ("app_id", Some(7))
        );
    }

    #[test]
    fn secrets_errors_name_the_file_not_the_content() {
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "hunter2-webhook\n").unwrap();
        let key = dir.path().join("key.pem");
        std::fs::write(&key, "not a key but secret-ish").unwrap();
        let text = GOOD
            .replace("/etc/gha/secret", secret.to_str().unwrap())
            .replace("/etc/gha/key.pem", key.to_str().unwrap());
        let cfg = Config::parse(&text).unwrap();
        let err = cfg.load_secrets().unwrap_err().to_string();
        assert!(err.contains("github.private_key_file"), "{err}");
        assert!(
            !err.contains("secret-ish") && !err.contains("hunter2"),
            "{err}"
        );
    }

    #[test]
    fn runner_credentials_default_to_tickets() {
        let cfg = Config::parse(GOOD).unwrap();
        assert_eq!(cfg.slurm.runner_credentials, RunnerCredentials::Ticket);
        assert_eq!(cfg.slurm.ticket_ttl_secs, 86_400);
        assert_eq!(cfg.slurm.scontrol, PathBuf::from("scontrol"));
        let inline = GOOD.replace(
            "user = \"gha-ci\"\n",
            "user = \"gha-ci\"\nrunner_credentials = \"inline\"\nticket_ttl_secs = 60\nscontrol = \"/opt/slurm/bin/scontrol\"\n",
        );
        let cfg = Config::parse(&inline).unwrap();
        assert_eq!(cfg.slurm.runner_credentials, RunnerCredentials::Inline);
        assert_eq!(cfg.slurm.ticket_ttl_secs, 60);
        assert_eq!(cfg.slurm.scontrol, PathBuf::from("/opt/slurm/bin/scontrol"));
    }

    #[test]
    fn bad_ticket_settings_are_reported_with_key_and_line() {
        let short = GOOD.replace(
            "user = \"gha-ci\"\n",
            "user = \"gha-ci\"\nticket_ttl_secs = 59\n",
        );
        let Err(ConfigError::Invalid { issues }) = Config::parse(&short) else {
            panic!("a 59 s ticket TTL was accepted")
        };
        assert_eq!(
            (issues[0].key.as_str(), issues[0].line),
            ("slurm.ticket_ttl_secs", Some(14))
        );
        assert!(issues[0].message.contains("at least 60"), "{issues:?}");
        let unknown = GOOD.replace(
            "user = \"gha-ci\"\n",
            "user = \"gha-ci\"\nrunner_credentials = \"tickets\"\n",
        );
        let Err(ConfigError::Invalid { issues }) = Config::parse(&unknown) else {
            panic!("an unknown runner_credentials was accepted")
        };
        assert_eq!(
            (issues[0].key.as_str(), issues[0].line),
            ("runner_credentials", Some(14))
        );
        assert!(
            issues[0].message.contains("ticket") && issues[0].message.contains("inline"),
            "{issues:?}"
        );
    }
}
