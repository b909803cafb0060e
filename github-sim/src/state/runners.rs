//! Runners in the world: JIT registration (unique names per scope), expiry of unused configs,
//! runners that stop answering, and handing a queued job to an idle runner whose scope and
//! labels cover it (any such runner: jobs are not bound to runners).

use std::time::{Duration, Instant};

use super::{random_token, IssuedJitConfig, Job, JobMessage, JobStatus, Runner, Scope, World};
use crate::error::SimError;
use crate::jit::{self, CredentialsFile, JitConfig, RunnerFile};
use crate::time::now_iso;

fn labels_cover(runner_labels: &[String], job_labels: &[String]) -> bool {
    job_labels
        .iter()
        .all(|j| runner_labels.iter().any(|r| r.eq_ignore_ascii_case(j)))
}

/// A JIT runner to register: where, as what, for which scale set (if any).
pub struct JitRegistration {
    pub scope: Scope,
    pub name: String,
    pub labels: Vec<String>,
    pub work_folder: String,
    /// `org` or `owner/repo` (the config's `gitHubUrl`).
    pub git_hub_path: String,
    pub scale_set: Option<u64>,
}

impl World {
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
                scale_set: None,
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

    /// Runners not heard from within `after` (`SimConfig::runner_offline_after`) go offline; a
    /// job one was running fails with GitHub's annotation for a runner that lost communication.
    /// Ephemeral runners that lost a job are removed.
    pub fn reap_lost_runners(&mut self, after: Duration) {
        let lost: Vec<(u64, String, Option<u64>)> = self
            .runners
            .values()
            .filter(|r| r.session.is_some() && r.last_seen.elapsed() >= after)
            .map(|r| (r.id, r.name.clone(), r.job))
            .collect();
        for (runner_id, name, job) in lost {
            if let Some(r) = self.runners.get_mut(&runner_id) {
                r.session = None;
            }
            let Some(job_id) = job else { continue };
            if let Some(j) = self.jobs.get_mut(&job_id) {
                j.annotation = Some(lost_communication(&name));
            }
            self.complete_job(runner_id, job_id, "failure");
        }
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
        let job_id = match runner.scale_set {
            // A scale set's runner takes only what its set acquired.
            Some(set_id) => self.next_acquired_job(set_id)?,
            None => self.next_job_for(runner)?,
        };
        let runner_name = runner.name.clone();
        let from_set = runner.scale_set.is_some();
        if let Some(r) = self.runners.get_mut(&runner_id) {
            r.job = Some(job_id);
        }
        let job = self.jobs.get_mut(&job_id)?;
        job.status = JobStatus::InProgress;
        job.runner_id = Some(runner_id);
        job.runner_name = Some(runner_name.clone());
        job.started_at = Some(now_iso());
        let run_id = job.run_id;
        self.emit_job(job_id, "in_progress");
        let run = self.counters.job_runs.entry(job_id).or_default();
        run.runner_names.push(runner_name.clone());
        run.assignments += 1;
        if from_set {
            self.scale_job_started(job_id, runner_id);
        }
        if let Some(run) = self.runs.get_mut(&run_id) {
            run.updated_at = now_iso();
        }
        self.jobs.get(&job_id).map(|j| self.job_message(j))
    }

    /// The oldest queued job a (non scale set) runner's scope and labels cover; jobs a scale
    /// set covers are that set's alone.
    fn next_job_for(&self, runner: &Runner) -> Option<u64> {
        self.jobs
            .values()
            .filter(|j| j.status == JobStatus::Queued)
            .find(|j| {
                let Some(repo) = self.repos.get(&j.repo_key) else {
                    return false;
                };
                runner.scope.covers_repo(&repo.owner, &repo.name)
                    && labels_cover(&runner.labels, &j.labels)
                    && !self.scale.by_job.contains_key(&j.id)
                    && self.matching_scale_set(j).is_none()
            })
            .map(|j| j.id)
    }

    /// Registers a runner and mints its JIT config (what both `generate-jitconfig`s answer):
    /// the runner's id and the encoded config. `git_hub_path` is `org` or `owner/repo`.
    pub fn issue_jit(
        &mut self,
        reg: JitRegistration,
        urls: (&str, &str),
    ) -> Result<(u64, String), SimError> {
        let (runner_base_url, base_url) = urls;
        let id = self.register_runner(reg.scope, &reg.name, reg.labels, true)?;
        self.counters.jit_configs_issued += 1;
        let r = self
            .runners
            .get_mut(&id)
            .ok_or(SimError::DuplicateRunner(reg.name))?;
        r.scale_set = reg.scale_set;
        let cfg = JitConfig {
            runner: RunnerFile {
                agent_id: id,
                agent_name: r.name.clone(),
                pool_id: 1,
                pool_name: "Default".into(),
                server_url: format!("{runner_base_url}/_runner"),
                git_hub_url: format!("{base_url}/_html/{}", reg.git_hub_path),
                work_folder: reg.work_folder,
                use_v2_flow: false,
                disable_update: true,
                ephemeral: true,
            },
            credentials: CredentialsFile {
                scheme: "OAuthAccessToken".into(),
                data: [("token".to_string(), r.secret.clone())].into(),
            },
            rsa_params: serde_json::json!({"d": "", "dp": "", "dq": "", "exponent": "AQAB", "inverseQ": "", "modulus": "", "p": "", "q": ""}),
        };
        let encoded = jit::encode(&cfg);
        self.issued_jit_configs.push(IssuedJitConfig {
            runner_name: r.name.clone(),
            encoded_jit_config: encoded.clone(),
            runner_secret: r.secret.clone(),
        });
        Ok((id, encoded))
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
}

/// GitHub's annotation on a job whose self-hosted runner stopped talking to it.
pub fn lost_communication(runner_name: &str) -> String {
    format!(
        "The self-hosted runner: {runner_name} lost communication with the server. Verify the \
         machine is running and has a healthy network connection. Anything in your workflow that \
         terminates the runner process, starves it for CPU/Memory, or blocks its network access \
         can cause this error."
    )
}
