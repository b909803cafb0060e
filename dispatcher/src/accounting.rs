//! Accounting: which GitHub job ran in which Slurm job. When one of our runners takes a job
//! (a scale set's `JobStarted`, or an `in_progress` webhook naming the runner), the runner's
//! row records it and its Slurm job's comment is replaced with it (`scontrol update`), so
//! `sacct -o JobID,Comment%200` tells an admin what every CI allocation ran. The job a runner
//! was made for (the submit-time comment) is often not the one it ran: runners are not bound
//! to jobs.

use crate::clients::slurm::Slurm;
use crate::store::{self, Db};
use crate::telemetry::Metrics;

/// Slurm keeps comments of any length, but a screenful is enough.
const MAX_COMMENT: usize = 400;

/// The GitHub job a runner ran, as far as the intake knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RanJob {
    /// `owner/repo`.
    pub repo: String,
    /// The workflow's name (webhook) or its ref (`owner/repo/.github/workflows/ci.yml@ref`).
    pub workflow: Option<String>,
    pub run_id: Option<i64>,
    /// GitHub's job id (webhook: the workflow job id; listener: the job's id as the
    /// Actions service names it).
    pub job_id: String,
}

impl RanJob {
    /// The comment's text: `gha-dispatcher runner=.. ran repo=.. workflow=.. run=.. job=..`,
    /// each value cut to characters that are safe anywhere it is shown.
    pub fn comment(&self, runner: &str) -> String {
        let mut text = format!(
            "gha-dispatcher runner={} ran repo={} workflow={} run={} job={}",
            clean(runner),
            clean(&self.repo),
            clean(self.workflow.as_deref().unwrap_or("-")),
            self.run_id
                .map(|r| r.to_string())
                .unwrap_or_else(|| "-".into()),
            clean(&self.job_id),
        );
        text.truncate(MAX_COMMENT);
        text
    }
}

/// Letters, digits and `/._-@:+` kept; anything else (spaces, quotes, control characters)
/// becomes `_`.
fn clean(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "/._-@:+".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Record that runner `runner` ran `job`: on its row, then in its Slurm job's comment.
/// Unknown runner names (not ours) change nothing. Failures are logged: accounting never
/// holds up a job.
pub async fn record(db: &Db, slurm: &Slurm, metrics: &Metrics, runner: &str, job: &RanJob) {
    let name = runner.to_string();
    let stored = job.comment(runner);
    let slurm_job = match db
        .call(move |c| store::set_runner_ran(c, &name, &stored))
        .await
    {
        Ok(Some(slurm_job)) => slurm_job,
        Ok(None) => return,
        Err(e) => {
            tracing::error!(runner, error = %e, "cannot record the job a runner ran");
            return;
        }
    };
    recorded(slurm, metrics, runner, job, slurm_job).await;
}

/// After the row records that `runner` ran `job`: count it, and put it into the runner's
/// Slurm job's comment when that job is known.
pub async fn recorded(
    slurm: &Slurm,
    metrics: &Metrics,
    runner: &str,
    job: &RanJob,
    slurm_job: Option<u64>,
) {
    metrics.jobs_accounted.inc();
    let Some(slurm_job) = slurm_job else {
        return;
    };
    match slurm.set_comment(slurm_job, &job.comment(runner)).await {
        Ok(()) => {
            tracing::info!(runner, slurm_job, repo = %job.repo, job = %job.job_id, "accounting: Slurm job comment names the GitHub job it ran")
        }
        Err(e) => {
            tracing::warn!(runner, slurm_job, error = %e, "cannot set the Slurm job's comment")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_comment_names_every_id_and_nothing_can_break_out_of_it() {
        let job = RanJob {
            repo: "acme/widgets".into(),
            workflow: Some("acme/widgets/.github/workflows/ci.yml@refs/heads/main".into()),
            run_id: Some(42),
            job_id: "0c7e-11".into(),
        };
        assert_eq!(
            job.comment("slurm-cpu-1"),
            "gha-dispatcher runner=slurm-cpu-1 ran repo=acme/widgets \
             workflow=acme/widgets/.github/workflows/ci.yml@refs/heads/main run=42 job=0c7e-11"
        );
        let hostile = RanJob {
            workflow: Some("x\" Comment=evil\nNodeList=y".into()),
            ..job
        };
        let text = hostile.comment("r");
        assert!(
            text.contains("workflow=x__Comment_evil_NodeList_y"),
            "{text}"
        );
        assert!(!text.contains('\n') && !text.contains('"'));
    }
}
