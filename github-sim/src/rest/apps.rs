//! The App's endpoints and the free ones: find an installation (App JWT), mint an installation
//! token, the App webhook's delivery log and redelivery, and `GET /rate_limit`.

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use chrono::Utc;
use serde_json::{json, Value};

use super::layer::bucket_now;
use super::scope::ScopePath;
use super::{ok, ApiResult, S};
use crate::auth::{authenticate, rate_key, require_app};
use crate::error::ApiError;
use crate::render;
use crate::state::{random_token, InstallationToken};
use crate::time::iso;

/// `GET /orgs/{org}/installation`, `GET /repos/{owner}/{repo}/installation` (App JWT): the
/// App's installation on the account (a repository must exist).
pub(super) async fn installation(State(s): S, scope: ScopePath, headers: HeaderMap) -> ApiResult {
    let w = s.lock();
    let app = require_app(&authenticate(&w, &headers)?)?;
    if let ScopePath::Repo { .. } = scope {
        scope.require_exists(&w)?;
    }
    let inst = w
        .installation_for(app, scope.account())
        .ok_or_else(ApiError::not_found)?;
    ok(render::installation(&w, inst))
}

pub(super) async fn access_token(
    State(s): S,
    Path(inst_id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    let ttl = s.config.installation_token_ttl;
    s.mutate(|w| {
        let app = require_app(&authenticate(w, &headers)?)?;
        let id: u64 = inst_id.parse().map_err(|_| ApiError::not_found())?;
        let perms = match w.installations.get(&id) {
            Some(i) if i.app_id == app => i.permissions.clone(),
            _ => return Err(ApiError::not_found()),
        };
        let token = random_token("ghs_");
        let expires_at = w.token_expiry(ttl);
        w.tokens.insert(
            token.clone(),
            InstallationToken {
                installation_id: id,
                expires_at,
            },
        );
        Ok((
            StatusCode::CREATED,
            Json(json!({"token": token, "expires_at": iso(expires_at), "permissions": perms, "repository_selection": "all"})),
        )
            .into_response())
    })
}

pub(super) async fn hook_deliveries(State(s): S, headers: HeaderMap) -> ApiResult {
    let w = s.lock();
    require_app(&authenticate(&w, &headers)?)?;
    let items: Vec<Value> = w
        .deliveries
        .iter()
        .rev()
        .map(|d| {
            json!({
                "id": d.id, "guid": d.guid, "delivered_at": d.delivered_at, "redelivery": d.redelivery,
                "duration": d.duration, "status": d.status, "status_code": d.status_code,
                "event": d.event, "action": d.action, "installation_id": d.installation_id,
                "repository_id": d.repository_id,
            })
        })
        .collect();
    ok(Value::Array(items))
}

pub(super) async fn hook_redeliver(
    State(s): S,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> ApiResult {
    {
        let w = s.lock();
        require_app(&authenticate(&w, &headers)?)?;
    }
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    crate::webhooks::redeliver(&s, id).map_err(|_| ApiError::not_found())?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

pub(super) async fn rate_limit(State(s): S, headers: HeaderMap) -> ApiResult {
    let window = s.config.rate_limit_window;
    let mut w = s.lock();
    let limit = w.faults.rate_limit_budget.unwrap_or(s.config.rate_limit);
    let (used, reset) = match rate_key(&headers) {
        Some(rk) => {
            let b = bucket_now(&mut w, &rk, window);
            (b.used, b.reset_epoch)
        }
        None => (0, Utc::now().timestamp() + window.as_secs() as i64),
    };
    let core = json!({"limit": limit, "used": used, "remaining": limit.saturating_sub(used), "reset": reset, "resource": "core"});
    let other = |n: u32| json!({"limit": n, "used": 0, "remaining": n, "reset": reset});
    ok(json!({
        "resources": {"core": core, "search": other(30), "graphql": other(5000), "integration_manifest": other(5000)},
        "rate": core,
    }))
}
