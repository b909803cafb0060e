//! The runner endpoints, each one handler for its organization and repository forms (see
//! `ScopePath`): `generate-jitconfig`, list, get and delete runners, `registration-token`, and
//! the organization's runner groups (only "Default", id 1).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::paging::{json_with_link, paginate, Paging};
use super::scope::ScopePath;
use super::{ok, ApiResult, S};
use crate::error::ApiError;
use crate::render;
use crate::shared::Shared;
use crate::state::{random_token, JitRegistration, Scope, World};
use crate::time::iso;

struct JitRequest {
    name: String,
    labels: Vec<String>,
    work_folder: String,
}

fn parse_jit_request(body: &Bytes) -> Result<(JitRequest, i64), ApiError> {
    let invalid =
        |what: String| ApiError::validation(format!("Invalid request.\n\n{what}"), json!([what]));
    let v: Value =
        serde_json::from_slice(body).map_err(|_| ApiError::new(400, "Problems parsing JSON"))?;
    let name = match v.get("name") {
        Some(Value::String(n)) if n.chars().count() > 64 => {
            return Err(invalid(
                "For 'properties/name', the name is too long (maximum is 64 characters).".into(),
            ))
        }
        Some(Value::String(n)) if !n.is_empty() => n.clone(),
        Some(_) => {
            return Err(invalid(
                "For 'properties/name', value is not a string.".into(),
            ))
        }
        None => return Err(invalid("\"name\" wasn't supplied.".into())),
    };
    let group = match v.get("runner_group_id") {
        Some(Value::Number(n)) if n.is_i64() => n.as_i64().unwrap_or(0),
        Some(_) => {
            return Err(invalid(
                "For 'properties/runner_group_id', value is not an integer.".into(),
            ))
        }
        None => return Err(invalid("\"runner_group_id\" wasn't supplied.".into())),
    };
    let labels = match v.get("labels") {
        Some(Value::Array(a)) => {
            let labels: Option<Vec<String>> =
                a.iter().map(|l| l.as_str().map(str::to_string)).collect();
            match labels {
                Some(l) if !l.is_empty() && l.len() <= 100 => l,
                Some(l) if l.is_empty() => {
                    return Err(invalid(
                        "For 'properties/labels', [] has fewer items than the minimum of 1.".into(),
                    ))
                }
                Some(_) => return Err(invalid(
                    "For 'properties/labels', the array has more items than the maximum of 100."
                        .into(),
                )),
                None => return Err(invalid("For 'items', value is not a string.".into())),
            }
        }
        Some(_) => {
            return Err(invalid(
                "For 'properties/labels', value is not an array.".into(),
            ))
        }
        None => return Err(invalid("\"labels\" wasn't supplied.".into())),
    };
    let work_folder = match v.get("work_folder") {
        None | Some(Value::Null) => "_work".to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(invalid(
                "For 'properties/work_folder', value is not a string.".into(),
            ))
        }
    };
    Ok((
        JitRequest {
            name,
            labels,
            work_folder,
        },
        group,
    ))
}

fn generate_jit(s: &Shared, scope: Scope, git_hub_path: String, body: &Bytes) -> ApiResult {
    let (req, group) = parse_jit_request(body)?;
    if group != 1 {
        return Err(ApiError::not_found());
    }
    let (runner_json, encoded) = s.mutate(|w| -> Result<(Value, String), ApiError> {
        let reg = JitRegistration {
            scope,
            name: req.name,
            labels: req.labels,
            work_folder: req.work_folder,
            git_hub_path,
            scale_set: None,
        };
        let (id, encoded) = w
            .issue_jit(reg, (&s.runner_base_url, &s.base_url))
            .map_err(|_| ApiError::new(409, "Already exists"))?;
        Ok((render::runner(w, &w.runners[&id]), encoded))
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"runner": runner_json, "encoded_jit_config": encoded})),
    )
        .into_response())
}

/// `POST {scope}/actions/runners/generate-jitconfig`: 201 with the runner and its JIT config.
pub(super) async fn jit(
    State(s): S,
    scope: ScopePath,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let registered = scope.authorize_runners(&s.lock(), &headers, true)?;
    generate_jit(&s, registered, scope.html_path(), &body)
}

/// `GET {scope}/actions/runners` (`name` filter, paging).
pub(super) async fn list(
    State(s): S,
    scope: ScopePath,
    headers: HeaderMap,
    Query(q): Query<Paging>,
) -> ApiResult {
    let w = s.lock();
    let registered = scope.authorize_runners(&w, &headers, false)?;
    let runners: Vec<Value> = w
        .runners
        .values()
        .filter(|r| r.scope == registered)
        .filter(|r| q.name.as_deref().is_none_or(|n| r.name == n))
        .map(|r| render::runner(&w, r))
        .collect();
    let path = format!("{}/actions/runners", scope.api_prefix());
    let (page, link) = paginate(&s, &path, &q, &runners);
    Ok(json_with_link(
        StatusCode::OK,
        json!({"total_count": runners.len(), "runners": page}),
        link,
    ))
}

/// The `{runner_id}` of a runner's path.
#[derive(Deserialize)]
pub(super) struct RunnerId {
    runner_id: String,
}

fn find_runner(w: &World, scope: &Scope, id: &str) -> Result<u64, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    match w.runners.get(&id) {
        Some(r) if &r.scope == scope => Ok(id),
        _ => Err(ApiError::not_found()),
    }
}

/// `GET {scope}/actions/runners/{runner_id}`.
pub(super) async fn get_one(
    State(s): S,
    scope: ScopePath,
    Path(RunnerId { runner_id }): Path<RunnerId>,
    headers: HeaderMap,
) -> ApiResult {
    let w = s.lock();
    let registered = scope.authorize_runners(&w, &headers, false)?;
    let id = find_runner(&w, &registered, &runner_id)?;
    ok(render::runner(&w, &w.runners[&id]))
}

/// `DELETE {scope}/actions/runners/{runner_id}`: 204, or 422 while it runs a job.
pub(super) async fn delete(
    State(s): S,
    scope: ScopePath,
    Path(RunnerId { runner_id }): Path<RunnerId>,
    headers: HeaderMap,
) -> ApiResult {
    let registered = scope.authorize_runners(&s.lock(), &headers, true)?;
    s.mutate(|w| {
        let id = find_runner(w, &registered, &runner_id)?;
        let r = &w.runners[&id];
        if r.job.is_some() {
            let msg = format!(
                "Bad request - Runner \"{}\" is still running a job\"",
                r.name
            );
            return Err(ApiError::validation(msg.clone(), json!([msg])));
        }
        w.runners.remove(&id);
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

/// `POST {scope}/actions/runners/registration-token`: 201 `{token, expires_at}`.
pub(super) async fn registration_token(
    State(s): S,
    scope: ScopePath,
    headers: HeaderMap,
) -> ApiResult {
    let registered = scope.authorize_runners(&s.lock(), &headers, true)?;
    let expires = s.lock().token_expiry(s.config.registration_token_ttl);
    let token = random_token("AABB");
    s.mutate(|w| {
        w.registration_tokens
            .insert(token.clone(), (registered, expires))
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": iso(expires)})),
    )
        .into_response())
}

/// `GET /orgs/{org}/actions/runner-groups`: only "Default" (id 1).
pub(super) async fn runner_groups(State(s): S, scope: ScopePath, headers: HeaderMap) -> ApiResult {
    let w = s.lock();
    scope.authorize_runners(&w, &headers, false)?;
    ok(
        json!({"total_count": 1, "runner_groups": [render::runner_group_default(&w, scope.account())]}),
    )
}
