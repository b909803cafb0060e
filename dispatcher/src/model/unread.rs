//! Which queued rows the demand may count while this process has not yet read every webhook
//! repository's jobs from GitHub. After a restart the database may hold jobs that started or
//! were cancelled while the dispatcher was down; counting them would submit runners nobody
//! needs. Rather than holding every pool until one reconcile pass gets through without an
//! error (under a steady share of GitHub errors that pass may never come: the soak found
//! this), each repository is trusted once it was listed, and each row once GitHub confirmed it.

use std::collections::HashSet;

use super::JobRow;

/// What GitHub has not yet confirmed since this process started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unread {
    /// Nothing read yet (before the first pass): no queued row counts.
    Everything,
    /// Webhook repositories not listed yet, and rows of the first pass not yet confirmed.
    Some {
        repos: HashSet<String>,
        jobs: HashSet<u64>,
    },
}

impl Unread {
    /// Everything confirmed: every queued row counts.
    pub fn nothing() -> Unread {
        Unread::Some {
            repos: HashSet::new(),
            jobs: HashSet::new(),
        }
    }

    /// Whether the demand may count `job`.
    pub fn trusts(&self, job: &JobRow) -> bool {
        match self {
            Unread::Everything => false,
            Unread::Some { repos, jobs } => {
                !repos.contains(&job.repo) && !jobs.contains(&job.job_id)
            }
        }
    }

    pub fn is_nothing(&self) -> bool {
        matches!(self, Unread::Some { repos, jobs } if repos.is_empty() && jobs.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::JobStatus;

    fn row(job_id: u64, repo: &str) -> JobRow {
        JobRow {
            job_id,
            run_id: 1,
            repo: repo.into(),
            labels: vec![],
            status: JobStatus::Queued,
            runner_name: None,
            queued_ms: None,
        }
    }

    #[test]
    fn a_listed_repository_counts_while_an_unlisted_one_and_unconfirmed_rows_wait() {
        let unread = Unread::Some {
            repos: ["acme/slow".to_string()].into(),
            jobs: [7].into(),
        };
        assert!(unread.trusts(&row(1, "acme/listed")));
        assert!(!unread.trusts(&row(2, "acme/slow")));
        assert!(!unread.trusts(&row(7, "acme/listed")));
        assert!(!unread.is_nothing());
    }

    #[test]
    fn before_the_first_pass_nothing_counts_and_after_everything_does() {
        assert!(!Unread::Everything.trusts(&row(1, "acme/a")));
        assert!(!Unread::Everything.is_nothing());
        assert!(Unread::nothing().trusts(&row(1, "acme/a")));
        assert!(Unread::nothing().is_nothing());
    }
}
