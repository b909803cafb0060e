//! The workflow run and job endpoints of a repository: get a job, list runs (`status` filter,
//! at most 1,000), get a run, list its jobs (`filter`), cancel it.

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use serde_json::{json, Value};

use super::paging::{json_with_link, paginate, Paging};
use super::scope::authorize_repo;
use super::{ok, ApiResult, S};
use crate::auth::Need;
use crate::error::ApiError;
use crate::render;
use crate::state::World;

pub(super) async fn get_job(
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

pub(super) async fn list_runs(
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

pub(super) async fn get_run(
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

pub(super) async fn run_jobs(
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

pub(super) async fn cancel_run(
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
