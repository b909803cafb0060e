//! Credentials as GitHub checks them: App JWTs (RS256, `iat`/`exp`/`iss`), installation tokens
//! that expire, personal access tokens with scopes; and the permission each call needs.

use axum::http::HeaderMap;
use base64::Engine;
use chrono::Utc;
use jsonwebtoken::{decode, Algorithm, Validation};
use serde::Deserialize;

use crate::error::ApiError;
use crate::state::World;

#[derive(Debug, Clone)]
pub enum Principal {
    App(u64),
    Installation {
        id: u64,
        account: String,
        permissions: std::collections::BTreeMap<String, String>,
    },
    Pat {
        scopes: Vec<String>,
    },
}

/// What a call needs, on which account.
#[derive(Debug, Clone, Copy)]
pub enum Need<'a> {
    OrgRunners { org: &'a str, write: bool },
    RepoAdmin { owner: &'a str, write: bool },
    Actions { owner: &'a str, write: bool },
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get("authorization")?.to_str().ok()?.trim();
    let (scheme, token) = v.split_once(' ')?;
    if scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("token") {
        Some(token.trim())
    } else {
        None
    }
}

fn looks_like_jwt(t: &str) -> bool {
    t.split('.').count() == 3
}

#[derive(Deserialize)]
struct UnverifiedClaims {
    iss: Option<serde_json::Value>,
}

fn jwt_issuer(token: &str) -> Option<u64> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let c: UnverifiedClaims = serde_json::from_slice(&bytes).ok()?;
    match c.iss? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

#[derive(Deserialize)]
struct Claims {
    iat: i64,
    exp: i64,
}

/// Key under which the rate-limit budget of the caller is kept (no signature check: cheap).
pub fn rate_key(headers: &HeaderMap) -> Option<String> {
    let t = bearer(headers)?;
    if looks_like_jwt(t) {
        return jwt_issuer(t).map(|i| format!("app:{i}"));
    }
    // Hash so that the key (which may show up in debug output) is not the token itself.
    use sha2::Digest;
    Some(format!(
        "tok:{}",
        hex::encode(&sha2::Sha256::digest(t.as_bytes())[..8])
    ))
}

/// Who is calling, or GitHub's 401.
pub fn authenticate(w: &World, headers: &HeaderMap) -> Result<Principal, ApiError> {
    let Some(token) = bearer(headers) else {
        return Err(ApiError::new(401, "Requires authentication"));
    };
    if looks_like_jwt(token) {
        return verify_app_jwt(w, token).map(Principal::App);
    }
    if let Some(t) = w.tokens.get(token) {
        if t.expires_at <= Utc::now() {
            return Err(ApiError::bad_credentials());
        }
        let inst = w
            .installations
            .get(&t.installation_id)
            .ok_or_else(ApiError::bad_credentials)?;
        return Ok(Principal::Installation {
            id: inst.id,
            account: inst.account.clone(),
            permissions: inst.permissions.clone(),
        });
    }
    if let Some(scopes) = w.pats.get(token) {
        return Ok(Principal::Pat {
            scopes: scopes.clone(),
        });
    }
    Err(ApiError::bad_credentials())
}

fn verify_app_jwt(w: &World, token: &str) -> Result<u64, ApiError> {
    let undecodable = || ApiError::new(401, "A JSON web token could not be decoded");
    let app_id = jwt_issuer(token).ok_or_else(undecodable)?;
    let app = w.apps.get(&app_id).ok_or_else(|| {
        ApiError::new(
            401,
            "'Issuer' claim ('iss') must be an Integer representing the ID of a GitHub App",
        )
    })?;
    let mut validation = Validation::new(Algorithm::RS256);
    validation.validate_exp = false; // checked below with GitHub's messages
    validation.required_spec_claims.clear();
    validation.leeway = 0;
    let data = decode::<Claims>(token, &app.key, &validation).map_err(|_| undecodable())?;
    let now = Utc::now().timestamp();
    let (iat, exp) = (data.claims.iat, data.claims.exp);
    if exp <= now {
        return Err(ApiError::new(
            401,
            "'Expiration time' claim ('exp') must be a numeric value representing the future time at which the assertion expires",
        ));
    }
    if iat > now + 60 {
        return Err(ApiError::new(
            401,
            "'Issued at' claim ('iat') must be an Integer representing the time that the assertion was issued",
        ));
    }
    if exp - iat > 600 {
        return Err(ApiError::new(
            401,
            "'Expiration time' claim ('exp') is too far in the future",
        ));
    }
    Ok(app_id)
}

/// App JWT only (the `/app/...` endpoints).
pub fn require_app(p: &Principal) -> Result<u64, ApiError> {
    match p {
        Principal::App(id) => Ok(*id),
        _ => Err(ApiError::new(401, "A JSON web token could not be decoded")),
    }
}

fn perm_ok(level: Option<&String>, write: bool) -> bool {
    match level.map(String::as_str) {
        Some("write") | Some("admin") => true,
        Some("read") => !write,
        _ => false,
    }
}

/// 403/404 as GitHub answers when the caller lacks what the call needs.
pub fn require(p: &Principal, need: Need<'_>) -> Result<(), ApiError> {
    let (account, perm, scope) = match need {
        Need::OrgRunners { org, write } => (
            org,
            ("organization_self_hosted_runners", write),
            "admin:org",
        ),
        Need::RepoAdmin { owner, write } => (owner, ("administration", write), "repo"),
        Need::Actions { owner, write } => (owner, ("actions", write), "repo"),
    };
    match p {
        Principal::App(_) => Err(ApiError::forbidden_integration()),
        Principal::Installation {
            account: inst_account,
            permissions,
            ..
        } => {
            if !inst_account.eq_ignore_ascii_case(account) {
                return Err(ApiError::not_found());
            }
            if perm_ok(permissions.get(perm.0), perm.1) {
                Ok(())
            } else {
                Err(ApiError::forbidden_integration())
            }
        }
        Principal::Pat { scopes } => {
            if scopes.iter().any(|s| s == scope) {
                Ok(())
            } else if matches!(need, Need::OrgRunners { .. }) {
                Err(ApiError::new(
                    403,
                    "You must be an org admin or have the admin:org scope to do that.",
                ))
            } else {
                Err(ApiError::new(403, "Must have admin rights to Repository."))
            }
        }
    }
}
