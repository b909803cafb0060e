//! The one HTTP request: `POST <dispatcher_url>/tickets/redeem` with the node's MUNGE
//! credential, plain http, no proxy, no redirects, bounded by the deadline and by
//! [`MAX_ANSWER_BYTES`]. A 200 answer is returned as it is (a credential sealed for root); any
//! other is a refusal.

use std::time::Instant;

use redeem_contract::MAX_ANSWER_BYTES;

use crate::answer::{failed, one_line, redeem_url, refusal, shown_url, Failure};
use crate::cli::Args;

/// Sends `credential` and returns the dispatcher's 200 answer.
pub fn redeem(args: &Args, credential: &[u8], deadline: Instant) -> Result<Vec<u8>, Failure> {
    let shown = shown_url(&args.url);
    let limit = args.timeout.as_secs();
    let unreachable = |e: &dyn std::fmt::Display| {
        failed(format!(
            "cannot reach the dispatcher at {shown}: {}",
            one_line(&e.to_string())
        ))
    };
    // ureq says only "timeout: global"; say which bound passed.
    let http_error = |e: ureq::Error| match e {
        ureq::Error::Timeout(_) => unreachable(&format!("no answer within {limit} s")),
        other => unreachable(&other),
    };
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(unreachable(
            &"no time left after creating the MUNGE credential",
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(left))
        .http_status_as_error(false)
        // The dispatcher is on the cluster's own network: no proxy from the environment, and
        // no redirect may send the credential elsewhere.
        .proxy(None)
        .max_redirects(0)
        .build()
        .into();
    let mut response = agent
        .post(redeem_url(&args.url))
        .header("Content-Type", "text/plain")
        .send(credential)
        .map_err(http_error)?;
    let status = response.status().as_u16();
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(http_error)?;
    if status != 200 {
        return Err(refusal(status, &body));
    }
    Ok(body)
}
