//! The idle window: nothing queued, so every GitHub call the dispatcher makes is overhead (the
//! reconciliation's conditional requests answer 304 and cost nothing).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::{api_delta, Stack};

#[derive(Debug, Default, Serialize)]
pub struct IdleResult {
    pub window_secs: f64,
    pub targets: usize,
    pub api_calls_paid: u64,
    pub api_calls_304: u64,
    pub api_calls_by_endpoint: BTreeMap<String, u64>,
    pub paid_per_hour_per_target: f64,
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
    let targets = 1;
    Ok(IdleResult {
        window_secs,
        targets,
        api_calls_paid: paid,
        api_calls_304: free,
        api_calls_by_endpoint: by_endpoint,
        paid_per_hour_per_target: paid as f64 * 3600.0 / window_secs / targets as f64,
    })
}
