//! `GET/POST /repositories/{username}`: the REST face of the repository-to-user mapping.
//!
//! Writes need the admin token (`Authorization: Bearer <token>`). Reads take the admin
//! token, or `Authorization: MUNGE <credential>` from the Unix user being asked about. A
//! write replaces the user's whole list in one transaction; any bad entry changes nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};

use axum::Json;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::auth::{authenticate, err, ApiError, Caller};
use crate::clients::users;
use crate::config::{runner_users, split_listener_problem, Config};
use crate::model::{check_key, RepoUser};
use crate::store::{self, Db};

/// What the mapping's endpoints need (an `axum` sub-state).
#[derive(Clone)]
pub struct RepositoriesState {
    pub config: Arc<Config>,
    pub db: Db,
    /// Needed by `POST /repositories/{username}`; `None`: the mapping is read-only.
    pub admin_token: Option<Arc<String>>,
    /// Wakes the control loop when the mapping changed.
    pub wake: Arc<Notify>,
}

/// Most entries one user may have.
pub const MAX_ENTRIES: usize = 1000;
/// Largest `POST` body (1,000 entries with accounts fit several times over).
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// One mapped repository (`owner/repo`) or organization (`owner`) of a user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MappedRepository {
    pub repository: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
}

/// A `POST` entry: `"owner/repo"` or `{"repository": "owner/repo", "account": "..."}`.
#[derive(Deserialize)]
#[serde(untagged)]
enum PostedEntry {
    Name(String),
    Full(MappedRepository),
}

/// `username` exists, and is neither root nor a system account (below `slurm.min_uid`).
fn check_user(app: &RepositoriesState, username: &str) -> Result<(), ApiError> {
    match users::unix_user_exists(username) {
        Ok(true) => match runner_users::refuse_runner_user(username, app.config.slurm.min_uid) {
            Some(why) => Err(err(StatusCode::UNPROCESSABLE_ENTITY, why)),
            None => Ok(()),
        },
        Ok(false) => Err(err(
            StatusCode::NOT_FOUND,
            format!("no Unix user named {username:?} in the passwd database"),
        )),
        Err(e) => Err(err(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("cannot look up Unix users: {e}"),
        )),
    }
}

fn listed(rows: Vec<RepoUser>) -> Vec<MappedRepository> {
    rows.into_iter()
        .map(|r| MappedRepository {
            repository: r.repo_key,
            account: r.account,
        })
        .collect()
}

async fn list_of(
    app: &RepositoriesState,
    username: &str,
) -> Result<Vec<MappedRepository>, ApiError> {
    let user = username.to_string();
    app.db
        .call(move |c| store::repositories_of(c, &user))
        .await
        .map(listed)
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
}

pub async fn get(
    State(app): State<RepositoriesState>,
    Path(username): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<MappedRepository>>, ApiError> {
    match authenticate(&app.config, app.admin_token.as_deref(), &headers).await? {
        Caller::Admin => {}
        Caller::Root(name) | Caller::UnixUser(name) if name == username => {}
        Caller::Root(name) | Caller::UnixUser(name) => {
            return Err(err(
                StatusCode::FORBIDDEN,
                format!("the MUNGE credential is {name}'s; it may only read {name}'s mapping"),
            ))
        }
    }
    check_user(&app, &username)?;
    Ok(Json(list_of(&app, &username).await?))
}

/// Parse and check a posted list; the error names every bad entry.
fn parse_list(body: &[u8]) -> Result<Vec<RepoUser>, ApiError> {
    let entries: Vec<PostedEntry> = serde_json::from_slice(body).map_err(|e| {
        err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("expected a JSON list of \"owner/repo\", \"owner\" or {{\"repository\": .., \"account\": ..}}: {e}"),
        )
    })?;
    if entries.len() > MAX_ENTRIES {
        return Err(err(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("{} entries; at most {MAX_ENTRIES} per user", entries.len()),
        ));
    }
    let mut problems = Vec::new();
    let mut list: Vec<RepoUser> = Vec::with_capacity(entries.len());
    for entry in entries {
        let m = match entry {
            PostedEntry::Name(repository) => MappedRepository {
                repository,
                account: None,
            },
            PostedEntry::Full(m) => m,
        };
        if let Err(e) = check_key(&m.repository) {
            problems.push(e);
            continue;
        }
        if let Some(account) = &m.account {
            if account.is_empty()
                || account.len() > 64
                || !account
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                problems.push(format!(
                    "{:?}: account {account:?} must be 1-64 letters, digits, '_', '-' or '.'",
                    m.repository
                ));
                continue;
            }
        }
        if list
            .iter()
            .any(|e| e.repo_key.eq_ignore_ascii_case(&m.repository))
        {
            problems.push(format!("{:?}: listed twice", m.repository));
            continue;
        }
        list.push(RepoUser {
            repo_key: m.repository,
            unix_user: String::new(),
            account: m.account,
        });
    }
    if !problems.is_empty() {
        return Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("bad entries, nothing changed: {}", problems.join("; ")),
        ));
    }
    Ok(list)
}

