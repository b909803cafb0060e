//! The Actions service's runner scale set API, as `actions/scaleset` speaks it: the admin
//! connection (bootstrapped through REST, refreshed before its token expires), scale sets,
//! JIT configs, and message sessions (`session`). I/O only: what to do with an answer is
//! `intake::listener`'s business.
//!
//! No token (admin, message queue, registration) and no JIT config ever appears in an error
//! or a log line; message-queue polls are counted apart from the other calls, since they are
//! not rate-limited REST calls.

mod service;
mod session;
mod wire;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::github::{GithubClient, GithubError};
use crate::model::Scope;
use crate::telemetry::Metrics;

pub use wire::{parse_message, JobInfo, JobMessage, Label, Message, ScaleSet, Session, Statistics};

/// Refresh the admin token this long before it expires (the reference's margin).
const ADMIN_REFRESH_MARGIN: Duration = Duration::from_secs(60);
const ATTEMPTS: u32 = 4;
const API_VERSION: &str = "6.0-preview";

#[derive(Debug, thiserror::Error)]
pub enum ActionsError {
    #[error("Actions service {endpoint} answered {status}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        /// The service's exception name (`typeName`), e.g. `...SessionConflictException`.
        type_name: String,
        message: String,
    },
    #[error("Actions service {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("Actions service {endpoint}: unexpected answer: {message}")]
    Decode { endpoint: String, message: String },
    #[error("bootstrapping the Actions service connection: {0}")]
    Bootstrap(#[from] GithubError),
}

