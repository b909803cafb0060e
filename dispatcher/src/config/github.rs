//! The `[github]` section: API URL, authentication, targets and runner names.

use std::path::PathBuf;

use super::choices::Intake;
use super::issues::{valid_name, Issues};
use super::raw::RawGithub;
use crate::model::Scope;

/// A configured target: runners are registered at `scope`; with webhooks, queued jobs are
/// polled in `repositories`; with a listener, the scope's scale sets tell us.
#[derive(Debug, Clone)]
pub struct Target {
    pub scope: Scope,
    pub repositories: Vec<String>,
    pub intake: Intake,
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
    /// `https://…`, or `http://` to a loopback host (a local test server) only.
    pub api_url: String,
    /// Certificate authorities trusted besides the system's (PEM), for a GitHub Enterprise
    /// Server with a private CA.
    pub ca_file: Option<PathBuf>,
    pub auth: AuthConfig,
    pub runner_group_id: u64,
    pub runner_name_prefix: String,
    pub targets: Vec<Target>,
}

impl GithubConfig {
    /// The scope whose runners serve jobs of `repo_full_name`, if the repository is ours.
    /// A repository target wins over an organization target.
    pub fn scope_for_repo(&self, repo_full_name: &str) -> Option<Scope> {
        self.target_for_repo(repo_full_name)
            .map(|t| t.scope.clone())
    }

    /// The target that serves jobs of `repo_full_name` (a repository target wins).
    pub fn target_for_repo(&self, repo_full_name: &str) -> Option<&Target> {
        let (owner, name) = repo_full_name.split_once('/')?;
        let repo_scope = self.targets.iter().find(|t| {
            matches!(&t.scope, Scope::Repo { owner: o, name: n }
                if o.eq_ignore_ascii_case(owner) && n.eq_ignore_ascii_case(name))
        });
        repo_scope.or_else(|| {
            self.targets
                .iter()
                .find(|t| matches!(&t.scope, Scope::Org(org) if org.eq_ignore_ascii_case(owner)))
        })
    }

    /// The targets whose jobs arrive through a scale set listener.
    pub fn listener_targets(&self) -> impl Iterator<Item = &Target> {
        self.targets.iter().filter(|t| t.intake == Intake::Listener)
    }

    /// The web URL of `scope` on this GitHub (the scale set protocol's "config URL"):
    /// `https://github.com/<org>` for `https://api.github.com`, `https://host/<org>` for a
    /// GitHub Enterprise Server at `https://host/api/v3`, and the API URL itself otherwise
    /// (a server that is both, as a local test server is).
    pub fn config_url(&self, scope: &Scope) -> String {
        let api = self.api_url.trim_end_matches('/');
        let web = if api.eq_ignore_ascii_case("https://api.github.com") {
            "https://github.com".to_string()
        } else if let Some(ghes) = api.strip_suffix("/api/v3") {
            ghes.to_string()
        } else {
            api.to_string()
        };
        match scope {
            Scope::Org(org) => format!("{web}/{org}"),
            Scope::Repo { owner, name } => format!("{web}/{owner}/{name}"),
        }
    }
}

/// Validates `[github]`; `None` when the authentication is unusable (an issue says why).
pub(super) fn validate(raw: RawGithub, issues: &mut Issues<'_>) -> Option<GithubConfig> {
    let api_url = raw.api_url.get_ref().trim_end_matches('/').to_string();
    if let Some(problem) = api_url_problem(&api_url) {
        issues.at("github.api_url", raw.api_url.span(), problem);
    }
    if let Some(ca_file) = &raw.ca_file {
        if let Some(problem) = ca_file_problem(ca_file.get_ref()) {
            issues.at("github.ca_file", ca_file.span(), problem);
        }
    }
    let auth = auth(&raw, issues);
    let prefix = raw.runner_name_prefix.get_ref().clone();
    if !valid_name(&prefix) || prefix.len() > 20 {
        issues.at(
            "github.runner_name_prefix",
            raw.runner_name_prefix.span(),
            "1 to 20 characters of letters, digits, '-', '_', '.'",
        );
    }

    let targets = targets(&raw, issues);
    if let Some(problem) = one_installation_problem(auth.as_ref(), &targets) {
        issues.at("github.installation_id", 0..0, problem);
    }
    Some(GithubConfig {
        api_url,
        ca_file: raw.ca_file.as_ref().map(|f| f.get_ref().clone()),
        auth: auth?,
        runner_group_id: raw.runner_group_id,
        runner_name_prefix: prefix,
        targets,
    })
}

