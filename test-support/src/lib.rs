//! test-support: what the tests of every crate share. The crate root is the one way tests, the
//! demo and the benchmarks wait for something; [`munge`] runs MUNGE's tools; [`logs`] quotes
//! a log's last lines. A check is polled (often at first, then every 100 ms) until it yields
//! a value or the deadline passes;
//! the timeout error names what was awaited and the check's last complaint. Never a fixed sleep
//! standing in for a condition.
//!
//! ```
//! use std::time::Duration;
//! use test_support::wait_until;
//!
//! let mut n = 0;
//! let value = wait_until("n to reach 3", Duration::from_secs(5), || {
//!     n += 1;
//!     (n >= 3).then_some(n)
//! })
//! .unwrap();
//! assert_eq!(value, 3);
//! ```

pub mod logs;
pub mod munge;

use std::fmt::Display;
use std::future::Future;
use std::time::{Duration, Instant};

/// The first pause between two checks; it doubles after each miss up to [`MAX_POLL_INTERVAL`],
/// so cheap in-process conditions are seen at once and costly ones (`squeue`, HTTP) are not
/// hammered.
pub const FIRST_POLL_INTERVAL: Duration = Duration::from_millis(10);
/// The longest pause between two checks.
pub const MAX_POLL_INTERVAL: Duration = Duration::from_millis(100);

/// A wait that ended at its deadline.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timed out after {timeout:?} waiting for {what}{}", last_words(.last))]
pub struct TimedOut {
    /// What was awaited, as the caller named it.
    pub what: String,
    pub timeout: Duration,
    /// The last error the check reported, if it reported any.
    pub last: Option<String>,
}

fn last_words(last: &Option<String>) -> String {
    last.as_ref()
        .map(|l| format!("; last: {l}"))
        .unwrap_or_default()
}

/// What one look at the condition says: done with a value, not yet, or not yet with a reason
/// (kept for the timeout message).
pub trait Check<T> {
    /// `Ok(Some(value))` done, `Ok(None)` not yet, `Err(reason)` not yet, because.
    fn outcome(self) -> Result<Option<T>, String>;
}

impl<T> Check<T> for Option<T> {
    fn outcome(self) -> Result<Option<T>, String> {
        Ok(self)
    }
}

impl Check<()> for bool {
    fn outcome(self) -> Result<Option<()>, String> {
        Ok(self.then_some(()))
    }
}

impl<T, E: Display> Check<T> for Result<Option<T>, E> {
    fn outcome(self) -> Result<Option<T>, String> {
        self.map_err(|e| format!("{e:#}"))
    }
}

/// `Ok(true)` done, `Ok(false)` not yet, `Err(reason)` not yet, because. (The reason is a
/// `String` so that `Ok(cond)` in a check needs no type annotation.)
impl Check<()> for Result<bool, String> {
    fn outcome(self) -> Result<Option<()>, String> {
        self.map(|done| done.then_some(()))
    }
}

/// The bookkeeping both flavours share: deadline, backoff, last complaint.
struct Waiting {
    what: String,
    timeout: Duration,
    deadline: Instant,
    pause: Duration,
    /// A fixed pause instead of the backoff (for measurements that need a fine grain).
    every: Option<Duration>,
    last: Option<String>,
}

impl Waiting {
    fn new(what: &str, timeout: Duration, every: Option<Duration>) -> Waiting {
        Waiting {
            what: what.to_string(),
            timeout,
            deadline: Instant::now() + timeout,
            pause: every.unwrap_or(FIRST_POLL_INTERVAL),
            every,
            last: None,
        }
    }

