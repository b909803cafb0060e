//! The records the simulated world is made of: orgs, repos, apps, installations and their
//! tokens, runners and where they are registered, workflow runs and jobs, rate-limit buckets,
//! the job messages runners receive and the JIT configs handed out. Plain data, no behaviour
//! beyond naming.

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use jsonwebtoken::DecodingKey;

pub struct Org {
    pub id: u64,
    pub login: String,
}

pub struct Repo {
    pub id: u64,
    pub owner: String,
    pub name: String,
}

impl Repo {
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.owner, self.name)
    }
}

pub struct App {
    pub id: u64,
    pub slug: String,
    pub key: DecodingKey,
}

pub struct Installation {
    pub id: u64,
    pub app_id: u64,
    pub account: String,
    pub permissions: BTreeMap<String, String>,
    pub created_at: String,
}

pub struct InstallationToken {
    pub installation_id: u64,
    pub expires_at: DateTime<Utc>,
}

/// Where a runner is registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Org(String),
    Repo { owner: String, name: String },
}

impl Scope {
    pub fn describe(&self) -> String {
        match self {
            Scope::Org(o) => o.clone(),
            Scope::Repo { owner, name } => format!("{owner}/{name}"),
        }
    }

    /// Whether a runner registered here may run jobs of `owner/name`.
    pub fn covers_repo(&self, repo_owner: &str, repo_name: &str) -> bool {
        match self {
            Scope::Org(o) => o.eq_ignore_ascii_case(repo_owner),
            Scope::Repo { owner, name } => {
                owner.eq_ignore_ascii_case(repo_owner) && name.eq_ignore_ascii_case(repo_name)
            }
        }
    }
}

pub struct Runner {
    pub id: u64,
    pub name: String,
    pub scope: Scope,
    pub labels: Vec<String>,
    pub secret: String,
    pub ephemeral: bool,
    pub created: Instant,
    pub session: Option<String>,
    pub ever_connected: bool,
    pub job: Option<u64>,
    /// Last poll, heartbeat or result from the runner.
    pub last_seen: Instant,
    /// The runner scale set whose `generatejitconfig` made it: it takes only jobs its set
    /// acquired. `None`: a REST `generate-jitconfig` runner.
    pub scale_set: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    Pending,
    Waiting,
    Queued,
    InProgress,
    Completed,
}

impl JobStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Pending => "pending",
            JobStatus::Waiting => "waiting",
            JobStatus::Queued => "queued",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
        }
    }
}

pub struct Run {
    pub id: u64,
    pub repo_key: String,
    pub name: String,
    pub run_number: u64,
    pub head_sha: String,
    pub created_at: String,
    pub updated_at: String,
    pub job_ids: Vec<u64>,
    pub cancelled: bool,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub id: u64,
    pub run_id: u64,
    pub repo_key: String,
    pub name: String,
    pub labels: Vec<String>,
    pub command: Option<String>,
    pub duration_ms: u64,
    pub needs: Vec<u64>,
    pub environment: Option<String>,
    pub status: JobStatus,
    pub conclusion: Option<&'static str>,
    pub runner_id: Option<u64>,
    pub runner_name: Option<String>,
    pub created_at: String,
    pub started_at: Option<String>,
    pub completed_at: Option<String>,
    pub cancel_requested: bool,
    /// Why it failed, when GitHub says so itself (a runner that lost communication).
    pub annotation: Option<String>,
    /// When the job entered the queue (for GitHub's 24-hour queue timeout).
    pub queued_at: Option<Instant>,
}

/// Primary rate-limit budget of one credential.
#[derive(Debug, Clone)]
pub struct RateBucket {
    pub used: u32,
    pub reset_epoch: i64,
}

/// A job message for a runner (the private runner protocol).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct JobMessage {
    pub job_id: u64,
    pub run_id: u64,
    pub name: String,
    pub repository: String,
    pub command: Option<String>,
    pub duration_ms: u64,
    pub labels: Vec<String>,
}

/// A JIT config as `generate-jitconfig` answered it, with the secret the runner will present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedJitConfig {
    pub runner_name: String,
    pub encoded_jit_config: String,
    /// The runner's OAuth token inside the config (`.credentials` → `data.token`).
    pub runner_secret: String,
}

/// A job that changed in a way GitHub sends a `workflow_job` webhook for: the job as it was at
/// that moment and the event's `action`. Rendering the payload is not the world's business.
#[derive(Debug, Clone)]
pub struct JobEvent {
    pub action: String,
    pub job: Job,
}

/// An App manifest the "admin" submitted, waiting for its code to be converted (once; see
/// `rest::manifests`).
pub struct PendingManifest {
    pub owner: String,
    pub manifest: serde_json::Value,
    pub created: std::time::Instant,
}