impl ActionsError {
    pub fn status(&self) -> Option<u16> {
        match self {
            ActionsError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Another session of the scale set is still active (409).
    pub fn is_session_conflict(&self) -> bool {
        self.status() == Some(409)
    }

    /// The message-queue token expired (401): refresh the session.
    pub fn is_token_expired(&self) -> bool {
        self.status() == Some(401)
    }

    fn decode(endpoint: &str, message: impl ToString) -> ActionsError {
        ActionsError::Decode {
            endpoint: endpoint.into(),
            message: message.to_string(),
        }
    }
}

/// The Actions service URL and admin token for one scope.
struct Admin {
    url: String,
    token: String,
    refresh_at: Instant,
}

/// A client of the Actions service for one registration scope (org or repository).
pub struct ActionsClient {
    http: reqwest::Client,
    github: Arc<GithubClient>,
    scope: Scope,
    config_url: String,
    metrics: Arc<Metrics>,
    admin: tokio::sync::Mutex<Option<Admin>>,
}

impl ActionsClient {
    /// `http`: the same TLS and proxy settings as the REST client
    /// ([`super::github::https_client`]); `config_url`: the scope's web URL.
    pub fn new(
        http: reqwest::Client,
        github: Arc<GithubClient>,
        scope: Scope,
        config_url: String,
        metrics: Arc<Metrics>,
    ) -> ActionsClient {
        ActionsClient {
            http,
            github,
            scope,
            config_url,
            metrics,
            admin: tokio::sync::Mutex::new(None),
        }
    }

    pub fn scope(&self) -> &Scope {
        &self.scope
    }

    /// The service URL and a current admin token, bootstrapped again shortly before expiry.
    async fn admin(&self) -> Result<(String, String), ActionsError> {
        let mut admin = self.admin.lock().await;
        if let Some(a) = admin.as_ref().filter(|a| Instant::now() < a.refresh_at) {
            return Ok((a.url.clone(), a.token.clone()));
        }
        let (url, token) = self
            .github
            .actions_admin_connection(&self.scope, &self.config_url)
            .await?;
        let lifetime = jwt_lifetime(&token).unwrap_or(Duration::from_secs(300));
        tracing::info!(scope = %self.scope.key(), valid_secs = lifetime.as_secs(), "Actions service admin connection refreshed");
        *admin = Some(Admin {
            url: url.clone(),
            token: token.clone(),
            refresh_at: Instant::now() + lifetime.saturating_sub(ADMIN_REFRESH_MARGIN),
        });
        Ok((url, token))
    }

    async fn forget_admin(&self) {
        *self.admin.lock().await = None;
    }

    /// A call with the admin token on `path` under the service URL (`api-version` added).
    /// A 401 bootstraps the admin connection again and tries once more.
    async fn admin_call(
        &self,
        method: Method,
        endpoint: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(StatusCode, Value), ActionsError> {
        for fresh in [false, true] {
            let (base, token) = self.admin().await?;
            let url = service_url(&base, path);
            match self
                .send(method.clone(), endpoint, &url, &token, body, None)
                .await
            {
                Err(e) if e.status() == Some(401) && !fresh => self.forget_admin().await,
                other => return other,
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    /// One request with retries for transport errors and 5xx; any other non-2xx answer is
    /// [`ActionsError::Status`] with the service's exception name.
    async fn send(
        &self,
        method: Method,
        endpoint: &str,
        url: &str,
        bearer: &str,
        body: Option<&Value>,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, Value), ActionsError> {
        let mut attempt = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), url)
                .header(AUTHORIZATION, format!("Bearer {bearer}"))
                .header(USER_AGENT, "gha-dispatcher")
                .header(CONTENT_TYPE, "application/json");
            if let Some(t) = timeout {
                request = request.timeout(t);
            }
            if let Some(b) = body {
                request = request.json(b);
            }
            attempt += 1;
            let outcome = self.exchange(endpoint, request).await;
            match outcome {
                Err(e) if attempt < ATTEMPTS && retryable(&e) => {
                    tracing::debug!(endpoint, attempt, error = %e, "Actions service call failed; retrying");
                    tokio::time::sleep(Duration::from_millis(250u64 << attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn exchange(
        &self,
        endpoint: &str,
        request: reqwest::RequestBuilder,
    ) -> Result<(StatusCode, Value), ActionsError> {
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) => {
                self.metrics.actions_call(endpoint, 0);
                return Err(ActionsError::Transport {
                    endpoint: endpoint.into(),
                    message: e.without_url().to_string(),
                });
            }
        };
        let status = response.status();
        self.metrics.actions_call(endpoint, status.as_u16());
        let text = response.text().await.unwrap_or_default();
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if status.is_success() {
            return Ok((status, body));
        }
        Err(ActionsError::Status {
            endpoint: endpoint.into(),
            status: status.as_u16(),
            type_name: body["typeName"].as_str().unwrap_or("").to_string(),
            message: body["message"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(300)
                .collect(),
        })
    }
}

fn retryable(e: &ActionsError) -> bool {
    match e {
        ActionsError::Transport { message, .. } => !message.contains("certificate"),
        ActionsError::Status { status, .. } => *status >= 500,
        _ => false,
    }
}

/// `path` joined to the service URL, with `api-version` as the reference adds it.
fn service_url(base: &str, path: &str) -> String {
    let joined = format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    let separator = if joined.contains('?') { '&' } else { '?' };
    format!("{joined}{separator}api-version={API_VERSION}")
}

/// How long a JWT has left, from its `exp` claim (read, not verified: it is the service's
/// token for the service, we only schedule its refresh).
fn jwt_lifetime(token: &str) -> Option<Duration> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let exp = serde_json::from_slice::<Value>(&bytes).ok()?["exp"].as_i64()?;
    let now = crate::model::now_secs();
    Some(Duration::from_secs(exp.saturating_sub(now).max(0) as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_join_the_service_url_with_the_api_version() {
        assert_eq!(
            service_url("https://svc/tenant/", "/_apis/runtime/runnerscalesets"),
            "https://svc/tenant/_apis/runtime/runnerscalesets?api-version=6.0-preview"
        );
        assert_eq!(
            service_url("https://svc/t", "_apis/x?name=a"),
            "https://svc/t/_apis/x?name=a&api-version=6.0-preview"
        );
    }

    #[test]
    fn a_jwt_lifetime_comes_from_its_exp_claim() {
        use base64::Engine;
        let exp = crate::model::now_secs() + 600;
        let claims = serde_json::json!({ "exp": exp }).to_string();
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims);
        let left = jwt_lifetime(&format!("h.{payload}.s")).unwrap();
        assert!((590..=600).contains(&left.as_secs()), "{left:?}");
        assert_eq!(jwt_lifetime("not-a-jwt"), None);
    }
}
