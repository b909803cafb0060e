//! What every REST call goes through, around its handler: the API-version check, injected
//! latency and faults, the secondary (points per minute) and primary (calls per window) rate
//! limits, ETags and `304 Not Modified`, the `x-ratelimit-*` headers, and the call counters.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use sha2::Digest;

use crate::auth::rate_key;
use crate::error::ApiError;
use crate::faults::{percent_pick, Faults, REST_FAULT_KINDS};
use crate::shared::Shared;
use crate::state::{RateBucket, World};

/// API versions GitHub accepts in `X-GitHub-Api-Version`.
const SUPPORTED_API_VERSIONS: [&str; 2] = ["2022-11-28", "2026-03-10"];

const SECONDARY_LIMIT_MESSAGE: &str = "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.";

pub(super) fn rate_limit_error(reset: i64, limit: u32, status: u16, who: &str) -> ApiError {
    ApiError::new(status, format!("API rate limit exceeded for {who}. If you reach out to GitHub Support for help, please include the request ID."))
        .with_header("x-ratelimit-limit", limit.to_string())
        .with_header("x-ratelimit-remaining", "0")
        .with_header("x-ratelimit-used", limit.to_string())
        .with_header("x-ratelimit-reset", reset.to_string())
        .with_header("x-ratelimit-resource", "core")
}

fn secondary_limit_error(status: u16, retry_after_s: u64) -> ApiError {
    ApiError::new(status, SECONDARY_LIMIT_MESSAGE)
        .with_header("retry-after", retry_after_s.to_string())
}

fn path_matches(faults: &Faults, path: &str) -> bool {
    faults
        .only_path_contains
        .as_deref()
        .is_none_or(|p| path.contains(p))
}

/// The primary budget of credential `rk`, reset when its window has passed.
pub(super) fn bucket_now<'a>(w: &'a mut World, rk: &str, window: Duration) -> &'a mut RateBucket {
    let now = Utc::now().timestamp();
    let b = w.rate.entry(rk.to_string()).or_insert_with(|| RateBucket {
        used: 0,
        reset_epoch: now + window.as_secs() as i64,
    });
    if now >= b.reset_epoch {
        b.used = 0;
        b.reset_epoch = now + window.as_secs() as i64;
    }
    b
}

/// Spends secondary-limit points in a one-minute window; `Some(retry_after_s)` when over budget.
fn spend_points(w: &mut World, key: &str, points: u32, budget: u32) -> Option<u64> {
    let now = std::time::Instant::now();
    let minute = Duration::from_secs(60);
    let window = w.points.entry(key.to_string()).or_default();
    while window
        .front()
        .is_some_and(|(t, _)| now.duration_since(*t) >= minute)
    {
        window.pop_front();
    }
    let spent: u32 = window.iter().map(|(_, p)| p).sum();
    if spent + points > budget {
        let oldest = window.front().map_or(now, |(t, _)| *t);
        let wait = minute.saturating_sub(now.duration_since(oldest));
        return Some(wait.as_secs().max(1));
    }
    window.push_back((now, points));
    None
}

fn etag_of(body: &[u8]) -> String {
    format!("W/\"{}\"", hex::encode(&sha2::Sha256::digest(body)[..16]))
}

/// What the layer needs to know of a request once the handler has it.
struct Call {
    method: Method,
    path: String,
    /// `"<METHOD> <route template>"`, the counters' key.
    endpoint: String,
    /// `GET /rate_limit` costs nothing and is never limited.
    free: bool,
    /// The caller's rate-limit key, if it sent credentials.
    rate_key: Option<String>,
    if_none_match: Option<String>,
}

