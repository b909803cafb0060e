//! The one HTTP request: `POST <dispatcher_url>/tickets/redeem` with the node's MUNGE
//! credential, plain http, no proxy, no redirects, bounded by the deadline and by
//! [`MAX_ANSWER_BYTES`]. A 200 answer is returned as it is (a credential sealed for root); a
//! refusal whose code is transient (the route was busy, MUNGE/Slurm/the database could not be
//! asked: nothing was decided, the ticket is not spent) is an [`Attempt::Again`]; any other is
//! a refusal.

use std::time::{Duration, Instant};

use redeem_contract::{RefusalBody, MAX_ANSWER_BYTES};

use crate::answer::{failed, one_line, redeem_url, refusal, shown_url, Failure};
use crate::cli::Args;

/// The longest pause before asking again, whatever `Retry-After` says.
pub const MAX_PAUSE: Duration = Duration::from_secs(2);

/// What one request gave.
#[derive(Debug)]
pub enum Attempt {
    /// The dispatcher's 200 answer.
    Sealed(Vec<u8>),
    /// A transient refusal: ask again (with a fresh credential) after `pause`, or give up with
    /// `failure` when there is no time left.
    Again { pause: Duration, failure: Failure },
}

/// Why there is no answer from the dispatcher at `url`, in one line.
pub fn unreachable(url: &str, e: &dyn std::fmt::Display) -> Failure {
    failed(format!(
        "cannot reach the dispatcher at {}: {}",
        shown_url(url),
        one_line(&e.to_string())
    ))
}

/// A ureq error as [`unreachable`]; ureq says only "timeout: global", so say which bound passed.
pub fn http_error(url: &str, limit: Duration, e: ureq::Error) -> Failure {
    match e {
        ureq::Error::Timeout(_) => {
            unreachable(url, &format!("no answer within {} s", limit.as_secs()))
        }
        other => unreachable(url, &other),
    }
}

/// POSTs `credential` as plain text to `target` (under the dispatcher's `url`) within what is
/// left until `deadline` (`limit`: the whole bound, as said in messages). The dispatcher is on
/// the cluster's own network: no proxy from the environment, and no redirect may send the
/// credential elsewhere. Any status comes back as an answer.
pub fn post_credential(
    url: &str,
    target: &str,
    limit: Duration,
    credential: &[u8],
    deadline: Instant,
) -> Result<ureq::http::Response<ureq::Body>, Failure> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(unreachable(
            url,
            &"no time left after creating the MUNGE credential",
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(left))
        .http_status_as_error(false)
        .proxy(None)
        .max_redirects(0)
        .build()
        .into();
    agent
        .post(target)
        .header("Content-Type", "text/plain")
        .send(credential)
        .map_err(|e| http_error(url, limit, e))
}

/// Sends `credential` once.
pub fn redeem(args: &Args, credential: &[u8], deadline: Instant) -> Result<Attempt, Failure> {
    let target = redeem_url(&args.url);
    let mut response = post_credential(&args.url, &target, args.timeout, credential, deadline)?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| http_error(&args.url, args.timeout, e))?;
    if status == 200 {
        return Ok(Attempt::Sealed(body));
    }
    judge_refusal(status, retry_after, &body)
}

/// A non-200 answer: [`Attempt::Again`] when its code says nothing was decided, else the
/// refusal.
pub fn judge_refusal(
    status: u16,
    retry_after: Option<u64>,
    body: &[u8],
) -> Result<Attempt, Failure> {
    let transient = RefusalBody::parse(body)
        .and_then(|b| b.code())
        .is_some_and(|code| code.is_transient() && code.http_status() == status);
    if !transient {
        return Err(refusal(status, body));
    }
    let pause = retry_after.map_or(Duration::from_millis(500), Duration::from_secs);
    Ok(Attempt::Again {
        pause: pause.min(MAX_PAUSE),
        failure: refusal(status, body),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_refusals_are_asked_again() {
        let busy = br#"{"error":"busy","message":"too many requests; try again"}"#;
        match judge_refusal(503, Some(1), busy) {
            Ok(Attempt::Again { pause, failure }) => {
                assert_eq!(pause, Duration::from_secs(1));
                assert!(failure.message.contains("busy"), "{}", failure.message);
            }
            other => panic!("{other:?}"),
        }
        let slurm = br#"{"error":"slurm_unavailable","message":"squeue failed"}"#;
        assert!(matches!(
            judge_refusal(503, Some(600), slurm),
            Ok(Attempt::Again { pause, .. }) if pause == MAX_PAUSE
        ));
        for (status, body) in [
            (
                503,
                &br#"{"error":"github_unavailable","message":"spent"}"#[..],
            ),
            (409, br#"{"error":"ticket_used","message":"used"}"#),
            (503, b"<html>proxy error</html>"),
            (403, br#"{"error":"busy","message":"not with this status"}"#),
        ] {
            assert!(
                judge_refusal(status, None, body).is_err(),
                "{status} {}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
