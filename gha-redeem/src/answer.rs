//! What gha-redeem says: the [`Failure`] (one stderr line and its exit code), refusals read from
//! the dispatcher's [`RefusalBody`], the config read from `unmunge` (checked for the
//! dispatcher's uid and this job's binding), and the URLs as requested
//! and as shown. Text from elsewhere is cleaned to one line; secrets never appear.

use redeem_contract::{HelperExit, RefusalBody, SealedAnswer, REDEEM_PATH};

/// Longest piece of a refusal or tool error repeated on stderr.
const MAX_SHOWN: usize = 200;

/// Why there is no config: the line for stderr and the exit status.
#[derive(Debug, PartialEq, Eq)]
pub struct Failure {
    pub exit: HelperExit,
    pub message: String,
}

/// A failure other than a refusal.
pub fn failed(message: impl Into<String>) -> Failure {
    Failure {
        exit: HelperExit::Failed,
        message: message.into(),
    }
}

/// `<url>/tickets/redeem`, whether or not the configured URL ends in `/`.
pub fn redeem_url(url: &str) -> String {
    format!("{}{REDEEM_PATH}", url.trim_end_matches('/'))
}

/// The URL as shown in messages: any `user:password@` is left out.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Text from elsewhere (the dispatcher, munge) made fit for one stderr line: control
/// characters dropped, whitespace runs collapsed, at most [`MAX_SHOWN`] characters.
pub fn one_line(text: &str) -> String {
    let cleaned: String = text
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !c.is_control())
        .collect();
    let mut line = cleaned.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some((cut, _)) = line.char_indices().nth(MAX_SHOWN) {
        line.truncate(cut);
        line.push_str("...");
    }
    line
}

/// The line for a non-200 answer, from its [`RefusalBody`] (or what it holds).
pub fn refusal(status: u16, body: &[u8]) -> Failure {
    let (code, message) = match RefusalBody::parse(body) {
        Some(refusal) => (one_line(&refusal.error), one_line(&refusal.message)),
        None => (
            "unknown".to_owned(),
            one_line(&String::from_utf8_lossy(body)),
        ),
    };
    let code = if code.is_empty() {
        "unknown".into()
    } else {
        code
    };
    let message = if message.is_empty() {
        "no reason given".into()
    } else {
        message
    };
    Failure {
        exit: HelperExit::Refused,
        message: format!("ticket refused by the dispatcher (HTTP {status} {code}): {message}"),
    }
}

/// The unmunge arguments whose output [`config_from_unmunge`] reads: the encoder's uid as a
/// number, then a blank line, then the payload.
pub const UNMUNGE_ARGS: [&str; 2] = ["--numeric", "--keys=UID"];