impl Call {
    fn of(req: &Request) -> Call {
        let path = req.uri().path().to_string();
        let endpoint = format!(
            "{} {}",
            req.method(),
            req.extensions()
                .get::<MatchedPath>()
                .map_or(path.as_str(), |m| m.as_str())
                // An Enterprise Server's routes count as github.com's.
                .trim_start_matches(crate::config::Enterprise::API_PREFIX)
        );
        Call {
            method: req.method().clone(),
            free: path.trim_start_matches(crate::config::Enterprise::API_PREFIX) == "/rate_limit",
            endpoint,
            path,
            rate_key: rate_key(req.headers()),
            if_none_match: req
                .headers()
                .get("if-none-match")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
        }
    }

    /// Secondary-limit points: GET (and HEAD) 1, anything else 5.
    fn points(&self) -> u32 {
        if self.method == Method::GET || self.method == Method::HEAD {
            1
        } else {
            5
        }
    }
}

pub(super) async fn api_layer(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    if let Some(v) = req.headers().get("x-github-api-version") {
        let v = v.to_str().unwrap_or("");
        if !SUPPORTED_API_VERSIONS.contains(&v) {
            return ApiError::new(400, format!("Unsupported API version: {v}")).into_response();
        }
    }
    let call = Call::of(&req);
    let latency = {
        let mut w = s.lock();
        let latency = w.faults.latency_ms;
        if latency > 0 && path_matches(&w.faults, &call.path) {
            // Counted on arrival: a test can tell that a call is being held.
            w.counters.fault_injected("rest latency");
            latency
        } else {
            0
        }
    };
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }
    let resp = match early_answer(&s, &call) {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };
    let (mut resp, not_modified) = conditional_get(&call, resp).await;
    account(&s, &call, &mut resp, not_modified);
    resp.headers_mut().insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    resp
}

/// Injected faults and the rate limits, decided before the handler runs.
fn early_answer(s: &Shared, call: &Call) -> Option<ApiError> {
    if call.free {
        return None;
    }
    let mut w = s.lock();
    let limit = w.faults.rate_limit_budget.unwrap_or(s.config.rate_limit);
    let status = w.faults.rate_limit_status();
    if path_matches(&w.faults, &call.path) {
        if let Some(e) = injected_fault(&mut w, limit, status) {
            return Some(e);
        }
    }
    let rk = call.rate_key.as_ref()?;
    let budget = s.config.secondary_points_per_minute;
    let key = format!("{rk} {}", call.endpoint);
    if let Some(retry) = spend_points(&mut w, &key, call.points(), budget) {
        return Some(secondary_limit_error(status, retry));
    }
    let b = bucket_now(&mut w, rk, s.config.rate_limit_window);
    (b.used >= limit).then(|| rate_limit_error(b.reset_epoch, limit, status, "installation"))
}

/// The next REST fault the test asked for, if any (each "next N" fires once per count, then
/// the percentage's turn), counted as injected.
fn injected_fault(w: &mut World, limit: u32, status: u16) -> Option<ApiError> {
    let f = &mut w.faults;
    let mut kind = if Faults::take(&mut f.server_errors) {
        Some(0)
    } else if Faults::take(&mut f.secondary_rate_limit) {
        Some(1)
    } else if Faults::take(&mut f.primary_rate_limit) {
        Some(2)
    } else {
        None
    };
    if kind.is_none() && f.fault_percent > 0 {
        let n = w.counters.fault_candidates.rest_calls;
        w.counters.fault_candidates.rest_calls += 1;
        kind = percent_pick(n, f.fault_percent).map(|turn| (turn % 3) as usize);
    }
    let kind = kind?;
    w.counters.fault_injected(REST_FAULT_KINDS[kind]);
    Some(fault_answer(&w.faults, kind, limit, status))
}

/// The answer of REST fault kind `kind` (an index of `REST_FAULT_KINDS`).
fn fault_answer(f: &Faults, kind: usize, limit: u32, status: u16) -> ApiError {
    let reset = Utc::now().timestamp() + f.primary_reset_s() as i64;
    match kind {
        0 => {
            let st = f.server_error_status();
            let message = if st == 502 {
                "Server Error"
            } else {
                "Internal Server Error"
            };
            ApiError::new(st, message)
        }
        1 => secondary_limit_error(status, f.secondary_retry_after_s()),
        _ => rate_limit_error(reset, limit, status, "installation"),
    }
}

