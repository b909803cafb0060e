//! MUNGE credentials through the `munge`/`unmunge` programs: who a caller is, on which host,
//! and sealed payloads only root on a host of the domain can open.
//!
//! The dispatcher runs inside the cluster's MUNGE domain; a credential decoded by `unmunge`
//! proves the uid of the process that created it. MUNGE refuses a credential seen before
//! (replay) and one past its TTL, so a credential copied off the wire is worth nothing.

use std::net::IpAddr;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// The longest credential accepted (a payload-less one is about 130 characters).
pub const MAX_CREDENTIAL_LEN: usize = 4096;
const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MungeError {
    #[error("not a MUNGE credential")]
    Malformed,
    #[error("MUNGE credential refused: {0}")]
    Refused(String),
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: &'static str,
        source: std::io::Error,
    },
    #[error("{program} timed out")]
    Timeout { program: &'static str },
    /// munged could not be asked (down, socket missing, out of memory): nothing is known
    /// about the credential.
    #[error("munged unavailable: {0}")]
    Unavailable(String),
    /// As many `unmunge` processes as allowed are running: try again shortly.
    #[error("too many MUNGE credentials being checked; try again")]
    Busy,
}

/// Most `unmunge` processes at once, for ticket redemptions and for the API's callers
/// apart (a flood of one cannot starve the other): each request with a credential starts
/// one, so a flood would otherwise start them without limit. A request over the limit is
/// answered at once (busy), never queued.
pub const MAX_CONCURRENT_UNMUNGE: usize = 16;
pub const MAX_CONCURRENT_API_UNMUNGE: usize = 8;

static UNMUNGE_SLOTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_UNMUNGE);
static API_UNMUNGE_SLOTS: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(MAX_CONCURRENT_API_UNMUNGE);

/// unmunge/munge exit codes (munge_err_t) that say nothing about the credential:
/// EMUNGE_SNAFU, EMUNGE_NO_MEMORY, EMUNGE_SOCKET, EMUNGE_TIMEOUT.
fn daemon_failure(status: std::process::ExitStatus) -> bool {
    matches!(status.code(), Some(1 | 5 | 6 | 7))
}

fn socket_args(socket: Option<&Path>) -> Vec<String> {
    socket
        .map(|s| vec![format!("--socket={}", s.display())])
        .unwrap_or_default()
}

/// What `unmunge` proved about a credential.
pub struct Decoded {
    /// The uid of the process that created it.
    pub uid: u32,
    /// The address of the host whose munged created it (`None` if unmunge gave none).
    pub encode_host: Option<IpAddr>,
    /// The payload, as sent (may hold a secret: never logged).
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Decoded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoded")
            .field("uid", &self.uid)
            .field("encode_host", &self.encode_host)
            .field("payload", &format_args!("<{} bytes>", self.payload.len()))
            .finish()
    }
}

/// Decode `credential` with `unmunge`; the uid of the process that created it.
pub async fn decode_uid(socket: Option<&Path>, credential: &str) -> Result<u32, MungeError> {
    decode_in(&API_UNMUNGE_SLOTS, socket, credential)
        .await
        .map(|d| d.uid)
}

/// Decode `credential` with `unmunge`: creator uid, creator host and payload.
pub async fn decode(socket: Option<&Path>, credential: &str) -> Result<Decoded, MungeError> {
    decode_in(&UNMUNGE_SLOTS, socket, credential).await
}

/// [`decode`] with an `unmunge` slot of `slots`.
async fn decode_in(
    slots: &tokio::sync::Semaphore,
    socket: Option<&Path>,
    credential: &str,
) -> Result<Decoded, MungeError> {
    let credential = credential.trim();
    if credential.is_empty()
        || credential.len() > MAX_CREDENTIAL_LEN
        || !credential.starts_with("MUNGE:")
        || !credential.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(MungeError::Malformed);
    }
    let args = ["--numeric", "--keys=UID,ENCODE_HOST"];
    let _slot = slots.try_acquire().map_err(|_| MungeError::Busy)?;
    let output = run("unmunge", socket, &args, credential.as_bytes()).await?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr)
            .trim()
            .trim_start_matches("unmunge: Error:")
            .trim()
            .chars()
            .take(200)
            .collect::<String>();
        // A replay is reported on stdout (STATUS: Replayed credential), not on stderr.
        let reason = if reason.is_empty() {
            status_line(&output.stdout).unwrap_or_else(|| format!("{}", output.status))
        } else {
            reason
        };
        if daemon_failure(output.status) {
            return Err(MungeError::Unavailable(reason));
        }
        return Err(MungeError::Refused(reason));
    }
    parse_unmunge(&output.stdout)
}

/// unmunge's `STATUS:` text, e.g. "Replayed credential (17)".
fn status_line(stdout: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stdout)
        .lines()
        .find_map(|l| l.strip_prefix("STATUS:"))
        .map(|v| v.trim().chars().take(200).collect())
}

