//! Authentication: a personal token as is, or an App's JWT exchanged for installation
//! tokens (cached until shortly before they expire).

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::json;

use super::{
    decode_err, lock, unix_now, CachedToken, Credentials, GithubClient, GithubError,
    TOKEN_REFRESH_MARGIN,
};
use crate::model::Scope;

impl GithubClient {
    pub(super) fn app_jwt(&self) -> Result<String, GithubError> {
        let Credentials::App { app_id, key, .. } = &self.credentials else {
            return Err(GithubError::Auth("no App configured".into()));
        };
        let now = unix_now();
        let claims = json!({ "iat": now - 60, "exp": now + 540, "iss": app_id.to_string() });
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
            &claims,
            key,
        )
        .map_err(|e| GithubError::Auth(format!("cannot sign the App JWT: {e}")))
    }

    /// The `Authorization` value for calls on `scope`'s resources.
    pub(super) async fn authorization(&self, scope: &Scope) -> Result<String, GithubError> {
        match &self.credentials {
            Credentials::Token(token) => Ok(format!("Bearer {token}")),
            Credentials::App {
                installation_id, ..
            } => {
                let _one_at_a_time = self.app_auth.lock().await;
                let installation = match installation_id {
                    Some(id) => *id,
                    None => self.installation_for(scope).await?,
                };
                if let Some(cached) = lock(&self.tokens).get(&installation).cloned() {
                    if Instant::now() < cached.refresh_at {
                        return Ok(format!("Bearer {}", cached.token));
                    }
                }
                let jwt = self.app_jwt()?;
                let answer = self
                    .send(
                        Method::POST,
                        "POST /app/installations/{installation_id}/access_tokens",
                        &format!("/app/installations/{installation}/access_tokens"),
                        &format!("Bearer {jwt}"),
                        None,
                        false,
                    )
                    .await?;
                let endpoint = "POST /app/installations/{installation_id}/access_tokens";
                let token = answer.body["token"]
                    .as_str()
                    .ok_or_else(|| decode_err(endpoint, "no token"))?
                    .to_string();
                let lifetime = answer.body["expires_at"]
                    .as_str()
                    .and_then(|s| {
                        time::OffsetDateTime::parse(
                            s,
                            &time::format_description::well_known::Rfc3339,
                        )
                        .ok()
                    })
                    .map(|t| t.unix_timestamp().saturating_sub(unix_now() as i64).max(0) as u64)
                    .unwrap_or(3600);
                let refresh_at = Instant::now()
                    + Duration::from_secs(lifetime).saturating_sub(TOKEN_REFRESH_MARGIN);
                lock(&self.tokens).insert(
                    installation,
                    CachedToken {
                        token: token.clone(),
                        refresh_at,
                    },
                );
                Ok(format!("Bearer {token}"))
            }
        }
    }

    async fn installation_for(&self, scope: &Scope) -> Result<u64, GithubError> {
        let key = scope.key();
        if let Some(id) = lock(&self.installations).get(&key) {
            return Ok(*id);
        }
        let (endpoint, path) = match scope {
            Scope::Org(org) => (
                "GET /orgs/{org}/installation",
                format!("/orgs/{org}/installation"),
            ),
            Scope::Repo { owner, name } => (
                "GET /repos/{owner}/{repo}/installation",
                format!("/repos/{owner}/{name}/installation"),
            ),
        };
        let jwt = self.app_jwt()?;
        let answer = self
            .send(
                Method::GET,
                endpoint,
                &path,
                &format!("Bearer {jwt}"),
                None,
                false,
            )
            .await?;
        let id = answer.body["id"]
            .as_u64()
            .ok_or_else(|| decode_err(endpoint, "no installation id"))?;
        lock(&self.installations).insert(key, id);
        Ok(id)
    }
}