    /// The value if the check is done, else the pause before the next look (an error once the
    /// deadline has passed).
    fn judge<T>(&mut self, check: impl Check<T>) -> Result<Result<T, Duration>, TimedOut> {
        match check.outcome() {
            Ok(Some(value)) => return Ok(Ok(value)),
            Ok(None) => {}
            Err(reason) => self.last = Some(reason),
        }
        let now = Instant::now();
        if now >= self.deadline {
            return Err(TimedOut {
                what: std::mem::take(&mut self.what),
                timeout: self.timeout,
                last: self.last.take(),
            });
        }
        let pause = self.pause.min(self.deadline - now);
        if self.every.is_none() {
            self.pause = (self.pause * 2).min(MAX_POLL_INTERVAL);
        }
        Ok(Err(pause))
    }
}

/// Calls `check` until it is done (see [`Check`]: `Some(value)`, `true`, `Ok(Some(value))`,
/// `Ok(true)`) and returns its value, or fails with [`TimedOut`] naming `what` once `timeout`
/// has passed. Blocks the thread between looks: for synchronous tests and drivers.
pub fn wait_until<T, C: Check<T>>(
    what: &str,
    timeout: Duration,
    check: impl FnMut() -> C,
) -> Result<T, TimedOut> {
    poll(Waiting::new(what, timeout, None), check)
}

/// [`wait_until`] with a fixed pause of `every` between looks instead of the backoff: for the
/// benchmarks, which time what they wait for and need the moment it happened to within `every`.
pub fn wait_until_every<T, C: Check<T>>(
    what: &str,
    timeout: Duration,
    every: Duration,
    check: impl FnMut() -> C,
) -> Result<T, TimedOut> {
    poll(Waiting::new(what, timeout, Some(every)), check)
}

fn poll<T, C: Check<T>>(mut waiting: Waiting, mut check: impl FnMut() -> C) -> Result<T, TimedOut> {
    loop {
        match waiting.judge(check())? {
            Ok(value) => return Ok(value),
            Err(pause) => std::thread::sleep(pause),
        }
    }
}

/// [`wait_until`] for async code: `check` returns a future, and the pauses are tokio sleeps,
/// so the runtime keeps serving (the simulator, an in-process dispatcher) meanwhile.
pub async fn wait_until_async<T, C: Check<T>, F: Future<Output = C>>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> F,
) -> Result<T, TimedOut> {
    let mut waiting = Waiting::new(what, timeout, None);
    loop {
        match waiting.judge(check().await)? {
            Ok(value) => return Ok(value),
            Err(pause) => tokio::time::sleep(pause).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_value_once_the_check_is_done() {
        let mut n = 0;
        let got = wait_until("three looks", Duration::from_secs(5), || {
            n += 1;
            (n == 3).then_some("done")
        });
        assert_eq!(got, Ok("done"));
    }

    #[test]
    fn times_out_naming_what_and_the_last_complaint() {
        let err = wait_until("the impossible", Duration::from_millis(30), || {
            Err::<Option<()>, _>("still no")
        })
        .unwrap_err();
        assert_eq!(err.what, "the impossible");
        assert_eq!(err.last.as_deref(), Some("still no"));
        assert_eq!(
            err.to_string(),
            "timed out after 30ms waiting for the impossible; last: still no"
        );
    }

    #[test]
    fn a_bool_check_waits_for_true() {
        let start = Instant::now();
        let err = wait_until("false to become true", Duration::from_millis(50), || false);
        assert!(err.is_err());
        assert!(start.elapsed() >= Duration::from_millis(50));
        assert_eq!(
            wait_until("true", Duration::from_millis(50), || Ok::<_, String>(true)),
            Ok(())
        );
    }

    #[test]
    fn a_fixed_pause_does_not_back_off() {
        let mut looks = 0;
        let _ = wait_until_every(
            "nothing",
            Duration::from_millis(60),
            Duration::from_millis(5),
            || {
                looks += 1;
                false
            },
        );
        assert!(looks >= 6, "{looks} looks");
    }

    #[tokio::test]
    async fn the_async_flavour_polls_futures() {
        let mut n = 0;
        let got = wait_until_async("two looks", Duration::from_secs(5), || {
            n += 1;
            let n = n;
            async move { (n == 2).then_some(n) }
        })
        .await;
        assert_eq!(got, Ok(2));
    }
}
