//! Slow or possibly hanging work (anything touching a network or autofs filesystem) runs in a
//! child process: forked, moved to its own process group, stripped of root (setgroups, setgid,
//! setuid) when asked, exec'd with an environment the caller spells out, and killed when its
//! hard time limit passes. The plugin itself never blocks without a bound and never starts
//! threads.

use std::fs::File;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::sys;

/// The identity a helper runs as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

/// Why a helper gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("{program} did not finish within {limit:?} and was killed")]
    TimedOut { program: String, limit: Duration },
    #[error("waiting for {program} failed: {source}")]
    Wait {
        program: String,
        source: std::io::Error,
    },
}

/// What a finished helper said.
#[derive(Debug)]
pub struct HelperOutput {
    pub status: ExitStatus,
    /// At most [`MAX_STDOUT`] bytes; the rest was read and dropped.
    pub stdout: Vec<u8>,
    /// At most [`MAX_STDERR`] bytes; the rest was read and dropped.
    pub stderr: Vec<u8>,
}

/// Most of a helper's stdout kept (a JIT config is a few KiB; `--gha-runner` allows 64 KiB).
pub const MAX_STDOUT: usize = 256 * 1024;
/// Most of a helper's stderr kept: enough for its error message, not for a flood.
pub const MAX_STDERR: usize = 16 * 1024;

/// Runs `command` as `run_as` with only the environment `env` (never slurmstepd's), stdin from
/// /dev/null, stdout and stderr captured (each bounded), and kills its whole process group if
/// it has not exited within `limit`. Both pipes are read while waiting, so a chatty helper
/// cannot block on a full pipe. A child stuck in an uninterruptible wait (a hung autofs mount)
/// is abandoned rather than waited for; output written after it exited by something it left
/// running is not waited for either.
pub fn run_bounded(
    command: &mut Command,
    env: &[(&str, &str)],
    run_as: Option<RunAs>,
    limit: Duration,
) -> Result<HelperOutput, HelperError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    sys::own_group_and_identity(command, run_as.map(|r| (r.uid, r.gid)));
    let mut child = command.spawn().map_err(|source| HelperError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id();
    let deadline = Instant::now() + limit;
    let mut stdout = Capture::new(child.stdout.take().map(OwnedFd::from), MAX_STDOUT);
    let mut stderr = Capture::new(child.stderr.take().map(OwnedFd::from), MAX_STDERR);
    let exited = sys::pidfd_open(pid)
        .and_then(|pidfd| collect_until_exit(&pidfd, &mut stdout, &mut stderr, deadline))
        .map_err(|source| HelperError::Wait {
            program: program.clone(),
            source,
        })?;
    if !exited {
        // The helper leads its own process group (it called setpgid(0, 0)).
        let _ = sys::sigkill_group(pid);
        // Reap it if it dies promptly; a process in D state is left behind, not waited on.
        if let Ok(true) = wait_until(pid, Instant::now() + Duration::from_millis(200)) {
            let _ = child.wait();
        }
        return Err(HelperError::TimedOut { program, limit });
    }
    // The child has exited: what it wrote is in the pipes; take it without waiting for an
    // EOF that a process it left behind could withhold.
    stdout.drain();
    stderr.drain();
    let status = child
        .wait()
        .map_err(|source| HelperError::Wait { program, source })?;
    Ok(HelperOutput {
        status,
        stdout: stdout.data,
        stderr: stderr.data,
    })
}

/// One of the child's output pipes (non-blocking) and what was read from it.
struct Capture {
    pipe: Option<File>,
    data: Vec<u8>,
    cap: usize,
}

impl Capture {
    fn new(fd: Option<OwnedFd>, cap: usize) -> Capture {
        // A pipe that stays blocking could stall the wait loop: drop it (the child then gets
        // EPIPE on that stream) rather than risk an unbounded read.
        let pipe = fd
            .filter(|fd| sys::set_nonblocking(fd.as_fd()).is_ok())
            .map(File::from);
        Capture {
            pipe,
            data: Vec::new(),
            cap,
        }
    }

