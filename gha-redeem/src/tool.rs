//! The one child-process runner of gha-redeem (for `munge` and `unmunge`): input fed on stdin,
//! stdout and stderr read to a bound, all on their own threads so that no pipe can stall
//! another; the child is killed when the deadline passes. gha-redeem is an ordinary process, so
//! threads are fine here (the plugin's own runner, which must not start threads, is
//! `spank_gha::helper`).

use std::io::{Read, Write};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::answer::one_line;

/// Most of a tool's stdout or stderr kept (a decoded JIT config is at most 64 KiB); the rest is
/// read and dropped.
pub const MAX_OUTPUT: usize = 2 << 20;

/// Runs `program` with `input` on its stdin, bounded by `deadline`. Returns its stdout on
/// success, else a line naming the tool and its first stderr line.
pub fn run_tool(
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
    if let Some(mut stdin) = child.stdin.take() {
        let input = input.to_vec();
        // An early exit of the tool shows in its status and stderr.
        thread::spawn(move || stdin.write_all(&input));
    }
    let (tx, rx) = mpsc::channel();
    let mut pending = 0;
    if let Some(pipe) = child.stdout.take() {
        read_on_thread(pipe, 0, tx.clone());
        pending += 1;
    }
    if let Some(pipe) = child.stderr.take() {
        read_on_thread(pipe, 1, tx);
        pending += 1;
    }
    let status = match wait_until(&mut child, deadline) {
        Ok(Some(status)) => status,
        Ok(None) => {
            // Not reaped yet, so the pid is still this child's.
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!("{program} did not answer in time"));
        }
        Err(e) => return Err(format!("waiting for {program} failed: {e}")),
    };
    // The tool has exited; its output arrives unless something it left behind holds a pipe.
    let mut output = [Vec::new(), Vec::new()];
    for _ in 0..pending {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok((stream, data)) => output[stream] = data,
            Err(_) => return Err(format!("{program} did not answer in time")),
        }
    }
    let [stdout, stderr] = output;
    if status.success() {
        return Ok(stdout);
    }
    Err(String::from_utf8_lossy(&stderr)
        .lines()
        .map(one_line)
        .find(|l| !l.is_empty())
        .unwrap_or_else(|| format!("{program} failed ({status})")))
}

/// Reads `pipe` to its end on a new thread, keeping at most [`MAX_OUTPUT`] bytes, and sends
/// them tagged with `stream`.
fn read_on_thread(
    pipe: impl Read + Send + 'static,
    stream: usize,
    tx: mpsc::Sender<(usize, Vec<u8>)>,
) {
    thread::spawn(move || {
        let mut data = Vec::new();
        let mut pipe = pipe;
        let _ = pipe.by_ref().take(MAX_OUTPUT as u64).read_to_end(&mut data);
        let _ = std::io::copy(&mut pipe, &mut std::io::sink());
        let _ = tx.send((stream, data));
    });
}

/// The child's status once it has exited, or `None` when `deadline` passes first.
fn wait_until(child: &mut Child, deadline: Instant) -> std::io::Result<Option<ExitStatus>> {
    let mut pause = Duration::from_millis(1);
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(Some(status));
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(None);
        }
        thread::sleep(pause.min(left));
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn bounds_the_output_and_does_not_wait_for_left_behind_processes() {
        let soon = Instant::now() + Duration::from_secs(20);
        let out = run_tool(
            "sh",
            &[
                "-c".into(),
                format!("head -c {} /dev/zero", MAX_OUTPUT + 4096),
            ],
            b"",
            soon,
        )
        .unwrap();
        assert_eq!(out.len(), MAX_OUTPUT);
        let err = run_tool(
            "sh",
            &["-c".into(), "sleep 30 & echo started".into()],
            b"",
            Instant::now() + Duration::from_millis(500),
        )
        .unwrap_err();
        assert!(err.contains("did not answer in time"), "{err}");
    }
}
