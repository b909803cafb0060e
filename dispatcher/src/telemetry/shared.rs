//! What the stages publish for `/status` besides the database: the last error of each kind,
//! back-off and rate-limit waits, call counts, refused jobs.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Facts the control loop publishes for the status endpoint.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub struct SharedStatus {
    pub last_full_reconcile_at: Option<i64>,
    pub last_github_error: Option<String>,
    pub last_sbatch_error: Option<String>,
    pub last_slurm_error: Option<String>,
    pub sbatch_retry_in_secs: Option<u64>,
    pub github_blocked_for_secs: Option<u64>,
    pub github_calls: BTreeMap<String, u64>,
    /// Queued jobs of ours that get no runner (e.g. unmapped repository under "refuse").
    #[serde(default)]
    pub refused_jobs: Vec<RefusedJob>,
    /// Warm pools (`min_idle`) by name: what each wants idle now and has idle.
    #[serde(default)]
    pub warm_pools: BTreeMap<String, WarmPoolStatus>,
}

/// A warm pool as the last scale pass saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WarmPoolStatus {
    /// The configured `min_idle` (per target).
    pub min_idle: u32,
    /// `warm_hours` as understood (UTC), absent when always warm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours: Option<String>,
    /// Idle runners wanted now, over all targets.
    pub target: usize,
    /// Idle runners online now.
    pub idle: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusedJob {
    pub job_id: u64,
    pub repo: String,
    pub reason: String,
}
