//! `gha-redeem --job-ended`: the plugin's epilog (root) tells the dispatcher that a runner
//! job ended, so its slot is freed at once instead of at the next poll of Slurm.
//!
//! ```text
//! gha-redeem --job-ended --url <dispatcher_url> --job-id <id> --munge-socket <socket> [--timeout SECS]
//! ```
//! `munge` signs a [`JobEndedNotice`]; one `POST <url>/runners/job-ended`, no retry: the
//! dispatcher still polls Slurm, so a lost notice only delays. Exit 0 on 204, 2 when refused,
//! 3 otherwise (one line on stderr). No ticket, nothing secret.

use std::time::Instant;

use redeem_contract::{JobEndedNotice, JOB_ENDED_PATH};

use crate::answer::{failed, refusal, Failure};
use crate::cli;
use crate::dispatcher::post_credential;
use crate::tool::run_tool;

/// Sends the notice for the job named on the command line (`args`: after `--job-ended`).
pub fn run(args: impl IntoIterator<Item = String>) -> Result<(), Failure> {
    let args = cli::parse_args(args)?;
    let deadline = Instant::now() + args.timeout;
    let socket = format!("--socket={}", args.munge_socket);
    let notice = JobEndedNotice {
        ended_job_id: args.job_id,
    };
    let credential = run_tool("munge", &[socket], notice.to_json().as_bytes(), deadline)
        .map_err(|e| failed(format!("cannot create a MUNGE credential: {e}")))?;
    post(&args, credential.trim_ascii(), deadline)
}

/// `<url>/runners/job-ended`, whether or not the configured URL ends in `/`.
pub fn ended_url(url: &str) -> String {
    format!("{}{JOB_ENDED_PATH}", url.trim_end_matches('/'))
}

fn post(args: &cli::Args, credential: &[u8], deadline: Instant) -> Result<(), Failure> {
    let target = ended_url(&args.url);
    let mut response = post_credential(&args.url, &target, args.timeout, credential, deadline)?;
    let status = response.status().as_u16();
    if status == 204 {
        return Ok(());
    }
    let body = response
        .body_mut()
        .with_config()
        .limit(4096)
        .read_to_vec()
        .unwrap_or_default();
    Err(refusal(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notice_url() {
        assert_eq!(ended_url("http://d:1/"), "http://d:1/runners/job-ended");
        assert_eq!(ended_url("http://d:1"), "http://d:1/runners/job-ended");
    }
}
