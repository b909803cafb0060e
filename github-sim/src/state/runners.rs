//! Runners in the world: JIT registration (unique names per scope), expiry of unused configs,
//! runners that stop answering, and handing a queued job to an idle runner whose scope and
//! labels cover it (any such runner: jobs are not bound to runners).

use std::time::{Duration, Instant};

use super::{random_token, Job, JobMessage, JobStatus, Runner, Scope, World};
use crate::error::SimError;
use crate::time::now_iso;

fn labels_cover(runner_labels: &[String], job_labels: &[String]) -> bool {
    job_labels
        .iter()
        .all(|j| runner_labels.iter().any(|r| r.eq_ignore_ascii_case(j)))
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
