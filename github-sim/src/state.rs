//! The simulated world behind one mutex: orgs, repos, apps, credentials, runners, runs, jobs, the
//! delivery log and counters, and the job lifecycle (queue → assign → complete, needs, cancel).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use jsonwebtoken::DecodingKey;
use rand::distr::{Alphanumeric, SampleString};
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::config::SimConfig;
use crate::error::SimError;
use crate::faults::Faults;
use crate::model::*;
use crate::render;
use crate::time::{iso, now_iso};

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
    /// When the job entered the queue (for GitHub's 24-hour queue timeout).
    pub queued_at: Option<Instant>,
}

/// A webhook waiting to be handed to the delivery worker.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub event: &'static str,
    pub action: String,
    pub job_id: Option<u64>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    pub payload: Value,
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

pub struct World {
    pub base_url: String,
    next_id: u64,
    next_run_number: u64,
    pub orgs: BTreeMap<String, Org>,
    pub repos: BTreeMap<String, Repo>,
    pub apps: BTreeMap<u64, App>,
    pub installations: BTreeMap<u64, Installation>,
    pub tokens: HashMap<String, InstallationToken>,
    pub pats: HashMap<String, Vec<String>>,
    pub registration_tokens: HashMap<String, (Scope, DateTime<Utc>)>,
    pub runners: BTreeMap<u64, Runner>,
    pub runs: BTreeMap<u64, Run>,
    pub jobs: BTreeMap<u64, Job>,
    pub webhook: Option<WebhookTarget>,
    pub faults: Faults,
    pub counters: Counters,
    pub rate: HashMap<String, RateBucket>,
    /// Secondary-limit points spent per credential and endpoint in the last minute.
    pub points: HashMap<String, std::collections::VecDeque<(Instant, u32)>>,
    pub deliveries: Vec<DeliveryRecord>,
    /// Every JIT config handed out, so tests can prove it never leaked anywhere else.
    pub issued_jit_configs: Vec<IssuedJitConfig>,
    outbox: Vec<Outgoing>,
}

/// A JIT config as `generate-jitconfig` answered it, with the secret the runner will present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedJitConfig {
    pub runner_name: String,
    pub encoded_jit_config: String,
    /// The runner's OAuth token inside the config (`.credentials` → `data.token`).
    pub runner_secret: String,
}

pub fn key(s: &str) -> String {
    s.to_ascii_lowercase()
}

pub fn random_token(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        Alphanumeric.sample_string(&mut rand::rng(), 36)
    )
}

fn labels_cover(runner_labels: &[String], job_labels: &[String]) -> bool {
    job_labels
        .iter()
        .all(|j| runner_labels.iter().any(|r| r.eq_ignore_ascii_case(j)))
}

impl World {
    pub fn new(base_url: String) -> Self {
        Self {
            base_url,
            next_id: 1000,
            next_run_number: 1,
            orgs: BTreeMap::new(),
            repos: BTreeMap::new(),
            apps: BTreeMap::new(),
            installations: BTreeMap::new(),
            tokens: HashMap::new(),
            pats: HashMap::new(),
            registration_tokens: HashMap::new(),
            runners: BTreeMap::new(),
            runs: BTreeMap::new(),
            jobs: BTreeMap::new(),
            webhook: None,
            faults: Faults::default(),
            counters: Counters::default(),
            rate: HashMap::new(),
            points: HashMap::new(),
            deliveries: Vec::new(),
            issued_jit_configs: Vec::new(),
            outbox: Vec::new(),
        }
    }

    pub fn next_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn take_outbox(&mut self) -> Vec<Outgoing> {
        std::mem::take(&mut self.outbox)
    }

    // ---- world setup -------------------------------------------------------------------------

    pub fn add_org(&mut self, login: &str) -> u64 {
        if let Some(o) = self.orgs.get(&key(login)) {
            return o.id;
        }
        let id = self.next_id();
        self.orgs.insert(
            key(login),
            Org {
                id,
                login: login.to_string(),
            },
        );
        id
    }

