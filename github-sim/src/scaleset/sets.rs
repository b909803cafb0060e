//! The Actions service's administrative calls (admin token): runner groups (only "Default",
//! id 1), scale sets (create, find by group and name, get, update, delete), their JIT configs
//! (`generatejitconfig`), and their runners (`_apis/distributedtask/pools/0/agents`).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::bootstrap::Admin;
use crate::error::SimError;
use crate::shared::Shared;
use crate::state::{
    JitRegistration, NewScaleSet, Runner, ScaleSetError, World, DEFAULT_GROUP_ID,
    DEFAULT_GROUP_NAME,
};

type S = State<Arc<Shared>>;
type Answer = Result<Response, ScaleSetError>;

fn ok(v: Value) -> Answer {
    Ok((StatusCode::OK, Json(v)).into_response())
}

fn listing(values: Vec<Value>) -> Answer {
    ok(json!({"count": values.len(), "value": values}))
}

/// 200 with the scale set as the service shows it.
fn set_answer(w: &World, tenant: u64, id: u64) -> Answer {
    let url = w.scale.service_url(tenant);
    ok(w.scale_set_json(w.scale_set(tenant, id)?, &url))
}

fn parse(body: &Bytes) -> Result<Value, ScaleSetError> {
    serde_json::from_slice(body).map_err(|e| ScaleSetError::Invalid(format!("invalid JSON: {e}")))
}

#[derive(Deserialize)]
pub(super) struct GroupQuery {
    #[serde(rename = "groupName")]
    group_name: Option<String>,
}

/// `GET _apis/runtime/runnergroups/?groupName=`: "Default" (any case) or nothing.
pub(super) async fn runner_groups(State(s): S, _: Admin, Query(q): Query<GroupQuery>) -> Answer {
    let size = s.lock().runners.len();
    let default = json!({"id": DEFAULT_GROUP_ID, "name": DEFAULT_GROUP_NAME, "size": size,
                         "isDefaultGroup": true});
    match q.group_name {
        Some(n) if !n.eq_ignore_ascii_case(DEFAULT_GROUP_NAME) => listing(vec![]),
        _ => listing(vec![default]),
    }
}

#[derive(Deserialize)]
pub(super) struct SetQuery {
    #[serde(rename = "runnerGroupId")]
    runner_group_id: Option<u64>,
    name: Option<String>,
}

/// `GET _apis/runtime/runnerscalesets?runnerGroupId=&name=`.
pub(super) async fn list(State(s): S, admin: Admin, Query(q): Query<SetQuery>) -> Answer {
    let w = s.lock();
    let url = w.scale.service_url(admin.tenant);
    let in_group = q.runner_group_id.is_none_or(|g| g == DEFAULT_GROUP_ID);
    let sets: Vec<Value> = w
        .scale
        .sets
        .values()
        .filter(|set| set.tenant == admin.tenant && in_group)
        .filter(|set| {
            q.name
                .as_deref()
                .is_none_or(|n| set.name.eq_ignore_ascii_case(n))
        })
        .map(|set| w.scale_set_json(set, &url))
        .collect();
    listing(sets)
}

/// The group a create names: `runnerGroupId`, else `runnerGroupName`, else Default.
fn group_of(v: &Value) -> Result<u64, ScaleSetError> {
    if let Some(id) = v["runnerGroupId"].as_u64().filter(|&id| id != 0) {
        return Ok(id);
    }
    match v["runnerGroupName"].as_str() {
        Some(n) if !n.is_empty() && !n.eq_ignore_ascii_case(DEFAULT_GROUP_NAME) => Err(
            ScaleSetError::Invalid(format!("runner group {n:?} does not exist")),
        ),
        _ => Ok(DEFAULT_GROUP_ID),
    }
}

