//! GitHub's REST endpoints an autoscaler uses, with GitHub's paths, status codes and bodies, plus the
//! cross-cutting behaviour of every call: faults, latency, rate limits, ETag/304, call counters.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{MatchedPath, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::Digest;

use crate::auth::{authenticate, rate_key, require, require_app, Need};
use crate::error::ApiError;
use crate::faults::Faults;
use crate::jit::{self, CredentialsFile, JitConfig, RunnerFile};
use crate::render;
use crate::state::{key, random_token, RateBucket, Scope, Shared, World};
use crate::time::iso;

type S = State<Arc<Shared>>;
type ApiResult = Result<Response, ApiError>;

pub fn router(shared: Arc<Shared>) -> Router<Arc<Shared>> {
    Router::new()
        .route(
            "/orgs/{org}/actions/runners/generate-jitconfig",
            post(org_jit),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runners/generate-jitconfig",
            post(repo_jit),
        )
        .route("/orgs/{org}/actions/runners", get(org_runners))
        .route("/repos/{owner}/{repo}/actions/runners", get(repo_runners))
        .route(
            "/orgs/{org}/actions/runners/{runner_id}",
            get(org_runner).delete(org_runner_delete),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runners/{runner_id}",
            get(repo_runner).delete(repo_runner_delete),
        )
        .route(
            "/orgs/{org}/actions/runners/registration-token",
            post(org_reg_token),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runners/registration-token",
            post(repo_reg_token),
        )
        .route("/repos/{owner}/{repo}/actions/jobs/{job_id}", get(get_job))
        .route("/repos/{owner}/{repo}/actions/runs", get(list_runs))
        .route("/repos/{owner}/{repo}/actions/runs/{run_id}", get(get_run))
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
            get(run_jobs),
        )
        .route(
            "/repos/{owner}/{repo}/actions/runs/{run_id}/cancel",
            post(cancel_run),
        )
        .route("/orgs/{org}/actions/runner-groups", get(runner_groups))
        .route("/orgs/{org}/installation", get(org_installation))
        .route("/repos/{owner}/{repo}/installation", get(repo_installation))
        .route(
            "/app/installations/{installation_id}/access_tokens",
            post(access_token),
        )
        .route("/app/hook/deliveries", get(hook_deliveries))
        .route(
            "/app/hook/deliveries/{delivery_id}/attempts",
            post(hook_redeliver),
        )
        .route("/rate_limit", get(rate_limit))
        .route_layer(middleware::from_fn_with_state(shared, api_layer))
}

// ---- cross-cutting ------------------------------------------------------------------------------

fn rate_limit_error(reset: i64, limit: u32, status: u16, who: &str) -> ApiError {
    ApiError::new(status, format!("API rate limit exceeded for {who}. If you reach out to GitHub Support for help, please include the request ID."))
        .with_header("x-ratelimit-limit", limit.to_string())
        .with_header("x-ratelimit-remaining", "0")
        .with_header("x-ratelimit-used", limit.to_string())
        .with_header("x-ratelimit-reset", reset.to_string())
        .with_header("x-ratelimit-resource", "core")
}

fn path_matches(faults: &Faults, path: &str) -> bool {
    faults
        .only_path_contains
        .as_deref()
        .is_none_or(|p| path.contains(p))
}

fn bucket_now<'a>(w: &'a mut World, rk: &str, window: Duration) -> &'a mut RateBucket {
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

/// API versions GitHub accepts in `X-GitHub-Api-Version`.
const SUPPORTED_API_VERSIONS: [&str; 2] = ["2022-11-28", "2026-03-10"];

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