pub async fn post(
    State(app): State<RepositoriesState>,
    Path(username): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Vec<MappedRepository>>, ApiError> {
    match authenticate(&app.config, app.admin_token.as_deref(), &headers).await? {
        Caller::Admin => {}
        Caller::Root(_) | Caller::UnixUser(_) => {
            return Err(err(
                StatusCode::FORBIDDEN,
                "changing a mapping needs the admin token",
            ))
        }
    }
    Ok(Json(replace(&app, &username, &body).await?))
}

/// Replace `username`'s whole list with the posted one (the caller is an admin); the new list.
pub async fn replace(
    app: &RepositoriesState,
    username: &str,
    body: &[u8],
) -> Result<Vec<MappedRepository>, ApiError> {
    check_user(app, username)?;
    let mut list = parse_list(body)?;
    let split: Vec<String> = list
        .iter()
        .filter_map(|e| split_listener_problem(&app.config.github, &e.repo_key))
        .collect();
    if !split.is_empty() {
        return Err(err(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("nothing changed: {}", split.join("; ")),
        ));
    }
    for e in &mut list {
        e.unix_user = username.to_string();
    }
    let user = username.to_string();
    let outcome = app
        .db
        .call(move |c| store::replace_repositories(c, &user, &list))
        .await
        .map_err(|e| err(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
    if let Err(conflicts) = outcome {
        let named: Vec<String> = conflicts
            .iter()
            .map(|(key, owner)| format!("{key} is mapped to {owner}"))
            .collect();
        return Err(err(
            StatusCode::CONFLICT,
            format!(
                "a repository maps to at most one user, nothing changed: {}",
                named.join("; ")
            ),
        ));
    }
    tracing::info!(user = %username, "repository mapping replaced");
    app.wake.notify_one();
    list_of(app, username).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(body: &str) -> Option<StatusCode> {
        parse_list(body.as_bytes()).err().map(|e| e.0)
    }

    #[test]
    fn lists_are_checked_entry_by_entry() {
        let ok = parse_list(br#"["acme/widgets", {"repository": "acme", "account": "proj-1"}]"#)
            .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].account.as_deref(), Some("proj-1"));
        assert_eq!(parse_list(b"[]").unwrap(), vec![]);
        let e = parse_list(br#"["acme/widgets", "bad name/x", "acme/ok", "a/b/c"]"#)
            .err()
            .unwrap();
        assert_eq!(e.0, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            e.1.contains("bad name/x") && e.1.contains("a/b/c"),
            "{}",
            e.1
        );
        assert_eq!(
            status_of(r#"["acme/w", "ACME/W"]"#),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            status_of(r#"[{"repository": "acme/w", "account": "x y"}]"#),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(status_of("{}"), Some(StatusCode::UNPROCESSABLE_ENTITY));
        assert_eq!(
            status_of("not json"),
            Some(StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(status_of("[1, 2]"), Some(StatusCode::UNPROCESSABLE_ENTITY));
        let many: Vec<String> = (0..=MAX_ENTRIES).map(|i| format!("o/r{i}")).collect();
        assert_eq!(
            status_of(&serde_json::to_string(&many).unwrap()),
            Some(StatusCode::PAYLOAD_TOO_LARGE)
        );
    }
}
