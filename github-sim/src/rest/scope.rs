//! Whose runners a call is about, taken from its path: `/orgs/{org}/...` (organization runners)
//! or `/repos/{owner}/{repo}/...` (repository runners). One extractor, so each runner endpoint has
//! one handler for both forms, and one place for GitHub's checks in GitHub's order: who is
//! calling, does the org or repository exist (for them), do they hold the permission.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::http::HeaderMap;

use crate::auth::{authenticate, require, Need};
use crate::error::ApiError;
use crate::state::{key, Scope, World};

/// The `{org}` or `{owner}/{repo}` of a runner endpoint's path, as the caller wrote it.
#[derive(Debug, Clone)]
pub(super) enum ScopePath {
    Org { org: String },
    Repo { owner: String, repo: String },
}

impl<S: Send + Sync> FromRequestParts<S> for ScopePath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|_| ApiError::not_found())?;
        match (params.get("org"), params.get("owner"), params.get("repo")) {
            (Some(org), _, _) => Ok(ScopePath::Org { org: org.clone() }),
            (None, Some(owner), Some(repo)) => Ok(ScopePath::Repo {
                owner: owner.clone(),
                repo: repo.clone(),
            }),
            _ => Err(ApiError::not_found()),
        }
    }
}

impl ScopePath {
    /// The account (org, or the repository's owner) the call is on.
    pub(super) fn account(&self) -> &str {
        match self {
            ScopePath::Org { org } => org,
            ScopePath::Repo { owner, .. } => owner,
        }
    }

    /// `/orgs/{org}` or `/repos/{owner}/{repo}`: where the endpoint's paths start.
    pub(super) fn api_prefix(&self) -> String {
        match self {
            ScopePath::Org { org } => format!("/orgs/{org}"),
            ScopePath::Repo { owner, repo } => format!("/repos/{owner}/{repo}"),
        }
    }

    /// `{org}` or `{owner}/{repo}`: the path of the account's or repository's web page.
    pub(super) fn html_path(&self) -> String {
        match self {
            ScopePath::Org { org } => org.clone(),
            ScopePath::Repo { owner, repo } => format!("{owner}/{repo}"),
        }
    }

    /// 404 unless the org or repository exists.
    pub(super) fn require_exists(&self, w: &World) -> Result<(), ApiError> {
        match self {
            ScopePath::Org { org } => require_org(w, org),
            ScopePath::Repo { owner, repo } => require_repo(w, owner, repo).map(|_| ()),
        }
    }

    /// GitHub's checks for the runner endpoints (organization: `organization_self_hosted_runners`
    /// or `admin:org`; repository: `administration` or `repo`), `write` for POST and DELETE.
    /// Returns where the runners are registered.
    pub(super) fn authorize_runners(
        &self,
        w: &World,
        headers: &HeaderMap,
        write: bool,
    ) -> Result<Scope, ApiError> {
        let principal = authenticate(w, headers)?;
        match self {
            ScopePath::Org { org } => {
                require_org(w, org)?;
                require(&principal, Need::OrgRunners { org, write })?;
                Ok(Scope::Org(org.clone()))
            }
            ScopePath::Repo { owner, repo } => {
                let k = require_repo(w, owner, repo)?;
                require(&principal, Need::RepoAdmin { owner, write })?;
                let r = &w.repos[&k];
                Ok(Scope::Repo {
                    owner: r.owner.clone(),
                    name: r.name.clone(),
                })
            }
        }
    }
}

fn require_org(w: &World, org: &str) -> Result<(), ApiError> {
    if w.orgs.contains_key(&key(org)) {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

/// 404 unless `owner/repo` exists; its key in the world.
pub(super) fn require_repo(w: &World, owner: &str, repo: &str) -> Result<String, ApiError> {
    let k = key(&format!("{owner}/{repo}"));
    if w.repos.contains_key(&k) {
        Ok(k)
    } else {
        Err(ApiError::not_found())
    }
}

/// The checks of every repository endpoint, in GitHub's order: who is calling, does the
/// repository exist (for them), do they hold `need` on it. Returns the repository's key.
pub(super) fn authorize_repo(
    w: &World,
    headers: &HeaderMap,
    owner: &str,
    repo: &str,
    need: Need<'_>,
) -> Result<String, ApiError> {
    let principal = authenticate(w, headers)?;
    let k = require_repo(w, owner, repo)?;
    require(&principal, need)?;
    Ok(k)
}
