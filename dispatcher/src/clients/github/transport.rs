//! One REST call: headers, ETags (an unchanged answer costs nothing), 5xx retries, rate-limit
//! bookkeeping, and a second try with a fresh installation token after a 401.

use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, ETAG, IF_NONE_MATCH, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::{
    backoff, header_u64, lock, rate_limit_wait, transport_message, truncate, Answer, Credentials,
    GithubClient, GithubError, API_VERSION, SERVER_ERROR_ATTEMPTS,
};
use crate::model::Scope;

/// The longest rate-limit wait a call sleeps through instead of failing fast.
pub(super) const SHORT_RATE_LIMIT_WAIT: Duration = Duration::from_secs(5);
/// How many such waits one call takes before it gives up with the rate-limit error.
const SHORT_RATE_LIMIT_WAITS: u32 = 3;

impl GithubClient {
    /// One REST call with retries for 5xx, rate-limit bookkeeping and ETags.
    pub(super) async fn send(
        &self,
        method: Method,
        endpoint: &str,
        path_and_query: &str,
        authorization: &str,
        body: Option<&Value>,
        conditional: bool,
    ) -> Result<Answer, GithubError> {
        let mut attempt = 0;
        let mut short_waits = 0;
        loop {
            self.wait_out_short_pause(endpoint, &mut short_waits)
                .await?;
            let url = format!("{}{}", self.base, path_and_query);
            let cached = self.cached(conditional, &url);
            let etag = cached.as_ref().map(|(etag, _)| etag.as_str());
            let request = self.request(method.clone(), &url, authorization, body, etag);
            *lock(&self.calls).entry(endpoint.to_string()).or_default() += 1;
            let response = match request.send().await {
                Ok(r) => r,
                Err(e) => {
                    self.metrics.api_call(endpoint, 0);
                    let (message, refused) = transport_message(e);
                    attempt += 1;
                    if attempt < SERVER_ERROR_ATTEMPTS && !refused {
                        tokio::time::sleep(backoff(attempt)).await;
                        continue;
                    }
                    return Err(GithubError::Transport {
                        endpoint: endpoint.into(),
                        message,
                    });
                }
            };
            let status = response.status();
            let headers = response.headers().clone();
            self.observe(endpoint, status, &headers);
            if status == StatusCode::NOT_MODIFIED {
                if let Some((_, body)) = cached {
                    return Ok(Answer { body });
                }
            }
            let parsed = json_body(response).await;
            if status.is_success() {
                self.remember(conditional, url, &headers, &parsed);
                return Ok(Answer { body: parsed });
            }
            let message = parsed["message"].as_str().unwrap_or("").to_string();
            if let Err(limited) = self.check_rate_limit(endpoint, status, &headers, &message) {
                // GitHub did not act on a rate-limited request, so after a short pause the
                // same request is sent again (the top of the loop sleeps through it): a
                // ticket redemption should not fail on a one-second secondary limit.
                if self.pause_is_short(short_waits) {
                    continue;
                }
                return Err(limited);
            }
            if status.is_server_error() && self.backed_off(endpoint, status, &mut attempt).await {
                continue;
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

    /// After a 5xx answer: waits the back-off and says to try again, unless attempts ran out.
    async fn backed_off(&self, endpoint: &str, status: StatusCode, attempt: &mut u32) -> bool {
        *attempt += 1;
        if *attempt >= SERVER_ERROR_ATTEMPTS {
            return false;
        }
        tracing::warn!(
            endpoint,
            status = status.as_u16(),
            attempt = *attempt,
            "GitHub server error; retrying"
        );
        tokio::time::sleep(backoff(*attempt)).await;
        true
    }

    /// Sleeps through a rate-limit pause of a few seconds (a secondary limit's retry-after, a
    /// reset about to come), as GitHub asks: failing fast would fail the rest of the pass, and
    /// under a steady share of such answers no pass would ever finish (the soak found this).
    /// A long pause (or too many short ones) is the rate-limit error: the loop tries later.
    async fn wait_out_short_pause(
        &self,
        endpoint: &str,
        short_waits: &mut u32,
    ) -> Result<(), GithubError> {
        let Some(wait) = self.blocked_for() else {
            return Ok(());
        };
        if self.pause_is_short(*short_waits) {
            *short_waits += 1;
            tokio::time::sleep(wait).await;
            return Ok(());
        }
        Err(GithubError::RateLimited {
            endpoint: endpoint.into(),
            wait_secs: wait.as_secs().max(1),
        })
    }

    fn pause_is_short(&self, short_waits: u32) -> bool {
        short_waits < SHORT_RATE_LIMIT_WAITS
            && self
                .blocked_for()
                .is_some_and(|wait| wait <= SHORT_RATE_LIMIT_WAIT)
    }

    /// The ETag and body of the last answer to `url`, for a conditional request.
    fn cached(&self, conditional: bool, url: &str) -> Option<(String, Value)> {
        conditional
            .then(|| lock(&self.etags).get(url).cloned())
            .flatten()
    }

    /// The request with GitHub's headers, the ETag of a cached answer and the JSON body.
    fn request(
        &self,
        method: Method,
        url: &str,
        authorization: &str,
        body: Option<&Value>,
        etag: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, url)
            .header(ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", API_VERSION)
            .header(USER_AGENT, "gha-dispatcher")
            .header(AUTHORIZATION, authorization);
        if let Some(etag) = etag {
            request = request.header(IF_NONE_MATCH, etag);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request
    }

    /// Counts the answer and keeps the rate-limit gauges current.
    fn observe(&self, endpoint: &str, status: StatusCode, headers: &HeaderMap) {
        self.metrics.api_call(endpoint, status.as_u16());
        if let Some(remaining) = header_u64(headers, "x-ratelimit-remaining") {
            self.metrics.rate_limit_remaining.set(remaining as i64);
        }
        if let Some(limit) = header_u64(headers, "x-ratelimit-limit") {
            self.metrics.rate_limit_limit.set(limit as i64);
        }
    }

    /// A successful answer: the secondary-limit back-off starts over, and a conditional
    /// answer is kept with its ETag.
    fn remember(&self, conditional: bool, url: String, headers: &HeaderMap, body: &Value) {
        *lock(&self.secondary_strikes) = 0;
        if conditional {
            if let Some(etag) = headers.get(ETAG).and_then(|v| v.to_str().ok()) {
                lock(&self.etags).insert(url, (etag.to_string(), body.clone()));
            }
        }
    }

    /// A rate-limit answer blocks every call until the wait is over, and is the error.
    fn check_rate_limit(
        &self,
        endpoint: &str,
        status: StatusCode,
        headers: &HeaderMap,
        message: &str,
    ) -> Result<(), GithubError> {
        let strikes = *lock(&self.secondary_strikes);
        let Some(wait) = rate_limit_wait(status.as_u16(), headers, message, strikes) else {
            return Ok(());
        };
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
        Err(GithubError::RateLimited {
            endpoint: endpoint.into(),
            wait_secs: wait.as_secs().max(1),
        })
    }

    pub(super) async fn call(
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
}

/// The answer's JSON (`null` when empty or not JSON: the status then speaks for it).
async fn json_body(response: reqwest::Response) -> Value {
    let text = response.text().await.unwrap_or_default();
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::Null)
    }
}