    /// Reads whatever is available now; closes the pipe at EOF or on an error.
    fn drain(&mut self) {
        let Some(pipe) = self.pipe.as_mut() else {
            return;
        };
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => {
                    let room = self.cap.saturating_sub(self.data.len());
                    self.data.extend_from_slice(&chunk[..n.min(room)]);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return,
                Err(_) => break,
            }
        }
        self.pipe = None;
    }
}

/// Reads both pipes until the child (`pidfd`) exits or `deadline` passes, without reaping the
/// child. Returns whether it exited.
fn collect_until_exit(
    pidfd: &OwnedFd,
    stdout: &mut Capture,
    stderr: &mut Capture,
    deadline: Instant,
) -> std::io::Result<bool> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        // A closed pipe drops out of the set.
        let [exited, out, err] = sys::poll_readable(
            [
                Some(pidfd.as_fd()),
                stdout.pipe.as_ref().map(File::as_fd),
                stderr.pipe.as_ref().map(File::as_fd),
            ],
            left,
        )?;
        if out {
            stdout.drain();
        }
        if err {
            stderr.drain();
        }
        if exited {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

/// Waits until process `pid` (our child) has exited, without reaping it, or `deadline` passes.
/// Returns whether it exited.
fn wait_until(pid: u32, deadline: Instant) -> std::io::Result<bool> {
    let pidfd = sys::pidfd_open(pid)?;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if sys::poll_readable([Some(pidfd.as_fd())], left)? == [true] {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_of_a_quick_helper() {
        let out = run_bounded(
            Command::new("/bin/echo").arg("hello"),
            &[],
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello\n");
    }

    #[test]
    fn kills_a_helper_that_overruns_its_limit() {
        let started = Instant::now();
        let err = run_bounded(
            Command::new("/bin/sh").args(["-c", "sleep 30 & sleep 30"]),
            &[("PATH", "/usr/bin:/bin")],
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, HelperError::TimedOut { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn reports_a_missing_program() {
        let err = run_bounded(
            &mut Command::new("/nonexistent/helper"),
            &[],
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, HelperError::Spawn { .. }), "{err}");
    }

    #[test]
    fn reads_large_output_while_waiting_and_bounds_it() {
        // 4 MiB on each stream: far more than a pipe holds, so the child only finishes if both
        // pipes are read while it runs.
        let out = run_bounded(
            Command::new("/bin/sh").args([
                "-c",
                "head -c 4194304 /dev/zero; head -c 4194304 /dev/zero >&2; echo done >&2",
            ]),
            &[("PATH", "/usr/bin:/bin")],
            None,
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout.len(), MAX_STDOUT);
        assert_eq!(out.stderr.len(), MAX_STDERR);
    }

    #[test]
    fn captures_stderr_and_the_exit_status() {
        let out = run_bounded(
            Command::new("/bin/sh").args(["-c", "echo out; echo 'it failed' >&2; exit 3"]),
            &[],
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"it failed\n");
    }

    #[test]
    fn gives_the_child_only_the_environment_asked_for() {
        // The test runner's environment (CARGO_*, HOME, ...) must not reach the child.
        let out = run_bounded(
            &mut Command::new("/usr/bin/env"),
            &[("GHA_TICKET", "abc"), ("PATH", "/bin")],
            None,
            Duration::from_secs(10),
        )
        .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines: Vec<&str> = text.lines().collect();
        lines.sort_unstable();
        assert_eq!(lines, ["GHA_TICKET=abc", "PATH=/bin"]);
    }

    #[test]
    fn does_not_wait_for_output_held_open_by_a_left_behind_process() {
        let started = Instant::now();
        let out = run_bounded(
            Command::new("/bin/sh").args(["-c", "echo hi; sleep 5 & exit 0"]),
            &[("PATH", "/usr/bin:/bin")],
            None,
            Duration::from_secs(20),
        )
        .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hi\n");
        assert!(started.elapsed() < Duration::from_secs(4));
    }
}