    pub fn add_repo(&mut self, owner: &str, name: &str) -> u64 {
        self.add_org(owner);
        let k = key(&format!("{owner}/{name}"));
        if let Some(r) = self.repos.get(&k) {
            return r.id;
        }
        let id = self.next_id();
        self.repos.insert(
            k,
            Repo {
                id,
                owner: owner.to_string(),
                name: name.to_string(),
            },
        );
        id
    }

    pub fn add_app(&mut self, spec: &AppSpec) -> Result<(), SimError> {
        let key = DecodingKey::from_rsa_pem(spec.public_key_pem.as_bytes())
            .map_err(|e| SimError::BadPublicKey(e.to_string()))?;
        self.apps.insert(
            spec.id,
            App {
                id: spec.id,
                slug: spec.slug.clone(),
                key,
            },
        );
        Ok(())
    }

    pub fn add_installation(&mut self, spec: &InstallationSpec) -> Result<u64, SimError> {
        if !self.apps.contains_key(&spec.app_id) {
            return Err(SimError::UnknownApp(spec.app_id));
        }
        self.add_org(&spec.account);
        let permissions = spec.permissions.clone().unwrap_or_else(|| {
            [
                ("organization_self_hosted_runners", "write"),
                ("administration", "write"),
                ("actions", "read"),
                ("metadata", "read"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
        });
        let id = self.next_id();
        self.installations.insert(
            id,
            Installation {
                id,
                app_id: spec.app_id,
                account: spec.account.clone(),
                permissions,
                created_at: now_iso(),
            },
        );
        Ok(id)
    }

    /// The installation of `app_id` on `account`, if any.
    pub fn installation_for(&self, app_id: u64, account: &str) -> Option<&Installation> {
        self.installations
            .values()
            .find(|i| i.app_id == app_id && i.account.eq_ignore_ascii_case(account))
    }

    /// Any installation on `account` (for webhook payloads).
    pub fn any_installation_on(&self, account: &str) -> Option<&Installation> {
        self.installations
            .values()
            .find(|i| i.account.eq_ignore_ascii_case(account))
    }

    // ---- workflows ---------------------------------------------------------------------------

    pub fn enqueue_workflow(&mut self, spec: &WorkflowSpec) -> Result<RunCreated, SimError> {
        let repo_key = key(&spec.repo);
        if !self.repos.contains_key(&repo_key) {
            return Err(SimError::UnknownRepo(spec.repo.clone()));
        }
        if spec.jobs.is_empty() {
            return Err(SimError::InvalidWorkflow(
                "a workflow needs at least one job".into(),
            ));
        }
        let mut names: HashMap<String, u64> = HashMap::new();
        let run_id = self.next_id();
        let mut job_ids = Vec::with_capacity(spec.jobs.len());
        for j in &spec.jobs {
            if j.runs_on.is_empty() {
                return Err(SimError::InvalidWorkflow(format!(
                    "job {:?} has an empty runs-on",
                    j.name
                )));
            }
            if names.contains_key(&j.name) {
                return Err(SimError::InvalidWorkflow(format!(
                    "duplicate job name {:?}",
                    j.name
                )));
            }
            let id = self.next_id();
            names.insert(j.name.clone(), id);
            job_ids.push(id);
        }
        let mut jobs = Vec::new();
        for (j, &id) in spec.jobs.iter().zip(&job_ids) {
            let mut needs = Vec::new();
            for n in &j.needs {
                match names.get(n) {
                    Some(&dep) if dep != id => needs.push(dep),
                    _ => {
                        return Err(SimError::InvalidWorkflow(format!(
                            "job {:?} needs unknown job {:?}",
                            j.name, n
                        )))
                    }
                }
            }
            jobs.push(Job {
                id,
                run_id,
                repo_key: repo_key.clone(),
                name: j.name.clone(),
                labels: j.runs_on.clone(),
                command: j.command.clone(),
                duration_ms: j.duration_ms,
                needs,
                environment: j.environment.clone(),
                status: JobStatus::Pending,
                conclusion: None,
                runner_id: None,
                runner_name: None,
                created_at: now_iso(),
                started_at: None,
                completed_at: None,
                cancel_requested: false,
                queued_at: None,
            });
        }
        let run_number = self.next_run_number;
        self.next_run_number += 1;
        let now = now_iso();
        self.runs.insert(
            run_id,
            Run {
                id: run_id,
                repo_key,
                name: spec.name.clone(),
                run_number,
                head_sha: format!("{:040x}", run_id),
                created_at: now.clone(),
                updated_at: now,
                job_ids: job_ids.clone(),
                cancelled: false,
            },
        );
        for job in jobs {
            self.jobs.insert(job.id, job);
        }
        self.settle_run(run_id);
        Ok(RunCreated { run_id, job_ids })
    }

    fn emit_job(&mut self, job_id: u64, action: &str) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let Some(repo) = self.repos.get(&job.repo_key) else {
            return;
        };
        let installation_id = self.any_installation_on(&repo.owner).map(|i| i.id);
        let repository_id = Some(repo.id);
        let payload = render::workflow_job_webhook(self, job, action);
        self.outbox.push(Outgoing {
            event: "workflow_job",
            action: action.to_string(),
            job_id: Some(job_id),
            installation_id,
            repository_id,
            payload,
        });
    }

    /// Moves pending jobs whose dependencies are done to queued (or skipped/cancelled), repeatedly.
    fn settle_run(&mut self, run_id: u64) {
        let Some(run) = self.runs.get(&run_id) else {
            return;
        };
        let job_ids = run.job_ids.clone();
        loop {
            let mut changed = false;
            for &id in &job_ids {
                let Some(job) = self.jobs.get(&id) else {
                    continue;
                };
                if job.status != JobStatus::Pending {
                    continue;
                }
                let deps: Vec<(JobStatus, Option<&'static str>)> = job
                    .needs
                    .iter()
                    .filter_map(|d| self.jobs.get(d).map(|d| (d.status, d.conclusion)))
                    .collect();
                if deps.iter().any(|(s, _)| *s != JobStatus::Completed) {
                    continue;
                }
                let verdict = if deps.iter().any(|(_, c)| *c == Some("cancelled")) {
                    Some("cancelled")
                } else if deps.iter().any(|(_, c)| !matches!(c, Some("success"))) {
                    Some("skipped")
                } else {
                    None
                };
                let now = now_iso();
                if let Some(job) = self.jobs.get_mut(&id) {
                    match verdict {
                        None if job.environment.is_some() => {
                            job.status = JobStatus::Waiting;
                            changed = true;
                            self.emit_job(id, "waiting");
                        }
                        None => {
                            job.status = JobStatus::Queued;
                            job.queued_at = Some(Instant::now());
                            changed = true;
                            self.emit_job(id, "queued");
                        }
                        Some(c) => {
                            // Never queued, so GitHub sends no workflow_job event for it.
                            job.status = JobStatus::Completed;
                            job.conclusion = Some(c);
                            job.completed_at = Some(now);
                            changed = true;
                        }
                    }
                }
            }
            if !changed {
                break;
            }
        }
        if let Some(run) = self.runs.get_mut(&run_id) {
            run.updated_at = now_iso();
        }
    }

    pub fn run_status(&self, run: &Run) -> (&'static str, Option<&'static str>) {
        let jobs: Vec<&Job> = run
            .job_ids
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .collect();
        if jobs.iter().all(|j| j.status == JobStatus::Completed) {
            let conclusion =
                if run.cancelled || jobs.iter().any(|j| j.conclusion == Some("cancelled")) {
                    "cancelled"
                } else if jobs
                    .iter()
                    .any(|j| !matches!(j.conclusion, Some("success") | Some("skipped")))
                {
                    "failure"
                } else {
                    "success"
                };
            ("completed", Some(conclusion))
        } else if jobs
            .iter()
            .any(|j| matches!(j.status, JobStatus::InProgress | JobStatus::Completed))
        {
            ("in_progress", None)
        } else if jobs.iter().any(|j| j.status == JobStatus::Waiting) {
            ("waiting", None)
        } else {
            ("queued", None)
        }
    }

    pub fn cancel_run(&mut self, run_id: u64) -> Result<(), SimError> {
        let run = self
            .runs
            .get_mut(&run_id)
            .ok_or(SimError::UnknownRun(run_id))?;
        run.cancelled = true;
        let job_ids = run.job_ids.clone();
        for id in job_ids {
            let Some(job) = self.jobs.get_mut(&id) else {
                continue;
            };
            match job.status {
                JobStatus::Pending | JobStatus::Waiting | JobStatus::Queued => {
                    let was_queued = job.status != JobStatus::Pending;
                    job.status = JobStatus::Completed;
                    job.conclusion = Some("cancelled");
                    job.completed_at = Some(now_iso());
                    if was_queued {
                        self.emit_job(id, "completed");
                    }
                }
                // The runner learns it from its next heartbeat and reports the job cancelled.
                JobStatus::InProgress => job.cancel_requested = true,
                JobStatus::Completed => {}
            }
        }
        Ok(())
    }

    // ---- runners -----------------------------------------------------------------------------

    /// Registers a JIT runner; fails when the name is taken at that scope.
    pub fn register_runner(
        &mut self,
        scope: Scope,
        name: &str,
        labels: Vec<String>,
        ephemeral: bool,
    ) -> Result<u64, SimError> {
        if self
            .runners
            .values()
            .any(|r| r.scope == scope && r.name.eq_ignore_ascii_case(name))
        {
            return Err(SimError::DuplicateRunner(name.to_string()));
        }
        let id = self.next_id();
        self.runners.insert(
            id,
            Runner {
                id,
                name: name.to_string(),
                scope,
                labels,
                secret: random_token("rs_"),
                ephemeral,
                created: Instant::now(),
                session: None,
                ever_connected: false,
                job: None,
                last_seen: Instant::now(),
            },
        );
        Ok(id)
    }

    /// Deletes JIT registrations never used within `ttl`.
    pub fn expire_unused_jit(&mut self, ttl: Duration) {
        let expired: Vec<u64> = self
            .runners
            .values()
            .filter(|r| r.ephemeral && !r.ever_connected && r.created.elapsed() >= ttl)
            .map(|r| r.id)
            .collect();
        for id in expired {
            self.runners.remove(&id);
            self.counters.jit_configs_expired += 1;
        }
    }

    /// Runners not heard from within `after` go offline; a job one was running fails, as GitHub
    /// fails it when a runner loses communication. Ephemeral runners that lost a job are removed.
    pub fn reap_lost_runners(&mut self, after: Duration) {
        let lost: Vec<(u64, Option<u64>)> = self
            .runners
            .values()
            .filter(|r| r.session.is_some() && r.last_seen.elapsed() >= after)
            .map(|r| (r.id, r.job))
            .collect();
        for (runner_id, job) in lost {
            if let Some(r) = self.runners.get_mut(&runner_id) {
                r.session = None;
            }
            if let Some(job_id) = job {
                self.complete_job(runner_id, job_id, "failure");
            }
        }
    }

    /// Cancels jobs that waited in the queue longer than `timeout`.
    pub fn expire_queued(&mut self, timeout: Duration) {
        let expired: Vec<(u64, u64)> = self
            .jobs
            .values()
            .filter(|j| {
                j.status == JobStatus::Queued && j.queued_at.is_some_and(|t| t.elapsed() >= timeout)
            })
            .map(|j| (j.id, j.run_id))
            .collect();
        for (job_id, run_id) in expired {
            if let Some(j) = self.jobs.get_mut(&job_id) {
                j.status = JobStatus::Completed;
                j.conclusion = Some("cancelled");
                j.completed_at = Some(now_iso());
            }
            self.emit_job(job_id, "completed");
            self.settle_run(run_id);
        }
    }

    /// Approves a job waiting for its environment: it is queued.
    pub fn approve_job(&mut self, job_id: u64) -> Result<(), SimError> {
        let job = self
            .jobs
            .get_mut(&job_id)
            .ok_or(SimError::UnknownJob(job_id))?;
        if job.status != JobStatus::Waiting {
            return Err(SimError::NotWaiting(job_id));
        }
        job.status = JobStatus::Queued;
        job.queued_at = Some(Instant::now());
        self.emit_job(job_id, "queued");
        Ok(())
    }

    pub fn touch_runner(&mut self, runner_id: u64) {
        if let Some(r) = self.runners.get_mut(&runner_id) {
            r.last_seen = Instant::now();
        }
    }

    pub fn runner_by_secret(&self, secret: &str) -> Option<&Runner> {
        self.runners.values().find(|r| r.secret == secret)
    }

    /// Gives the runner the oldest queued job its labels cover, if it is idle.
    pub fn try_assign(&mut self, runner_id: u64) -> Option<JobMessage> {
        let runner = self.runners.get(&runner_id)?;
        if let Some(job_id) = runner.job {
            // Already assigned (e.g. the answer to an earlier poll was lost): hand it out again.
            return self.jobs.get(&job_id).map(|j| self.job_message(j));
        }
        let job_id = self
            .jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued)
            .find(|j| {
                let Some(repo) = self.repos.get(&j.repo_key) else {
                    return false;
                };
                runner.scope.covers_repo(&repo.owner, &repo.name)
                    && labels_cover(&runner.labels, &j.labels)
            })?
            .id;
        let runner_name = runner.name.clone();
        if let Some(r) = self.runners.get_mut(&runner_id) {
            r.job = Some(job_id);
        }
        let job = self.jobs.get_mut(&job_id)?;
        job.status = JobStatus::InProgress;
        job.runner_id = Some(runner_id);
        job.runner_name = Some(runner_name);
        job.started_at = Some(now_iso());
        let run_id = job.run_id;
        self.emit_job(job_id, "in_progress");
        if let Some(run) = self.runs.get_mut(&run_id) {
            run.updated_at = now_iso();
        }
        self.jobs.get(&job_id).map(|j| self.job_message(j))
    }

    fn job_message(&self, j: &Job) -> JobMessage {
        let repository = self
            .repos
            .get(&j.repo_key)
            .map(|r| r.full_name())
            .unwrap_or_else(|| j.repo_key.clone());
        JobMessage {
            job_id: j.id,
            run_id: j.run_id,
            name: j.name.clone(),
            repository,
            command: j.command.clone(),
            duration_ms: j.duration_ms,
            labels: j.labels.clone(),
        }
    }

    /// Records a runner's result for its job. Ephemeral runners are unregistered afterwards.
    pub fn complete_job(&mut self, runner_id: u64, job_id: u64, conclusion: &'static str) -> bool {
        let Some(job) = self.jobs.get_mut(&job_id) else {
            return false;
        };
        if job.runner_id != Some(runner_id) || job.status != JobStatus::InProgress {
            return false;
        }
        job.status = JobStatus::Completed;
        job.conclusion = Some(if job.cancel_requested {
            "cancelled"
        } else {
            conclusion
        });
        job.completed_at = Some(now_iso());
        let run_id = job.run_id;
        self.emit_job(job_id, "completed");
        let remove = match self.runners.get_mut(&runner_id) {
            Some(r) => {
                r.job = None;
                r.ephemeral
            }
            None => false,
        };
        if remove {
            self.runners.remove(&runner_id);
        }
        self.settle_run(run_id);
        true
    }

    // ---- views -------------------------------------------------------------------------------

    pub fn job_view(&self, j: &Job) -> JobView {
        JobView {
            id: j.id,
            run_id: j.run_id,
            name: j.name.clone(),
            repo: self
                .repos
                .get(&j.repo_key)
                .map(|r| r.full_name())
                .unwrap_or_default(),
            status: j.status.as_str().into(),
            conclusion: j.conclusion.map(str::to_string),
            labels: j.labels.clone(),
            runner_id: j.runner_id,
            runner_name: j.runner_name.clone(),
            created_at: j.created_at.clone(),
            started_at: j.started_at.clone(),
            completed_at: j.completed_at.clone(),
        }
    }

    pub fn runner_view(&self, r: &Runner) -> RunnerView {
        RunnerView {
            id: r.id,
            name: r.name.clone(),
            labels: r.labels.clone(),
            status: if r.session.is_some() {
                "online"
            } else {
                "offline"
            }
            .into(),
            busy: r.job.is_some(),
            ephemeral: r.ephemeral,
            scope: r.scope.describe(),
            job_id: r.job,
        }
    }

    pub fn snapshot(&self) -> SimSnapshot {
        SimSnapshot {
            runs: self
                .runs
                .values()
                .map(|r| {
                    let (status, conclusion) = self.run_status(r);
                    RunView {
                        id: r.id,
                        repo: self
                            .repos
                            .get(&r.repo_key)
                            .map(|x| x.full_name())
                            .unwrap_or_default(),
                        name: r.name.clone(),
                        status: status.into(),
                        conclusion: conclusion.map(str::to_string),
                        job_ids: r.job_ids.clone(),
                    }
                })
                .collect(),
            jobs: self.jobs.values().map(|j| self.job_view(j)).collect(),
            runners: self.runners.values().map(|r| self.runner_view(r)).collect(),
        }
    }

    pub fn token_expiry(&self, ttl: Duration) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::hours(1))
    }
}

