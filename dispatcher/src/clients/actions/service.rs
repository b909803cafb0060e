//! Calls made with the admin token: scale sets, JIT configs, runner removal, sessions.

use reqwest::Method;
use serde_json::{json, Value};

use super::wire::{ScaleSetList, Session};
use super::{ActionsClient, ActionsError, Label, ScaleSet};
use crate::clients::github::{urlencode, DeleteOutcome, MintError, MintedRunner};

const SCALE_SETS: &str = "_apis/runtime/runnerscalesets";
const AGENTS: &str = "_apis/distributedtask/pools/0/agents";

impl ActionsClient {
    /// The scale set named `name` in runner group `group_id`, if there is one.
    pub async fn find_scale_set(
        &self,
        group_id: u64,
        name: &str,
    ) -> Result<Option<ScaleSet>, ActionsError> {
        let endpoint = "GET runnerscalesets?name";
        let path = format!(
            "{SCALE_SETS}?runnerGroupId={group_id}&name={}",
            urlencode(name)
        );
        let (_, body) = self.admin_call(Method::GET, endpoint, &path, None).await?;
        let list: ScaleSetList =
            serde_json::from_value(body).map_err(|e| ActionsError::decode(endpoint, e))?;
        match list.count {
            0 => Ok(None),
            1 => Ok(list.value.into_iter().next()),
            n => Err(ActionsError::decode(
                endpoint,
                format!("{n} scale sets are named {name:?}"),
            )),
        }
    }

    /// Create the scale set `name` in group `group_id` whose runners carry `labels`.
    pub async fn create_scale_set(
        &self,
        group_id: u64,
        name: &str,
        labels: &[String],
    ) -> Result<ScaleSet, ActionsError> {
        let endpoint = "POST runnerscalesets";
        let set = ScaleSet {
            id: 0,
            name: name.to_string(),
            runner_group_id: group_id,
            labels: labels
                .iter()
                .map(|l| Label {
                    kind: "System".into(),
                    name: l.clone(),
                })
                .collect(),
        };
        let body = serde_json::to_value(&set).map_err(|e| ActionsError::decode(endpoint, e))?;
        let (_, answer) = self
            .admin_call(Method::POST, endpoint, SCALE_SETS, Some(&body))
            .await?;
        serde_json::from_value(answer).map_err(|e| ActionsError::decode(endpoint, e))
    }

    /// A JIT config for a new runner `name` of scale set `scale_set_id`.
    pub async fn generate_jit_config(
        &self,
        scale_set_id: u64,
        name: &str,
    ) -> Result<MintedRunner, MintError> {
        let endpoint = "POST runnerscalesets/{id}/generatejitconfig";
        let path = format!("{SCALE_SETS}/{scale_set_id}/generatejitconfig");
        let body = json!({ "name": name, "workFolder": "_work" });
        match self
            .admin_call(Method::POST, endpoint, &path, Some(&body))
            .await
        {
            Ok((_, answer)) => minted(endpoint, &answer),
            Err(ActionsError::Status { status: 409, .. }) => Err(MintError::NameTaken),
            Err(ActionsError::Status { type_name, .. })
                if type_name.contains("AgentExistsException") =>
            {
                Err(MintError::NameTaken)
            }
            Err(e) => Err(MintError::Other(e.into())),
        }
    }

    /// The id of the runner registered as `name`, if any.
    pub async fn find_runner(&self, name: &str) -> Result<Option<u64>, ActionsError> {
        let endpoint = "GET agents?agentName";
        let path = format!("{AGENTS}?agentName={}", urlencode(name));
        let (_, body) = self.admin_call(Method::GET, endpoint, &path, None).await?;
        let found = body["value"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["name"].as_str() == Some(name))
            .and_then(|r| r["id"].as_u64());
        Ok(found)
    }

    /// Remove runner `runner_id`'s registration.
    pub async fn remove_runner(&self, runner_id: u64) -> Result<DeleteOutcome, ActionsError> {
        let endpoint = "DELETE agents/{id}";
        let path = format!("{AGENTS}/{runner_id}");
        match self.admin_call(Method::DELETE, endpoint, &path, None).await {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(ActionsError::Status { status: 404, .. }) => Ok(DeleteOutcome::AlreadyGone),
            Err(ActionsError::Status { type_name, .. })
                if type_name.contains("JobStillRunningException") =>
            {
                Ok(DeleteOutcome::Busy)
            }
            Err(e) => Err(e),
        }
    }

    /// Open a message session on the scale set; 409 while another one is active.
    pub async fn create_session(
        &self,
        scale_set_id: u64,
        owner: &str,
    ) -> Result<Session, ActionsError> {
        let endpoint = "POST runnerscalesets/{id}/sessions";
        let path = format!("{SCALE_SETS}/{scale_set_id}/sessions");
        let body = json!({ "ownerName": owner });
        let (_, answer) = self
            .admin_call(Method::POST, endpoint, &path, Some(&body))
            .await?;
        serde_json::from_value(answer).map_err(|e| ActionsError::decode(endpoint, e))
    }

    /// A fresh message-queue token for the session (after a 401).
    pub async fn refresh_session(
        &self,
        scale_set_id: u64,
        session: &Session,
    ) -> Result<Session, ActionsError> {
        let endpoint = "PATCH runnerscalesets/{id}/sessions/{session}";
        let path = format!(
            "{SCALE_SETS}/{scale_set_id}/sessions/{}",
            session.session_id
        );
        let (_, answer) = self
            .admin_call(Method::PATCH, endpoint, &path, None)
            .await?;
        serde_json::from_value(answer).map_err(|e| ActionsError::decode(endpoint, e))
    }

    /// Close the session, so the next listener need not wait for it to expire.
    pub async fn delete_session(
        &self,
        scale_set_id: u64,
        session: &Session,
    ) -> Result<(), ActionsError> {
        let endpoint = "DELETE runnerscalesets/{id}/sessions/{session}";
        let path = format!(
            "{SCALE_SETS}/{scale_set_id}/sessions/{}",
            session.session_id
        );
        match self.admin_call(Method::DELETE, endpoint, &path, None).await {
            Ok(_) | Err(ActionsError::Status { status: 404, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

fn minted(endpoint: &str, answer: &Value) -> Result<MintedRunner, MintError> {
    match (
        answer["runner"]["id"].as_u64(),
        answer["encodedJITConfig"].as_str(),
    ) {
        (Some(runner_id), Some(config)) => Ok(MintedRunner {
            runner_id,
            encoded_jit_config: config.to_string(),
        }),
        _ => Err(MintError::Other(
            ActionsError::decode(endpoint, "missing runner.id or encodedJITConfig").into(),
        )),
    }
}
