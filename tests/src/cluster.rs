//! The shared test cluster: started (or found running) once per test process through
//! `ci/slurm-up`, which is idempotent and serialised by a lock, so every test binary and every
//! nextest process attaches to the same cluster. A cluster that cannot start is a test failure,
//! never a skip.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};

use test_support::wait_until;

/// Job states after which Slurm will not run the job again.
const TERMINAL_STATES: &[&str] = &[
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "TIMEOUT",
    "NODE_FAIL",
    "OUT_OF_MEMORY",
    "BOOT_FAIL",
    "DEADLINE",
    "PREEMPTED",
];

/// A running single-node cluster and the user test jobs run as.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    conf: PathBuf,
    test_user: String,
    repo_root: PathBuf,
}

/// A job accepted by `sbatch`.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub id: u32,
    /// The file the job's stdout and stderr go to.
    pub output: PathBuf,
}

/// What `scontrol show job` says of a job, as `key=value` fields.
#[derive(Debug, Clone)]
pub struct JobInfo {
    pub fields: BTreeMap<String, String>,
}

impl JobInfo {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.fields.get(key).map(String::as_str)
    }

    pub fn state(&self) -> &str {
        self.get("JobState").unwrap_or("UNKNOWN")
    }

    pub fn exit_code(&self) -> &str {
        self.get("ExitCode").unwrap_or("")
    }

    pub fn is_finished(&self) -> bool {
        TERMINAL_STATES.contains(&self.state())
    }
}

static SHARED: OnceLock<Cluster> = OnceLock::new();
static OUTPUT_SEQ: AtomicU32 = AtomicU32::new(0);

