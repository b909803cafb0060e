//! gha-redeem: trades a late-binding runner ticket for the runner's JIT config, as root on the
//! node where the Slurm job runs (the spank-gha plugin starts it from `task_init_privileged`).
//!
//! ```text
//! GHA_TICKET=<opaque> gha-redeem --url <dispatcher_url> --job-id <slurm job id> \
//!     --munge-socket <socket> [--timeout SECS]
//! ```
//! 1. `munge` signs `{"ticket":...,"job_id":...}` (so the dispatcher learns that root on a host
//!    of the MUNGE domain asks, and which host);
//! 2. `POST <url>/tickets/redeem` with that credential;
//! 3. a 200 answer is a credential the dispatcher made for uid 0 only, whose payload is the JIT
//!    config: `unmunge` decodes it and the config goes to stdout (and nowhere else).
//!
//! Exit status: 0 config printed; 2 the dispatcher refused the ticket; 3 anything else (bad
//! arguments, MUNGE, the dispatcher unreachable or its answer unusable). Every failure is one
//! line on stderr, which the plugin shows to the job's user. The ticket comes from the
//! environment, never argv (/proc/PID/cmdline is world-readable), and neither it, the
//! credentials nor the config are ever printed except the config on stdout.

use std::io::Write;
use std::process::{Command, ExitCode, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The dispatcher refused the ticket (its answer was not 200).
const EXIT_REFUSED: u8 = 2;
/// Anything else went wrong.
const EXIT_FAILED: u8 = 3;

/// Largest ticket accepted (as the plugin's `--gha-runner=ticket:` check).
const MAX_TICKET: usize = 1024;
/// Largest answer read from the dispatcher (a credential around a JIT config of at most
/// 64 KiB, base64'd once more by MUNGE).
const MAX_ANSWER: u64 = 256 * 1024;
/// Longest piece of a refusal or tool error repeated on stderr.
const MAX_SHOWN: usize = 200;

fn main() -> ExitCode {
    match run() {
        Ok(config) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(config.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .is_err()
            {
                eprintln!("cannot write the runner config to stdout");
                return ExitCode::from(EXIT_FAILED);
            }
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}

/// Why there is no config: the line for stderr and the exit status.
#[derive(Debug, PartialEq, Eq)]
struct Failure {
    code: u8,
    message: String,
}

fn failed(message: impl Into<String>) -> Failure {
    Failure {
        code: EXIT_FAILED,
        message: message.into(),
    }
}

#[derive(Debug, PartialEq, Eq)]
struct Args {
    url: String,
    job_id: u32,
    munge_socket: String,
    timeout: Duration,
}

const USAGE: &str = "usage: GHA_TICKET=<ticket> gha-redeem --url URL --job-id ID --munge-socket PATH [--timeout SECS]";

fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Args, Failure> {
    let (mut url, mut job_id, mut socket, mut timeout) = (None, None, None, None);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let slot = match flag.as_str() {
            "--url" => &mut url,
            "--job-id" => &mut job_id,
            "--munge-socket" => &mut socket,
            "--timeout" => &mut timeout,
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
    let job_id = job_id
        .ok_or_else(|| failed(format!("--job-id is required ({USAGE})")))?
        .parse::<u32>()
        .map_err(|_| failed("--job-id: expected a Slurm job id (a whole number)"))?;
    let munge_socket =
        socket.ok_or_else(|| failed(format!("--munge-socket is required ({USAGE})")))?;
    let timeout = match timeout {
        None => Duration::from_secs(20),
        Some(t) => match t.parse::<u64>() {
            Ok(n) if (1..=300).contains(&n) => Duration::from_secs(n),
            _ => return Err(failed("--timeout: expected whole seconds from 1 to 300")),
        },
    };
    Ok(Args {
        url,
        job_id,
        munge_socket,
        timeout,
    })
}

/// Checks the ticket's syntax (the characters the plugin accepts after `ticket:`), which also
/// makes it safe to put in a JSON string as it is.
fn check_ticket(ticket: &str) -> Result<(), Failure> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._~+/=:-".contains(c);
    if ticket.is_empty() || ticket.len() > MAX_TICKET || !ticket.chars().all(allowed) {
        return Err(failed(format!(
            "GHA_TICKET must hold 1 to {MAX_TICKET} characters from A-Z a-z 0-9 . _ ~ + / = : -"
        )));
    }
    Ok(())
}

/// What `munge` signs: `{"ticket":"<opaque>","job_id":<u32>}`.
fn payload(ticket: &str, job_id: u32) -> String {
    serde_json::json!({ "ticket": ticket, "job_id": job_id }).to_string()
}

/// `<url>/tickets/redeem`, whether or not the configured URL ends in `/`.
fn redeem_url(url: &str) -> String {
    format!("{}/tickets/redeem", url.trim_end_matches('/'))
}

/// The URL as shown in messages: any `user:password@` is left out.
fn shown_url(url: &str) -> String {
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
fn one_line(text: &str) -> String {
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

/// The line for a non-200 answer, from its `{"error","message"}` body (or what it holds).
fn refusal(status: u16, body: &str) -> Failure {
    let parsed: Option<(String, String)> = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let code = v.get("error")?.as_str()?.to_owned();
            let message = v.get("message").and_then(|m| m.as_str()).unwrap_or("");
            Some((code, message.to_owned()))
        });
    let (code, message) = match parsed {
        Some((code, message)) => (one_line(&code), one_line(&message)),
        None => ("unknown".to_owned(), one_line(body)),
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
        code: EXIT_REFUSED,
        message: format!("ticket refused by the dispatcher (HTTP {status} {code}): {message}"),
    }
}

/// The payload `unmunge --metadata=/dev/null` printed: the JIT config, which must be base64.
fn config_from_unmunge(stdout: &[u8]) -> Result<String, Failure> {
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

/// Runs a MUNGE tool with `input` on its stdin, bounded by `deadline`. Returns its stdout on
/// success, else a line naming the tool and its first stderr line.
fn run_tool(
    program: &str,
    args: &[String],
    input: &[u8],
    deadline: Instant,
) -> Result<Vec<u8>, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    let pid = child.id();
    // Feed stdin and collect the output on threads, so neither a large input nor a large
    // output can deadlock, and this thread can give up at the deadline.
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        std::thread::spawn(move || {
            // An early exit of the tool shows in its status and stderr.
            let _ = stdin.write_all(&input);
        });
    }
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let left = deadline.saturating_duration_since(Instant::now());
    match rx.recv_timeout(left) {
        Ok(Ok(output)) if output.status.success() => Ok(output.stdout),
        Ok(Ok(output)) => {
            let first = String::from_utf8_lossy(&output.stderr)
                .lines()
                .map(one_line)
                .find(|l| !l.is_empty())
                .unwrap_or_else(|| format!("{program} failed ({})", output.status));
            Err(first)
        }
        Ok(Err(e)) => Err(format!("waiting for {program} failed: {e}")),
        Err(_) => {
            // Not yet reaped (the waiting thread holds it), so the pid is still this child's.
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) on our own unreaped child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            Err(format!("{program} did not answer in time"))
        }
    }
}

fn run() -> Result<String, Failure> {
    let args = parse_args(std::env::args().skip(1))?;
    let ticket = std::env::var("GHA_TICKET")
        .map_err(|_| failed("GHA_TICKET is not set (the ticket is passed in the environment)"))?;
    check_ticket(&ticket)?;
    let deadline = Instant::now() + args.timeout;
    let socket = format!("--socket={}", args.munge_socket);

    let credential = run_tool(
        "munge",
        std::slice::from_ref(&socket),
        payload(&ticket, args.job_id).as_bytes(),
        deadline,
    )
    .map_err(|e| failed(format!("cannot create a MUNGE credential: {e}")))?;
    let credential = credential.trim_ascii();

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
        .limit(MAX_ANSWER)
        .read_to_vec()
        .map_err(http_error)?;
    if status != 200 {
        return Err(refusal(status, &String::from_utf8_lossy(&body)));
    }
    let decoded = run_tool(
        "unmunge",
        &[socket, "--metadata=/dev/null".to_owned()],
        &body,
        deadline,
    )
    .map_err(|e| {
        failed(format!(
            "cannot decode the dispatcher's answer with unmunge: {e}"
        ))
    })?;
    config_from_unmunge(&decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        ])
        .unwrap();
        assert_eq!(parsed.timeout, Duration::from_secs(5));
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
        ] {
            let err = args(bad).unwrap_err();
            assert_eq!(err.code, EXIT_FAILED, "{bad:?}");
            assert!(!err.message.contains("secret"), "{}", err.message);
        }
    }

    #[test]
    fn checks_the_ticket_without_echoing_it() {
        check_ticket("AbC-123_x~y.z+/=:").unwrap();
        for bad in ["", "has space", "quote\"secret", "new\nline"] {
            let err = check_ticket(bad).unwrap_err();
            assert!(!err.message.contains("secret"));
        }
        assert!(check_ticket(&"a".repeat(MAX_TICKET + 1)).is_err());
    }

    #[test]
    fn builds_the_payload() {
        let text = payload("q1w2-e3_r4", 4_294_967_295);
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            value,
            serde_json::json!({ "ticket": "q1w2-e3_r4", "job_id": 4_294_967_295u32 })
        );
    }

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
            r#"{"error":"not_needed","message":"no queued job\nwants this runner"}"#,
        );
        assert_eq!(f.code, EXIT_REFUSED);
        assert_eq!(
            f.message,
            "ticket refused by the dispatcher (HTTP 410 not_needed): no queued job wants this runner"
        );
        let f = refusal(502, "<html>\x1b[31mBad gateway</html>");
        assert_eq!(
            f.message,
            "ticket refused by the dispatcher (HTTP 502 unknown): <html>[31mBad gateway</html>"
        );
        let f = refusal(500, "");
        assert!(f.message.ends_with("(HTTP 500 unknown): no reason given"));
        let f = refusal(404, &"x".repeat(5000));
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
            assert_eq!(config_from_unmunge(bad).unwrap_err().code, EXIT_FAILED);
        }
    }

    #[test]
    fn runs_a_tool_with_input_and_a_deadline() {
        let soon = Instant::now() + Duration::from_secs(10);
        let big = vec![b'a'; 1 << 20];
        let out = run_tool("cat", &[], &big, soon).unwrap();
        assert_eq!(out.len(), big.len());
        let err = run_tool(
            "sh",
            &["-c".into(), "echo 'Error: bad socket' >&2; exit 1".into()],
            b"",
            soon,
        )
        .unwrap_err();
        assert_eq!(err, "Error: bad socket");
        let started = Instant::now();
        let err = run_tool(
            "sleep",
            &["30".into()],
            b"",
            Instant::now() + Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(err.contains("did not answer in time"), "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(run_tool("/nonexistent/munge", &[], b"", soon).is_err());
    }
}
