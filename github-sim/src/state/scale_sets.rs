//! Runner scale sets in the world (the Actions service's side of the scale set protocol): the
//! sets (unique by name within a runner group, only "Default" = 1 exists), their one message
//! session each (a queue token that can expire, a TTL for abandoned sessions), and the
//! service's errors as data. Jobs, offers and messages are in `scale_jobs`.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{key, random_token, Scope, World};
use crate::faults::{Faults, ScaleSetFaults};
use crate::time::now_iso;

/// The only runner group: GitHub's "Default".
pub const DEFAULT_GROUP_ID: u64 = 1;
pub const DEFAULT_GROUP_NAME: &str = "Default";

/// An Actions service refusal; `crate::scaleset` turns it into `{typeName, message}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScaleSetError {
    NotFound(String),
    SessionConflict(String),
    SessionNotFound,
    QueueTokenExpired,
    AgentExists(String),
    AgentNotFound(u64),
    JobStillRunning(String),
    ScaleSetExists(String),
    GroupNotFound(u64),
    Invalid(String),
}

/// Everything the scale set protocol adds to the world.
#[derive(Default)]
pub struct ScaleSetWorld {
    pub sets: BTreeMap<u64, ScaleSet>,
    pub requests: BTreeMap<u64, JobRequest>,
    /// The live request of each workflow job routed to a scale set.
    pub by_job: HashMap<u64, u64>,
    /// Each routed job's GUID (`jobId` in the messages), the same across re-offers.
    pub job_guids: HashMap<u64, String>,
    next_set_id: u64,
    next_request_id: u64,
    pub faults: ScaleSetFaults,
    /// The simulator's root URL (no `/api/v3`), where the Actions service lives.
    pub root_url: String,
    /// The key that signs the Actions service's admin tokens (random per simulator).
    pub admin_key: Vec<u8>,
}

impl ScaleSetWorld {
    pub fn new(root_url: String) -> Self {
        Self {
            root_url,
            admin_key: rand::random::<[u8; 32]>().to_vec(),
            ..Self::default()
        }
    }

    /// The Actions service base URL of a tenant (ends in `/`).
    pub fn service_url(&self, tenant: u64) -> String {
        format!("{}/_actions/{tenant}/", self.root_url)
    }

    /// Runner request ids: their own number space, not the workflow job ids.
    pub fn next_request_id(&mut self) -> u64 {
        self.next_request_id += 1;
        self.next_request_id
    }
}

pub struct ScaleSet {
    pub id: u64,
    pub name: String,
    pub labels: Vec<String>,
    pub scope: Scope,
    /// The tenant (org or repository id) whose Actions service URL it lives under.
    pub tenant: u64,
    pub created_on: String,
    pub disable_update: bool,
    pub session: Option<Session>,
    /// Job messages not yet put into a queue message, oldest first.
    pub events: Vec<Value>,
    /// Queue messages made and not acknowledged, oldest first (ids increase per set and
    /// survive sessions: a new session gets what the last one left unacknowledged).
    pub outbox: VecDeque<QueueMessage>,
    pub next_message_id: u64,
    /// The last message acknowledged (what the redelivery fault sends again).
    pub last_acked: Option<QueueMessage>,
}

pub struct Session {
    pub id: String,
    pub owner: String,
    pub queue_token: String,
    pub token_expired: bool,
    pub last_seen: Instant,
    /// The last `X-ScaleSetMaxCapacity` the listener sent (`None`: no limit).
    pub capacity: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct QueueMessage {
    pub id: u64,
    /// The JSON array of job messages, as a string (the service's batching).
    pub body: String,
    pub statistics: Value,
}

impl QueueMessage {
    pub fn to_json(&self) -> Value {
        json!({"messageId": self.id, "messageType": "RunnerScaleSetJobMessages",
               "body": self.body, "statistics": self.statistics})
    }
}

pub struct JobRequest {
    pub id: u64,
    pub job_id: u64,
    pub set_id: u64,
    pub state: RequestState,
    /// Re-offers this job went through before this request.
    pub reoffers: u32,
    pub offered_at: Option<Instant>,
    /// The queue message that carried its `JobAvailable`.
    pub offer_message: Option<u64>,
    pub scale_set_assign_time: Option<String>,
    pub runner_assign_time: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestState {
    /// Routed, not offered yet (no session, or no capacity).
    Pending,
    Offered,
    Acquired,
    Running(u64),
    Done,
}

/// What `POST _apis/runtime/runnerscalesets` asks for.
pub struct NewScaleSet {
    pub name: String,
    pub group_id: u64,
    pub labels: Vec<String>,
    pub disable_update: bool,
}

impl World {
    /// The org or repository a tenant id names.
    pub fn tenant_scope(&self, tenant: u64) -> Option<Scope> {
        if let Some(o) = self.orgs.values().find(|o| o.id == tenant) {
            return Some(Scope::Org(o.login.clone()));
        }
        self.repos
            .values()
            .find(|r| r.id == tenant)
            .map(|r| Scope::Repo {
                owner: r.owner.clone(),
                name: r.name.clone(),
            })
    }

