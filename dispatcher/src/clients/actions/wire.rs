//! The runner scale set protocol's JSON, as `actions/scaleset` (`types.go`) speaks it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Counts the service sends with a session and with every message.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Statistics {
    pub total_available_jobs: u32,
    pub total_acquired_jobs: u32,
    /// Jobs acquired for the set and not completed, running ones included: the runners the
    /// set needs in all (what `actions/scaleset`'s listener scales to).
    pub total_assigned_jobs: u32,
    pub total_running_jobs: u32,
    pub total_registered_runners: u32,
    pub total_busy_runners: u32,
    pub total_idle_runners: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
pub struct Label {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleSet {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub id: u64,
    pub name: String,
    pub runner_group_id: u64,
    #[serde(default)]
    pub labels: Vec<Label>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ScaleSetList {
    #[serde(default)]
    pub count: usize,
    #[serde(default)]
    pub value: Vec<ScaleSet>,
}

/// An open message session. Its queue token is a secret: `Debug` leaves it out.
#[derive(Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub session_id: String,
    pub message_queue_url: String,
    pub message_queue_access_token: String,
    #[serde(default)]
    pub statistics: Option<Statistics>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// What every job message carries (`JobMessageBase`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobInfo {
    pub runner_request_id: i64,
    pub repository_name: String,
    pub owner_name: String,
    pub job_id: String,
    pub job_workflow_ref: String,
    pub job_display_name: String,
    pub workflow_run_id: i64,
    pub request_labels: Vec<String>,
}

impl JobInfo {
    /// `owner/repo`.
    pub fn repo(&self) -> String {
        format!("{}/{}", self.owner_name, self.repository_name)
    }
}

/// One job message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobMessage {
    Available(JobInfo),
    Assigned(JobInfo),
    Started {
        job: JobInfo,
        runner_id: i64,
        runner_name: String,
    },
    Completed {
        job: JobInfo,
        result: String,
        runner_id: i64,
        runner_name: String,
    },
}

/// A message of the session's queue: its id, the statistics, and its job messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u64,
    pub statistics: Statistics,
    pub jobs: Vec<JobMessage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope {
    message_id: u64,
    message_type: String,
    #[serde(default)]
    body: String,
    #[serde(default)]
    statistics: Option<Statistics>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
struct RunnerFields {
    runner_id: i64,
    runner_name: String,
    result: String,
}

/// Parse a message as the reference does: the envelope, then its body (a JSON array as a
/// string) message by message; a job message of a type it does not know is skipped.
pub fn parse_message(text: &str) -> Result<Message, String> {
    let envelope: Envelope =
        serde_json::from_str(text).map_err(|e| format!("message envelope: {e}"))?;
    if envelope.message_type != "RunnerScaleSetJobMessages" {
        return Err(format!(
            "unsupported message type {:?}",
            envelope.message_type
        ));
    }
    let batch: Vec<Value> = if envelope.body.trim().is_empty() {
        Vec::new()
    } else {
        serde_json::from_str(&envelope.body).map_err(|e| format!("message body: {e}"))?
    };
    let mut jobs = Vec::with_capacity(batch.len());
    for item in batch {
        if let Some(job) = job_message(item)? {
            jobs.push(job);
        }
    }
    Ok(Message {
        id: envelope.message_id,
        statistics: envelope.statistics.unwrap_or_default(),
        jobs,
    })
}

fn job_message(item: Value) -> Result<Option<JobMessage>, String> {
    let kind = item["messageType"].as_str().unwrap_or("").to_string();
    let job: JobInfo =
        serde_json::from_value(item.clone()).map_err(|e| format!("{kind} message: {e}"))?;
    let runner = || -> Result<RunnerFields, String> {
        serde_json::from_value(item.clone()).map_err(|e| format!("{kind} message: {e}"))
    };
    Ok(Some(match kind.as_str() {
        "JobAvailable" => JobMessage::Available(job),
        "JobAssigned" => JobMessage::Assigned(job),
        "JobStarted" => {
            let r = runner()?;
            JobMessage::Started {
                job,
                runner_id: r.runner_id,
                runner_name: r.runner_name,
            }
        }
        "JobCompleted" => {
            let r = runner()?;
            JobMessage::Completed {
                job,
                result: r.result,
                runner_id: r.runner_id,
                runner_name: r.runner_name,
            }
        }
        _ => return Ok(None),
    }))
}

#[derive(Debug, Deserialize)]
pub(super) struct AcquiredJobs {
    #[serde(default)]
    pub value: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_parses_message_by_message_and_skips_unknown_types() {
        let body = serde_json::json!([
            {"messageType": "JobAvailable", "runnerRequestId": 7, "repositoryName": "w",
             "ownerName": "acme", "jobId": "g-1", "requestLabels": ["linux"]},
            {"messageType": "JobStarted", "runnerRequestId": 7, "runnerId": 3,
             "runnerName": "slurm-1", "repositoryName": "w", "ownerName": "acme"},
            {"messageType": "SomethingNew", "runnerRequestId": 9},
            {"messageType": "JobCompleted", "runnerRequestId": 7, "result": "succeeded",
             "runnerId": 3, "runnerName": "slurm-1"}
        ]);
        let text = serde_json::json!({
            "messageId": 12, "messageType": "RunnerScaleSetJobMessages",
            "body": body.to_string(), "statistics": {"totalAssignedJobs": 2}
        })
        .to_string();
        let m = parse_message(&text).unwrap();
        assert_eq!(m.id, 12);
        assert_eq!(m.statistics.total_assigned_jobs, 2);
        assert_eq!(m.jobs.len(), 3);
        assert!(matches!(&m.jobs[0], JobMessage::Available(j) if j.repo() == "acme/w"));
        assert!(
            matches!(&m.jobs[1], JobMessage::Started { runner_name, .. } if runner_name == "slurm-1")
        );
        assert!(
            matches!(&m.jobs[2], JobMessage::Completed { result, .. } if result == "succeeded")
        );
    }

    #[test]
    fn other_envelopes_and_broken_bodies_are_errors() {
        let other = r#"{"messageId": 1, "messageType": "Other", "body": "[]"}"#;
        assert!(parse_message(other).unwrap_err().contains("unsupported"));
        let broken =
            r#"{"messageId": 1, "messageType": "RunnerScaleSetJobMessages", "body": "[{"}"#;
        assert!(parse_message(broken).is_err());
        let empty = r#"{"messageId": 2, "messageType": "RunnerScaleSetJobMessages", "body": ""}"#;
        assert!(parse_message(empty).unwrap().jobs.is_empty());
    }

    #[test]
    fn a_session_never_prints_its_token() {
        let s = Session {
            session_id: "s1".into(),
            message_queue_url: "https://q".into(),
            message_queue_access_token: "secret-token".into(),
            statistics: None,
        };
        assert!(!format!("{s:?}").contains("secret-token"));
    }
}