/// What `unmunge --numeric --keys=UID` printed, judged: the credential must have been made by
/// `dispatcher_uid` (anyone can make a credential restricted to root: a user who took the
/// dispatcher's port could answer), and its payload must be the [`SealedAnswer`] for this
/// `job_id` and `ticket` (not one made for another job). Returns the JIT config, which must be
/// base64. Never shows the payload.
pub fn config_from_unmunge(
    stdout: &[u8],
    dispatcher_uid: u32,
    job_id: u32,
    ticket: &str,
) -> Result<String, Failure> {
    let unusable = || failed("the dispatcher's answer does not hold a runner config");
    let split = stdout
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(unusable)?;
    let (metadata, payload) = (&stdout[..split], &stdout[split + 2..]);
    let uid = std::str::from_utf8(metadata)
        .ok()
        .and_then(|m| m.lines().find_map(|l| l.strip_prefix("UID:")))
        .and_then(|v| v.trim().parse::<u32>().ok())
        .ok_or_else(|| {
            failed("cannot tell who made the dispatcher's answer (no UID from unmunge)")
        })?;
    if uid != dispatcher_uid {
        return Err(failed(format!(
            "refusing the dispatcher's answer: it was made by uid {uid}, not by the dispatcher \
             (uid {dispatcher_uid}); something else may be answering at the dispatcher's address"
        )));
    }
    let answer = SealedAnswer::parse(payload).ok_or_else(unusable)?;
    if !answer.is_for(job_id, ticket) {
        return Err(failed(format!(
            "refusing the dispatcher's answer: it was sealed for another job or ticket \
             (job {}), not for job {job_id} and its ticket",
            answer.job_id
        )));
    }
    let text = answer.jit_config.trim();
    let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=".contains(c);
    if text.is_empty() || !text.chars().all(base64) {
        return Err(unusable());
    }
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            redeem_url("http://127.0.0.1:6820"),
            "http://127.0.0.1:6820/tickets/redeem"
        );
        assert_eq!(
            redeem_url("http://d:1/base/"),
            "http://d:1/base/tickets/redeem"
        );
        assert_eq!(shown_url("http://user:pw@host:1/x"), "http://host:1/x");
        assert_eq!(shown_url("http://host:1/a@b"), "http://host:1/a@b");
        assert_eq!(shown_url("http://host"), "http://host");
    }

    #[test]
    fn refusals_are_one_clean_line() {
        let f = refusal(
            410,
            br#"{"error":"not_needed","message":"no queued job\nwants this runner"}"#,
        );
        assert_eq!(f.exit, HelperExit::Refused);
        assert_eq!(
            f.message,
            "ticket refused by the dispatcher (HTTP 410 not_needed): no queued job wants this runner"
        );
        let f = refusal(502, b"<html>\x1b[31mBad gateway</html>");
        assert_eq!(
            f.message,
            "ticket refused by the dispatcher (HTTP 502 unknown): <html>[31mBad gateway</html>"
        );
        let f = refusal(500, b"");
        assert!(f.message.ends_with("(HTTP 500 unknown): no reason given"));
        let f = refusal(404, "x".repeat(5000).as_bytes());
        assert!(f.message.len() < 300, "{}", f.message.len());
    }

    fn decoded(uid: u32, payload: &str) -> Vec<u8> {
        format!("UID:              {uid}\n\n{payload}").into_bytes()
    }

    fn sealed(job_id: u32, ticket: &str, config: &str) -> String {
        SealedAnswer {
            job_id,
            ticket_sha256: redeem_contract::ticket_sha256(ticket),
            jit_config: config.into(),
        }
        .to_json()
    }

    #[test]
    fn reads_the_config_from_unmunge() {
        let good = decoded(0, &sealed(7, "T", "ZXlKaGJHY2lPaUo="));
        assert_eq!(
            config_from_unmunge(&good, 0, 7, "T").unwrap(),
            "ZXlKaGJHY2lPaUo="
        );
        let other_uid = decoded(995, &sealed(7, "T", "ZXk="));
        assert_eq!(
            config_from_unmunge(&other_uid, 995, 7, "T").unwrap(),
            "ZXk="
        );
        for bad in [
            &b""[..],
            b"\n",
            b"UID: 0\n\nZXk=",
            b"UID: 0\n\n",
            b"STATUS: Success (0)\n\nZXk=",
            b"\xff\xfe",
        ] {
            assert_eq!(
                config_from_unmunge(bad, 0, 7, "T").unwrap_err().exit,
                HelperExit::Failed
            );
        }
        assert!(
            config_from_unmunge(&decoded(0, &sealed(7, "T", "not base64!")), 0, 7, "T").is_err()
        );
    }

    #[test]
    fn refuses_answers_from_another_uid_or_for_another_job() {
        let forged = decoded(1001, &sealed(7, "T", "ZXk="));
        let err = config_from_unmunge(&forged, 0, 7, "T").unwrap_err();
        assert!(err.message.contains("made by uid 1001"), "{}", err.message);
        assert!(!err.message.contains("ZXk="));
        for (job, ticket) in [(8, "T"), (7, "U")] {
            let err = config_from_unmunge(&decoded(0, &sealed(job, ticket, "ZXk=")), 0, 7, "T")
                .unwrap_err();
            assert!(
                err.message.contains("another job or ticket"),
                "{}",
                err.message
            );
            assert!(!err.message.contains("ZXk="));
        }
    }
}
