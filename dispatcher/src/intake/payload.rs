//! The `workflow_job` payload: the fields the dispatcher reads, as a job update.

use serde::Deserialize;

use crate::model::{parse_timestamp, JobStatus, JobUpdate};

#[derive(Debug, Deserialize)]
struct WorkflowJobEvent {
    action: String,
    workflow_job: WorkflowJob,
    repository: Repository,
}

#[derive(Debug, Deserialize)]
struct WorkflowJob {
    id: u64,
    run_id: u64,
    #[serde(default)]
    labels: Vec<String>,
    status: String,
    #[serde(default)]
    runner_name: Option<String>,
    #[serde(default)]
    workflow_name: Option<String>,
    #[serde(default)]
    created_at: Option<String>,
    #[serde(default)]
    started_at: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Repository {
    full_name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("malformed workflow_job payload: {0}")]
pub struct MalformedPayload(String);

/// Turn a `workflow_job` body into the job update it carries.
///
/// The action is what happened; the job's `status` may lag (a real example has action
/// `queued` with status `waiting`), so the furthest of the two is recorded.
pub fn parse_workflow_job(body: &[u8]) -> Result<(String, JobUpdate), MalformedPayload> {
    let event: WorkflowJobEvent =
        serde_json::from_slice(body).map_err(|e| MalformedPayload(e.to_string()))?;
    let status = JobStatus::parse(&event.workflow_job.status)
        .map_err(|e| MalformedPayload(format!("workflow_job.status: {e}")))?;
    let status = match JobStatus::parse(&event.action) {
        Ok(action) if action.rank() > status.rank() => action,
        _ => status,
    };
    Ok((
        event.action,
        JobUpdate {
            job_id: event.workflow_job.id,
            run_id: event.workflow_job.run_id,
            repo: event.repository.full_name,
            labels: event.workflow_job.labels,
            status,
            runner_name: event.workflow_job.runner_name.filter(|n| !n.is_empty()),
            workflow: event.workflow_job.workflow_name,
            created_at: event
                .workflow_job
                .created_at
                .as_deref()
                .and_then(parse_timestamp),
            started_at: event
                .workflow_job
                .started_at
                .as_deref()
                .and_then(parse_timestamp),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_minimal_event_and_keeps_the_furthest_status() {
        let body =
            br#"{"action":"in_progress","workflow_job":{"id":5,"run_id":2,"labels":["self-hosted"],
            "status":"queued","runner_name":"r1"},"repository":{"full_name":"acme/w"}}"#;
        let (action, u) = parse_workflow_job(body).unwrap();
        assert_eq!(action, "in_progress");
        assert_eq!(u.status, JobStatus::InProgress);
        assert_eq!(u.runner_name.as_deref(), Some("r1"));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse_workflow_job(b"not json").is_err());
        assert!(parse_workflow_job(br#"{"action":"queued"}"#).is_err());
        assert!(parse_workflow_job(br#"{"action":"queued","workflow_job":{"id":"x"}}"#).is_err());
        // A status outside GitHub's contract is not guessed at.
        let odd = br#"{"action":"queued","workflow_job":{"id":5,"run_id":2,"status":"exploded"},
            "repository":{"full_name":"acme/w"}}"#;
        let err = parse_workflow_job(odd).unwrap_err().to_string();
        assert!(err.contains("exploded"), "{err}");
    }
}
