//! Which Unix user (and Slurm account) a repository's jobs run as.
//!
//! Owns the repository-name rules, the in-memory view of the `repo_users` table and the
//! placement of a job: the user it runs as and the registration scope of its runner. A
//! repository entry (`owner/repo`) beats an organization entry (`owner`); an unmapped
//! repository runs as the service user, or is refused when `slurm.unmapped = "refuse"`.

use std::collections::HashMap;

use crate::config::{Config, Scope, UnmappedPolicy};
use crate::db::RepoUser;

/// Why a job gets no runner although its repository and labels are ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// No mapping for the repository or its owner, and `slurm.unmapped = "refuse"`.
    Unmapped,
}

impl Refusal {
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::Unmapped => "unmapped",
        }
    }
}

/// Where a job's runner is registered and who its Slurm job runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub scope: Scope,
    /// `None`: the dispatcher's own user (no `slurm.user`, nothing mapped).
    pub user: Option<String>,
    pub account: Option<String>,
}

impl Placement {
    /// What the scaler groups demand by: runners are interchangeable only within it.
    pub fn key(&self) -> String {
        Placement::key_of(
            &self.scope.key(),
            self.user.as_deref(),
            self.account.as_deref(),
        )
    }

    /// The same key from a runner row's stored scope key, user and account.
    pub fn key_of(scope_key: &str, user: Option<&str>, account: Option<&str>) -> String {
        format!(
            "{scope_key} user={} account={}",
            user.unwrap_or("-"),
            account.unwrap_or("-")
        )
    }
}

/// A GitHub owner (user or organization) login: 1 to 39 letters, digits or hyphens, not
/// starting or ending with a hyphen.
pub fn valid_owner(owner: &str) -> bool {
    (1..=39).contains(&owner.len())
        && owner.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !owner.starts_with('-')
        && !owner.ends_with('-')
}

/// A GitHub repository name: 1 to 100 letters, digits, `.`, `_` or `-`, not `.` or `..`.
pub fn valid_repo_name(name: &str) -> bool {
    (1..=100).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && name != "."
        && name != ".."
}

/// Check a mapping key, `owner/repo` or `owner`; the error says what is wrong.
pub fn check_key(key: &str) -> Result<(), String> {
    match key.split_once('/') {
        Some((owner, name)) => {
            if !valid_owner(owner) {
                return Err(format!(
                    "{key:?}: owner must be 1-39 letters, digits or hyphens (not at either end)"
                ));
            }
            if !valid_repo_name(name) {
                return Err(format!(
                    "{key:?}: repository name must be 1-100 letters, digits, '.', '_' or '-'"
                ));
            }
            Ok(())
        }
        None if valid_owner(key) => Ok(()),
        None => Err(format!(
            "{key:?}: expected \"owner/repo\" or an organization \"owner\" (1-39 letters, digits or hyphens)"
        )),
    }
}

/// Whether `name` is a user in the passwd database (local files, LDAP, ... via NSS).
pub fn unix_user_exists(name: &str) -> Result<bool, std::io::Error> {
    nix::unistd::User::from_name(name)
        .map(|u| u.is_some())
        .map_err(std::io::Error::from)
}

/// The login name of a numeric uid, if it has one.
pub fn unix_user_name(uid: u32) -> Result<Option<String>, std::io::Error> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .map(|u| u.map(|u| u.name))
        .map_err(std::io::Error::from)
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
        let (user, account) = match self.lookup(repo) {
            Some(e) => (Some(e.user.clone()), e.account.clone()),
            None => match config.slurm.unmapped {
                UnmappedPolicy::Refuse => return Err(Refusal::Unmapped),
                UnmappedPolicy::ServiceUser => (config.slurm.user.clone(), None),
            },
        };
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

    #[test]
    fn github_name_rules() {
        assert!(check_key("acme").is_ok());
        assert!(check_key("acme/widgets").is_ok());
        assert!(check_key("a-b/x.y_z-1").is_ok());
        assert!(check_key(&format!("{}/r", "a".repeat(39))).is_ok());
        assert!(check_key(&format!("o/{}", "r".repeat(100))).is_ok());
        for bad in [
            "",
            "/",
            "acme/",
            "/widgets",
            "-acme/w",
            "acme-/w",
            "ac_me/w",
            "acme/wid gets",
            "acme/wid/gets",
            "acme/..",
            "acme/.",
            "acme/widgets;rm",
            "ac.me",
        ] {
            assert!(check_key(bad).is_err(), "{bad:?} accepted");
        }
        assert!(check_key(&format!("{}/r", "a".repeat(40))).is_err());
        assert!(check_key(&format!("o/{}", "r".repeat(101))).is_err());
        let err = check_key("acme/wid gets").unwrap_err();
        assert!(err.contains("acme/wid gets"), "{err}");
    }

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