async fn api_layer(State(s): S, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let endpoint = format!(
        "{} {}",
        method,
        req.extensions()
            .get::<MatchedPath>()
            .map_or(path.as_str(), |m| m.as_str())
    );
    let free = path == "/rate_limit";
    let rk = rate_key(req.headers());
    let if_none_match = req
        .headers()
        .get("if-none-match")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    if let Some(v) = req.headers().get("x-github-api-version") {
        let v = v.to_str().unwrap_or("");
        if !SUPPORTED_API_VERSIONS.contains(&v) {
            return ApiError::new(400, format!("Unsupported API version: {v}")).into_response();
        }
    }
    let points = if method == Method::GET || method == Method::HEAD {
        1
    } else {
        5
    };

    let latency = s.lock().faults.latency_ms;
    if latency > 0 {
        tokio::time::sleep(Duration::from_millis(latency)).await;
    }

    let window = s.config.rate_limit_window;
    // Injected faults and the primary budget, decided before the handler runs.
    let early: Option<ApiError> = {
        let mut w = s.lock();
        let limit = w.faults.rate_limit_budget.unwrap_or(s.config.rate_limit);
        let status = w.faults.rate_limit_status();
        let mut out = None;
        if path_matches(&w.faults, &path) && !free {
            let reset = Utc::now().timestamp() + 60;
            if Faults::take(&mut w.faults.server_errors) {
                let st = w.faults.server_error_status();
                out = Some(ApiError::new(
                    st,
                    if st == 502 {
                        "Server Error"
                    } else {
                        "Internal Server Error"
                    },
                ));
            } else if Faults::take(&mut w.faults.secondary_rate_limit) {
                let retry = w.faults.secondary_retry_after_s();
                out = Some(
                    ApiError::new(status, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.")
                        .with_header("retry-after", retry.to_string()),
                );
            } else if Faults::take(&mut w.faults.primary_rate_limit) {
                out = Some(rate_limit_error(reset, limit, status, "installation"));
            }
        }
        if out.is_none() && !free {
            if let Some(rk) = &rk {
                let budget = s.config.secondary_points_per_minute;
                if let Some(retry) =
                    spend_points(&mut w, &format!("{rk} {endpoint}"), points, budget)
                {
                    out = Some(
                        ApiError::new(status, "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. If you reach out to GitHub Support for help, please include the request ID.")
                            .with_header("retry-after", retry.to_string()),
                    );
                }
            }
        }
        if out.is_none() && !free {
            if let Some(rk) = &rk {
                let b = bucket_now(&mut w, rk, window);
                if b.used >= limit {
                    out = Some(rate_limit_error(
                        b.reset_epoch,
                        limit,
                        status,
                        "installation",
                    ));
                }
            }
        }
        out
    };

    let mut resp = match early {
        Some(e) => e.into_response(),
        None => next.run(req).await,
    };

    // ETag / conditional GETs.
    let mut not_modified = false;
    if method == Method::GET && resp.status() == StatusCode::OK {
        let (mut parts, body) = resp.into_parts();
        let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
            .await
            .unwrap_or_default();
        let etag = etag_of(&bytes);
        if let Ok(v) = HeaderValue::from_str(&etag) {
            parts.headers.insert("etag", v);
        }
        if if_none_match.as_deref().is_some_and(|inm| {
            inm.split(',')
                .any(|t| t.trim() == etag || t.trim() == etag.trim_start_matches("W/"))
        }) {
            not_modified = true;
            parts.status = StatusCode::NOT_MODIFIED;
            parts.headers.remove("content-type");
            resp = Response::from_parts(parts, Body::empty());
        } else {
            resp = Response::from_parts(parts, Body::from(bytes));
        }
    }

    let status = resp.status().as_u16();
    let mut w = s.lock();
    if let Some(rk) = &rk {
        let limit = w.faults.rate_limit_budget.unwrap_or(s.config.rate_limit);
        let is_limit_answer = resp.headers().get("x-ratelimit-remaining").is_some();
        let b = bucket_now(&mut w, rk, window);
        if !free && !not_modified && !is_limit_answer {
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
    let c = w.counters.api.entry(endpoint).or_default();
    c.calls += 1;
    if not_modified {
        c.not_modified += 1;
    }
    if status >= 400 {
        c.errors += 1;
    }
    drop(w);
    resp.headers_mut().insert(
        "x-github-api-version-selected",
        HeaderValue::from_static("2022-11-28"),
    );
    resp
}

// ---- helpers ------------------------------------------------------------------------------------

#[derive(Deserialize, Default)]
struct Paging {
    per_page: Option<String>,
    page: Option<String>,
    name: Option<String>,
    status: Option<String>,
    filter: Option<String>,
}

impl Paging {
    fn per_page(&self) -> usize {
        self.per_page
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(30)
            .clamp(1, 100)
    }
    fn page(&self) -> usize {
        self.page
            .as_deref()
            .and_then(|p| p.parse().ok())
            .unwrap_or(1)
            .max(1)
    }
}

/// Slices `items` to the requested page and builds GitHub's `Link` header.
fn paginate<T: Clone>(s: &Shared, path: &str, q: &Paging, items: &[T]) -> (Vec<T>, Option<String>) {
    let per = q.per_page();
    let page = q.page();
    let last = items.len().div_ceil(per).max(1);
    let slice = items
        .iter()
        .skip((page - 1) * per)
        .take(per)
        .cloned()
        .collect();
    let mut extra = String::new();
    for (k, v) in [
        ("name", &q.name),
        ("status", &q.status),
        ("filter", &q.filter),
    ] {
        if let Some(v) = v {
            extra.push_str(&format!("&{k}={v}"));
        }
    }
    let link = |p: usize, rel: &str| {
        format!(
            "<{}{path}?per_page={per}{extra}&page={p}>; rel=\"{rel}\"",
            s.base_url
        )
    };
    let mut parts = Vec::new();
    if page < last {
        parts.push(link(page + 1, "next"));
        parts.push(link(last, "last"));
    }
    if page > 1 {
        parts.push(link(1, "first"));
        parts.push(link((page - 1).min(last), "prev"));
    }
    (
        slice,
        if parts.is_empty() {
            None
        } else {
            Some(parts.join(", "))
        },
    )
}

fn json_with_link(status: StatusCode, body: Value, link: Option<String>) -> Response {
    let mut r = (status, Json(body)).into_response();
    if let Some(l) = link.and_then(|l| HeaderValue::from_str(&l).ok()) {
        r.headers_mut().insert("link", l);
    }
    r
}

fn ok(body: Value) -> ApiResult {
    Ok((StatusCode::OK, Json(body)).into_response())
}

fn require_org(w: &World, org: &str) -> Result<(), ApiError> {
    if w.orgs.contains_key(&key(org)) {
        Ok(())
    } else {
        Err(ApiError::not_found())
    }
}

fn require_repo(w: &World, owner: &str, repo: &str) -> Result<String, ApiError> {
    let k = key(&format!("{owner}/{repo}"));
    if w.repos.contains_key(&k) {
        Ok(k)
    } else {
        Err(ApiError::not_found())
    }
}

/// The checks of every repository endpoint, in GitHub's order: who is calling, does the
/// repository exist (for them), do they hold `need` on it. Returns the repository's key.
fn authorize_repo(
    w: &World,
    headers: &HeaderMap,
    owner: &str,
    repo: &str,
    need: Need<'_>,
) -> Result<String, ApiError> {
    let principal = authenticate(w, headers)?;
    let k = require_repo(w, owner, repo)?;
    require(&principal, need)?;
    Ok(k)
}

fn org_scope(org: &str) -> Scope {
    Scope::Org(org.to_string())
}

fn repo_scope(w: &World, k: &str) -> Scope {
    let r = &w.repos[k];
    Scope::Repo {
        owner: r.owner.clone(),
        name: r.name.clone(),
    }
}

// ---- runners ------------------------------------------------------------------------------------

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
        let id = w
            .register_runner(scope, &req.name, req.labels.clone(), true)
            .map_err(|_| ApiError::new(409, "Already exists"))?;
        w.counters.jit_configs_issued += 1;
        let r = &w.runners[&id];
        let cfg = JitConfig {
            runner: RunnerFile {
                agent_id: id,
                agent_name: r.name.clone(),
                pool_id: 1,
                pool_name: "Default".into(),
                server_url: format!("{}/_runner", s.base_url),
                git_hub_url: format!("{}/_html/{git_hub_path}", s.base_url),
                work_folder: req.work_folder.clone(),
                use_v2_flow: false,
                disable_update: true,
                ephemeral: true,
            },
            credentials: CredentialsFile {
                scheme: "OAuthAccessToken".into(),
                data: [("token".to_string(), r.secret.clone())].into(),
            },
            rsa_params: json!({"d": "", "dp": "", "dq": "", "exponent": "AQAB", "inverseQ": "", "modulus": "", "p": "", "q": ""}),
        };
        let encoded = jit::encode(&cfg);
        let issued = crate::state::IssuedJitConfig {
            runner_name: r.name.clone(),
            encoded_jit_config: encoded.clone(),
            runner_secret: r.secret.clone(),
        };
        let runner_json = render::runner(w, r);
        w.issued_jit_configs.push(issued);
        Ok((runner_json, encoded))
    })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"runner": runner_json, "encoded_jit_config": encoded})),
    )
        .into_response())
}

