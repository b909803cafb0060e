//! MUNGE credentials through the `munge`/`unmunge` programs: who a caller is.
//!
//! The dispatcher runs inside the cluster's MUNGE domain; a credential decoded by `unmunge`
//! proves the uid of the process that created it. MUNGE refuses a credential seen before
//! (replay) and one past its TTL, so a credential copied off the wire is worth nothing.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

/// The longest credential accepted (a payload-less one is about 130 characters).
pub const MAX_CREDENTIAL_LEN: usize = 4096;
const UNMUNGE_TIMEOUT: Duration = Duration::from_secs(10);

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
}

fn socket_args(socket: Option<&Path>) -> Vec<String> {
    socket
        .map(|s| vec![format!("--socket={}", s.display())])
        .unwrap_or_default()
}

/// Decode `credential` with `unmunge`; the uid of the process that created it.
pub async fn decode_uid(socket: Option<&Path>, credential: &str) -> Result<u32, MungeError> {
    let credential = credential.trim();
    if credential.is_empty()
        || credential.len() > MAX_CREDENTIAL_LEN
        || !credential.starts_with("MUNGE:")
        || !credential.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(MungeError::Malformed);
    }
    let spawn = |source| MungeError::Spawn {
        program: "unmunge",
        source,
    };
    let mut child = tokio::process::Command::new("unmunge")
        .args(socket_args(socket))
        .args(["--numeric", "--keys=UID", "--output=/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(credential.as_bytes())
            .await
            .map_err(spawn)?;
    }
    let output = tokio::time::timeout(UNMUNGE_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| MungeError::Timeout { program: "unmunge" })?
        .map_err(spawn)?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr)
            .trim()
            .trim_start_matches("unmunge: Error:")
            .trim()
            .chars()
            .take(200)
            .collect();
        return Err(MungeError::Refused(reason));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("UID:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| MungeError::Refused("unmunge printed no UID".into()))
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
