//! The idle window: nothing queued, so every GitHub call the dispatcher makes is overhead (the
//! reconciliation's conditional requests answer 304 and cost nothing). Counted per target: the
//! webhook target's REST calls, the listener target's REST calls and, apart, its scale set
//! protocol traffic (long polls of each pool's message queue, Actions-service calls).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::{account_delta, api_delta, ProtocolDelta, Stack, LISTEN_ORG};
use crate::demo::stack::ORG;

#[derive(Debug, Default, Serialize)]
pub struct IdleResult {
    pub window_secs: f64,
    pub targets: usize,
    pub api_calls_paid: u64,
    pub api_calls_304: u64,
    pub api_calls_by_endpoint: BTreeMap<String, u64>,
    pub paid_per_hour_per_target: f64,
    /// The webhook target (`acme`) and the listener target (`labs`) apart.
    pub webhook_target: TargetIdle,
    pub listener_target: TargetIdle,
    /// The App's own calls (installation tokens), shared by both targets.
    pub app_calls_paid: u64,
    /// The listener's scale set protocol (not REST, not rate-limited).
    pub protocol: ProtocolDelta,
    pub queue_polls_per_hour: f64,
    pub actions_calls_per_hour: f64,
}

/// One target's REST calls during the window.
#[derive(Debug, Default, Serialize)]
pub struct TargetIdle {
    pub account: String,
    pub paid: u64,
    pub not_modified: u64,
    pub by_endpoint: BTreeMap<String, u64>,
    pub paid_per_hour: f64,
}

/// Nothing queued: counts what the dispatcher asks GitHub during `window`.
pub fn idle(stack: &mut Stack, window: Duration) -> Result<IdleResult> {
    let before = stack.world.sim.counters();
    let start = Instant::now();
    // Measuring over a span of time is the point here, not waiting for a condition.
    std::thread::sleep(window);
    let window_secs = start.elapsed().as_secs_f64();
    stack.ensure_dispatcher_alive()?;
    let after = stack.world.sim.counters();
    let (paid, free, by_endpoint) = api_delta(&before, &after);
    let per_hour = |n: u64| n as f64 * 3600.0 / window_secs;
    let target = |account: &str| {
        let (paid, not_modified, by_endpoint) = account_delta(&before, &after, account);
        TargetIdle {
            account: account.to_owned(),
            paid,
            not_modified,
            by_endpoint,
            paid_per_hour: per_hour(paid),
        }
    };
    let targets = 2;
    let protocol = ProtocolDelta::between(&before.scaleset, &after.scaleset);
    Ok(IdleResult {
        window_secs,
        targets,
        api_calls_paid: paid,
        api_calls_304: free,
        api_calls_by_endpoint: by_endpoint,
        paid_per_hour_per_target: per_hour(paid) / targets as f64,
        webhook_target: target(ORG),
        listener_target: target(LISTEN_ORG),
        app_calls_paid: account_delta(&before, &after, "").0,
        queue_polls_per_hour: per_hour(protocol.queue_polls),
        actions_calls_per_hour: per_hour(protocol.actions_calls),
        protocol,
    })
}
