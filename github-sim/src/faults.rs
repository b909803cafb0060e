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
    /// Status of rate-limit answers: 403 (default, 0) or 429.
    pub rate_limit_status: u16,
    /// Every REST call waits this long before being handled.
    pub latency_ms: u64,
    /// Overrides the primary limit per credential and window.
    pub rate_limit_budget: Option<u32>,
    /// Restrict the REST faults to request paths containing this string.
    pub only_path_contains: Option<String>,
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