/// Why `url` cannot be the API's URL: every call carries a credential (the App's JWT, an
/// installation token or a personal token), so it must travel over TLS; plain HTTP is left
/// for a server on this host (a local test server).
pub fn api_url_problem(url: &str) -> Option<&'static str> {
    if let Some(rest) = url.strip_prefix("https://") {
        return host_of(rest)
            .is_empty()
            .then_some("has no host after https://");
    }
    let Some(rest) = url.strip_prefix("http://") else {
        return Some("must start with https://");
    };
    let host = host_of(rest);
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then_some(
        "must be https://: every call carries a GitHub credential (App JWT, installation \
         token or token), which plain http:// would send in clear; http:// is accepted for a \
         loopback host (127.0.0.1, ::1, localhost) only",
    )
}

/// The host of `authority[/path]` (no user info, no port, no IPv6 brackets).
fn host_of(rest: &str) -> &str {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host_port = authority.rsplit('@').next().unwrap_or("");
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}

/// Why the CA bundle at `path` is unusable, if it is.
fn ca_file_problem(path: &std::path::Path) -> Option<String> {
    match std::fs::read(path) {
        Err(e) => Some(format!("cannot read {}: {e}", path.display())),
        Ok(pem) => match reqwest::Certificate::from_pem_bundle(&pem) {
            Ok(certs) if !certs.is_empty() => None,
            _ => Some(format!("{} holds no PEM certificate", path.display())),
        },
    }
}

/// An App (id + key) or a token, never both.
fn auth(raw: &RawGithub, issues: &mut Issues<'_>) -> Option<AuthConfig> {
    match (&raw.app_id, &raw.private_key_file, &raw.token_file) {
        (Some(app_id), Some(key), None) => Some(AuthConfig::App {
            app_id: *app_id.get_ref(),
            private_key_file: key.get_ref().clone(),
            installation_id: raw.installation_id,
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
    }
}

/// An installation belongs to one account: a fixed `installation_id` with targets in several
/// would give every other account's calls a token GitHub answers 404 to, forever.
fn one_installation_problem(auth: Option<&AuthConfig>, targets: &[Target]) -> Option<String> {
    let Some(AuthConfig::App {
        installation_id: Some(_),
        ..
    }) = auth
    else {
        return None;
    };
    let mut owners: Vec<String> = targets
        .iter()
        .map(|t| t.scope.owner().to_ascii_lowercase())
        .collect();
    owners.sort();
    owners.dedup();
    (owners.len() > 1).then(|| {
        format!(
            "an installation is of one account, but the targets are in {}: leave \
             installation_id out (the App's installation is then looked up per account)",
            owners.join(", ")
        )
    })
}

/// Each target an org (with the repositories to poll) or one repository.
fn targets(raw: &RawGithub, issues: &mut Issues<'_>) -> Vec<Target> {
    let mut targets = Vec::new();
    if raw.targets.get_ref().is_empty() {
        issues.at(
            "github.targets",
            raw.targets.span(),
            "at least one target ({ org = \"..\" } or { repo = \"owner/name\" }) is required",
        );
    }
    for (i, t) in raw.targets.get_ref().iter().enumerate() {
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
                        Some((o, n)) if o.eq_ignore_ascii_case(org.get_ref()) && valid_name(n) => {
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
                    intake: t.intake,
                });
            }
            (None, Some(repo)) => match repo.get_ref().split_once('/') {
                Some((o, n)) if valid_name(o) && valid_name(n) => targets.push(Target {
                    scope: Scope::Repo {
                        owner: o.into(),
                        name: n.into(),
                    },
                    repositories: vec![repo.get_ref().clone()],
                    intake: t.intake,
                }),
                _ => issues.at(format!("{key}.repo"), repo.span(), "must be \"owner/name\""),
            },
            (Some(org), Some(_)) => issues.at(key, org.span(), "give org or repo, not both"),
            (None, None) => issues.at(key, raw.targets.span(), "needs org or repo"),
        }
    }

    targets
}

/// Why `repo_key` (an `owner/repo` mapping entry) cannot be mapped on its own, if it cannot:
/// its organization is a listener target, whose scale sets take every repository's jobs, so
/// a runner cannot be kept to one repository's jobs (and its user) there. Give the
/// repository a listener target of its own, or map the organization.
pub fn split_listener_problem(github: &GithubConfig, repo_key: &str) -> Option<String> {
    let (owner, _) = repo_key.split_once('/')?;
    let target = github.target_for_repo(repo_key)?;
    match &target.scope {
        Scope::Org(org) if target.intake == Intake::Listener => Some(format!(
            "{repo_key}: organization {org} is a listener target, whose scale sets take every \
             repository's jobs; map {owner} as a whole, or add {{ repo = \"{repo_key}\", intake = \
             \"listener\" }} as a target of its own"
        )),
        _ => None,
    }
}
