//! Faults injected on demand: webhook delivery faults and REST answer faults.

use serde::{Deserialize, Serialize};

/// The fault knobs. "Next N" counters decrement each time the fault fires.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// The next N webhook deliveries are not sent (logged with outcome `dropped`).
    pub drop_deliveries: u32,
    /// The next N deliveries are sent twice, with the same GUID.
    pub duplicate_deliveries: u32,
    /// Every delivery waits this long before being sent.
    pub delivery_delay_ms: u64,
    /// The next N deliveries are held, then sent in reverse order.
    pub reorder_deliveries: u32,
    /// Held deliveries are flushed after this long even if fewer than N arrived (0 = 1000 ms).
    pub reorder_window_ms: u64,
    /// The next N REST calls answer a server error.
    pub server_errors: u32,
    /// Status of those server errors (0 = 502).
    pub server_error_status: u16,
    /// The next N REST calls answer the primary rate-limit error.
    pub primary_rate_limit: u32,
    /// The next N REST calls answer a secondary rate-limit error with `retry-after`.
    pub secondary_rate_limit: u32,
    /// `retry-after` seconds of secondary-limit answers (0 = 60).
    pub secondary_retry_after_s: u64,
    /// Seconds until the reset an injected primary rate limit names (0 = 60).
    pub primary_reset_s: u64,
    /// Status of rate-limit answers: 403 (default, 0) or 429.
    pub rate_limit_status: u16,
    /// Every REST call (on a path `only_path_contains` matches) waits this long before being
    /// handled.
    pub latency_ms: u64,
    /// Overrides the primary limit per credential and window.
    pub rate_limit_budget: Option<u32>,
    /// Restrict the REST faults to request paths containing this string.
    pub only_path_contains: Option<String>,
    /// Percentage (0–100) of REST calls answered with a fault besides the "next N" ones:
    /// exactly that share (every call that moves `calls × percent / 100` past a whole number),
    /// a server error, a secondary and a primary rate limit in turn. Counted in
    /// `Counters::faults_injected`.
    pub fault_percent: u32,
    /// Percentage (0–100) of webhook deliveries given a fault, in turn: dropped, duplicated,
    /// delayed (`delivery_delay_ms`, 0 = 2000 ms) and reordered (held for the reorder window,
    /// so later deliveries overtake it). Counted in `Counters::faults_injected`.
    pub delivery_fault_percent: u32,
}

/// The kinds of fault [`Faults::fault_percent`] takes turns with.
pub const REST_FAULT_KINDS: [&str; 3] = [
    "rest server error",
    "rest secondary rate limit",
    "rest primary rate limit",
];

/// The kinds of fault [`Faults::delivery_fault_percent`] takes turns with.
pub const DELIVERY_FAULT_KINDS: [&str; 4] = [
    "webhook dropped",
    "webhook duplicated",
    "webhook delayed",
    "webhook reordered",
];

/// Deterministic "percent of calls": the `n`th call (from 0) is chosen when it moves
/// `n × percent / 100` past a whole number, so exactly that share is chosen. Returns which
/// chosen one it is (for taking turns among kinds).
pub fn percent_pick(n: u64, percent: u32) -> Option<u64> {
    let percent = u64::from(percent.min(100));
    let before = n * percent / 100;
    let after = (n + 1) * percent / 100;
    (after > before).then_some(before)
}

impl Faults {
    pub fn server_error_status(&self) -> u16 {
        if self.server_error_status == 0 {
            502
        } else {
            self.server_error_status
        }
    }

    pub fn rate_limit_status(&self) -> u16 {
        if self.rate_limit_status == 0 {
            403
        } else {
            self.rate_limit_status
        }
    }

    pub fn secondary_retry_after_s(&self) -> u64 {
        if self.secondary_retry_after_s == 0 {
            60
        } else {
            self.secondary_retry_after_s
        }
    }

    /// The delay of a delivery the percentage delays.
    pub fn percent_delay_ms(&self) -> u64 {
        if self.delivery_delay_ms == 0 {
            2000
        } else {
            self.delivery_delay_ms
        }
    }

    pub fn primary_reset_s(&self) -> u64 {
        if self.primary_reset_s == 0 {
            60
        } else {
            self.primary_reset_s
        }
    }

    pub fn reorder_window_ms(&self) -> u64 {
        if self.reorder_window_ms == 0 {
            1000
        } else {
            self.reorder_window_ms
        }
    }

    /// Takes one from a "next N" counter; true when the fault fires.
    pub fn take(counter: &mut u32) -> bool {
        if *counter > 0 {
            *counter -= 1;
            true
        } else {
            false
        }
    }
}

/// Fault knobs of the runner scale set protocol (the Actions service and its message queue),
/// apart from the REST ones: GitHub serves them from another host with other failure modes.
/// "Next N" counters decrement each time the fault fires.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScaleSetFaults {
    /// The next N session creations answer 409 `TaskAgentSessionConflictException`.
    pub session_conflicts: u32,
    /// The next N message-queue calls (poll, delete, acquire) find their token expired: 401,
    /// and the session's token stays expired until the session is refreshed (PATCH).
    pub expire_queue_tokens: u32,
    /// The next N Actions-service calls (queue included) answer 503.
    pub server_errors: u32,
    /// Percentage (0–100) of Actions-service calls (queue included) that answer 503.
    pub server_error_percent: u32,
    /// Every message poll waits this long before looking at the queue.
    pub poll_delay_ms: u64,
    /// The next N polls deliver again the last message already acknowledged (same id).
    pub redeliver_messages: u32,
    /// The re-offer quirk: a `JobAvailable` not acquired within this many ms (0 = off) comes
    /// back as `JobAssigned` then `JobCompleted` "canceled", and is offered again under a new
    /// request id, up to three times per job.
    pub reoffer_after_ms: u64,
    /// The next N `acquirejobs` calls acquire one id fewer than asked (the last one), which is
    /// offered again in the next message.
    pub acquire_fewer: u32,
    /// The next N `acquirejobs` calls answer 503 and acquire nothing (the offers stay offered).
    pub acquire_errors: u32,
    /// The next N message acknowledgements (`DELETE` on the queue) answer 503: the message
    /// stays until a later poll's `lastMessageId` passes it.
    pub ack_errors: u32,
}

#[cfg(test)]
mod tests {
    use super::percent_pick;

    #[test]
    fn percent_picks_exactly_that_share_in_turn() {
        let picked: Vec<u64> = (0..100).filter_map(|n| percent_pick(n, 20)).collect();
        assert_eq!(picked, (0..20).collect::<Vec<_>>());
        assert_eq!(
            (0..1000).filter(|n| percent_pick(*n, 10).is_some()).count(),
            100
        );
        assert!((0..1000).all(|n| percent_pick(n, 0).is_none()));
        assert!((0..50).all(|n| percent_pick(n, 100).is_some()));
    }
}
