//! A timing wrapper for `sbatch`, named in the dispatcher's `slurm.sbatch`: it runs the real
//! sbatch with the same arguments and standard streams, then appends when it started, when
//! sbatch had accepted the job, the exit status and the job id to a log. It never records the
//! arguments: they carry a runner credential. The wrapper costs one bash start (a few ms),
//! which the report states.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// One sbatch call as the wrapper logged it.
#[derive(Debug, Clone, PartialEq)]
pub struct SbatchCall {
    /// Unix time (s) when the wrapper started sbatch.
    pub started: f64,
    /// Unix time (s) when sbatch exited (for success: the job was accepted).
    pub ended: f64,
    pub exit_status: i32,
    pub job_id: Option<u32>,
}

pub struct SbatchTiming {
    pub wrapper: PathBuf,
    pub log: PathBuf,
}

impl SbatchTiming {
    /// Writes a wrapper around `real` (the sbatch to time) and an empty log into `dir`, which
    /// must be reachable by the job user (the dispatcher may run sbatch as that user).
    pub fn install(dir: &Path, real: &Path) -> Result<SbatchTiming> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", dir.display()))?;
        let log = dir.join("sbatch-times.log");
        fs::write(&log, "").with_context(|| format!("creating {}", log.display()))?;
        fs::set_permissions(&log, fs::Permissions::from_mode(0o666))
            .with_context(|| format!("chmod {}", log.display()))?;
        let wrapper = dir.join("sbatch");
        let script = format!(
            "#!/bin/bash\n\
             # Benchmark timing wrapper (tests/src/bench/sbatch_timing.rs). Never logs arguments.\n\
             # Logs before it answers: a caller killed meanwhile (kill -9 phase) must not take\n\
             # the record of an accepted job with it (SIGPIPE on the answer).\n\
             start=$EPOCHREALTIME\n\
             out=$({real} \"$@\")\n\
             rc=$?\n\
             end=$EPOCHREALTIME\n\
             printf '%s %s %s %s\\n' \"$start\" \"$end\" \"$rc\" \"${{out%%;*}}\" >> {log}\n\
             [ -z \"$out\" ] || printf '%s\\n' \"$out\"\n\
             exit $rc\n",
            real = real.display(),
            log = log.display()
        );
        fs::write(&wrapper, script).with_context(|| format!("writing {}", wrapper.display()))?;
        fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755))
            .with_context(|| format!("chmod {}", wrapper.display()))?;
        Ok(SbatchTiming { wrapper, log })
    }

    /// Every call logged so far, in the order they ended.
    pub fn calls(&self) -> Result<Vec<SbatchCall>> {
        let text = fs::read_to_string(&self.log)
            .with_context(|| format!("reading {}", self.log.display()))?;
        Ok(parse(&text))
    }
}

fn parse(text: &str) -> Vec<SbatchCall> {
    text.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            Some(SbatchCall {
                started: fields.next()?.parse().ok()?,
                ended: fields.next()?.parse().ok()?,
                exit_status: fields.next()?.parse().ok()?,
                job_id: fields.next().and_then(|id| id.trim().parse().ok()),
            })
        })
        .collect()
}

/// The absolute path of a program on PATH.
pub fn which(program: &str) -> Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
        .with_context(|| format!("{program} is not on PATH"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_log_lines_with_and_without_job_ids() {
        let calls = parse("1.5 1.75 0 42\n2.0 2.5 1 \ngarbage\n");
        assert_eq!(calls.len(), 2);
        assert_eq!(calls[0].job_id, Some(42));
        assert_eq!(calls[0].ended - calls[0].started, 0.25);
        assert_eq!((calls[1].exit_status, calls[1].job_id), (1, None));
    }

    #[test]
    fn wrapper_passes_output_and_status_through_and_logs_no_arguments() {
        let dir = tempfile::tempdir().unwrap();
        // A fake sbatch on PATH: prints a job id, exits with the status in its first argument.
        let bin = dir.path().join("bin");
        fs::create_dir(&bin).unwrap();
        fs::write(
            bin.join("sbatch"),
            "#!/bin/sh\necho '77;cluster'\nexit \"$1\"\n",
        )
        .unwrap();
        fs::set_permissions(bin.join("sbatch"), fs::Permissions::from_mode(0o755)).unwrap();
        let timing = SbatchTiming::install(&dir.path().join("w"), &bin.join("sbatch")).unwrap();
        let out = std::process::Command::new(&timing.wrapper)
            .args(["3", "--gha-runner=SECRET"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(String::from_utf8_lossy(&out.stdout), "77;cluster\n");
        let calls = timing.calls().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!((calls[0].exit_status, calls[0].job_id), (3, Some(77)));
        assert!(!fs::read_to_string(&timing.log).unwrap().contains("SECRET"));
    }
}