/// unmunge's output: `KEY: value` lines, a blank line, then the payload as is.
fn parse_unmunge(stdout: &[u8]) -> Result<Decoded, MungeError> {
    let split = stdout
        .windows(2)
        .position(|w| w == b"\n\n")
        .ok_or_else(|| MungeError::Refused("unmunge printed no metadata".into()))?;
    let metadata = String::from_utf8_lossy(&stdout[..split]);
    let payload = stdout[split + 2..].to_vec();
    let value = |key: &str| {
        metadata
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .map(str::trim)
    };
    let uid = value("UID")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| MungeError::Refused("unmunge printed no UID".into()))?;
    // With --numeric the host is an address; without, "name (address)".
    let encode_host = value("ENCODE_HOST").and_then(|v| {
        let v = v
            .rsplit_once('(')
            .map_or(v, |(_, a)| a.trim_end_matches(')'));
        v.trim().parse().ok()
    });
    Ok(Decoded {
        uid,
        encode_host,
        payload,
    })
}

/// Create a credential carrying `payload` with `munge`, decodable only by `restrict_uid`
/// when given.
pub async fn encode_payload(
    socket: Option<&Path>,
    payload: &[u8],
    restrict_uid: Option<u32>,
) -> Result<String, MungeError> {
    let restrict = restrict_uid.map(|uid| format!("--restrict-uid={uid}"));
    let args: Vec<&str> = restrict.iter().map(String::as_str).collect();
    let output = run("munge", socket, &args, payload).await?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr)
            .trim()
            .chars()
            .take(200)
            .collect();
        return Err(if daemon_failure(output.status) {
            MungeError::Unavailable(reason)
        } else {
            MungeError::Refused(reason)
        });
    }
    let credential = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if !credential.starts_with("MUNGE:") {
        return Err(MungeError::Refused("munge printed no credential".into()));
    }
    Ok(credential)
}

/// Run `program` with `input` on its stdin, reading its output at the same time (a child
/// that writes before it has read everything cannot block on a full pipe).
async fn run(
    program: &'static str,
    socket: Option<&Path>,
    args: &[&str],
    input: &[u8],
) -> Result<std::process::Output, MungeError> {
    let spawn = |source| MungeError::Spawn { program, source };
    let mut child = tokio::process::Command::new(program)
        .args(socket_args(socket))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn)?;
    let mut stdin = child.stdin.take();
    let write = async move {
        if let Some(stdin) = stdin.as_mut() {
            stdin.write_all(input).await?;
            stdin.shutdown().await?;
        }
        drop(stdin);
        Ok::<(), std::io::Error>(())
    };
    let work = async {
        // A child that stops reading its input fails by itself: its exit status tells.
        let (_written, output) = tokio::join!(write, child.wait_with_output());
        output
    };
    tokio::time::timeout(COMMAND_TIMEOUT, work)
        .await
        .map_err(|_| MungeError::Timeout { program })?
        .map_err(spawn)
}

/// Create a credential for the calling process's uid with `munge -n` (no payload).
pub fn encode(socket: Option<&Path>) -> Result<String, MungeError> {
    let spawn = |source| MungeError::Spawn {
        program: "munge",
        source,
    };
    let child = std::process::Command::new("munge")
        .args(socket_args(socket))
        .arg("--no-input")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    let output = child.wait_with_output().map_err(spawn)?;
    if !output.status.success() {
        return Err(MungeError::Refused(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unmunge_output_is_split_into_metadata_and_payload() {
        let d = parse_unmunge(b"ENCODE_HOST:     10.1.2.3\nUID:             0\n\n{\"a\":1}\n\nx")
            .unwrap();
        assert_eq!(d.uid, 0);
        assert_eq!(d.encode_host, Some("10.1.2.3".parse().unwrap()));
        assert_eq!(d.payload, b"{\"a\":1}\n\nx");
        assert!(!format!("{d:?}").contains("\"a\""), "{d:?}");
        let d = parse_unmunge(b"ENCODE_HOST: node1 (192.168.0.7)\nUID: 1000\n\n").unwrap();
        assert_eq!(d.uid, 1000);
        assert_eq!(d.encode_host, Some("192.168.0.7".parse().unwrap()));
        assert!(d.payload.is_empty());
        assert!(parse_unmunge(b"UID: 0\n").is_err());
        assert!(parse_unmunge(b"ENCODE_HOST: 1.2.3.4\n\n").is_err());
        assert_eq!(
            status_line(b"STATUS:          Replayed credential (17)\nUID: 0\n\n"),
            Some("Replayed credential (17)".into())
        );
    }

    #[tokio::test]
    async fn malformed_credentials_never_reach_unmunge() {
        for bad in [
            "",
            "hello",
            "MUNGE:a b:",
            &format!("MUNGE:{}", "a".repeat(5000)),
        ] {
            assert!(matches!(
                decode(Some(Path::new("/nonexistent")), bad).await,
                Err(MungeError::Malformed)
            ));
        }
    }
}
