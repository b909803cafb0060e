//! Data the simulator keeps and shows: world records, workflow specs, and the views tests read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A GitHub App registered with the simulator.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AppSpec {
    pub id: u64,
    #[serde(default = "default_app_slug")]
    pub slug: String,
    pub public_key_pem: String,
}

fn default_app_slug() -> String {
    "spank-gha".into()
}

/// An installation of an App on an org (or a repo owner).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct InstallationSpec {
    pub app_id: u64,
    pub account: String,
    /// `None` = what an autoscaler needs (see API.md).
    #[serde(default)]
    pub permissions: Option<BTreeMap<String, String>>,
}

/// Where webhooks go.
#[derive(Clone, Serialize, Deserialize)]
pub struct WebhookTarget {
    pub url: String,
    pub secret: String,
}

impl std::fmt::Debug for WebhookTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret never reaches a log.
        f.debug_struct("WebhookTarget")
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

/// One job of a workflow to enqueue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    pub name: String,
    #[serde(alias = "runs-on")]
    pub runs_on: Vec<String>,
    /// Step command, run by the fake runner with `sh -c` after the `duration_ms` sleep.
    #[serde(default)]
    pub command: Option<String>,
    /// Simulated work time the runner sleeps before the command.
    #[serde(default)]
    pub duration_ms: u64,
    /// Names of jobs of the same workflow this one waits for.
    #[serde(default)]
    pub needs: Vec<String>,
    /// A protected environment: the job waits (status and webhook `waiting`) until approved
    /// (`Sim::approve_job`, `POST /_sim/jobs/{id}/approve`), then is queued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// Scenario files only: expand into `count` jobs named `<name>-1..N`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u32>,
}

impl JobSpec {
    /// A job with no command and no dependencies.
    pub fn new(name: impl Into<String>, runs_on: &[&str]) -> Self {
        Self {
            name: name.into(),
            runs_on: runs_on.iter().map(|l| l.to_string()).collect(),
            command: None,
            duration_ms: 0,
            needs: Vec::new(),
            environment: None,
            count: None,
        }
    }
}