/// `POST _apis/runtime/runnerscalesets`: 200 with the created set.
pub(super) async fn create(State(s): S, admin: Admin, body: Bytes) -> Answer {
    let v = parse(&body)?;
    let labels = v["labels"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|l| l["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let spec = NewScaleSet {
        name: v["name"].as_str().unwrap_or_default().to_string(),
        group_id: group_of(&v)?,
        labels,
        disable_update: v["RunnerSetting"]["disableUpdate"]
            .as_bool()
            .unwrap_or(false),
    };
    s.mutate(|w| {
        let id = w.create_scale_set(admin.tenant, spec)?;
        set_answer(w, admin.tenant, id)
    })
}

/// `GET _apis/runtime/runnerscalesets/{id}`.
pub(super) async fn get_one(State(s): S, admin: Admin, Path((_, id)): Path<(u64, u64)>) -> Answer {
    set_answer(&s.lock(), admin.tenant, id)
}

/// `PATCH _apis/runtime/runnerscalesets/{id}`: 200 with the updated set.
pub(super) async fn update(
    State(s): S,
    admin: Admin,
    Path((_, id)): Path<(u64, u64)>,
    body: Bytes,
) -> Answer {
    let v = parse(&body)?;
    s.mutate(|w| {
        w.update_scale_set(admin.tenant, id, &v)?;
        set_answer(w, admin.tenant, id)
    })
}

/// `DELETE _apis/runtime/runnerscalesets/{id}`: 204.
pub(super) async fn delete(State(s): S, admin: Admin, Path((_, id)): Path<(u64, u64)>) -> Answer {
    s.mutate(|w| w.delete_scale_set(admin.tenant, id))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// `POST _apis/runtime/runnerscalesets/{id}/generatejitconfig` `{name, workFolder}`.
pub(super) async fn jit(
    State(s): S,
    admin: Admin,
    Path((_, id)): Path<(u64, u64)>,
    body: Bytes,
) -> Answer {
    let v = parse(&body)?;
    let name = match v["name"].as_str() {
        Some(n) if !n.trim().is_empty() => n.to_string(),
        _ => return Err(ScaleSetError::Invalid("the runner name is required".into())),
    };
    let work_folder = match v["workFolder"].as_str() {
        Some(f) if !f.is_empty() => f.to_string(),
        _ => "_work".to_string(),
    };
    let urls = (s.runner_base_url.as_str(), s.base_url.as_str());
    s.mutate(|w| {
        let set = w.scale_set(admin.tenant, id)?;
        let reg = JitRegistration {
            scope: set.scope.clone(),
            name: name.clone(),
            labels: set.labels.clone(),
            work_folder,
            git_hub_path: set.scope.describe(),
            scale_set: Some(id),
        };
        let (runner_id, encoded) = w.issue_jit(reg, urls).map_err(|e| match e {
            SimError::DuplicateRunner(n) => ScaleSetError::AgentExists(n),
            other => ScaleSetError::Invalid(other.to_string()),
        })?;
        *w.counters.scaleset.runners_per_set.entry(id).or_default() += 1;
        let runner = json!({"id": runner_id, "name": name, "runnerScaleSetId": id});
        ok(json!({"runner": runner, "encodedJITConfig": encoded}))
    })
}

fn agent_json(r: &Runner) -> Value {
    json!({"id": r.id, "name": r.name, "runnerScaleSetId": r.scale_set.unwrap_or(0)})
}

/// Whether runner `r` is registered in the tenant's org or repository.
fn in_tenant(w: &World, tenant: u64, r: &Runner) -> bool {
    w.tenant_scope(tenant)
        .is_some_and(|s| s.describe().eq_ignore_ascii_case(&r.scope.describe()))
}

/// The runner `id` if it is registered in the tenant's org or repository.
fn tenant_runner(w: &World, tenant: u64, id: u64) -> Result<&Runner, ScaleSetError> {
    match w.runners.get(&id) {
        Some(r) if in_tenant(w, tenant, r) => Ok(r),
        _ => Err(ScaleSetError::AgentNotFound(id)),
    }
}

/// `GET _apis/distributedtask/pools/0/agents/{id}`.
pub(super) async fn agent(State(s): S, admin: Admin, Path((_, id)): Path<(u64, u64)>) -> Answer {
    let w = s.lock();
    ok(agent_json(tenant_runner(&w, admin.tenant, id)?))
}

/// `DELETE _apis/distributedtask/pools/0/agents/{id}`: 204; a busy runner cannot go.
pub(super) async fn remove_agent(
    State(s): S,
    admin: Admin,
    Path((_, id)): Path<(u64, u64)>,
) -> Answer {
    s.mutate(|w| {
        let r = tenant_runner(w, admin.tenant, id)?;
        if r.job.is_some() {
            return Err(ScaleSetError::JobStillRunning(r.name.clone()));
        }
        w.runners.remove(&id);
        Ok(StatusCode::NO_CONTENT.into_response())
    })
}

#[derive(Deserialize)]
pub(super) struct AgentQuery {
    #[serde(rename = "agentName")]
    agent_name: Option<String>,
}

/// `GET _apis/distributedtask/pools/0/agents?agentName=`.
pub(super) async fn agents_by_name(
    State(s): S,
    admin: Admin,
    Query(q): Query<AgentQuery>,
) -> Answer {
    let w = s.lock();
    let agents: Vec<Value> = w
        .runners
        .values()
        .filter(|r| in_tenant(&w, admin.tenant, r))
        .filter(|r| {
            q.agent_name
                .as_deref()
                .is_none_or(|n| r.name.eq_ignore_ascii_case(n))
        })
        .map(agent_json)
        .collect();
    listing(agents)
}
