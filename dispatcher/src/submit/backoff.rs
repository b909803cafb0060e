//! Back-off for failing `sbatch`: 1, 2, 4, ... seconds up to `sbatch_backoff_max_secs`,
//! reset by the first success.

use std::time::{Duration, Instant};

#[derive(Debug, Default)]
pub(super) struct Backoff {
    failures: u32,
    retry_at: Option<Instant>,
}

impl Backoff {
    /// When submissions may be tried again (`None`: now).
    pub(super) fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// One more failure: the delay, in seconds, before the next try.
    pub(super) fn failed(&mut self, max_secs: u64) -> u64 {
        self.failures += 1;
        let secs = (1u64 << (self.failures - 1).min(10)).min(max_secs);
        self.retry_at = Some(Instant::now() + Duration::from_secs(secs));
        secs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_maximum() {
        let mut b = Backoff::default();
        assert!(b.retry_at().is_none());
        let delays: Vec<u64> = (0..8).map(|_| b.failed(60)).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(b.retry_at().is_some());
        assert_eq!(Backoff::default().failed(0), 0);
    }
}
