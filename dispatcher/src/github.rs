//! GitHub REST client: authentication (App JWT → installation tokens, or a personal
//! token), rate limits, retries, conditional requests and per-endpoint call counting.
//!
//! Rate limits never make a call sleep for long: a primary or secondary limit marks the
//! client blocked until the reset (or `retry-after`), and every call before then fails fast
//! with [`GithubError::RateLimited`], so the reconcile loop simply tries again later.
//! 5xx answers are retried a few times with exponential back-off. No token, key or JIT
//! config ever appears in an error or a log line.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, ETAG, IF_NONE_MATCH, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Scope;
use crate::db::JobUpdate;
use crate::metrics::Metrics;

const API_VERSION: &str = "2022-11-28";
/// Refresh installation tokens this long before they expire.
const TOKEN_REFRESH_MARGIN: Duration = Duration::from_secs(300);
const SERVER_ERROR_ATTEMPTS: u32 = 4;
const PER_PAGE: usize = 100;
/// GitHub returns at most 1,000 runs for a status filter.
const MAX_RUN_PAGES: u32 = 10;
/// Enough pages for any run (a matrix has at most 256 jobs).
const MAX_JOB_PAGES: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum GithubError {
    #[error("GitHub rate limit: waiting {wait_secs} s before calling {endpoint} again")]
    RateLimited { endpoint: String, wait_secs: u64 },
    #[error("GitHub {endpoint} answered {status}: {message}")]
    Status {
        endpoint: String,
        status: u16,
        message: String,
    },
    #[error("GitHub {endpoint}: {message}")]
    Transport { endpoint: String, message: String },
    #[error("GitHub {endpoint}: unexpected answer: {message}")]
    Decode { endpoint: String, message: String },
    #[error("GitHub authentication: {0}")]
    Auth(String),
}

impl GithubError {
    pub fn status(&self) -> Option<u16> {
        match self {
            GithubError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }
}

pub enum Credentials {
    App {
        app_id: u64,
        key: jsonwebtoken::EncodingKey,
        installation_id: Option<u64>,
    },
    Token(String),
}

impl Credentials {
    /// App credentials from the App's private key in PEM form (PKCS#1 or PKCS#8).
    pub fn app_from_pem(
        app_id: u64,
        pem: &[u8],
        installation_id: Option<u64>,
    ) -> Result<Credentials, GithubError> {
        let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem).map_err(|_| {
            GithubError::Auth("the App private key is not an RSA key in PEM format".into())
        })?;
        Ok(Credentials::App {
            app_id,
            key,
            installation_id,
        })
    }
}

#[derive(Clone)]
struct CachedToken {
    token: String,
    refresh_at: Instant,
}

struct Answer {
    body: Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GhRunner {
    pub id: u64,
    pub name: String,
    pub status: String,
    pub busy: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted,
    AlreadyGone,
    /// 422: the runner is running a job.
    Busy,
}

/// A freshly minted runner registration.
pub struct MintedRunner {
    pub runner_id: u64,
    pub encoded_jit_config: String,
}

#[derive(Debug)]
pub enum MintError {
    /// 409: a runner with that name already exists.
    NameTaken,
    Other(GithubError),
}

pub struct GithubClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    metrics: Arc<Metrics>,
    tokens: Mutex<HashMap<u64, CachedToken>>,
    installations: Mutex<HashMap<String, u64>>,
    etags: Mutex<HashMap<String, (String, Value)>>,
    blocked_until: Mutex<Option<Instant>>,
    secondary_strikes: Mutex<u32>,
    calls: Mutex<BTreeMap<String, u64>>,
}

