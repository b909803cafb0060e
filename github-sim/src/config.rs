//! Start-up settings of a simulator instance.

use std::time::Duration;

/// Settings fixed when the simulator starts. `SimConfig::default()` matches GitHub's own numbers.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Address to bind; port 0 picks a free one.
    pub listen: String,
    /// An unused JIT config (no runner session yet) expires after this; its registration is deleted.
    pub jit_config_ttl: Duration,
    /// Lifetime of installation access tokens.
    pub installation_token_ttl: Duration,
    /// Lifetime of registration tokens.
    pub registration_token_ttl: Duration,
    /// A webhook delivery without a 2xx answer within this counts as failed.
    pub webhook_timeout: Duration,
    /// Primary rate limit per credential and window.
    pub rate_limit: u32,
    /// Length of the primary rate-limit window.
    pub rate_limit_window: Duration,
    /// How long the fake runner's long-poll for a job waits before answering "no job".
    pub runner_poll_timeout: Duration,
    /// A runner not heard from this long goes offline; a job it was running fails.
    pub runner_offline_after: Duration,
    /// A job queued this long without a runner is cancelled (GitHub: 24 hours).
    pub queue_timeout: Duration,
    /// Secondary rate limit: points per credential and endpoint per minute (GET 1, writes 5).
    pub secondary_points_per_minute: u32,
    /// Serve the REST API over HTTPS with this certificate (`None`: plain HTTP, for the tests
    /// that need it). With TLS the runner service (`/_runner`, what the fake runner talks to, a
    /// separate host on GitHub too) stays plain HTTP on a second port.
    pub tls: Option<crate::tls::ServerIdentity>,
    /// Act as a GitHub Enterprise Server: the REST API under `/api/v3`, and webhooks carrying
    /// `X-GitHub-Enterprise-Host` and `X-GitHub-Enterprise-Version`.
    pub enterprise: Option<Enterprise>,
    /// Lifetime of the Actions service admin token (`POST /actions/runner-registration`); the
    /// service answers 401 after it.
    pub actions_admin_token_ttl: Duration,
    /// A scale set's message session not heard from (poll, acknowledge, acquire, refresh) this
    /// long expires, as one abandoned by a crashed listener does. Keep it above
    /// `message_poll_timeout`.
    pub scaleset_session_ttl: Duration,
    /// How long a message poll with nothing to deliver is held before answering 202.
    pub message_poll_timeout: Duration,
}

/// What a GitHub Enterprise Server says about itself in its webhooks.
#[derive(Debug, Clone)]
pub struct Enterprise {
    pub host: String,
    pub version: String,
}

impl Enterprise {
    /// The path GitHub Enterprise Server serves its REST API under.
    pub const API_PREFIX: &'static str = "/api/v3";
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:0".into(),
            jit_config_ttl: Duration::from_secs(3600),
            installation_token_ttl: Duration::from_secs(3600),
            registration_token_ttl: Duration::from_secs(3600),
            webhook_timeout: Duration::from_secs(10),
            rate_limit: 5000,
            rate_limit_window: Duration::from_secs(3600),
            runner_poll_timeout: Duration::from_secs(20),
            runner_offline_after: Duration::from_secs(60),
            queue_timeout: Duration::from_secs(24 * 3600),
            secondary_points_per_minute: 900,
            tls: None,
            enterprise: None,
            actions_admin_token_ttl: Duration::from_secs(3600),
            scaleset_session_ttl: Duration::from_secs(120),
            message_poll_timeout: Duration::from_secs(50),
        }
    }
}
