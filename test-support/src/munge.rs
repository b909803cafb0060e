//! MUNGE's command-line tools for tests: one way to run `munge` or `unmunge` against a given
//! munged socket (as root, or as another user through `runuser`), feeding the input on stdin and
//! returning what the tool printed. Shared by the dispatcher's tests and the e2e crate.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Why a MUNGE tool gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum MungeToolError {
    #[error("cannot run {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} failed ({status}): {stderr}")]
    Failed {
        program: String,
        status: std::process::ExitStatus,
        stderr: String,
    },
    #[error("{program} printed something that is not UTF-8")]
    NotText { program: String },
}

/// Runs `program --socket=<socket> <args>` (as `user` through `runuser` when given) with `input`
/// on stdin; its stdout as printed (callers that want it trimmed trim it).
pub fn run(
    program: &str,
    user: Option<&str>,
    socket: &Path,
    args: &[&str],
    input: &[u8],
) -> Result<String, MungeToolError> {
    let mut command = match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--", program]);
            c
        }
        None => Command::new(program),
    };
    let spawn = |source| MungeToolError::Spawn {
        program: program.to_owned(),
        source,
    };
    let mut child = command
        .arg(format!("--socket={}", socket.display()))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn)?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(input).map_err(spawn)?;
    }
    let out = child.wait_with_output().map_err(spawn)?;
    if !out.status.success() {
        return Err(MungeToolError::Failed {
            program: program.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        });
    }
    String::from_utf8(out.stdout).map_err(|_| MungeToolError::NotText {
        program: program.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_tool_is_a_clear_error() {
        let err = run(
            "munge-tool-that-does-not-exist",
            None,
            Path::new("/nonexistent"),
            &[],
            b"",
        )
        .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("cannot run munge-tool-that-does-not-exist"),
            "{err}"
        );
    }
}