    /// The tenant id of an org or repository.
    pub fn scope_tenant(&self, scope: &Scope) -> Option<u64> {
        match scope {
            Scope::Org(o) => self.orgs.get(&key(o)).map(|o| o.id),
            Scope::Repo { owner, name } => self
                .repos
                .get(&key(&format!("{owner}/{name}")))
                .map(|r| r.id),
        }
    }

    pub fn create_scale_set(
        &mut self,
        tenant: u64,
        spec: NewScaleSet,
    ) -> Result<u64, ScaleSetError> {
        let scope = self
            .tenant_scope(tenant)
            .ok_or_else(|| ScaleSetError::NotFound(format!("tenant {tenant}")))?;
        if spec.group_id != DEFAULT_GROUP_ID {
            return Err(ScaleSetError::GroupNotFound(spec.group_id));
        }
        if spec.name.trim().is_empty() {
            return Err(ScaleSetError::Invalid(
                "runner scale set name is required".into(),
            ));
        }
        let taken = self
            .scale
            .sets
            .values()
            .any(|s| s.tenant == tenant && s.name.eq_ignore_ascii_case(&spec.name));
        if taken {
            return Err(ScaleSetError::ScaleSetExists(spec.name));
        }
        self.scale.next_set_id += 1;
        let id = self.scale.next_set_id;
        let labels = if spec.labels.is_empty() {
            vec![spec.name.clone()]
        } else {
            spec.labels
        };
        self.scale.sets.insert(
            id,
            ScaleSet {
                id,
                name: spec.name,
                labels,
                scope,
                tenant,
                created_on: now_iso(),
                disable_update: spec.disable_update,
                session: None,
                events: Vec::new(),
                outbox: VecDeque::new(),
                next_message_id: 0,
                last_acked: None,
            },
        );
        self.counters.scaleset.scale_sets_created += 1;
        Ok(id)
    }

    /// The set with `id` under `tenant`.
    pub fn scale_set(&self, tenant: u64, id: u64) -> Result<&ScaleSet, ScaleSetError> {
        match self.scale.sets.get(&id) {
            Some(s) if s.tenant == tenant => Ok(s),
            _ => Err(ScaleSetError::NotFound(format!("runner scale set {id}"))),
        }
    }

    pub(super) fn scale_set_mut(
        &mut self,
        tenant: u64,
        id: u64,
    ) -> Result<&mut ScaleSet, ScaleSetError> {
        match self.scale.sets.get_mut(&id) {
            Some(s) if s.tenant == tenant => Ok(s),
            _ => Err(ScaleSetError::NotFound(format!("runner scale set {id}"))),
        }
    }

    /// The service's JSON of a scale set, with its statistics.
    pub fn scale_set_json(&self, set: &ScaleSet, service_url: &str) -> Value {
        let labels: Vec<Value> = set
            .labels
            .iter()
            .map(|l| json!({"type": "System", "name": l}))
            .collect();
        json!({
            "id": set.id, "name": set.name, "runnerGroupId": DEFAULT_GROUP_ID,
            "runnerGroupName": DEFAULT_GROUP_NAME, "labels": labels,
            "RunnerSetting": {"disableUpdate": set.disable_update},
            "createdOn": set.created_on,
            "runnerJitConfigUrl": format!("{service_url}_apis/runtime/runnerscalesets/{}/generatejitconfig", set.id),
            "statistics": self.scale_set_statistics(set.id),
        })
    }

    /// `PATCH`: name, labels and the runner setting, when given.
    pub fn update_scale_set(
        &mut self,
        tenant: u64,
        id: u64,
        patch: &Value,
    ) -> Result<(), ScaleSetError> {
        if let Some(name) = patch.get("name").and_then(Value::as_str) {
            let taken = self
                .scale
                .sets
                .values()
                .any(|s| s.id != id && s.tenant == tenant && s.name.eq_ignore_ascii_case(name));
            if taken {
                return Err(ScaleSetError::ScaleSetExists(name.to_string()));
            }
        }
        let set = self.scale_set_mut(tenant, id)?;
        if let Some(name) = patch.get("name").and_then(Value::as_str) {
            set.name = name.to_string();
        }
        if let Some(labels) = patch.get("labels").and_then(Value::as_array) {
            let names: Vec<String> = labels
                .iter()
                .filter_map(|l| l["name"].as_str().map(str::to_string))
                .collect();
            if !names.is_empty() {
                set.labels = names;
            }
        }
        if let Some(d) = patch["RunnerSetting"]["disableUpdate"].as_bool() {
            set.disable_update = d;
        }
        Ok(())
    }