/// A workflow run to enqueue.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowSpec {
    /// `owner/name`.
    pub repo: String,
    pub name: String,
    pub jobs: Vec<JobSpec>,
    /// Scenario files only: wait this long after start before enqueueing.
    #[serde(default)]
    pub delay_ms: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunCreated {
    pub run_id: u64,
    pub job_ids: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobView {
    pub id: u64,
    pub run_id: u64,
    pub name: String,
    pub repo: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub labels: Vec<String>,
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    /// GitHub's own reason for a failure it decided (the job's annotation), e.g. a runner
    /// that lost communication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotation: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunView {
    pub id: u64,
    pub repo: String,
    pub name: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub job_ids: Vec<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct RunnerView {
    pub id: u64,
    pub name: String,
    pub labels: Vec<String>,
    pub status: String,
    pub busy: bool,
    pub ephemeral: bool,
    /// `org` or `owner/repo` the runner is registered at.
    pub scope: String,
    pub job_id: Option<u64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct SimSnapshot {
    pub runs: Vec<RunView>,
    pub jobs: Vec<JobView>,
    pub runners: Vec<RunnerView>,
}

impl SimSnapshot {
    pub fn job(&self, id: u64) -> Option<&JobView> {
        self.jobs.iter().find(|j| j.id == id)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct EndpointCount {
    /// Every call answered, including 304s and errors.
    pub calls: u64,
    /// Calls answered 304 Not Modified (free).
    pub not_modified: u64,
    /// Calls answered with a 4xx/5xx.
    pub errors: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Counters {
    /// Key: `"<METHOD> <route template>"`, e.g. `"GET /repos/{owner}/{repo}/actions/jobs/{job_id}"`.
    pub api: BTreeMap<String, EndpointCount>,
    pub deliveries_sent: u64,
    pub deliveries_failed: u64,
    pub deliveries_dropped: u64,
    pub deliveries_duplicated: u64,
    pub jit_configs_issued: u64,
    pub jit_configs_expired: u64,
    pub runner_sessions: u64,
    /// The runner scale set protocol, counted apart from the REST calls above.
    #[serde(default)]
    pub scaleset: ScaleSetCounters,
    /// Every workflow job a runner took: which runners (names, in order) and how many times it
    /// was assigned to one. A job that ran once has exactly one entry and `assignments == 1`.
    #[serde(default)]
    pub job_runs: BTreeMap<u64, JobRun>,
    /// The REST calls of `api` again, per account the path names (`/orgs/{org}/..`,
    /// `/repos/{owner}/..`; `""` for the rest, e.g. `/app/..`), then per endpoint: what each
    /// organization's runners and repositories cost, when several share one simulator.
    #[serde(default)]
    pub api_by_account: BTreeMap<String, BTreeMap<String, EndpointCount>>,
    /// Every injected fault that fired, by kind (`rest server error`, `webhook dropped`,
    /// `scale set server error`, ...): what a fault test actually got, not what it asked for.
    #[serde(default)]
    pub faults_injected: BTreeMap<String, u64>,
    /// REST calls and webhook deliveries seen by the percentage faults (their turn counters).
    #[serde(default)]
    pub fault_candidates: FaultCandidates,
}

/// How many calls and deliveries the percentage faults have seen.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct FaultCandidates {
    pub rest_calls: u64,
    pub deliveries: u64,
}

impl Counters {
    /// Counts one injected fault of `kind`.
    pub fn fault_injected(&mut self, kind: &str) {
        *self.faults_injected.entry(kind.to_owned()).or_default() += 1;
    }
}

/// Who ran one workflow job.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct JobRun {
    pub runner_names: Vec<String>,
    pub assignments: u32,
}

/// Counters of the runner scale set protocol.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct ScaleSetCounters {
    /// Actions-service calls (admin token; `acquirejobs` too), keyed `"<METHOD> <route>"`
    /// with the route relative to the service URL, e.g. `"POST _apis/runtime/runnerscalesets"`.
    /// Message polls and acknowledgements are not in here.
    pub actions: BTreeMap<String, EndpointCount>,
    /// `GET {messageQueueUrl}` calls (any answer).
    pub queue_polls: u64,
    /// `DELETE {messageQueueUrl}/{id}` calls (any answer).
    pub queue_deletes: u64,
    /// `POST /actions/runner-registration` answered with an admin token.
    pub admin_tokens_issued: u64,
    pub scale_sets_created: u64,
    pub scale_sets_deleted: u64,
    pub sessions_created: u64,
    pub sessions_deleted: u64,
    pub sessions_expired: u64,
    pub sessions_refreshed: u64,
    /// Session creations refused with 409 (a live session, or the injected fault).
    pub session_conflicts: u64,
    /// Sessions open now.
    pub sessions_active: u64,
    /// Messages answered to a poll (redeliveries included) and acknowledged.
    pub messages_delivered: u64,
    pub messages_redelivered: u64,
    pub messages_acked: u64,
    pub jobs_offered: u64,
    pub jobs_acquired: u64,
    /// Offers that came back through the re-offer quirk.
    pub jobs_reoffered: u64,
    /// JIT configs issued per scale set id.
    pub runners_per_set: BTreeMap<u64, u64>,
}

impl Counters {
    /// Calls of one endpoint (0 when never called).
    pub fn calls(&self, key: &str) -> u64 {
        self.api.get(key).map_or(0, |c| c.calls)
    }
}

/// One webhook delivery attempt, as the delivery log keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct DeliveryRecord {
    pub id: u64,
    pub guid: String,
    pub event: String,
    pub action: Option<String>,
    pub job_id: Option<u64>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    pub redelivery: bool,
    /// `pending`, `delivered`, `failed`, `dropped`.
    pub outcome: String,
    /// GitHub's human text: `OK`, `Invalid HTTP Response: 500`, `timed out`, `failed to connect`.
    pub status: String,
    pub status_code: u16,
    pub delivered_at: String,
    pub duration: f64,
    /// The exact body sent (signed bytes).
    pub body: String,
}

/// One moment of the simulated world, in milliseconds since the epoch: what a benchmark's
/// timeline needs, finer than GitHub's whole-second timestamps. Kept for every job and runner
/// (a few dozen bytes each).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct TimelineEvent {
    pub at_ms: i64,
    pub what: TimelineKind,
    pub job_id: Option<u64>,
    pub runner: Option<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimelineKind {
    /// The job became queued (its webhook `queued` is emitted).
    JobQueued,
    /// A runner took the job (`in_progress`); `runner` names it.
    JobAssigned,
    /// The job completed, whatever its conclusion.
    JobCompleted,
    /// The runner opened its message session: online, ready for a job.
    RunnerOnline,
    /// The runner closed its session: it is exiting.
    RunnerOffline,
}
