//! Configuration: the TOML file's shape (`raw`), one validator per section, and the secret
//! files it names.
//!
//! Every problem is reported with the key path and the line it is on, and all validation
//! problems are collected so `check-config` shows them together.

mod choices;
mod github;
mod issues;
mod pools;
mod raw;
pub mod runner_users;
mod scaling;
mod secrets;
mod server;
mod slurm;
mod warm;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

pub use choices::{Intake, RunnerCredentials, UnmappedPolicy};
pub use github::{split_listener_problem, AuthConfig, GithubConfig, Target};
pub use pools::PoolConfig;
pub use scaling::ScalingConfig;
pub use secrets::{GithubSecret, Secrets};
pub use slurm::{SlurmConfig, MIN_TICKET_TTL_SECS};
pub use warm::{slurm_time_limit_secs, WarmHours};

pub const DEFAULT_DB_PATH: &str = "/var/lib/gha-dispatcher/state.db";
/// Where the packaged console assets are installed (`server.console_dir`).
pub const DEFAULT_CONSOLE_DIR: &str = "/usr/share/gha-dispatcher/console";

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

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: SocketAddr,
    pub webhook_secret_file: PathBuf,
    /// The token `POST /repositories/:user` needs; without it the mapping is read-only.
    pub admin_token_file: Option<PathBuf>,
    /// munged's socket for `unmunge`; `None`: munge's compiled-in default.
    pub munge_socket: Option<PathBuf>,
    /// The web console's built assets (`console/`'s `npm run build`), served under `/console/`.
    pub console_dir: PathBuf,
    pub db_path: PathBuf,
    pub github: GithubConfig,
    pub slurm: SlurmConfig,
    pub scaling: ScalingConfig,
    pub pools: Vec<PoolConfig>,
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
        let raw: raw::RawConfig =
            toml::from_str(source).map_err(|e| issues::syntax_error(source, &e))?;
        let mut issues = issues::Issues::new(source);
        let listen = server::validate(&raw.server, &mut issues);
        let github = github::validate(raw.github, &mut issues);
        let slurm = slurm::validate(raw.slurm, &mut issues);
        let scaling = scaling::validate(raw.scaling, &mut issues);
        let pools = pools::validate(&raw.pools, &mut issues);
        if let Some(github) = &github {
            for entry in &slurm.user_map {
                if let Some(problem) = split_listener_problem(github, &entry.repo_key) {
                    issues.at("slurm.user_map", 0..0, problem);
                }
            }
        }
        match (listen, github) {
            (Some(listen), Some(github)) if issues.list.is_empty() => Ok(Config {
                listen,
                webhook_secret_file: raw.server.webhook_secret_file.into_inner(),
                admin_token_file: raw.server.admin_token_file,
                munge_socket: raw.server.munge_socket,
                console_dir: raw
                    .server
                    .console_dir
                    .unwrap_or_else(|| DEFAULT_CONSOLE_DIR.into()),
                db_path: raw.state.db_path.unwrap_or_else(|| DEFAULT_DB_PATH.into()),
                github,
                slurm,
                scaling,
                pools,
            }),
            // A missing value always records an issue.
            _ => Err(ConfigError::Invalid {
                issues: issues.list,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{RepoUser, Scope};

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
    fn targets_choose_their_intake_and_a_listener_org_is_mapped_whole() {
        let listener = GOOD.replace(
            "{ repo = \"other/thing\" }",
            "{ repo = \"other/thing\", intake = \"listener\" }, { org = \"labs\", intake = \"listener\" }",
        );
        let cfg = Config::parse(&listener).unwrap();
        let intakes: Vec<Intake> = cfg.github.targets.iter().map(|t| t.intake).collect();
        assert_eq!(
            intakes,
            [Intake::Webhook, Intake::Listener, Intake::Listener]
        );
        assert_eq!(cfg.github.listener_targets().count(), 2);
        assert_eq!(
            cfg.github.config_url(&Scope::Org("labs".into())),
            "https://github.com/labs"
        );
        let split = listener.replace("\"acme\" = {", "\"labs/one\" = \"carol\", \"acme\" = {");
        let Err(ConfigError::Invalid { issues }) = Config::parse(&split) else {
            panic!("a repository of a listener organization mapped on its own was accepted")
        };
        assert!(
            issues
                .iter()
                .any(|i| i.message.contains("labs is a listener target")),
            "{issues:?}"
        );
        let unknown = GOOD.replace(
            "{ repo = \"other/thing\" }",
            "{ repo = \"other/thing\", intake = \"poll\" }",
        );
        assert!(Config::parse(&unknown).is_err());
    }

    #[test]
    fn a_fixed_installation_serves_targets_of_one_account_only() {
        let fixed = GOOD.replace("app_id = 42", "app_id = 42\ninstallation_id = 7");
        let Err(ConfigError::Invalid { issues }) = Config::parse(&fixed) else {
            panic!("one installation for targets in acme and other was accepted")
        };
        assert!(
            issues.iter().any(|i| i.message.contains("acme, other")),
            "{issues:?}"
        );
        let one_account = fixed
            .replace("{ repo = \"other/thing\" }", "{ repo = \"acme/thing\" }")
            .replace("\"other/thing\" = \"alice\"", "\"acme/thing\" = \"alice\"");
        let cfg = Config::parse(&one_account).unwrap();
        assert!(matches!(
            cfg.github.auth,
            AuthConfig::App {
                installation_id: Some(7),
                ..
            }
        ));
    }

    #[test]
    fn the_enterprise_server_config_url_drops_the_api_path() {
        let ghes = GOOD.replace(
            "[github]",
            "[github]\napi_url = \"https://ghe.example.edu/api/v3\"",
        );
        let cfg = Config::parse(&ghes).unwrap();
        assert_eq!(
            cfg.github.config_url(&Scope::Repo {
                owner: "a".into(),
                name: "b".into()
            }),
            "https://ghe.example.edu/a/b"
        );
    }

    #[test]
    fn the_shipped_example_is_valid() {
        let cfg = Config::parse(include_str!("../../dispatcher.example.toml")).unwrap();
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
