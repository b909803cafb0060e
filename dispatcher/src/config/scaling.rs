//! The `[scaling]` section: how often to reconcile, how long a runner may take to come
//! online, how many submissions at once, how far sbatch retries back off.

use super::issues::Issues;
use super::raw::RawScaling;

#[derive(Debug, Clone)]
pub struct ScalingConfig {
    pub reconcile_interval_secs: u64,
    pub boot_deadline_secs: u64,
    pub submit_concurrency: usize,
    pub sbatch_backoff_max_secs: u64,
}

/// Validates `[scaling]`.
pub(super) fn validate(s: RawScaling, issues: &mut Issues<'_>) -> ScalingConfig {
    if *s.reconcile_interval_secs.get_ref() == 0 {
        issues.at(
            "scaling.reconcile_interval_secs",
            s.reconcile_interval_secs.span(),
            "must be at least 1",
        );
    }
    if *s.boot_deadline_secs.get_ref() < 10 {
        issues.at(
            "scaling.boot_deadline_secs",
            s.boot_deadline_secs.span(),
            "must be at least 10",
        );
    }
    if *s.submit_concurrency.get_ref() == 0 {
        issues.at(
            "scaling.submit_concurrency",
            s.submit_concurrency.span(),
            "must be at least 1",
        );
    }

    ScalingConfig {
        reconcile_interval_secs: *s.reconcile_interval_secs.get_ref(),
        boot_deadline_secs: *s.boot_deadline_secs.get_ref(),
        submit_concurrency: *s.submit_concurrency.get_ref(),
        sbatch_backoff_max_secs: s.sbatch_backoff_max_secs.max(1),
    }
}
