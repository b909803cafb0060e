//! What gha-redeem says: the [`Failure`] (one stderr line and its exit code), refusals read from
//! the dispatcher's [`RefusalBody`], the config read from `unmunge`, and the URLs as requested
//! and as shown. Text from elsewhere is cleaned to one line; secrets never appear.

use redeem_contract::{HelperExit, RefusalBody, REDEEM_PATH};

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

/// The payload `unmunge --metadata=/dev/null` printed: the JIT config, which must be base64.
pub fn config_from_unmunge(stdout: &[u8]) -> Result<String, Failure> {
    let text = std::str::from_utf8(stdout)
        .map_err(|_| failed("the dispatcher's answer does not hold a runner config"))?
        .trim();
    let base64 = |c: char| c.is_ascii_alphanumeric() || "+/=".contains(c);
    if text.is_empty() || !text.chars().all(base64) {
        return Err(failed(
            "the dispatcher's answer does not hold a runner config",
        ));
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

    #[test]
    fn reads_the_config_from_unmunge() {
        assert_eq!(
            config_from_unmunge(b"ZXlKaGJHY2lPaUo=\n").unwrap(),
            "ZXlKaGJHY2lPaUo="
        );
        for bad in [
            &b""[..],
            b"\n",
            b"STATUS: Success (0)\n\nZXk=",
            b"not base64!",
            b"\xff\xfe",
        ] {
            assert_eq!(
                config_from_unmunge(bad).unwrap_err().exit,
                HelperExit::Failed
            );
        }
    }
}
