//! GitHub REST client: authentication (App JWT → installation tokens, or a personal
//! token), rate limits, retries, conditional requests and per-endpoint call counting.
//!
//! Rate limits never make a call sleep for long: a primary or secondary limit marks the
//! client blocked until the reset (or `retry-after`), and every call before then fails fast
//! with [`GithubError::RateLimited`], so the reconcile loop simply tries again later.
//! 5xx answers are retried a few times with exponential back-off. No token, key or JIT
//! config ever appears in an error or a log line. I/O only: what to do about an answer is
//! the caller's policy.

mod auth;
mod endpoints;
mod transport;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde::Deserialize;
use serde_json::Value;

use crate::telemetry::Metrics;

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
    #[error("GitHub TLS setup: {0}")]
    Tls(String),
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

impl GhRunner {
    /// GitHub shows it `online` (connected, with or without a job).
    pub fn is_online(&self) -> bool {
        self.status == "online"
    }
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
    /// The REST API's or the Actions service's error (never holding a secret).
    Other(Box<dyn std::error::Error + Send + Sync>),
}

pub struct GithubClient {
    http: reqwest::Client,
    base: String,
    credentials: Credentials,
    metrics: Arc<Metrics>,
    tokens: Mutex<HashMap<u64, CachedToken>>,
    /// Held while an App's installation is looked up or its token minted, so callers at the
    /// same moment (the job poll runs beside the loop) share one mint.
    app_auth: tokio::sync::Mutex<()>,
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
    /// A client trusting the system's certificate authorities only.
    pub fn new(
        base: &str,
        credentials: Credentials,
        metrics: Arc<Metrics>,
    ) -> Result<GithubClient, GithubError> {
        GithubClient::with_ca(base, credentials, metrics, None)
    }

    /// A client for the REST API at `base`, over TLS (rustls) that trusts the system's
    /// certificate authorities plus those in `ca_pem` (a PEM bundle: `github.ca_file`, for a
    /// GitHub Enterprise Server with a private CA). It goes through the proxy that
    /// `HTTPS_PROXY` names unless `NO_PROXY` covers the host. With an `https://` base it
    /// refuses every plain-HTTP URL, redirects included, so a credential never leaves in clear.
    pub fn with_ca(
        base: &str,
        credentials: Credentials,
        metrics: Arc<Metrics>,
        ca_pem: Option<&[u8]>,
    ) -> Result<GithubClient, GithubError> {
        let http = https_client(base.starts_with("https://"), ca_pem)?;
        Ok(GithubClient {
            http,
            base: base.trim_end_matches('/').to_string(),
            credentials,
            metrics,
            tokens: Mutex::new(HashMap::new()),
            app_auth: tokio::sync::Mutex::new(()),
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

    /// [`Self::blocked_for`], when longer than a pause that calls wait out by themselves
    /// (a few seconds: GitHub's usual `retry-after` for a burst).
    pub fn blocked_long(&self) -> Option<Duration> {
        self.blocked_for()
            .filter(|wait| *wait > transport::SHORT_RATE_LIMIT_WAIT)
    }
}

/// The HTTP client every GitHub call goes through: rustls trusting the system's authorities
/// plus `ca_pem` (`github.ca_file`), the system proxy, and with `https_only` no plain-HTTP
/// URL at all, redirects included. Calls time out after 20 s unless a request says longer
/// (a message-queue long poll does).
pub fn https_client(
    https_only: bool,
    ca_pem: Option<&[u8]>,
) -> Result<reqwest::Client, GithubError> {
    let mut builder = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .connect_timeout(Duration::from_secs(5))
        .https_only(https_only);
    if let Some(pem) = ca_pem {
        let certs = reqwest::Certificate::from_pem_bundle(pem)
            .map_err(|e| GithubError::Tls(format!("github.ca_file: {e}")))?;
        if certs.is_empty() {
            return Err(GithubError::Tls(
                "github.ca_file holds no PEM certificate".into(),
            ));
        }
        builder = builder.tls_certs_merge(certs);
    }
    builder
        .build()
        .map_err(|e| GithubError::Tls(format!("cannot build the HTTPS client: {e}")))
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

/// A transport error with its causes, without the URL, and whether the server's certificate
/// was refused (not worth retrying).
fn transport_message(e: reqwest::Error) -> (String, bool) {
    let e = e.without_url();
    let mut message = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    let refused = message.contains("certificate");
    if refused {
        message.push_str(
            " (TLS: the server's certificate is not trusted, nothing was sent; a GitHub \
             Enterprise Server with a private CA needs github.ca_file)",
        );
    }
    (message, refused)
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

pub(crate) fn urlencode(s: &str) -> String {
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