/// Tags a successful GET with its ETag, and answers `304` when the caller already has it.
async fn conditional_get(call: &Call, resp: Response) -> (Response, bool) {
    if call.method != Method::GET || resp.status() != StatusCode::OK {
        return (resp, false);
    }
    let (mut parts, body) = resp.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let etag = etag_of(&bytes);
    if let Ok(v) = HeaderValue::from_str(&etag) {
        parts.headers.insert("etag", v);
    }
    if call.if_none_match.as_deref().is_some_and(|inm| {
        inm.split(',')
            .any(|t| t.trim() == etag || t.trim() == etag.trim_start_matches("W/"))
    }) {
        parts.status = StatusCode::NOT_MODIFIED;
        parts.headers.remove("content-type");
        (Response::from_parts(parts, Body::empty()), true)
    } else {
        (Response::from_parts(parts, Body::from(bytes)), false)
    }
}

/// Charges the call to the caller's budget (not a 304, not a limit answer, not free), puts the
/// `x-ratelimit-*` headers on the answer, and counts it.
fn account(s: &Shared, call: &Call, resp: &mut Response, not_modified: bool) {
    let status = resp.status().as_u16();
    let mut w = s.lock();
    if let Some(rk) = &call.rate_key {
        let limit = w.faults.rate_limit_budget.unwrap_or(s.config.rate_limit);
        let is_limit_answer = resp.headers().get("x-ratelimit-remaining").is_some();
        let b = bucket_now(&mut w, rk, s.config.rate_limit_window);
        if !call.free && !not_modified && !is_limit_answer {
            b.used += 1;
        }
        if !is_limit_answer {
            let h = resp.headers_mut();
            let remaining = limit.saturating_sub(b.used);
            for (k, v) in [
                ("x-ratelimit-limit", limit.to_string()),
                ("x-ratelimit-remaining", remaining.to_string()),
                ("x-ratelimit-used", b.used.to_string()),
                ("x-ratelimit-reset", b.reset_epoch.to_string()),
                ("x-ratelimit-resource", "core".to_string()),
            ] {
                if let Ok(v) = HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
        }
    }
    let counters = &mut w.counters;
    let by_account = counters
        .api_by_account
        .entry(account_of(&call.path).to_owned())
        .or_default();
    for c in [
        by_account.entry(call.endpoint.clone()).or_default(),
        counters.api.entry(call.endpoint.clone()).or_default(),
    ] {
        c.calls += 1;
        if not_modified {
            c.not_modified += 1;
        }
        if status >= 400 {
            c.errors += 1;
        }
    }
}

/// The account a REST path is about: `acme` for `/orgs/acme/..` and `/repos/acme/..` (under
/// the enterprise prefix too), `""` for anything else.
fn account_of(path: &str) -> &str {
    let path = path
        .strip_prefix(crate::config::Enterprise::API_PREFIX)
        .unwrap_or(path);
    let mut parts = path.trim_start_matches('/').split('/');
    match (parts.next(), parts.next()) {
        (Some("orgs" | "repos"), Some(account)) => account,
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::account_of;

    #[test]
    fn a_call_is_counted_for_the_account_its_path_names() {
        assert_eq!(account_of("/orgs/labs/actions/runners"), "labs");
        assert_eq!(account_of("/repos/acme/widgets/actions/runs"), "acme");
        assert_eq!(
            account_of("/api/v3/repos/acme/widgets/actions/runs"),
            "acme"
        );
        assert_eq!(account_of("/app/installations/7/access_tokens"), "");
        assert_eq!(account_of("/actions/runner-registration"), "");
    }
}
