//! What the stages report for people and monitoring: the Prometheus [`Metrics`] and the
//! [`SharedStatus`] that `/status` shows. A leaf: every stage reports here, it reports to
//! nobody.

mod metrics;
mod shared;

use std::sync::{Arc, Mutex, MutexGuard};

pub use metrics::Metrics;
pub use shared::{RefusedJob, SharedStatus, WarmPoolStatus};

/// The two together, as the control-loop stages hold them.
#[derive(Clone)]
pub struct Telemetry {
    pub metrics: Arc<Metrics>,
    pub shared: Arc<Mutex<SharedStatus>>,
}

impl Telemetry {
    pub fn new(metrics: Arc<Metrics>, shared: Arc<Mutex<SharedStatus>>) -> Telemetry {
        Telemetry { metrics, shared }
    }

    /// The shared status; a panic elsewhere never makes it unreadable.
    pub fn shared(&self) -> MutexGuard<'_, SharedStatus> {
        self.shared
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A failed GitHub call of a reconcile `step`: counted, logged, shown on `/status`.
    pub fn github_error(&self, step: &str, e: &dyn std::fmt::Display) {
        self.metrics.reconcile_error(step);
        tracing::warn!(step, error = %e, "GitHub call failed");
        self.shared().last_github_error = Some(e.to_string());
    }
}
