//! Which Unix user (and Slurm account) a repository's jobs run as, and where their runners
//! are registered: the placement that demand is grouped by.
//!
//! A repository entry (`owner/repo`) beats an organization entry (`owner`); an unmapped
//! repository runs as the service user, or is refused when `slurm.unmapped = "refuse"`.

use std::collections::HashMap;

use crate::config::{Config, Target, UnmappedPolicy};
use crate::model::{Placement, RepoUser, RunnerRow, Scope};

/// Why a job gets no runner although its repository and labels are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No mapping for the repository or its owner, and `slurm.unmapped = "refuse"`.
    Unmapped,
    /// A listener organization whose repositories map to users of their own: its scale sets
    /// take every repository's jobs, so no runner could be kept to one user's repositories.
    SplitListener,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Unmapped => "unmapped",
            Refusal::SplitListener => "split_listener",
        }
    }
}

/// The placement key of an existing runner (rows from before the mapping: service user).
pub fn placement_key(config: &Config, row: &RunnerRow) -> String {
    Placement::key_of(
        &row.scope,
        row.run_as.as_deref().or(config.slurm.user.as_deref()),
        row.account.as_deref(),
    )
}

struct Entry {
    user: String,
    account: Option<String>,
}

/// A snapshot of the `repo_users` table, keyed case-insensitively like GitHub.
#[derive(Default)]
pub struct Mapping {
    entries: HashMap<String, Entry>,
}

impl Mapping {
    pub fn new(rows: Vec<RepoUser>) -> Mapping {
        Mapping {
            entries: rows
                .into_iter()
                .map(|r| {
                    (
                        r.repo_key.to_ascii_lowercase(),
                        Entry {
                            user: r.unix_user,
                            account: r.account,
                        },
                    )
                })
                .collect(),
        }
    }

    fn lookup(&self, repo: &str) -> Option<&Entry> {
        let repo = repo.to_ascii_lowercase();
        let owner = repo.split_once('/').map(|(o, _)| o).unwrap_or(&repo);
        self.entries.get(&repo).or_else(|| self.entries.get(owner))
    }

    fn has_repo_entries_under(&self, owner: &str) -> bool {
        let prefix = format!("{}/", owner.to_ascii_lowercase());
        self.entries.keys().any(|k| k.starts_with(&prefix))
    }

    /// Where the runners of a listener target's scale sets go: the target's scope, as the
    /// target's key maps (a repository, or the organization as a whole). Refused for an
    /// organization some of whose repositories map on their own (the API and the config
    /// refuse to create that; a database from before may hold it).
    pub fn place_listener(&self, config: &Config, target: &Target) -> Result<Placement, Refusal> {
        let key = match &target.scope {
            Scope::Org(org) => {
                if self.has_repo_entries_under(org) {
                    return Err(Refusal::SplitListener);
                }
                org.clone()
            }
            Scope::Repo { owner, name } => format!("{owner}/{name}"),
        };
        let (user, account) = self.user_for(config, &key)?;
        Ok(Placement {
            scope: target.scope.clone(),
            user,
            account,
        })
    }

    /// The user (and account) of `key`'s jobs under the mapping and the unmapped policy.
    fn user_for(
        &self,
        config: &Config,
        key: &str,
    ) -> Result<(Option<String>, Option<String>), Refusal> {
        match self.lookup(key) {
            Some(e) => Ok((Some(e.user.clone()), e.account.clone())),
            None => match config.slurm.unmapped {
                UnmappedPolicy::Refuse => Err(Refusal::Unmapped),
                UnmappedPolicy::ServiceUser => Ok((config.slurm.user.clone(), None)),
            },
        }
    }

