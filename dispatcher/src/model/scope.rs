//! Where runners are registered on GitHub.

/// An organization or a single repository.
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