    /// Deletes a set, its session and its idle runners; its jobs go back to the queue.
    pub fn delete_scale_set(&mut self, tenant: u64, id: u64) -> Result<(), ScaleSetError> {
        let set = self.scale_set(tenant, id)?;
        if set.session.is_some() {
            self.counters.scaleset.sessions_active -= 1;
        }
        self.scale.sets.remove(&id);
        self.release_requests_of(id);
        self.runners
            .retain(|_, r| r.scale_set != Some(id) || r.job.is_some());
        self.counters.scaleset.scale_sets_deleted += 1;
        Ok(())
    }

    /// Opens the set's message session: 409 while another one is alive.
    pub fn create_session(
        &mut self,
        tenant: u64,
        id: u64,
        owner: &str,
    ) -> Result<(), ScaleSetError> {
        let fault = Faults::take(&mut self.scale.faults.session_conflicts);
        let set = self.scale_set_mut(tenant, id)?;
        if fault || set.session.is_some() {
            let message = format!(
                "The scale set {id} already has an active session for owner {}.",
                set.session
                    .as_ref()
                    .map_or("(injected conflict)", |s| s.owner.as_str())
            );
            self.counters.scaleset.session_conflicts += 1;
            return Err(ScaleSetError::SessionConflict(message));
        }
        set.session = Some(Session {
            id: uuid::Uuid::new_v4().to_string(),
            owner: owner.to_string(),
            queue_token: random_token("mq_"),
            token_expired: false,
            last_seen: Instant::now(),
            capacity: None,
        });
        self.counters.scaleset.sessions_created += 1;
        self.counters.scaleset.sessions_active += 1;
        self.reoffer_acked_offers(id);
        Ok(())
    }

    /// The set's live session with id `sid`.
    pub fn session_of(&self, tenant: u64, id: u64, sid: &str) -> Result<&Session, ScaleSetError> {
        match &self.scale_set(tenant, id)?.session {
            Some(s) if s.id.eq_ignore_ascii_case(sid) => Ok(s),
            _ => Err(ScaleSetError::SessionNotFound),
        }
    }

    /// A poll that ends empty still counts as hearing from the listener.
    pub fn touch_session(&mut self, tenant: u64, id: u64, sid: &str) {
        if let Ok(s) = self.session_mut(tenant, id, sid) {
            s.last_seen = Instant::now();
        }
    }

    pub(super) fn session_mut(
        &mut self,
        tenant: u64,
        id: u64,
        sid: &str,
    ) -> Result<&mut Session, ScaleSetError> {
        match &mut self.scale_set_mut(tenant, id)?.session {
            Some(s) if s.id.eq_ignore_ascii_case(sid) => Ok(s),
            _ => Err(ScaleSetError::SessionNotFound),
        }
    }

    /// `PATCH` of a session: a new queue token.
    pub fn refresh_session(
        &mut self,
        tenant: u64,
        id: u64,
        sid: &str,
    ) -> Result<(), ScaleSetError> {
        let s = self.session_mut(tenant, id, sid)?;
        s.queue_token = random_token("mq_");
        s.token_expired = false;
        s.last_seen = Instant::now();
        self.counters.scaleset.sessions_refreshed += 1;
        Ok(())
    }

    pub fn delete_session(&mut self, tenant: u64, id: u64, sid: &str) -> Result<(), ScaleSetError> {
        self.session_of(tenant, id, sid)?;
        self.scale_set_mut(tenant, id)?.session = None;
        self.counters.scaleset.sessions_deleted += 1;
        self.counters.scaleset.sessions_active -= 1;
        Ok(())
    }

    /// Ends sessions not heard from within `ttl` (a listener that crashed without DELETE).
    pub fn expire_sessions(&mut self, ttl: Duration) -> bool {
        let mut expired = 0;
        for set in self.scale.sets.values_mut() {
            if set
                .session
                .as_ref()
                .is_some_and(|s| s.last_seen.elapsed() >= ttl)
            {
                set.session = None;
                expired += 1;
            }
        }
        self.counters.scaleset.sessions_expired += expired;
        self.counters.scaleset.sessions_active -= expired;
        expired > 0
    }

    /// Checks a message-queue call's token against the set's session (`sid`, or whichever is
    /// live when the path names none); the expired-token fault fires here.
    pub fn check_queue_token(
        &mut self,
        tenant: u64,
        id: u64,
        sid: Option<&str>,
        token: &str,
    ) -> Result<(), ScaleSetError> {
        let fault = Faults::take(&mut self.scale.faults.expire_queue_tokens);
        let set = self.scale_set_mut(tenant, id)?;
        let session = match (&mut set.session, sid) {
            (Some(s), Some(sid)) if s.id.eq_ignore_ascii_case(sid) => s,
            (Some(s), None) => s,
            _ => return Err(ScaleSetError::SessionNotFound),
        };
        if fault {
            session.token_expired = true;
        }
        if session.token_expired || session.queue_token != token {
            return Err(ScaleSetError::QueueTokenExpired);
        }
        session.last_seen = Instant::now();
        Ok(())
    }
}