async fn org_jit(
    State(s): S,
    Path(org): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    {
        let w = s.lock();
        let p = authenticate(&w, &headers)?;
        require_org(&w, &org)?;
        require(
            &p,
            Need::OrgRunners {
                org: &org,
                write: true,
            },
        )?;
    }
    generate_jit(&s, org_scope(&org), org.clone(), &body)
}

async fn repo_jit(
    State(s): S,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let scope = {
        let w = s.lock();
        let k = authorize_repo(
            &w,
            &headers,
            &owner,
            &repo,
            Need::RepoAdmin {
                owner: &owner,
                write: true,
            },
        )?;
        repo_scope(&w, &k)
    };
    generate_jit(&s, scope, format!("{owner}/{repo}"), &body)
}

fn list_runners(s: &Shared, w: &World, scope: &Scope, path: &str, q: &Paging) -> ApiResult {
    let runners: Vec<Value> = w
        .runners
        .values()
        .filter(|r| &r.scope == scope)
        .filter(|r| q.name.as_deref().is_none_or(|n| r.name == n))
        .map(|r| render::runner(w, r))
        .collect();
    let (page, link) = paginate(s, path, q, &runners);
    Ok(json_with_link(
        StatusCode::OK,
        json!({"total_count": runners.len(), "runners": page}),
        link,
    ))
}

