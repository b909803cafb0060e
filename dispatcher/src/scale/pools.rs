//! Matching a job's `runs-on` labels to a configured pool.
//!
//! A job matches a pool when every label of the job is among the pool's labels, compared
//! case-insensitively, with `self-hosted` always on the pool. Among matching pools the
//! highest `priority` wins; ties go to the pool listed first.

use crate::config::PoolConfig;

pub fn matches(pool: &PoolConfig, job_labels: &[String]) -> bool {
    job_labels.iter().all(|label| {
        let label = label.trim().to_lowercase();
        label == "self-hosted" || pool.labels.contains(&label)
    })
}

/// The pool that serves a job with these labels, or `None` when the job is not ours.
pub fn select<'a>(pools: &'a [PoolConfig], job_labels: &[String]) -> Option<&'a PoolConfig> {
    let mut best: Option<&PoolConfig> = None;
    for pool in pools.iter().filter(|p| matches(p, job_labels)) {
        if best.is_none_or(|b| pool.priority > b.priority) {
            best = Some(pool);
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(name: &str, labels: &[&str], priority: i64) -> PoolConfig {
        PoolConfig::example(name, labels, priority)
    }

    fn labels(l: &[&str]) -> Vec<String> {
        l.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn case_insensitive_subset_with_implied_self_hosted() {
        let p = pool("cpu", &["linux", "x64"], 0);
        assert!(matches(&p, &labels(&["Self-Hosted", "LINUX"])));
        assert!(matches(&p, &labels(&["linux"])));
        assert!(matches(&p, &labels(&["self-hosted"])));
        assert!(!matches(&p, &labels(&["self-hosted", "linux", "gpu"])));
        assert!(!matches(&p, &labels(&["ubuntu-latest"])));
    }

    #[test]
    fn priority_then_order() {
        let pools = vec![
            pool("small", &["linux"], 0),
            pool("big", &["linux", "gpu"], 5),
            pool("other", &["linux"], 0),
        ];
        assert_eq!(select(&pools, &labels(&["linux"])).unwrap().name, "big");
        assert_eq!(select(&pools, &labels(&["gpu"])).unwrap().name, "big");
        let pools = vec![pool("small", &["linux"], 0), pool("other", &["linux"], 0)];
        assert_eq!(select(&pools, &labels(&["linux"])).unwrap().name, "small");
        assert!(select(&pools, &labels(&["windows"])).is_none());
    }
}