fn header_u64(headers: &HeaderMap, name: &str) -> Option<u64> {
    headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How long a rate-limit answer tells us to wait, if it is one.
pub fn rate_limit_wait(
    status: u16,
    headers: &HeaderMap,
    message: &str,
    secondary_strikes: u32,
) -> Option<Duration> {
    if status != 403 && status != 429 {
        return None;
    }
    let retry_after = header_u64(headers, "retry-after");
    let lower = message.to_ascii_lowercase();
    if lower.contains("secondary rate limit") {
        // Without retry-after: at least a minute, doubling on each repeat.
        let fallback = 60u64.saturating_mul(1 << secondary_strikes.min(5));
        return Some(Duration::from_secs(retry_after.unwrap_or(fallback)));
    }
    if let Some(secs) = retry_after {
        return Some(Duration::from_secs(secs));
    }
    if header_u64(headers, "x-ratelimit-remaining") == Some(0)
        || lower.contains("rate limit exceeded")
    {
        let reset = header_u64(headers, "x-ratelimit-reset").unwrap_or(unix_now() + 60);
        return Some(Duration::from_secs(reset.saturating_sub(unix_now()).max(1)));
    }
    None
}

impl GithubClient {
    pub fn new(
        base: &str,
        credentials: Credentials,
        metrics: Arc<Metrics>,
    ) -> Result<GithubClient, GithubError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| GithubError::Auth(format!("cannot build HTTP client: {e}")))?;
        Ok(GithubClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            credentials,
            metrics,
            tokens: Mutex::new(HashMap::new()),
            installations: Mutex::new(HashMap::new()),
            etags: Mutex::new(HashMap::new()),
            blocked_until: Mutex::new(None),
            secondary_strikes: Mutex::new(0),
            calls: Mutex::new(BTreeMap::new()),
        })
    }

    /// Calls made so far, keyed `"<METHOD> <route template>"`.
    pub fn call_counts(&self) -> BTreeMap<String, u64> {
        lock(&self.calls).clone()
    }

    /// Seconds until the client will call GitHub again, when rate limited.
    pub fn blocked_for(&self) -> Option<Duration> {
        lock(&self.blocked_until).and_then(|until| until.checked_duration_since(Instant::now()))
    }

    fn app_jwt(&self) -> Result<String, GithubError> {
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
    async fn authorization(&self, scope: &Scope) -> Result<String, GithubError> {
        match &self.credentials {
            Credentials::Token(token) => Ok(format!("Bearer {token}")),
            Credentials::App {
                installation_id, ..
            } => {
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

    /// One REST call with retries for 5xx, rate-limit bookkeeping and ETags.
    async fn send(
        &self,
        method: Method,
        endpoint: &str,
        path_and_query: &str,
        authorization: &str,
        body: Option<&Value>,
        conditional: bool,
    ) -> Result<Answer, GithubError> {
        let mut attempt = 0;
        loop {
            if let Some(wait) = self.blocked_for() {
                return Err(GithubError::RateLimited {
                    endpoint: endpoint.into(),
                    wait_secs: wait.as_secs().max(1),
                });
            }
            let url = format!("{}{}", self.base, path_and_query);
            let mut request = self
                .http
                .request(method.clone(), &url)
                .header(ACCEPT, "application/vnd.github+json")
                .header("X-GitHub-Api-Version", API_VERSION)
                .header(USER_AGENT, "gha-dispatcher")
                .header(AUTHORIZATION, authorization);
            let cached = if conditional {
                lock(&self.etags).get(&url).cloned()
            } else {
                None
            };
            if let Some((etag, _)) = &cached {
                request = request.header(IF_NONE_MATCH, etag);
            }
            if let Some(body) = body {
                request = request.json(body);
            }
            *lock(&self.calls).entry(endpoint.to_string()).or_default() += 1;
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.metrics.api_call(endpoint, 0);
                    attempt += 1;
                    if attempt < SERVER_ERROR_ATTEMPTS {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(GithubError::Transport {
                        endpoint: endpoint.into(),
                        message: e.without_url().to_string(),
                    });
                }
            };
            let status = response.status();
            self.metrics.api_call(endpoint, status.as_u16());
            let headers = response.headers().clone();
            if let Some(remaining) = header_u64(&headers, "x-ratelimit-remaining") {
                self.metrics.rate_limit_remaining.set(remaining as i64);
            }
            if let Some(limit) = header_u64(&headers, "x-ratelimit-limit") {
                self.metrics.rate_limit_limit.set(limit as i64);
            }
            if status == StatusCode::NOT_MODIFIED {
                if let Some((_, body)) = cached {
                    return Ok(Answer { body });
                }
            }
            let text = response.text().await.unwrap_or_default();
            let parsed: Value = if text.trim().is_empty() {
                Value::Null
            } else {
                serde_json::from_str(&text).unwrap_or(Value::Null)
            };
            if status.is_success() {
                *lock(&self.secondary_strikes) = 0;
                if conditional {
                    if let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) {
                        lock(&self.etags).insert(url, (etag.to_string(), parsed.clone()));
                    }
                }
                return Ok(Answer { body: parsed });
            }
            let message = parsed["message"].as_str().unwrap_or("").to_string();
            let strikes = *lock(&self.secondary_strikes);
            if let Some(wait) = rate_limit_wait(status.as_u16(), &headers, &message, strikes) {
                if message.to_ascii_lowercase().contains("secondary") {
                    *lock(&self.secondary_strikes) += 1;
                }
                *lock(&self.blocked_until) = Some(Instant::now() + wait);
                tracing::warn!(
                    endpoint,
                    status = status.as_u16(),
                    wait_secs = wait.as_secs(),
                    "GitHub rate limit; pausing calls"
                );
                return Err(GithubError::RateLimited {
                    endpoint: endpoint.into(),
                    wait_secs: wait.as_secs().max(1),
                });
            }
            if status.is_server_error() {
                attempt += 1;
                if attempt < SERVER_ERROR_ATTEMPTS {
                    tracing::warn!(
                        endpoint,
                        status = status.as_u16(),
                        attempt,
                        "GitHub server error; retrying"
                    );
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            }
            if status == StatusCode::UNAUTHORIZED {
                // An expired or revoked installation token: mint a new one next time.
                lock(&self.tokens).clear();
            }
            return Err(GithubError::Status {
                endpoint: endpoint.into(),
                status: status.as_u16(),
                message: truncate(&message, 300),
            });
        }
    }

    async fn call(
        &self,
        method: Method,
        endpoint: &str,
        scope: &Scope,
        path: &str,
        body: Option<&Value>,
        conditional: bool,
    ) -> Result<Answer, GithubError> {
        let authorization = self.authorization(scope).await?;
        match self
            .send(
                method.clone(),
                endpoint,
                path,
                &authorization,
                body,
                conditional,
            )
            .await
        {
            Err(GithubError::Status { status: 401, .. })
                if matches!(self.credentials, Credentials::App { .. }) =>
            {
                let authorization = self.authorization(scope).await?;
                self.send(method, endpoint, path, &authorization, body, conditional)
                    .await
            }
            other => other,
        }
    }

    fn runners_endpoint(scope: &Scope, suffix: &str) -> String {
        match scope {
            Scope::Org(_) => format!("/orgs/{{org}}/actions/runners{suffix}"),
            Scope::Repo { .. } => format!("/repos/{{owner}}/{{repo}}/actions/runners{suffix}"),
        }
    }

    pub async fn generate_jitconfig(
        &self,
        scope: &Scope,
        name: &str,
        labels: &[String],
        runner_group_id: u64,
    ) -> Result<MintedRunner, MintError> {
        let endpoint = format!(
            "POST {}",
            Self::runners_endpoint(scope, "/generate-jitconfig")
        );
        let path = format!("{}/actions/runners/generate-jitconfig", scope.api_prefix());
        let body = json!({ "name": name, "runner_group_id": runner_group_id, "labels": labels, "work_folder": "_work" });
        match self
            .call(Method::POST, &endpoint, scope, &path, Some(&body), false)
            .await
        {
            Ok(answer) => {
                let runner_id = answer.body["runner"]["id"].as_u64();
                let config = answer.body["encoded_jit_config"].as_str();
                match (runner_id, config) {
                    (Some(runner_id), Some(config)) => Ok(MintedRunner {
                        runner_id,
                        encoded_jit_config: config.to_string(),
                    }),
                    _ => Err(MintError::Other(decode_err(
                        &endpoint,
                        "missing runner.id or encoded_jit_config",
                    ))),
                }
            }
            Err(GithubError::Status { status: 409, .. }) => Err(MintError::NameTaken),
            Err(e) => Err(MintError::Other(e)),
        }
    }

    /// Every runner registered in `scope` (all pages).
    pub async fn list_runners(&self, scope: &Scope) -> Result<Vec<GhRunner>, GithubError> {
        let endpoint = format!("GET {}", Self::runners_endpoint(scope, ""));
        let mut all = Vec::new();
        for page in 1..=100 {
            let path = format!(
                "{}/actions/runners?per_page=100&page={page}",
                scope.api_prefix()
            );
            let answer = self
                .call(Method::GET, &endpoint, scope, &path, None, true)
                .await?;
            let runners: Vec<GhRunner> = serde_json::from_value(answer.body["runners"].clone())
                .map_err(|e| decode_err(&endpoint, &e.to_string()))?;
            let total = answer.body["total_count"].as_u64().unwrap_or(0) as usize;
            let count = runners.len();
            all.extend(runners);
            if count < 100 || all.len() >= total {
                break;
            }
        }
        Ok(all)
    }

    pub async fn find_runner(
        &self,
        scope: &Scope,
        name: &str,
    ) -> Result<Option<GhRunner>, GithubError> {
        let endpoint = format!("GET {}", Self::runners_endpoint(scope, ""));
        let path = format!(
            "{}/actions/runners?name={}",
            scope.api_prefix(),
            urlencode(name)
        );
        let answer = self
            .call(Method::GET, &endpoint, scope, &path, None, false)
            .await?;
        let runners: Vec<GhRunner> = serde_json::from_value(answer.body["runners"].clone())
            .map_err(|e| decode_err(&endpoint, &e.to_string()))?;
        Ok(runners.into_iter().find(|r| r.name == name))
    }

    pub async fn delete_runner(
        &self,
        scope: &Scope,
        runner_id: u64,
    ) -> Result<DeleteOutcome, GithubError> {
        let endpoint = format!("DELETE {}", Self::runners_endpoint(scope, "/{runner_id}"));
        let path = format!("{}/actions/runners/{runner_id}", scope.api_prefix());
        match self
            .call(Method::DELETE, &endpoint, scope, &path, None, false)
            .await
        {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(GithubError::Status { status: 404, .. }) => Ok(DeleteOutcome::AlreadyGone),
            Err(GithubError::Status { status: 422, .. }) => Ok(DeleteOutcome::Busy),
            Err(e) => Err(e),
        }
    }

    /// Jobs of queued and in-progress runs of `repo`, every page (conditional requests: an
    /// unchanged page costs nothing).
    pub async fn active_jobs(
        &self,
        scope: &Scope,
        repo: &str,
    ) -> Result<Vec<JobUpdate>, GithubError> {
        let mut jobs = Vec::new();
        for status in ["queued", "in_progress"] {
            let runs = self
                .paged(
                    "GET /repos/{owner}/{repo}/actions/runs",
                    scope,
                    &format!("/repos/{repo}/actions/runs?status={status}"),
                    "workflow_runs",
                    MAX_RUN_PAGES,
                )
                .await?;
            for run in runs {
                let Some(run_id) = run["id"].as_u64() else {
                    continue;
                };
                let run_jobs = self
                    .paged(
                        "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
                        scope,
                        &format!("/repos/{repo}/actions/runs/{run_id}/jobs?filter=latest"),
                        "jobs",
                        MAX_JOB_PAGES,
                    )
                    .await?;
                jobs.extend(run_jobs.iter().filter_map(|job| job_update(repo, job)));
            }
        }
        Ok(jobs)
    }

    /// Every item of a paged list (`per_page=100`), up to `max_pages` pages.
    async fn paged(
        &self,
        endpoint: &str,
        scope: &Scope,
        path: &str,
        items_key: &str,
        max_pages: u32,
    ) -> Result<Vec<Value>, GithubError> {
        let mut all = Vec::new();
        for page in 1..=max_pages {
            let paged_path = format!("{path}&per_page={PER_PAGE}&page={page}");
            let answer = self
                .call(Method::GET, endpoint, scope, &paged_path, None, true)
                .await?;
            let items = answer.body[items_key]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = answer.body["total_count"].as_u64().unwrap_or(0) as usize;
            let count = items.len();
            all.extend(items);
            if count < PER_PAGE || all.len() >= total {
                break;
            }
        }
        Ok(all)
    }

    pub async fn job(
        &self,
        scope: &Scope,
        repo: &str,
        job_id: u64,
    ) -> Result<Option<JobUpdate>, GithubError> {
        let endpoint = "GET /repos/{owner}/{repo}/actions/jobs/{job_id}";
        let path = format!("/repos/{repo}/actions/jobs/{job_id}");
        match self
            .call(Method::GET, endpoint, scope, &path, None, true)
            .await
        {
            Ok(answer) => Ok(job_update(repo, &answer.body)),
            Err(GithubError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn job_update(repo: &str, job: &Value) -> Option<JobUpdate> {
    Some(JobUpdate {
        job_id: job["id"].as_u64()?,
        run_id: job["run_id"].as_u64()?,
        repo: repo.to_string(),
        labels: job["labels"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        status: job["status"].as_str()?.to_string(),
        runner_name: job["runner_name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        created_at: job["created_at"]
            .as_str()
            .and_then(crate::db::parse_timestamp),
        started_at: job["started_at"]
            .as_str()
            .and_then(crate::db::parse_timestamp),
    })
}

fn decode_err(endpoint: &str, message: &str) -> GithubError {
    GithubError::Decode {
        endpoint: endpoint.into(),
        message: message.into(),
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250u64 << attempt.min(6))
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn primary_limit_waits_until_reset() {
        let reset = unix_now() + 30;
        let h = headers(&[
            ("x-ratelimit-remaining", "0"),
            ("x-ratelimit-reset", &reset.to_string()),
        ]);
        let wait = rate_limit_wait(403, &h, "API rate limit exceeded for installation", 0).unwrap();
        assert!((28..=30).contains(&wait.as_secs()), "{wait:?}");
        assert!(rate_limit_wait(429, &h, "", 0).is_some());
    }

    #[test]
    fn secondary_limit_honours_retry_after_else_backs_off_from_a_minute() {
        let h = headers(&[("retry-after", "7")]);
        let msg = "You have exceeded a secondary rate limit. Please wait a few minutes";
        assert_eq!(
            rate_limit_wait(403, &h, msg, 0),
            Some(Duration::from_secs(7))
        );
        let none = HeaderMap::new();
        assert_eq!(
            rate_limit_wait(403, &none, msg, 0),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            rate_limit_wait(429, &none, msg, 2),
            Some(Duration::from_secs(240))
        );
    }

    #[test]
    fn plain_forbidden_is_not_a_rate_limit() {
        let h = headers(&[("x-ratelimit-remaining", "4000")]);
        assert_eq!(
            rate_limit_wait(403, &h, "Resource not accessible by integration", 0),
            None
        );
        assert_eq!(rate_limit_wait(500, &h, "", 0), None);
    }
}
