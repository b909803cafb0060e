//! Calls made with a session's message-queue token: the long poll, its acknowledgement, and
//! acquiring offered jobs. A 401 means the token expired: the caller refreshes the session
//! ([`ActionsClient::refresh_session`]) and tries again, as the reference does.

use std::time::Duration;

use reqwest::header::{ACCEPT, AUTHORIZATION, USER_AGENT};
use reqwest::{Method, StatusCode};
use serde_json::json;

use super::wire::{parse_message, AcquiredJobs};
use super::{service_url, ActionsClient, ActionsError, Message, Session};

/// The service holds a poll about 50 s; the request may take a little longer than that.
const POLL_TIMEOUT: Duration = Duration::from_secs(90);
/// Sent with every poll: the most runners the set may have (GitHub offers no more jobs).
pub const MAX_CAPACITY_HEADER: &str = "X-ScaleSetMaxCapacity";
const POLL_ENDPOINT: &str = "GET message queue";

impl ActionsClient {
    /// The next message after `last_message_id`, or `None` when the poll ended without one.
    pub async fn get_message(
        &self,
        session: &Session,
        last_message_id: u64,
        max_capacity: u32,
    ) -> Result<Option<Message>, ActionsError> {
        let mut url = session.message_queue_url.clone();
        if last_message_id > 0 {
            let separator = if url.contains('?') { '&' } else { '?' };
            url = format!("{url}{separator}lastMessageId={last_message_id}");
        }
        let request = self
            .http
            .request(Method::GET, &url)
            .timeout(POLL_TIMEOUT)
            .header(ACCEPT, "application/json; api-version=6.0-preview")
            .header(
                AUTHORIZATION,
                format!("Bearer {}", session.message_queue_access_token),
            )
            .header(USER_AGENT, "gha-dispatcher")
            .header(MAX_CAPACITY_HEADER, max_capacity.to_string());
        self.metrics.listener_poll();
        let response = request.send().await.map_err(|e| ActionsError::Transport {
            endpoint: POLL_ENDPOINT.into(),
            message: e.without_url().to_string(),
        })?;
        let status = response.status();
        self.metrics.actions_call(POLL_ENDPOINT, status.as_u16());
        let text = response.text().await.unwrap_or_default();
        match status {
            StatusCode::ACCEPTED => Ok(None),
            StatusCode::OK => parse_message(&text)
                .map(Some)
                .map_err(|e| ActionsError::decode(POLL_ENDPOINT, e)),
            _ => Err(ActionsError::Status {
                endpoint: POLL_ENDPOINT.into(),
                status: status.as_u16(),
                type_name: String::new(),
                message: String::new(),
            }),
        }
    }

    /// Acknowledge message `message_id`: it is not delivered again.
    pub async fn delete_message(
        &self,
        session: &Session,
        message_id: u64,
    ) -> Result<(), ActionsError> {
        let (base, query) = match session.message_queue_url.split_once('?') {
            Some((base, query)) => (base, format!("?{query}")),
            None => (session.message_queue_url.as_str(), String::new()),
        };
        let url = format!("{}/{message_id}{query}", base.trim_end_matches('/'));
        self.send(
            Method::DELETE,
            "DELETE message queue/{id}",
            &url,
            &session.message_queue_access_token,
            None,
            None,
        )
        .await
        .map(drop)
    }

    /// Acquire offered jobs by their runner request ids; returns those acquired.
    pub async fn acquire_jobs(
        &self,
        scale_set_id: u64,
        session: &Session,
        request_ids: &[i64],
    ) -> Result<Vec<i64>, ActionsError> {
        let endpoint = "POST runnerscalesets/{id}/acquirejobs";
        let (base, _) = self.admin().await?;
        let url = service_url(
            &base,
            &format!("_apis/runtime/runnerscalesets/{scale_set_id}/acquirejobs"),
        );
        let body = json!(request_ids);
        let (_, answer) = self
            .send(
                Method::POST,
                endpoint,
                &url,
                &session.message_queue_access_token,
                Some(&body),
                None,
            )
            .await?;
        let acquired: AcquiredJobs =
            serde_json::from_value(answer).map_err(|e| ActionsError::decode(endpoint, e))?;
        Ok(acquired.value)
    }
}
