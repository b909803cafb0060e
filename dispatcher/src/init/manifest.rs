//! The GitHub App manifest (GitHub's "register an App from a manifest" flow): the permissions the
//! dispatcher's calls need and no more, the one event it reads, the webhook URL; and where on
//! GitHub an organization or a user creates an App from it.

use serde_json::{json, Value};

/// Whose App it is, and so whose runners it manages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// Organization runners (`/orgs/{org}/actions/runners`).
    Org(String),
    /// A user account: repository runners (`/repos/{owner}/{repo}/actions/runners`).
    User(String),
}

impl Owner {
    pub fn login(&self) -> &str {
        match self {
            Owner::Org(login) | Owner::User(login) => login,
        }
    }
}

/// The manifest. Permissions, from what `clients::github` calls:
/// - `actions: read`: `GET /repos/{o}/{r}/actions/runs`, `.../runs/{id}/jobs`, `.../jobs/{id}`;
/// - organization runners (`generate-jitconfig`, list, delete):
///   `organization_self_hosted_runners: write`;
/// - repository runners (a user's App): `administration: write`, which GitHub requires for
///   `/repos/{o}/{r}/actions/runners`;
/// - `metadata: read`, which GitHub grants every App (installation look-ups).
pub fn manifest(name: &str, owner: &Owner, webhook_url: &str, redirect_url: &str) -> Value {
    let runners = match owner {
        Owner::Org(_) => "organization_self_hosted_runners",
        Owner::User(_) => "administration",
    };
    json!({
        "name": name,
        "url": "https://github.com/spank-gha/spank-gha",
        "description": "GitHub Actions runners as Slurm jobs (gha-dispatcher)",
        "hook_attributes": {"url": webhook_url, "active": true},
        "redirect_url": redirect_url,
        "public": false,
        "default_permissions": {"actions": "read", runners: "write", "metadata": "read"},
        "default_events": ["workflow_job"],
    })
}

/// The page that creates an App from a manifest posted to it (GitHub or GHES web UI).
pub fn create_url(web_url: &str, owner: &Owner, state: &str) -> String {
    let web = web_url.trim_end_matches('/');
    match owner {
        Owner::Org(org) => format!("{web}/organizations/{org}/settings/apps/new?state={state}"),
        Owner::User(_) => format!("{web}/settings/apps/new?state={state}"),
    }
}

/// The web UI's base for an API base: `https://api.github.com` → `https://github.com`,
/// GHES `https://HOST/api/v3` → `https://HOST`.
pub fn web_url_for(api_url: &str) -> String {
    let api = api_url.trim_end_matches('/');
    if api == "https://api.github.com" {
        return "https://github.com".into();
    }
    api.strip_suffix("/api/v3").unwrap_or(api).to_string()
}

/// A page whose button posts the manifest to GitHub (GitHub accepts it only as a form POST).
pub fn form_page(create_url: &str, manifest: &Value) -> String {
    let escaped = manifest
        .to_string()
        .replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    format!(
        "<!doctype html>\n<html><body>\n<form action=\"{create_url}\" method=\"post\">\n\
         <input type=\"hidden\" name=\"manifest\" value=\"{escaped}\">\n\
         <button type=\"submit\">Create the GitHub App</button>\n</form>\n</body></html>\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_org_app_asks_for_org_runners_a_user_app_for_repository_administration() {
        let org = manifest(
            "x",
            &Owner::Org("acme".into()),
            "https://h/webhook",
            "https://h/",
        );
        assert_eq!(org["default_events"], json!(["workflow_job"]));
        assert_eq!(
            org["default_permissions"],
            json!({"actions": "read", "organization_self_hosted_runners": "write", "metadata": "read"})
        );
        assert_eq!(org["hook_attributes"]["url"], "https://h/webhook");
        let user = manifest(
            "x",
            &Owner::User("me".into()),
            "https://h/webhook",
            "https://h/",
        );
        assert_eq!(user["default_permissions"]["administration"], "write");
        assert!(user["default_permissions"]
            .get("organization_self_hosted_runners")
            .is_none());
    }

    #[test]
    fn links_and_web_urls() {
        assert_eq!(web_url_for("https://api.github.com/"), "https://github.com");
        assert_eq!(
            web_url_for("https://ghe.example/api/v3"),
            "https://ghe.example"
        );
        assert_eq!(
            create_url("https://github.com", &Owner::Org("acme".into()), "s"),
            "https://github.com/organizations/acme/settings/apps/new?state=s"
        );
        assert_eq!(
            create_url("https://github.com", &Owner::User("me".into()), "s"),
            "https://github.com/settings/apps/new?state=s"
        );
    }

    #[test]
    fn the_form_page_escapes_the_manifest() {
        let page = form_page("https://g/new", &json!({"name": "a\"<b>&"}));
        assert!(
            page.contains("&quot;a\\&quot;&lt;b&gt;&amp;&quot;"),
            "{page}"
        );
    }
}
