//! A recording webhook relay between the simulator and the dispatcher. It notes, with
//! sub-millisecond precision, when each delivery reached the dispatcher's side and how long the
//! dispatcher took to answer, which the simulator's delivery log (whole seconds) cannot. In
//! hold mode it answers the simulator at once and keeps the deliveries, so a burst can later
//! be released at the dispatcher at a chosen rate (1,000 within one second).

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;

/// One delivery as the relay saw it.
#[derive(Debug, Clone)]
pub struct Relayed {
    /// Unix time (s) when the relay started sending it to the dispatcher.
    pub sent_at: f64,
    /// Seconds until the dispatcher's answer had arrived.
    pub response_secs: f64,
    /// The dispatcher's status code, 0 when the request failed.
    pub status: u16,
    pub action: Option<String>,
    pub job_id: Option<u64>,
}

struct Held {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Default)]
struct Inner {
    target: Option<String>,
    hold: bool,
    held: Vec<Held>,
    relayed: Vec<Relayed>,
}

#[derive(Clone)]
pub struct Relay {
    inner: Arc<Mutex<Inner>>,
    client: reqwest::Client,
    addr: SocketAddr,
}

/// Unix time in seconds.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// The headers GitHub sends that the dispatcher reads.
const FORWARDED: &[&str] = &[
    "content-type",
    "user-agent",
    "x-github-event",
    "x-github-delivery",
    "x-github-hook-id",
    "x-github-hook-installation-target-id",
    "x-github-hook-installation-target-type",
    "x-hub-signature",
    "x-hub-signature-256",
];

impl Relay {
    /// Starts the relay on a free loopback port, in the current tokio runtime.
    pub async fn start() -> Result<Relay> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .context("binding the webhook relay")?;
        let addr = listener
            .local_addr()
            .context("reading the relay's address")?;
        let relay = Relay {
            inner: Arc::new(Mutex::new(Inner::default())),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(15))
                .pool_max_idle_per_host(256)
                .build()
                .context("building the relay's HTTP client")?,
            addr,
        };
        let app = Router::new()
            .route("/webhook", post(receive))
            .with_state(relay.clone());
        tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                eprintln!("webhook relay stopped: {error}");
            }
        });
        Ok(relay)
    }

    /// Where the simulator should send webhooks.
    pub fn url(&self) -> String {
        format!("http://{}/webhook", self.addr)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the records half-written.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn set_target(&self, url: &str) {
        self.lock().target = Some(url.into());
    }

    /// In hold mode deliveries are kept (and answered 202) until `release`.
    pub fn set_hold(&self, hold: bool) {
        self.lock().hold = hold;
    }

    pub fn held(&self) -> usize {
        self.lock().held.len()
    }

    pub fn relayed(&self) -> Vec<Relayed> {
        self.lock().relayed.clone()
    }

    pub fn relayed_count(&self) -> usize {
        self.lock().relayed.len()
    }

    /// Sends everything held to the dispatcher, starting one delivery every `1/rate` seconds
    /// (each on its own connection task, as GitHub's many senders would), and returns once
    /// every answer is in. Returns the Unix time the first one was sent.
    pub async fn release(&self, rate_per_sec: f64) -> Result<f64> {
        let held = std::mem::take(&mut self.lock().held);
        let start = tokio::time::Instant::now();
        let first = unix_now();
        let mut tasks = Vec::with_capacity(held.len());
        for (i, delivery) in held.into_iter().enumerate() {
            tokio::time::sleep_until(start + Duration::from_secs_f64(i as f64 / rate_per_sec))
                .await;
            let relay = self.clone();
            tasks.push(tokio::spawn(async move {
                relay.forward(delivery.headers, delivery.body).await
            }));
        }
        for task in tasks {
            task.await.context("a relayed delivery panicked")?;
        }
        Ok(first)
    }

    /// Sends one delivery to the dispatcher and records the outcome; returns the status.
    async fn forward(&self, headers: HeaderMap, body: Bytes) -> StatusCode {
        let Some(target) = self.lock().target.clone() else {
            return StatusCode::SERVICE_UNAVAILABLE;
        };
        let (action, job_id) = describe(&body);
        let mut request = self.client.post(&target);
        for name in FORWARDED {
            if let Some(value) = headers.get(*name) {
                request = request.header(*name, value.as_bytes());
            }
        }
        let sent_at = unix_now();
        let clock = std::time::Instant::now();
        let status = match request.body(body).send().await {
            Ok(answer) => {
                let status = answer.status().as_u16();
                let _ = answer.bytes().await;
                status
            }
            Err(_) => 0,
        };
        let response_secs = clock.elapsed().as_secs_f64();
        self.lock().relayed.push(Relayed {
            sent_at,
            response_secs,
            status,
            action,
            job_id,
        });
        StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY)
    }
}

async fn receive(State(relay): State<Relay>, headers: HeaderMap, body: Bytes) -> StatusCode {
    {
        let mut inner = relay.lock();
        if inner.hold {
            inner.held.push(Held { headers, body });
            return StatusCode::ACCEPTED;
        }
    }
    relay.forward(headers, body).await
}

/// The `action` and `workflow_job.id` of a webhook body.
fn describe(body: &[u8]) -> (Option<String>, Option<u64>) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) else {
        return (None, None);
    };
    (
        value["action"].as_str().map(str::to_owned),
        value["workflow_job"]["id"].as_u64(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_workflow_job_bodies() {
        let body = br#"{"action":"queued","workflow_job":{"id":7}}"#;
        assert_eq!(describe(body), (Some("queued".into()), Some(7)));
        assert_eq!(describe(b"not json"), (None, None));
    }
}
