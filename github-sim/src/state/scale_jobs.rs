//! Workflow jobs through runner scale sets: a queued job whose labels a set covers becomes a
//! job request of that set (its own id space), offered (`JobAvailable`, within the session's
//! capacity), acquired (`JobAssigned`), taken by one of the set's runners (`JobStarted`) and
//! finished (`JobCompleted`). Job messages are batched into queue messages at poll time;
//! unacknowledged ones are delivered again. Also the statistics and the re-offer quirk.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::scale_sets::{JobRequest, QueueMessage, RequestState, ScaleSetError};
use super::{Job, JobStatus, World};
use crate::faults::Faults;
use crate::time::now_iso;

/// Go's zero time: what the service sends for a time that has not happened yet.
const NO_TIME: &str = "0001-01-01T00:00:00Z";
/// How many times the re-offer quirk gives a job back before it stays offered.
const MAX_REOFFERS: u32 = 3;

/// The service's `result` for a job's conclusion.
fn result_of(conclusion: &str) -> &'static str {
    match conclusion {
        "success" => "succeeded",
        "cancelled" => "canceled",
        _ => "failed",
    }
}

fn labels_within(set_labels: &[String], job_labels: &[String]) -> bool {
    job_labels
        .iter()
        .all(|j| set_labels.iter().any(|s| s.eq_ignore_ascii_case(j)))
}

impl World {
    /// The set a job goes to: one in scope of its repository whose labels include every
    /// `runs-on` label (case-insensitive); among several, the oldest (lowest id).
    pub fn matching_scale_set(&self, job: &Job) -> Option<u64> {
        let repo = self.repos.get(&job.repo_key)?;
        self.scale
            .sets
            .values()
            .find(|s| {
                s.scope.covers_repo(&repo.owner, &repo.name)
                    && labels_within(&s.labels, &job.labels)
            })
            .map(|s| s.id)
    }

