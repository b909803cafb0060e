//! The library's read-only views of the world (`JobView`, `RunnerView`, `RunView`, snapshots).

use super::{Job, Runner, World};
use crate::model::{JobView, RunView, RunnerView, SimSnapshot};

impl World {
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
            annotation: j.annotation.clone(),
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
}
