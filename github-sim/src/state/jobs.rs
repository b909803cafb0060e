//! The job lifecycle: a workflow's jobs enter as pending, are queued when their `needs` are done
//! (or wait for an environment's approval, or are skipped/cancelled without ever being queued),
//! run on a runner, and complete; runs can be cancelled and queued jobs time out as on GitHub.
//! Every transition GitHub announces leaves a `JobEvent`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use super::{key, Job, JobEvent, JobStatus, Run, World};
use crate::error::SimError;
use crate::model::{JobSpec, RunCreated, TimelineKind, WorkflowSpec};
use crate::time::now_iso;

/// The ids of the jobs `j` (with id `id`) needs, by name among the run's jobs.
fn resolve_needs(j: &JobSpec, id: u64, names: &HashMap<String, u64>) -> Result<Vec<u64>, SimError> {
    j.needs
        .iter()
        .map(|n| match names.get(n) {
            Some(&dep) if dep != id => Ok(dep),
            _ => Err(SimError::InvalidWorkflow(format!(
                "job {:?} needs unknown job {:?}",
                j.name, n
            ))),
        })
        .collect()
}

/// A job of run `run_id` as it enters the world: pending until `settle_run` looks at it.
fn new_job(j: &JobSpec, id: u64, run_id: u64, repo_key: &str, needs: Vec<u64>) -> Job {
    Job {
        id,
        run_id,
        repo_key: repo_key.to_string(),
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
        annotation: None,
        queued_at: None,
    }
}

impl World {
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
            let needs = resolve_needs(j, id, &names)?;
            jobs.push(new_job(j, id, run_id, &repo_key, needs));
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

    /// Records that GitHub announces `action` for the job as it is now.
    pub(super) fn emit_job(&mut self, job_id: u64, action: &str) {
        let Some(job) = self.jobs.get(&job_id) else {
            return;
        };
        let event = JobEvent {
            action: action.to_string(),
            job: job.clone(),
        };
        let runner = job.runner_name.clone();
        self.events.push(event);
        let kind = match action {
            "queued" => TimelineKind::JobQueued,
            "in_progress" => TimelineKind::JobAssigned,
            "completed" => TimelineKind::JobCompleted,
            _ => return,
        };
        self.mark(kind, Some(job_id), runner.as_deref());
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
                    self.scale_job_finished(id, "cancelled");
                }
                // The runner learns it from its next heartbeat and reports the job cancelled.
                JobStatus::InProgress => job.cancel_requested = true,
                JobStatus::Completed => {}
            }
        }
        Ok(())
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
            self.scale_job_finished(job_id, "cancelled");
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
        let conclusion = job.conclusion.unwrap_or("failure");
        self.emit_job(job_id, "completed");
        self.scale_job_finished(job_id, conclusion);
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
}
