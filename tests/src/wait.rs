//! Waiting on a condition with a deadline: the one way tests wait for anything.

use std::time::{Duration, Instant};

/// How often conditions are re-checked. Short, because the things tests wait for (a job
/// starting, a file appearing) usually take well under a second here.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Calls `check` until it returns `Some`, or fails with `what` once `timeout` has passed.
/// The last error `check` reported, if any, is part of the failure message.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut check: impl FnMut() -> anyhow::Result<Option<T>>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + timeout;
    let mut last_error = None;
    loop {
        match check() {
            Ok(Some(value)) => return Ok(value),
            Ok(None) => {}
            Err(error) => last_error = Some(error),
        }
        if Instant::now() >= deadline {
            return Err(match last_error {
                Some(error) => {
                    error.context(format!("timed out after {timeout:?} waiting for {what}"))
                }
                None => anyhow::anyhow!("timed out after {timeout:?} waiting for {what}"),
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}