async fn org_runners(
    State(s): S,
    Path(org): Path<String>,
    headers: HeaderMap,
    Query(q): Query<Paging>,
) -> ApiResult {
    let w = s.lock();
    let p = authenticate(&w, &headers)?;
    require_org(&w, &org)?;
    require(
        &p,
        Need::OrgRunners {
            org: &org,
            write: false,
        },
    )?;
    list_runners(
        &s,
        &w,
        &org_scope(&org),
        &format!("/orgs/{org}/actions/runners"),
        &q,
    )
}

async fn repo_runners(
    State(s): S,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<Paging>,
) -> ApiResult {
    let w = s.lock();
    let k = authorize_repo(
        &w,
        &headers,
        &owner,
        &repo,
        Need::RepoAdmin {
            owner: &owner,
            write: false,
        },
    )?;
    let scope = repo_scope(&w, &k);
    list_runners(
        &s,
        &w,
        &scope,
        &format!("/repos/{owner}/{repo}/actions/runners"),
        &q,
    )
}

fn find_runner(w: &World, scope: &Scope, id: &str) -> Result<u64, ApiError> {
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    match w.runners.get(&id) {
        Some(r) if &r.scope == scope => Ok(id),
        _ => Err(ApiError::not_found()),
    }
}

fn delete_runner(s: &Shared, scope: Scope, id: &str) -> ApiResult {
    s.mutate(|w| {
        let id = find_runner(w, &scope, id)?;
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

async fn org_runner(
    State(s): S,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let w = s.lock();
    let p = authenticate(&w, &headers)?;
    require_org(&w, &org)?;
    require(
        &p,
        Need::OrgRunners {
            org: &org,
            write: false,
        },
    )?;
    let id = find_runner(&w, &org_scope(&org), &id)?;
    ok(render::runner(&w, &w.runners[&id]))
}

async fn repo_runner(
    State(s): S,
    Path((owner, repo, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let w = s.lock();
    let k = authorize_repo(
        &w,
        &headers,
        &owner,
        &repo,
        Need::RepoAdmin {
            owner: &owner,
            write: false,
        },
    )?;
    let id = find_runner(&w, &repo_scope(&w, &k), &id)?;
    ok(render::runner(&w, &w.runners[&id]))
}

async fn org_runner_delete(
    State(s): S,
    Path((org, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    {
        let w = s.lock();
        let p = authenticate(&w, &headers)?;
        require_org(&w, &org)?;
        require(
            &p,
            Need::OrgRunners {
                org: &org,
                write: true,
            },
        )?;
    }
    delete_runner(&s, org_scope(&org), &id)
}

async fn repo_runner_delete(
    State(s): S,
    Path((owner, repo, id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let scope = {
        let w = s.lock();
        let k = authorize_repo(
            &w,
            &headers,
            &owner,
            &repo,
            Need::RepoAdmin {
                owner: &owner,
                write: true,
            },
        )?;
        repo_scope(&w, &k)
    };
    delete_runner(&s, scope, &id)
}

fn registration_token(s: &Shared, scope: Scope) -> ApiResult {
    let expires = s.lock().token_expiry(s.config.registration_token_ttl);
    let token = random_token("AABB");
    s.mutate(|w| {
        w.registration_tokens
            .insert(token.clone(), (scope, expires))
    });
    Ok((
        StatusCode::CREATED,
        Json(json!({"token": token, "expires_at": iso(expires)})),
    )
        .into_response())
}

async fn org_reg_token(State(s): S, Path(org): Path<String>, headers: HeaderMap) -> ApiResult {
    {
        let w = s.lock();
        let p = authenticate(&w, &headers)?;
        require_org(&w, &org)?;
        require(
            &p,
            Need::OrgRunners {
                org: &org,
                write: true,
            },
        )?;
    }
    registration_token(&s, org_scope(&org))
}

async fn repo_reg_token(
    State(s): S,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let scope = {
        let w = s.lock();
        let k = authorize_repo(
            &w,
            &headers,
            &owner,
            &repo,
            Need::RepoAdmin {
                owner: &owner,
                write: true,
            },
        )?;
        repo_scope(&w, &k)
    };
    registration_token(&s, scope)
}

// ---- runs and jobs ------------------------------------------------------------------------------

async fn get_job(
    State(s): S,
    Path((owner, repo, job_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let w = s.lock();
    let k = authorize_repo(
        &w,
        &headers,
        &owner,
        &repo,
        Need::Actions {
            owner: &owner,
            write: false,
        },
    )?;
    let id: u64 = job_id.parse().map_err(|_| ApiError::not_found())?;
    match w.jobs.get(&id) {
        Some(j) if j.repo_key == k => ok(render::job(&w, j)),
        _ => Err(ApiError::not_found()),
    }
}

async fn list_runs(
    State(s): S,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<Paging>,
) -> ApiResult {
    let w = s.lock();
    let k = authorize_repo(
        &w,
        &headers,
        &owner,
        &repo,
        Need::Actions {
            owner: &owner,
            write: false,
        },
    )?;
    let mut runs: Vec<Value> = w
        .runs
        .values()
        .rev()
        .filter(|r| r.repo_key == k)
        .filter(|r| {
            q.status.as_deref().is_none_or(|want| {
                let (st, concl) = w.run_status(r);
                st == want || concl == Some(want)
            })
        })
        .map(|r| render::workflow_run(&w, r))
        .collect();
    if q.status.is_some() {
        // GitHub returns at most 1,000 runs when a status filter is used.
        runs.truncate(1000);
    }
    let (page, link) = paginate(
        &s,
        &format!("/repos/{owner}/{repo}/actions/runs"),
        &q,
        &runs,
    );
    Ok(json_with_link(
        StatusCode::OK,
        json!({"total_count": runs.len(), "workflow_runs": page}),
        link,
    ))
}

fn find_run(w: &World, k: &str, run_id: &str) -> Result<u64, ApiError> {
    let id: u64 = run_id.parse().map_err(|_| ApiError::not_found())?;
    match w.runs.get(&id) {
        Some(r) if r.repo_key == k => Ok(id),
        _ => Err(ApiError::not_found()),
    }
}

async fn get_run(
    State(s): S,
    Path((owner, repo, run_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let w = s.lock();
    let k = authorize_repo(
        &w,
        &headers,
        &owner,
        &repo,
        Need::Actions {
            owner: &owner,
            write: false,
        },
    )?;
    let id = find_run(&w, &k, &run_id)?;
    ok(render::workflow_run(&w, &w.runs[&id]))
}

async fn run_jobs(
    State(s): S,
    Path((owner, repo, run_id)): Path<(String, String, String)>,
    headers: HeaderMap,
    Query(q): Query<Paging>,
) -> ApiResult {
    let w = s.lock();
    let k = authorize_repo(
        &w,
        &headers,
        &owner,
        &repo,
        Need::Actions {
            owner: &owner,
            write: false,
        },
    )?;
    if let Some(f) = q.filter.as_deref() {
        if f != "latest" && f != "all" {
            return Err(ApiError::validation(
                "Validation Failed",
                json!([{"resource": "WorkflowJob", "field": "filter", "code": "invalid"}]),
            ));
        }
    }
    let id = find_run(&w, &k, &run_id)?;
    let jobs: Vec<Value> = w.runs[&id]
        .job_ids
        .iter()
        .filter_map(|j| w.jobs.get(j))
        .map(|j| render::job(&w, j))
        .collect();
    let (page, link) = paginate(
        &s,
        &format!("/repos/{owner}/{repo}/actions/runs/{id}/jobs"),
        &q,
        &jobs,
    );
    Ok(json_with_link(
        StatusCode::OK,
        json!({"total_count": jobs.len(), "jobs": page}),
        link,
    ))
}

async fn cancel_run(
    State(s): S,
    Path((owner, repo, run_id)): Path<(String, String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    s.mutate(|w| {
        let k = authorize_repo(
            w,
            &headers,
            &owner,
            &repo,
            Need::Actions {
                owner: &owner,
                write: true,
            },
        )?;
        let id = find_run(w, &k, &run_id)?;
        if w.run_status(&w.runs[&id]).0 == "completed" {
            return Err(ApiError::new(
                409,
                "Cannot cancel a workflow run that is completed.",
            ));
        }
        w.cancel_run(id).map_err(|_| ApiError::not_found())?;
        Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
    })
}

async fn runner_groups(State(s): S, Path(org): Path<String>, headers: HeaderMap) -> ApiResult {
    let w = s.lock();
    let p = authenticate(&w, &headers)?;
    require_org(&w, &org)?;
    require(
        &p,
        Need::OrgRunners {
            org: &org,
            write: false,
        },
    )?;
    ok(json!({"total_count": 1, "runner_groups": [render::runner_group_default(&w, &org)]}))
}

// ---- apps ---------------------------------------------------------------------------------------

async fn org_installation(State(s): S, Path(org): Path<String>, headers: HeaderMap) -> ApiResult {
    let w = s.lock();
    let app = require_app(&authenticate(&w, &headers)?)?;
    let inst = w
        .installation_for(app, &org)
        .ok_or_else(ApiError::not_found)?;
    ok(render::installation(&w, inst))
}

async fn repo_installation(
    State(s): S,
    Path((owner, repo)): Path<(String, String)>,
    headers: HeaderMap,
) -> ApiResult {
    let w = s.lock();
    let app = require_app(&authenticate(&w, &headers)?)?;
    require_repo(&w, &owner, &repo)?;
    let inst = w
        .installation_for(app, &owner)
        .ok_or_else(ApiError::not_found)?;
    ok(render::installation(&w, inst))
}

async fn access_token(State(s): S, Path(inst_id): Path<String>, headers: HeaderMap) -> ApiResult {
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
            crate::state::InstallationToken {
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

async fn hook_deliveries(State(s): S, headers: HeaderMap) -> ApiResult {
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

async fn hook_redeliver(State(s): S, Path(id): Path<String>, headers: HeaderMap) -> ApiResult {
    {
        let w = s.lock();
        require_app(&authenticate(&w, &headers)?)?;
    }
    let id: u64 = id.parse().map_err(|_| ApiError::not_found())?;
    crate::webhooks::redeliver(&s, id).map_err(|_| ApiError::not_found())?;
    Ok((StatusCode::ACCEPTED, Json(json!({}))).into_response())
}

async fn rate_limit(State(s): S, headers: HeaderMap) -> ApiResult {
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
