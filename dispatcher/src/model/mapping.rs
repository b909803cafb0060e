//! The repository-to-user mapping's vocabulary: GitHub's naming rules for its keys, one
//! mapping entry, and the placement of a runner (registration scope, Unix user, account).

use super::Scope;

/// One row of the repository mapping: `owner/repo` or `owner` to a Unix user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoUser {
    pub repo_key: String,
    pub unix_user: String,
    pub account: Option<String>,
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
}