    /// Gives every queued job a scale set covers, and no runner has, a pending request.
    pub fn route_jobs(&mut self) {
        if self.scale.sets.is_empty() {
            return;
        }
        let routed: Vec<(u64, u64)> = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued && j.runner_id.is_none())
            .filter(|j| !self.scale.by_job.contains_key(&j.id))
            .filter_map(|j| self.matching_scale_set(j).map(|s| (j.id, s)))
            .collect();
        for (job_id, set_id) in routed {
            self.new_request(job_id, set_id, 0);
        }
    }

    fn new_request(&mut self, job_id: u64, set_id: u64, reoffers: u32) -> u64 {
        let id = self.scale.next_request_id();
        self.scale
            .job_guids
            .entry(job_id)
            .or_insert_with(|| uuid::Uuid::new_v4().to_string());
        let request = JobRequest {
            id,
            job_id,
            set_id,
            state: RequestState::Pending,
            reoffers,
            offered_at: None,
            offer_message: None,
            scale_set_assign_time: None,
            runner_assign_time: None,
        };
        self.scale.requests.insert(id, request);
        self.scale.by_job.insert(job_id, id);
        id
    }

    /// One job message (`kind` = messageType) about request `req_id`, `extra` merged in.
    fn set_job_message(&self, req_id: u64, kind: &str, extra: Value) -> Value {
        let Some(req) = self.scale.requests.get(&req_id) else {
            return Value::Null;
        };
        let job = self.jobs.get(&req.job_id);
        let repo = job.and_then(|j| self.repos.get(&j.repo_key));
        let run = job.and_then(|j| self.runs.get(&j.run_id));
        let (owner, name) = repo.map_or((String::new(), String::new()), |r| {
            (r.owner.clone(), r.name.clone())
        });
        let workflow = run.map_or(String::new(), |r| r.name.clone());
        let mut m = json!({
            "messageType": kind,
            "runnerRequestId": req.id,
            "repositoryName": name,
            "ownerName": owner,
            "jobId": self.scale.job_guids.get(&req.job_id).cloned().unwrap_or_default(),
            "jobWorkflowRef": format!("{owner}/{name}/.github/workflows/{workflow}.yml@refs/heads/main"),
            "jobDisplayName": job.map_or(String::new(), |j| j.name.clone()),
            "workflowRunId": job.map_or(0, |j| j.run_id),
            "eventName": "push",
            "requestLabels": job.map_or(Vec::new(), |j| j.labels.clone()),
            "queueTime": job.map_or(NO_TIME.to_string(), |j| j.created_at.clone()),
            "scaleSetAssignTime": req.scale_set_assign_time.as_deref().unwrap_or(NO_TIME),
            "runnerAssignTime": req.runner_assign_time.as_deref().unwrap_or(NO_TIME),
            "finishTime": NO_TIME,
        });
        if let (Some(m), Value::Object(extra)) = (m.as_object_mut(), extra) {
            m.extend(extra);
        }
        m
    }

    fn push_event(&mut self, set_id: u64, message: Value) {
        if let Some(set) = self.scale.sets.get_mut(&set_id) {
            set.events.push(message);
        }
    }

    /// The set's statistics; `totalAssignedJobs` counts acquired jobs not completed, running
    /// ones included (what a listener scales on).
    pub fn scale_set_statistics(&self, set_id: u64) -> Value {
        let count = |f: &dyn Fn(RequestState) -> bool| {
            self.scale
                .requests
                .values()
                .filter(|r| r.set_id == set_id && f(r.state))
                .count()
        };
        let available = count(&|s| s == RequestState::Offered);
        let acquired = count(&|s| s == RequestState::Acquired);
        let running = count(&|s| matches!(s, RequestState::Running(_)));
        let registered = self
            .runners
            .values()
            .filter(|r| r.scale_set == Some(set_id))
            .count();
        let busy = self
            .runners
            .values()
            .filter(|r| r.scale_set == Some(set_id) && r.job.is_some())
            .count();
        json!({
            "totalAvailableJobs": available, "totalAcquiredJobs": acquired,
            "totalAssignedJobs": acquired + running, "totalRunningJobs": running,
            "totalRegisteredRunners": registered, "totalBusyRunners": busy,
            "totalIdleRunners": registered - busy,
        })
    }

    /// One look at the queue for a poll: the oldest unacknowledged message after
    /// `last_id`, after offering what the capacity allows; `None`: nothing to say yet.
    pub fn poll_queue(
        &mut self,
        (tenant, set_id): (u64, u64),
        sid: &str,
        token: &str,
        last_id: Option<u64>,
        capacity: Option<u32>,
    ) -> Result<Option<Value>, ScaleSetError> {
        self.check_queue_token(tenant, set_id, Some(sid), token)?;
        self.session_mut(tenant, set_id, sid)?.capacity = capacity;
        if let Some(last) = last_id {
            self.ack_through(set_id, last);
        }
        if Faults::take(&mut self.scale.faults.redeliver_messages) {
            if let Some(m) = self
                .scale
                .sets
                .get(&set_id)
                .and_then(|s| s.last_acked.clone())
            {
                self.counters.scaleset.messages_delivered += 1;
                self.counters.scaleset.messages_redelivered += 1;
                return Ok(Some(m.to_json()));
            }
        }
        self.route_jobs();
        self.offer_jobs(set_id, capacity);
        self.seal_message(set_id);
        let next = self
            .scale
            .sets
            .get(&set_id)
            .and_then(|s| s.outbox.front().cloned());
        if next.is_some() {
            self.counters.scaleset.messages_delivered += 1;
        }
        Ok(next.map(|m| m.to_json()))
    }

    /// `lastMessageId` acknowledges every message up to it.
    fn ack_through(&mut self, set_id: u64, last: u64) {
        let Some(set) = self.scale.sets.get_mut(&set_id) else {
            return;
        };
        while set.outbox.front().is_some_and(|m| m.id <= last) {
            set.last_acked = set.outbox.pop_front();
        }
    }

    /// Offers pending requests while assigned + offered stays within `capacity`.
    fn offer_jobs(&mut self, set_id: u64, capacity: Option<u32>) {
        let in_hand = self
            .scale
            .requests
            .values()
            .filter(|r| r.set_id == set_id)
            .filter(|r| {
                matches!(
                    r.state,
                    RequestState::Offered | RequestState::Acquired | RequestState::Running(_)
                )
            })
            .count();
        let room = capacity.map_or(usize::MAX, |c| (c as usize).saturating_sub(in_hand));
        let pending: Vec<u64> = self
            .scale
            .requests
            .values()
            .filter(|r| r.set_id == set_id && r.state == RequestState::Pending)
            .map(|r| r.id)
            .take(room)
            .collect();
        let Some(tenant) = self.scale.sets.get(&set_id).map(|s| s.tenant) else {
            return;
        };
        let acquire_url = format!(
            "{}_apis/runtime/runnerscalesets/{set_id}/acquirejobs",
            self.scale.service_url(tenant)
        );
        for id in pending {
            if let Some(r) = self.scale.requests.get_mut(&id) {
                r.state = RequestState::Offered;
                r.offered_at = Some(Instant::now());
                r.scale_set_assign_time = Some(now_iso());
            }
            let m = self.set_job_message(id, "JobAvailable", json!({"acquireJobUrl": acquire_url}));
            self.push_event(set_id, m);
            self.counters.scaleset.jobs_offered += 1;
        }
    }

    /// Batches the set's pending job messages into one queue message.
    fn seal_message(&mut self, set_id: u64) {
        let statistics = self.scale_set_statistics(set_id);
        let Some(set) = self.scale.sets.get_mut(&set_id) else {
            return;
        };
        if set.events.is_empty() {
            return;
        }
        set.next_message_id += 1;
        let id = set.next_message_id;
        let events = std::mem::take(&mut set.events);
        for e in &events {
            if e["messageType"] == "JobAvailable" {
                if let Some(r) = e["runnerRequestId"]
                    .as_u64()
                    .and_then(|r| self.scale.requests.get_mut(&r))
                {
                    r.offer_message = Some(id);
                }
            }
        }
        let body = Value::Array(events).to_string();
        if let Some(set) = self.scale.sets.get_mut(&set_id) {
            set.outbox.push_back(QueueMessage {
                id,
                body,
                statistics,
            });
        }
    }

    /// `DELETE {queue}/{message_id}`: the acknowledgement (unknown ids are already gone).
    pub fn ack_message(
        &mut self,
        (tenant, set_id): (u64, u64),
        sid: &str,
        token: &str,
        message_id: u64,
    ) -> Result<(), ScaleSetError> {
        self.check_queue_token(tenant, set_id, Some(sid), token)?;
        let set = self.scale_set_mut(tenant, set_id)?;
        if let Some(pos) = set.outbox.iter().position(|m| m.id == message_id) {
            set.last_acked = set.outbox.remove(pos);
            self.counters.scaleset.messages_acked += 1;
        }
        Ok(())
    }

    /// `acquirejobs`: the offered (or already acquired) requests among `ids` become the set's.
    pub fn acquire_jobs(
        &mut self,
        (tenant, set_id): (u64, u64),
        token: &str,
        ids: &[u64],
    ) -> Result<Vec<u64>, ScaleSetError> {
        self.check_queue_token(tenant, set_id, None, token)?;
        let mut acquired = Vec::new();
        for &id in ids {
            match self.scale.requests.get(&id) {
                Some(r) if r.set_id == set_id && r.state == RequestState::Offered => {
                    acquired.push(id)
                }
                Some(r)
                    if r.set_id == set_id
                        && matches!(r.state, RequestState::Acquired | RequestState::Running(_)) =>
                {
                    acquired.push(id)
                }
                _ => {}
            }
        }
        if !acquired.is_empty() && Faults::take(&mut self.scale.faults.acquire_fewer) {
            if let Some(dropped) = acquired.pop() {
                if let Some(r) = self.scale.requests.get_mut(&dropped) {
                    if r.state == RequestState::Offered {
                        r.state = RequestState::Pending;
                    }
                }
            }
        }
        for &id in &acquired {
            let newly = self
                .scale
                .requests
                .get_mut(&id)
                .filter(|r| r.state == RequestState::Offered);
            if let Some(r) = newly {
                r.state = RequestState::Acquired;
                let m = self.set_job_message(id, "JobAssigned", json!({}));
                self.push_event(set_id, m);
                self.counters.scaleset.jobs_acquired += 1;
            }
        }
        Ok(acquired)
    }

    /// The job the set's next runner takes: its oldest acquired request's.
    pub(super) fn next_acquired_job(&self, set_id: u64) -> Option<u64> {
        self.scale
            .requests
            .values()
            .find(|r| r.set_id == set_id && r.state == RequestState::Acquired)
            .map(|r| r.job_id)
    }

    /// A runner of the job's set took it: `JobStarted`.
    pub(super) fn scale_job_started(&mut self, job_id: u64, runner_id: u64) {
        let Some(&req_id) = self.scale.by_job.get(&job_id) else {
            return;
        };
        let name = self
            .runners
            .get(&runner_id)
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let Some(r) = self.scale.requests.get_mut(&req_id) else {
            return;
        };
        r.state = RequestState::Running(runner_id);
        r.runner_assign_time = Some(now_iso());
        let set_id = r.set_id;
        let m = self.set_job_message(
            req_id,
            "JobStarted",
            json!({"runnerId": runner_id, "runnerName": name}),
        );
        self.push_event(set_id, m);
    }

    /// The job ended (`conclusion` as GitHub says it): `JobCompleted` if the set had acquired
    /// it (without a runner when none took it); an offer not acquired is withdrawn.
    pub(super) fn scale_job_finished(&mut self, job_id: u64, conclusion: &str) {
        let Some(req_id) = self.scale.by_job.remove(&job_id) else {
            return;
        };
        let Some(r) = self.scale.requests.get_mut(&req_id) else {
            return;
        };
        let before = std::mem::replace(&mut r.state, RequestState::Done);
        let set_id = r.set_id;
        let (runner_id, runner_name) = match before {
            RequestState::Running(id) => (
                id,
                self.jobs
                    .get(&job_id)
                    .and_then(|j| j.runner_name.clone())
                    .unwrap_or_default(),
            ),
            RequestState::Acquired => (0, String::new()),
            _ => return,
        };
        let extra = json!({"result": result_of(conclusion), "runnerId": runner_id, "runnerName": runner_name, "finishTime": now_iso()});
        let m = self.set_job_message(req_id, "JobCompleted", extra);
        self.push_event(set_id, m);
    }

    /// A deleted set's live requests end; their jobs are routed anew.
    pub(super) fn release_requests_of(&mut self, set_id: u64) {
        for r in self
            .scale
            .requests
            .values_mut()
            .filter(|r| r.set_id == set_id)
        {
            if !matches!(r.state, RequestState::Running(_)) {
                r.state = RequestState::Done;
            }
        }
        let requests = &self.scale.requests;
        self.scale.by_job.retain(|_, req| {
            requests
                .get(req)
                .is_some_and(|r| r.state != RequestState::Done)
        });
    }

    /// On a new session: offers whose message was acknowledged but that were never acquired
    /// (the last listener died between the two) are offered again.
    pub(super) fn reoffer_acked_offers(&mut self, set_id: u64) {
        let Some(set) = self.scale.sets.get(&set_id) else {
            return;
        };
        let unacked: Vec<u64> = set.outbox.iter().map(|m| m.id).collect();
        for r in self.scale.requests.values_mut() {
            let acked = r.offer_message.is_some_and(|m| !unacked.contains(&m));
            if r.set_id == set_id && r.state == RequestState::Offered && acked {
                r.state = RequestState::Pending;
            }
        }
    }

    /// The re-offer quirk (when `reoffer_after_ms` is set): an offer not acquired in time comes
    /// back as `JobAssigned` + `JobCompleted` "canceled" and is offered again under a new
    /// request id, at most three times per job. True if anything changed.
    pub fn reoffer_sweep(&mut self) -> bool {
        let after = self.scale.faults.reoffer_after_ms;
        if after == 0 {
            return false;
        }
        let stale: Vec<u64> = self
            .scale
            .requests
            .values()
            .filter(|r| r.state == RequestState::Offered && r.reoffers < MAX_REOFFERS)
            .filter(|r| {
                r.offered_at
                    .is_some_and(|t| t.elapsed() >= Duration::from_millis(after))
            })
            .map(|r| r.id)
            .collect();
        for id in &stale {
            let Some((job_id, set_id, reoffers)) = self.scale.requests.get_mut(id).map(|r| {
                r.state = RequestState::Done;
                (r.job_id, r.set_id, r.reoffers)
            }) else {
                continue;
            };
            let assigned = self.set_job_message(*id, "JobAssigned", json!({}));
            let completed = self.set_job_message(*id, "JobCompleted", json!({"result": "canceled", "runnerId": 0, "runnerName": "", "finishTime": now_iso()}));
            self.push_event(set_id, assigned);
            self.push_event(set_id, completed);
            self.new_request(job_id, set_id, reoffers + 1);
            self.counters.scaleset.jobs_reoffered += 1;
        }
        !stale.is_empty()
    }
}
