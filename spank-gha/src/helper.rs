//! Slow or possibly hanging work (anything touching a network or autofs filesystem) runs in a
//! child process: forked, moved to its own process group, stripped of root (setgroups, setgid,
//! setuid) when asked, exec'd, and killed when its hard time limit passes. The plugin itself
//! never blocks without a bound and never starts threads.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

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
    pub stdout: Vec<u8>,
}

/// Runs `command` (stdin from /dev/null, stdout captured, stderr discarded) as `run_as`, and
/// kills its whole process group if it has not exited within `limit`. A child stuck in an
/// uninterruptible wait (a hung autofs mount) is abandoned rather than waited for.
pub fn run_bounded(
    command: &mut Command,
    run_as: Option<RunAs>,
    limit: Duration,
) -> Result<HelperOutput, HelperError> {
    let program = command.get_program().to_string_lossy().into_owned();
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: the closure runs between fork and exec and only makes async-signal-safe calls.
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(RunAs { uid, gid }) = run_as {
                let groups = [gid];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                // Regaining root must be impossible once the ids are dropped.
                if uid != 0 && libc::setuid(0) == 0 {
                    return Err(std::io::Error::from_raw_os_error(libc::EPERM));
                }
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| HelperError::Spawn {
        program: program.clone(),
        source,
    })?;
    let pid = child.id() as libc::pid_t;
    let deadline = Instant::now() + limit;
    let exited = wait_until(pid, deadline).map_err(|source| HelperError::Wait {
        program: program.clone(),
        source,
    })?;
    if !exited {
        // SAFETY: signalling the helper's own process group (it called setpgid(0, 0)).
        unsafe { libc::kill(-pid, libc::SIGKILL) };
        // Reap it if it dies promptly; a process in D state is left behind, not waited on.
        if let Ok(true) = wait_until(pid, Instant::now() + Duration::from_millis(200)) {
            let _ = child.wait();
        }
        return Err(HelperError::TimedOut { program, limit });
    }
    let mut stdout = Vec::new();
    if let Some(mut pipe) = child.stdout.take() {
        // The child has exited: the pipe holds at most what it wrote, then EOF.
        let _ = pipe.read_to_end(&mut stdout);
    }
    let status = child
        .wait()
        .map_err(|source| HelperError::Wait { program, source })?;
    Ok(HelperOutput { status, stdout })
}

/// Waits until process `pid` (our child) has exited, without reaping it, or `deadline` passes.
/// Returns whether it exited.
fn wait_until(pid: libc::pid_t, deadline: Instant) -> std::io::Result<bool> {
    // SAFETY: pidfd_open on our own child; the fd is owned below.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a fresh fd returned by the kernel, owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(raw as i32) };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut poll = libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = i32::try_from(left.as_millis().max(1)).unwrap_or(i32::MAX);
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut poll, 1, millis) };
        if rc > 0 {
            return Ok(true);
        }
        if rc < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
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
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, HelperError::Spawn { .. }), "{err}");
    }
}