impl Cluster {
    /// The cluster for this test process, started by `ci/slurm-up` if it is not up yet.
    /// Panics (failing the test) with slurm-up's own words when the cluster cannot start.
    pub fn shared() -> &'static Cluster {
        SHARED.get_or_init(|| match Cluster::start() {
            Ok(cluster) => cluster,
            Err(error) => panic!("the test Slurm cluster is not available: {error:#}"),
        })
    }

    fn start() -> Result<Cluster> {
        let repo_root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .context("tests/ has no parent directory")?
            .to_path_buf();
        let script = repo_root.join("ci/slurm-up");
        let output = Command::new(&script)
            .current_dir(&repo_root)
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(
            output.status.success(),
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let exports = parse_exports(&String::from_utf8_lossy(&output.stdout));
        let conf = exports
            .get("SLURM_CONF")
            .context("slurm-up printed no SLURM_CONF")?;
        let dir = exports
            .get("GHA_CLUSTER_DIR")
            .context("slurm-up printed no GHA_CLUSTER_DIR")?;
        Ok(Cluster {
            dir: PathBuf::from(dir),
            conf: PathBuf::from(conf),
            test_user: std::env::var("GHA_TEST_USER").unwrap_or_else(|_| "gha-ci".to_owned()),
            repo_root,
        })
    }

    /// The directory holding the cluster's config, state, logs, plugin and fixtures.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The `slurm.conf` every client must be pointed at (`SLURM_CONF`).
    pub fn conf(&self) -> &Path {
        &self.conf
    }

    /// The non-root user test jobs run as.
    pub fn test_user(&self) -> &str {
        &self.test_user
    }

    /// The root of this repository (for shipped scripts and built binaries).
    pub fn repo_root(&self) -> &Path {
        &self.repo_root
    }

    /// The cluster's munged socket (for `munge`, `unmunge` and a ticket-mode dispatcher).
    pub fn munge_socket(&self) -> PathBuf {
        self.dir.join("munge/run/munge.socket")
    }

    /// The runner job script a dispatcher submits: the copy `ci/slurm-up` installed in the
    /// cluster (readable by the job user), else the one in the source tree.
    pub fn job_script(&self) -> PathBuf {
        let installed = self.dir.join("libexec/gha-runner-job");
        if installed.is_file() {
            installed
        } else {
            self.repo_root.join("spank-gha/libexec/gha-runner-job")
        }
    }

    /// A command with `SLURM_CONF` pointing at this cluster.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new(program);
        command.env("SLURM_CONF", &self.conf);
        command
    }

    /// A command run as `user` (through `runuser`), with `SLURM_CONF` set.
    pub fn command_as(&self, user: &str, program: &str) -> Command {
        let mut command = self.command("runuser");
        command.args(["-u", user, "--", program]);
        command
    }

    /// Submits a batch job as the test user. `args` are sbatch options and the script (or
    /// `--wrap`); the output file and working directory are chosen here.
    pub fn sbatch(&self, args: &[&str]) -> Result<Submitted> {
        self.sbatch_as(&self.test_user, args)
    }

    /// Submits a batch job as `user`. An sbatch refusal is an error carrying sbatch's stderr.
    pub fn sbatch_as(&self, user: &str, args: &[&str]) -> Result<Submitted> {
        let (output, tag) = self.run_sbatch(user, args)?;
        ensure!(
            output.status.success(),
            "sbatch {args:?} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        let id_text = stdout.trim().split(';').next().unwrap_or_default();
        let id: u32 = id_text
            .parse()
            .with_context(|| format!("sbatch --parsable printed {stdout:?}"))?;
        Ok(Submitted {
            id,
            output: self.jobs_dir().join(format!("{tag}-{id}.out")),
        })
    }

    /// Runs sbatch as `user` and returns its raw result, for tests that expect a refusal.
    pub fn try_sbatch_as(&self, user: &str, args: &[&str]) -> Result<Output> {
        Ok(self.run_sbatch(user, args)?.0)
    }

    /// Where job outputs go: writable by every user, so any test user can submit.
    pub fn jobs_dir(&self) -> PathBuf {
        self.dir.join("jobs")
    }

    /// Runs sbatch with a unique output file name; returns its result and the name's tag.
    fn run_sbatch(&self, user: &str, args: &[&str]) -> Result<(Output, String)> {
        let jobs_dir = self.jobs_dir();
        let tag = format!(
            "{}-{}",
            std::process::id(),
            OUTPUT_SEQ.fetch_add(1, Ordering::Relaxed)
        );
        let output = self
            .command_as(user, "sbatch")
            .arg("--parsable")
            .arg(format!("--output={}/{tag}-%j.out", jobs_dir.display()))
            .arg(format!("--chdir={}", jobs_dir.display()))
            .args(args)
            .output()
            .context("running sbatch")?;
        Ok((output, tag))
    }

    /// What `scontrol show job` says now.
    pub fn job_info(&self, id: u32) -> Result<JobInfo> {
        let output = self
            .command("scontrol")
            .args(["show", "job", "--oneliner", &id.to_string()])
            .output()
            .context("running scontrol show job")?;
        ensure!(
            output.status.success(),
            "scontrol show job {id}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(JobInfo {
            fields: parse_fields(&String::from_utf8_lossy(&output.stdout)),
        })
    }

    /// The raw `scontrol show job` text, for checks on what Slurm records.
    pub fn job_record(&self, id: u32) -> Result<String> {
        let output = self
            .command("scontrol")
            .args(["show", "job", &id.to_string()])
            .output()
            .context("running scontrol show job")?;
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Waits until the job has reached a state Slurm will not leave.
    pub fn wait_for_end(&self, id: u32, timeout: Duration) -> Result<JobInfo> {
        let what = format!("job {id} to end");
        Ok(wait_until(&what, timeout, || {
            let info = self.job_info(id)?;
            anyhow::Ok(info.is_finished().then_some(info))
        })?)
    }

    /// Waits until the job is in `state` (e.g. `RUNNING`).
    pub fn wait_for_state(&self, id: u32, state: &str, timeout: Duration) -> Result<JobInfo> {
        let what = format!("job {id} to be {state}");
        Ok(wait_until(&what, timeout, || {
            let info = self.job_info(id)?;
            if info.state() == state {
                return Ok(Some(info));
            }
            if info.is_finished() {
                bail!("job {id} ended as {} before reaching {state}", info.state());
            }
            Ok(None)
        })?)
    }

    /// The job's output file as it is now (empty if it does not exist yet).
    pub fn output(&self, job: &Submitted) -> String {
        fs::read_to_string(&job.output).unwrap_or_default()
    }

    /// Waits until the job's output contains `needle`.
    pub fn wait_for_output(
        &self,
        job: &Submitted,
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        let what = format!("{needle:?} in the output of job {}", job.id);
        Ok(wait_until(&what, timeout, || {
            let text = self.output(job);
            text.contains(needle).then_some(text)
        })?)
    }

    /// Cancels a job (as root).
    pub fn scancel(&self, id: u32) -> Result<()> {
        let status = self
            .command("scancel")
            .arg(id.to_string())
            .status()
            .context("running scancel")?;
        ensure!(status.success(), "scancel {id} failed: {status}");
        Ok(())
    }

    /// The node's state as `sinfo` reports it (`idle`, `mixed`, `allocated`, `drained`, ...).
    pub fn node_state(&self) -> Result<String> {
        let output = self
            .command("sinfo")
            .args(["--noheader", "--format=%T"])
            .output()
            .context("running sinfo")?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// The reason Slurm gives for a drained or down node, if any.
    pub fn node_reason(&self) -> Result<String> {
        let output = self
            .command("sinfo")
            .args(["--noheader", "--format=%E"])
            .output()
            .context("running sinfo")?;
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
    }

    /// Fails unless the node is usable (idle, or busy with other tests' jobs): never drained or down.
    pub fn assert_node_healthy(&self) -> Result<()> {
        let state = self.node_state()?;
        // "planned" (and the suffix "-") is the backfill scheduler holding the node for a
        // pending job: busy, not broken. What this check is for is drain, down and fail.
        let usable = ["idle", "mixed", "allocated", "completing", "planned"];
        ensure!(
            usable.contains(&state.trim_end_matches(['*', '-'])),
            "node is {state}: {}",
            self.node_reason()?
        );
        Ok(())
    }

    /// Live processes owned by `user` now, as (pid, command line) pairs.
    pub fn processes_of(&self, user: &str) -> Result<Vec<(u32, String)>> {
        let uid = uid_of(user)?;
        Ok(crate::procfs::processes()
            .into_iter()
            .filter(|p| p.uid == uid && !p.zombie)
            .map(|p| (p.pid, p.cmdline))
            .collect())
    }
}

/// The numeric uid of `user`.
fn uid_of(user: &str) -> Result<u32> {
    let entry = nix::unistd::User::from_name(user)
        .with_context(|| format!("looking up user {user}"))?
        .with_context(|| format!("no such user {user}"))?;
    Ok(entry.uid.as_raw())
}

/// `export KEY=value` lines, as slurm-up prints them.
fn parse_exports(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| line.strip_prefix("export "))
        .filter_map(|pair| pair.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

/// The `key=value` fields of a one-line `scontrol` record. Values that contain spaces (only
/// free text such as `Command` or `Reason` in practice) keep their first word.
fn parse_fields(text: &str) -> BTreeMap<String, String> {
    text.split_whitespace()
        .filter_map(|token| token.split_once('='))
        .map(|(key, value)| (key.to_owned(), value.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scontrol_fields() {
        let fields = parse_fields(
            "JobId=7 JobName=wrap JobState=FAILED Reason=NonZeroExitCode ExitCode=3:0",
        );
        assert_eq!(fields["JobId"], "7");
        assert_eq!(fields["JobState"], "FAILED");
        assert_eq!(fields["ExitCode"], "3:0");
    }

    #[test]
    fn parses_exports() {
        let exports =
            parse_exports("export SLURM_CONF=/x/slurm.conf\nnoise\nexport GHA_CLUSTER_DIR=/x\n");
        assert_eq!(exports["SLURM_CONF"], "/x/slurm.conf");
        assert_eq!(exports["GHA_CLUSTER_DIR"], "/x");
        assert_eq!(exports.len(), 2);
    }
}