    /// Where the runner for a job of `repo` goes, `Ok(None)` when the repository is not ours.
    ///
    /// Runners are not bound to jobs: an organization runner may take any job of the
    /// organization. So when some repository of the organization has an entry of its own,
    /// the runner is registered on the job's repository instead, and can only take that
    /// repository's jobs (never another user's).
    pub fn place(&self, config: &Config, repo: &str) -> Result<Option<Placement>, Refusal> {
        let Some(mut scope) = config.github.scope_for_repo(repo) else {
            return Ok(None);
        };
        let (user, account) = self.user_for(config, repo)?;
        if let (Scope::Org(org), Some((owner, name))) = (&scope, repo.split_once('/')) {
            if self.has_repo_entries_under(org) {
                scope = Scope::Repo {
                    owner: owner.to_string(),
                    name: name.to_string(),
                };
            }
        }
        Ok(Some(Placement {
            scope,
            user,
            account,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(unmapped: &str) -> Config {
        Config::parse(&format!(
            r#"
[server]
listen = "127.0.0.1:8080"
webhook_secret_file = "/etc/gha/secret"
[github]
token_file = "/etc/gha/token"
targets = [{{ org = "acme" }}, {{ repo = "solo/one" }}]
[slurm]
job_script = "/usr/libexec/gha-runner-job"
user = "svc"
unmapped = "{unmapped}"
[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 2
"#
        ))
        .unwrap()
    }

    fn row(key: &str, user: &str, account: Option<&str>) -> RepoUser {
        RepoUser {
            repo_key: key.into(),
            unix_user: user.into(),
            account: account.map(Into::into),
        }
    }

    #[test]
    fn repository_entry_beats_organization_entry_and_narrows_the_scope() {
        let cfg = config("service-user");
        let map = Mapping::new(vec![
            row("acme", "alice", Some("proj")),
            row("ACME/Widgets", "bob", None),
        ]);
        let widgets = map.place(&cfg, "acme/widgets").unwrap().unwrap();
        assert_eq!(widgets.user.as_deref(), Some("bob"));
        assert_eq!(widgets.account, None);
        assert_eq!(
            widgets.scope,
            Scope::Repo {
                owner: "acme".into(),
                name: "widgets".into()
            }
        );
        let gadgets = map.place(&cfg, "acme/gadgets").unwrap().unwrap();
        assert_eq!(gadgets.user.as_deref(), Some("alice"));
        assert_eq!(gadgets.account.as_deref(), Some("proj"));
        // acme has a repository entry: an org runner could take bob's job, so narrowed.
        assert!(matches!(gadgets.scope, Scope::Repo { ref name, .. } if name == "gadgets"));
        assert_ne!(widgets.key(), gadgets.key());
        assert_eq!(map.place(&cfg, "other/x"), Ok(None));
    }

    #[test]
    fn organization_entries_alone_keep_organization_runners() {
        let cfg = config("service-user");
        let map = Mapping::new(vec![row("acme", "alice", None)]);
        let p = map.place(&cfg, "acme/widgets").unwrap().unwrap();
        assert_eq!(p.scope, Scope::Org("acme".into()));
        assert_eq!(p.user.as_deref(), Some("alice"));
    }

    #[test]
    fn a_listener_organization_runs_as_its_own_entry_and_refuses_a_split() {
        let mut cfg = config("service-user");
        cfg.github.targets[0].intake = crate::config::Intake::Listener;
        let target = cfg.github.targets[0].clone();
        let whole = Mapping::new(vec![row("acme", "alice", Some("proj"))]);
        let p = whole.place_listener(&cfg, &target).unwrap();
        assert_eq!(p.scope, Scope::Org("acme".into()));
        assert_eq!(p.user.as_deref(), Some("alice"));
        let split = Mapping::new(vec![row("acme", "alice", None), row("acme/w", "bob", None)]);
        assert_eq!(
            split.place_listener(&cfg, &target),
            Err(Refusal::SplitListener)
        );
        let nobody = Mapping::default();
        let p = nobody.place_listener(&cfg, &target).unwrap();
        assert_eq!(p.user.as_deref(), Some("svc"), "unmapped: the service user");
    }

    #[test]
    fn unmapped_repositories_follow_the_policy() {
        let map = Mapping::new(vec![row("acme/widgets", "bob", None)]);
        let p = map
            .place(&config("service-user"), "solo/one")
            .unwrap()
            .unwrap();
        assert_eq!(p.user.as_deref(), Some("svc"));
        assert_eq!(
            map.place(&config("refuse"), "acme/gadgets"),
            Err(Refusal::Unmapped)
        );
        assert!(map.place(&config("refuse"), "acme/widgets").is_ok());
    }
}