/// Everything the server's tasks share.
pub struct Shared {
    pub config: SimConfig,
    pub base_url: String,
    world: Mutex<World>,
    /// Woken whenever jobs or runners change, for the runners' long-polls.
    pub changed: Notify,
    webhook_tx: mpsc::UnboundedSender<Outgoing>,
    /// Client for webhook deliveries (timeout = `config.webhook_timeout`).
    pub http: reqwest::Client,
}

impl Shared {
    pub fn new(
        config: SimConfig,
        base_url: String,
        webhook_tx: mpsc::UnboundedSender<Outgoing>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            config,
            world: Mutex::new(World::new(base_url.clone())),
            base_url,
            changed: Notify::new(),
            webhook_tx,
        }
    }

    /// Read access (a panicking holder cannot poison the simulator for good).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a change, then hands its webhooks to the delivery worker and wakes the runners.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let (result, outbox) = {
            let mut w = self.lock();
            let r = f(&mut w);
            (r, w.take_outbox())
        };
        for o in outbox {
            // The worker only stops with the server; then nobody is left to deliver to.
            let _ = self.webhook_tx.send(o);
        }
        self.changed.notify_waiters();
        result
    }

    /// Like `mutate`, but wakes the runners only if the change produced webhooks (a job moved).
    /// The runners' long-poll uses it: waking itself on every look would spin.
    pub fn mutate_quiet<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let (result, outbox) = {
            let mut w = self.lock();
            let r = f(&mut w);
            (r, w.take_outbox())
        };
        let moved = !outbox.is_empty();
        for o in outbox {
            let _ = self.webhook_tx.send(o);
        }
        if moved {
            self.changed.notify_waiters();
        }
        result
    }

    pub fn now_iso(&self) -> String {
        iso(Utc::now())
    }
}
