//! gha-redeem's command line (written by the plugin, see `redeem_contract::helper_flag`):
//! strict, every flag once, the URL plain `http://`.

use std::time::Duration;

use redeem_contract::helper_flag;

use crate::answer::{failed, Failure};

#[derive(Debug, PartialEq, Eq)]
pub struct Args {
    pub url: String,
    pub job_id: u32,
    pub munge_socket: String,
    pub timeout: Duration,
    /// The only uid whose credential is taken as the dispatcher's answer.
    pub dispatcher_uid: u32,
}

const USAGE: &str = "usage: GHA_TICKET=<ticket> gha-redeem --url URL --job-id ID --munge-socket PATH [--timeout SECS] [--dispatcher-uid UID]";

/// The bound when `--timeout` is not given.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// The largest `--timeout` accepted, in seconds (the plugin's `redeem_timeout` allows 300).
const MAX_TIMEOUT_SECS: u64 = 300;

pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, Failure> {
    let (mut url, mut job_id, mut socket, mut timeout) = (None, None, None, None);
    let mut dispatcher_uid = None;
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            helper_flag::URL => &mut url,
            helper_flag::JOB_ID => &mut job_id,
            helper_flag::MUNGE_SOCKET => &mut socket,
            helper_flag::TIMEOUT => &mut timeout,
            helper_flag::DISPATCHER_UID => &mut dispatcher_uid,
            "-h" | "--help" => return Err(failed(USAGE)),
            _ => return Err(failed(format!("unknown argument ({USAGE})"))),
        };
        let value = args
            .next()
            .ok_or_else(|| failed(format!("{flag} needs a value ({USAGE})")))?;
        if slot.replace(value).is_some() {
            return Err(failed(format!("{flag} is given more than once")));
        }
    }
    let url = url.ok_or_else(|| failed(format!("--url is required ({USAGE})")))?;
    check_url(&url)?;
    let job_id = job_id
        .ok_or_else(|| failed(format!("--job-id is required ({USAGE})")))?
        .parse::<u32>()
        .map_err(|_| failed("--job-id: expected a Slurm job id (a whole number)"))?;
    let munge_socket =
        socket.ok_or_else(|| failed(format!("--munge-socket is required ({USAGE})")))?;
    let timeout = match timeout {
        None => DEFAULT_TIMEOUT,
        Some(t) => match t.parse::<u64>() {
            Ok(n) if (1..=MAX_TIMEOUT_SECS).contains(&n) => Duration::from_secs(n),
            _ => {
                return Err(failed(format!(
                    "--timeout: expected whole seconds from 1 to {MAX_TIMEOUT_SECS}"
                )))
            }
        },
    };
    let dispatcher_uid = match dispatcher_uid {
        None => 0,
        Some(uid) => uid
            .parse::<u32>()
            .map_err(|_| failed("--dispatcher-uid: expected a numeric uid"))?,
    };
    Ok(Args {
        url,
        job_id,
        munge_socket,
        timeout,
        dispatcher_uid,
    })
}

fn check_url(url: &str) -> Result<(), Failure> {
    if url.starts_with("https://") {
        // Built without a TLS stack on purpose: the answer is sealed with MUNGE for root, and
        // the request carries only a MUNGE credential, so TLS would protect nothing more.
        return Err(failed(
            "--url: gha-redeem speaks plain http:// (the dispatcher's answer is sealed with \
             MUNGE); set dispatcher_url to the dispatcher's http:// address",
        ));
    }
    if !url.starts_with("http://") || url.chars().any(|c| c.is_control() || c == ' ') {
        return Err(failed("--url: expected an http:// URL"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use redeem_contract::HelperExit;

    fn args(list: &[&str]) -> Result<Args, Failure> {
        parse_args(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_arguments() {
        let parsed = args(&[
            "--url",
            "http://127.0.0.1:6820",
            "--job-id",
            "42",
            "--munge-socket",
            "/run/munge/munge.socket.2",
        ])
        .unwrap();
        assert_eq!(
            parsed,
            Args {
                url: "http://127.0.0.1:6820".into(),
                job_id: 42,
                munge_socket: "/run/munge/munge.socket.2".into(),
                timeout: Duration::from_secs(20),
                dispatcher_uid: 0,
            }
        );
        let parsed = args(&[
            "--timeout",
            "5",
            "--url",
            "http://d",
            "--job-id",
            "1",
            "--munge-socket",
            "/s",
            "--dispatcher-uid",
            "995",
        ])
        .unwrap();
        assert_eq!(parsed.timeout, Duration::from_secs(5));
        assert_eq!(parsed.dispatcher_uid, 995);
        for bad in [
            &["--url", "http://x", "--job-id", "1"][..],
            &["--url", "ftp://x", "--job-id", "1", "--munge-socket", "/s"],
            &[
                "--url",
                "https://x",
                "--job-id",
                "1",
                "--munge-socket",
                "/s",
            ],
            &[
                "--url",
                "http://x",
                "--job-id",
                "-1",
                "--munge-socket",
                "/s",
            ],
            &["--url", "http://x", "--job-id", "1", "--munge-socket"],
            &["--url", "http://x", "--url", "http://y"],
            &[
                "--url",
                "http://x",
                "--job-id",
                "1",
                "--munge-socket",
                "/s",
                "--timeout",
                "0",
            ],
            &["--ticket", "secret"],
            &[
                "--url",
                "http://x",
                "--job-id",
                "1",
                "--munge-socket",
                "/s",
                "--dispatcher-uid",
                "root",
            ],
        ] {
            let err = args(bad).unwrap_err();
            assert_eq!(err.exit, HelperExit::Failed, "{bad:?}");
            assert!(!err.message.contains("secret"), "{}", err.message);
        }
    }
}
