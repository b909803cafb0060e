//! The bootstrap of the scale set protocol: `POST /actions/runner-registration` (a REST route:
//! `Authorization: RemoteAuth <registration token>`, body `{url, runner_event}`) answers the
//! Actions service URL of the config URL's org or repository and an admin token (a JWT with
//! `exp`, signed by the simulator; 401 on the service after it expires); and `Admin`, the
//! service's check of that token on every call.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::Utc;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{bearer, exception};
use crate::error::ApiError;
use crate::shared::Shared;
use crate::state::{Scope, World};

#[derive(Debug, Serialize, Deserialize)]
struct AdminClaims {
    iss: String,
    /// The org or repository id whose service the token opens.
    tenant: u64,
    iat: i64,
    exp: i64,
}

const ISSUER: &str = "github-sim-actions";

/// The org or repository a config URL (`<host>/<org>` or `<host>/<owner>/<repo>`) names.
fn scope_of_config_url(url: &str) -> Option<Scope> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.split_once('/').map_or("", |(_, p)| p);
    let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
    match parts.as_slice() {
        [org] => Some(Scope::Org(org.to_string())),
        [owner, name] => Some(Scope::Repo {
            owner: owner.to_string(),
            name: name.to_string(),
        }),
        _ => None,
    }
}

fn mint_admin_token(w: &World, tenant: u64, ttl: std::time::Duration) -> Result<String, ApiError> {
    let now = Utc::now().timestamp();
    let claims = AdminClaims {
        iss: ISSUER.into(),
        tenant,
        iat: now,
        exp: now + ttl.as_secs().max(1) as i64,
    };
    encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(&w.scale.admin_key),
    )
    .map_err(|_| ApiError::new(500, "Internal Server Error"))
}

/// `POST /actions/runner-registration`: 200 `{url, token}`.
pub async fn runner_registration(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().strip_prefix("RemoteAuth "))
        .map(str::trim)
        .ok_or_else(|| ApiError::new(401, "Requires authentication"))?;
    let v: Value =
        serde_json::from_slice(&body).map_err(|_| ApiError::new(400, "Problems parsing JSON"))?;
    let target = v["url"]
        .as_str()
        .and_then(scope_of_config_url)
        .ok_or_else(|| ApiError::new(400, "Invalid config url"))?;
    let mut w = s.lock();
    let registered = match w.registration_tokens.get(token) {
        Some((scope, expires)) if *expires > Utc::now() => scope.clone(),
        _ => return Err(ApiError::bad_credentials()),
    };
    if !registered
        .describe()
        .eq_ignore_ascii_case(&target.describe())
    {
        return Err(ApiError::not_found());
    }
    let tenant = w
        .scope_tenant(&registered)
        .ok_or_else(ApiError::not_found)?;
    let jwt = mint_admin_token(&w, tenant, s.config.actions_admin_token_ttl)?;
    w.counters.scaleset.admin_tokens_issued += 1;
    let url = w.scale.service_url(tenant);
    Ok((StatusCode::OK, Json(json!({"url": url, "token": jwt}))).into_response())
}

/// A caller holding a valid admin token for the path's `{tenant}`.
pub struct Admin {
    pub tenant: u64,
}

impl FromRequestParts<Arc<Shared>> for Admin {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, s: &Arc<Shared>) -> Result<Self, Response> {
        let unauthorized = |m: &str| exception(401, "VssUnauthorizedException", m.to_string());
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, s)
            .await
            .map_err(|_| StatusCode::NOT_FOUND.into_response())?;
        let tenant: u64 = params
            .get("tenant")
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| StatusCode::NOT_FOUND.into_response())?;
        let token = bearer(&parts.headers).ok_or_else(|| unauthorized("No access token."))?;
        let key = DecodingKey::from_secret(&s.lock().scale.admin_key);
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_issuer(&[ISSUER]);
        let claims = decode::<AdminClaims>(token, &key, &validation)
            .map_err(|_| unauthorized("The access token is invalid or has expired."))?
            .claims;
        if claims.tenant != tenant {
            return Err(unauthorized("The access token is for another tenant."));
        }
        Ok(Admin { tenant })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_urls() {
        assert_eq!(
            scope_of_config_url("https://h:1/acme"),
            Some(Scope::Org("acme".into()))
        );
        assert_eq!(
            scope_of_config_url("http://h/acme/widgets/"),
            Some(Scope::Repo {
                owner: "acme".into(),
                name: "widgets".into()
            })
        );
        assert_eq!(scope_of_config_url("http://h/"), None);
        assert_eq!(scope_of_config_url("http://h/a/b/c"), None);
    }
}
