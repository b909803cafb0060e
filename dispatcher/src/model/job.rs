//! A GitHub workflow job as the dispatcher knows it.

use super::UnknownState;

/// A job's `status` in GitHub's contract. The order is progress: a late or repeated delivery
/// never moves a job back (see [`JobStatus::rank`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JobStatus {
    Requested,
    Pending,
    Waiting,
    Queued,
    InProgress,
    Completed,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Requested,
        JobStatus::Pending,
        JobStatus::Waiting,
        JobStatus::Queued,
        JobStatus::InProgress,
        JobStatus::Completed,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            JobStatus::Requested => "requested",
            JobStatus::Pending => "pending",
            JobStatus::Waiting => "waiting",
            JobStatus::Queued => "queued",
            JobStatus::InProgress => "in_progress",
            JobStatus::Completed => "completed",
        }
    }

    pub fn parse(s: &str) -> Result<JobStatus, UnknownState> {
        JobStatus::ALL
            .into_iter()
            .find(|status| status.as_str() == s)
            .ok_or_else(|| UnknownState::new("job status", s))
    }

    /// How far the job got: 0 before queued (`requested`, `pending`, `waiting`), 1 queued,
    /// 2 in progress, 3 completed. Stored with the job; it only moves forward.
    pub const fn rank(self) -> i64 {
        match self {
            JobStatus::Requested | JobStatus::Pending | JobStatus::Waiting => 0,
            JobStatus::Queued => 1,
            JobStatus::InProgress => 2,
            JobStatus::Completed => 3,
        }
    }
}

impl std::fmt::Display for JobStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a webhook or a poll tells us about one GitHub job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobUpdate {
    pub job_id: u64,
    pub run_id: u64,
    pub repo: String,
    pub labels: Vec<String>,
    pub status: JobStatus,
    pub runner_name: Option<String>,
    /// The workflow's name, when given (for accounting).
    pub workflow: Option<String>,
    /// GitHub's `created_at` / `started_at`, epoch seconds, when given.
    pub created_at: Option<i64>,
    pub started_at: Option<i64>,
}

/// A job as the database holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRow {
    pub job_id: u64,
    pub run_id: u64,
    pub repo: String,
    pub labels: Vec<String>,
    pub status: JobStatus,
    pub runner_name: Option<String>,
    /// When we first saw it queued, epoch milliseconds.
    pub queued_ms: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_and_unknown_ones_are_errors() {
        for status in JobStatus::ALL {
            assert_eq!(JobStatus::parse(status.as_str()), Ok(status));
        }
        let err = JobStatus::parse("exploded").unwrap_err();
        assert_eq!(err.to_string(), "unknown job status \"exploded\"");
        assert!(JobStatus::Waiting.rank() < JobStatus::Queued.rank());
        assert!(JobStatus::InProgress.rank() < JobStatus::Completed.rank());
    }
}
