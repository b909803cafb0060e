//! Slurm commands: `sbatch --parsable`, `squeue`, `scancel` and `scontrol`, run as child
//! processes. I/O only: which job to submit or cancel is the caller's policy.
//!
//! Every `squeue` names what it asks for, so slurmctld's work is in proportion to our jobs,
//! not the cluster's: one job id (`--jobs=<id>`: slurmctld's single-job RPC), or one user and
//! some names (crash recovery: the per-user RPC). Slurm 22.05's `squeue --json` ignores
//! `--jobs`, `--user`, `--name` and `--states` (measured: it always dumps every job), and
//! `--jobs` with several ids loads the whole job list and filters it in squeue; so the plain
//! `--format` output is read, one id at a time, strictly ([`parse_squeue_lines`]).
//!
//! They inherit the environment (so `SLURM_CONF` points at the cluster). The runner
//! credential goes to `sbatch` in its environment ([`RUNNER_OPTION_ENV`]), never on its
//! command line (world-readable in `/proc/PID/cmdline`; the environment is readable by
//! its owner only); it is never logged, and is scrubbed from any error text.

use std::fmt;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use redeem_contract::TICKET_PREFIX;

use crate::config::{PoolConfig, SlurmConfig};
use crate::model::{SlurmState, UnknownState};

const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// How sbatch takes the plugin's `--gha-runner` from its environment (sbatch's
/// `spank_process_env_options`: `SLURM_SPANK_` + `_SLURM_SPANK_OPTION_<plugin>_<option>`).
pub const RUNNER_OPTION_ENV: &str = "SLURM_SPANK__SLURM_SPANK_OPTION_spank_gha_gha_runner";

/// What the runner needs to register with GitHub, as handed to the job.
#[derive(Clone)]
pub enum RunnerCredential {
    /// The JIT config itself (`--gha-runner=<base64>`).
    JitConfig(String),
    /// A late-binding ticket (`--gha-runner=ticket:<43 chars>`) the node redeems for a JIT
    /// config when the job starts. As secret as a config until it is redeemed.
    Ticket(String),
}

impl RunnerCredential {
    /// The value of `--gha-runner=`.
    fn option_value(&self) -> String {
        match self {
            RunnerCredential::JitConfig(config) => config.clone(),
            RunnerCredential::Ticket(ticket) => format!("{TICKET_PREFIX}{ticket}"),
        }
    }

    /// The secret part of the option value.
    fn secret(&self) -> &str {
        match self {
            RunnerCredential::JitConfig(secret) | RunnerCredential::Ticket(secret) => secret,
        }
    }

    /// `text` without the credential: whole, or any piece of it a tool may print
    /// (truncated with an ellipsis, wrapped over lines), and without any `--gha-runner=` value.
    fn scrub(&self, text: &str) -> String {
        let secret = self.secret();
        let whole = if secret.is_empty() {
            text.to_string()
        } else {
            text.replace(secret, REDACTED)
        };
        let pieces = redact_tokens(&whole, |token| {
            token.len() >= MIN_SECRET_PIECE && secret.contains(token)
        });
        redact_runner_options(&pieces)
    }
}

const REDACTED: &str = "<redacted>";
const RUNNER_OPTION: &str = "--gha-runner=";
/// Shorter runs of base64 characters are too common to be telling (words, job ids).
const MIN_SECRET_PIECE: usize = 12;

/// Replace the value of every `--gha-runner=` option, up to whitespace or a quote, whatever
/// it is: a credential that was cut or re-encoded no longer matches the exact string.
pub fn redact_runner_options(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find(RUNNER_OPTION) {
        let value_start = at + RUNNER_OPTION.len();
        out.push_str(&rest[..value_start]);
        out.push_str(REDACTED);
        let value = &rest[value_start..];
        let value_len = value
            .find(|c: char| c.is_whitespace() || matches!(c, '\'' | '"' | '`'))
            .unwrap_or(value.len());
        rest = &value[value_len..];
    }
    out.push_str(rest);
    out
}

/// Replace each maximal run of base64/base64url characters for which `is_secret` holds.
fn redact_tokens(text: &str, is_secret: impl Fn(&str) -> bool) -> String {
    let is_b64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
    let mut out = String::with_capacity(text.len());
    let mut token_start: Option<usize> = None;
    let flush = |out: &mut String, token: &str| {
        if is_secret(token) {
            out.push_str(REDACTED);
        } else {
            out.push_str(token);
        }
    };
    for (i, c) in text.char_indices() {
        if is_b64(c) {
            token_start.get_or_insert(i);
            continue;
        }
        if let Some(start) = token_start.take() {
            flush(&mut out, &text[start..i]);
        }
        out.push(c);
    }
    if let Some(start) = token_start {
        flush(&mut out, &text[start..]);
    }
    out
}

impl fmt::Debug for RunnerCredential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunnerCredential::JitConfig(_) => f.write_str("JitConfig(<redacted>)"),
            RunnerCredential::Ticket(_) => f.write_str("Ticket(<redacted>)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SlurmError {
    #[error("{program} failed: {message}")]
    Failed { program: String, message: String },
    #[error("{program} gave unexpected output: {output:?}")]
    Output { program: String, output: String },
}

/// One Slurm job of ours as `squeue` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub job_id: u64,
    pub name: String,
    pub state: SlurmState,
    /// Who the job runs as.
    pub user_id: u32,
    /// The node running the batch script (`%B`, else a single-node `%N`).
    pub node: Option<String>,
}

/// Of `jobs`, the first submitted named `name`: a copy of a runner's ticket can only be had
/// from its job, so any other job by its name came later. Crash recovery and a retried
/// sbatch adopt this one.
pub fn first_named<'a>(jobs: &'a [QueuedJob], name: &str) -> Option<&'a QueuedJob> {
    jobs.iter()
        .filter(|j| j.name == name)
        .min_by_key(|j| j.job_id)
}

/// One job as a ticket redemption needs to see it.
pub type JobPlacement = QueuedJob;

impl QueuedJob {
    /// Pending, running, completing, suspended...: not over yet.
    pub fn is_active(&self) -> bool {
        self.state.is_active()
    }

    /// A job whose batch step may be starting: the only time its ticket may be redeemed.
    pub fn is_running(&self) -> bool {
        self.state.is_running()
    }
}

pub struct SubmitRequest<'a> {
    pub runner_name: &'a str,
    pub comment: &'a str,
    pub pool: &'a PoolConfig,
    pub user: Option<&'a str>,
    pub group: Option<&'a str>,
    /// The mapped Slurm account; the pool's when `None`.
    pub account: Option<&'a str>,
    pub credential: &'a RunnerCredential,
}

#[derive(Clone)]
pub struct Slurm {
    config: SlurmConfig,
}

impl Slurm {
    pub fn new(config: SlurmConfig) -> Slurm {
        Slurm { config }
    }

    /// The `sbatch` arguments for a runner (the credential is not among them: it goes in
    /// [`RUNNER_OPTION_ENV`]).
    pub fn sbatch_args(&self, req: &SubmitRequest<'_>) -> Vec<String> {
        let p = req.pool;
        let mut args = vec![
            "--parsable".to_string(),
            format!("--job-name={}", req.runner_name),
            format!("--comment={}", req.comment),
            // A runner job runs once: requeued after its node failed (Slurm's default for
            // batch jobs), it would start again with a credential already used, as a job
            // the dispatcher had counted finished.
            "--no-requeue".to_string(),
        ];
        let mut opt = |flag: &str, value: Option<String>| {
            if let Some(v) = value {
                args.push(format!("--{flag}={v}"));
            }
        };
        opt("partition", p.partition.clone());
        opt("cpus-per-task", p.cpus.map(|c| c.to_string()));
        opt("mem", p.memory.clone());
        opt("gres", p.gres.clone());
        opt("time", p.time_limit.clone());
        opt(
            "account",
            req.account.or(p.account.as_deref()).map(str::to_string),
        );
        opt("qos", p.qos.clone());
        opt("output", self.config.output.clone());
        opt(
            "chdir",
            self.config.chdir.as_ref().map(|d| d.display().to_string()),
        );
        opt("uid", req.user.map(str::to_string));
        opt(
            "gid",
            req.group
                .or(req.user)
                .map(str::to_string)
                .filter(|_| req.user.is_some()),
        );
        opt("gha-image", p.image.clone());
        args.extend(p.extra_args.iter().cloned());
        args.push(self.config.job_script.display().to_string());
        args.extend(p.job_script_args.iter().cloned());
        args
    }

    /// Submit a runner job; returns its Slurm job id.
    pub async fn submit(&self, req: &SubmitRequest<'_>) -> Result<u64, SlurmError> {
        let args = self.sbatch_args(req);
        let mut env = match req.user {
            Some(user) => identity_env(user)?,
            None => Vec::new(),
        };
        env.push((RUNNER_OPTION_ENV, req.credential.option_value()));
        let output = run(&self.config.sbatch, &args, &env)
            .await
            .map_err(|e| scrub_error(e, req.credential))?;
        // `--parsable` prints `<id>` or `<id>;<cluster>`.
        let first = output.lines().next().unwrap_or("").trim();
        first
            .split(';')
            .next()
            .and_then(|id| id.parse().ok())
            .ok_or_else(|| SlurmError::Output {
                program: "sbatch".into(),
                output: req.credential.scrub(&output).chars().take(200).collect(),
            })
    }

    /// Jobs `ids`, each asked alone (slurmctld's single-job RPC; several ids in one squeue
    /// would load every job), at most [`PARALLEL_QUERIES`] at once. A job slurmctld no
    /// longer knows (past `MinJobAge`) is absent from the answer.
    pub async fn jobs(&self, ids: &[u64]) -> Result<Vec<QueuedJob>, SlurmError> {
        let mut found = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(PARALLEL_QUERIES) {
            let answers =
                futures_util::future::join_all(chunk.iter().map(|&id| self.job(id))).await;
            for answer in answers {
                found.extend(answer?);
            }
        }
        Ok(found)
    }

    /// One job by id, whatever its state; `None` when slurmctld no longer knows it.
    pub async fn job(&self, job_id: u64) -> Result<Option<QueuedJob>, SlurmError> {
        let args = [
            format!("--jobs={job_id}"),
            "--states=all".into(),
            "--noheader".into(),
            SQUEUE_FORMAT.into(),
        ];
        let output = match run(&self.config.squeue, &args, &[]).await {
            Err(SlurmError::Failed { message, .. }) if message.contains(UNKNOWN_JOB) => {
                return Ok(None)
            }
            other => other?,
        };
        let jobs = parse_squeue_lines(&output).map_err(|e| unreadable("squeue", e))?;
        Ok(jobs.into_iter().find(|j| j.job_id == job_id))
    }

    /// Jobs of user `uid` named one of `names`, whatever their state: crash recovery looks
    /// for a job whose sbatch answered no one. One user per call (slurmctld's per-user RPC;
    /// several users would load every job).
    pub async fn jobs_named(
        &self,
        uid: u32,
        names: &[String],
    ) -> Result<Vec<QueuedJob>, SlurmError> {
        if names.is_empty() {
            return Ok(Vec::new());
        }
        let args = [
            format!("--user={uid}"),
            format!("--name={}", names.join(",")),
            "--states=all".into(),
            "--noheader".into(),
            SQUEUE_FORMAT.into(),
        ];
        let output = run(&self.config.squeue, &args, &[]).await?;
        let jobs = parse_squeue_lines(&output).map_err(|e| unreadable("squeue", e))?;
        Ok(jobs
            .into_iter()
            .filter(|j| j.user_id == uid && names.contains(&j.name))
            .collect())
    }

    /// Cancel `job_id` only if it is still pending (Slurm checks atomically), so a job that
    /// started in the meantime is left alone.
    pub async fn cancel_if_pending(&self, job_id: u64) -> Result<(), SlurmError> {
        run(
            &self.config.scancel,
            &["--state=PENDING".into(), job_id.to_string()],
            &[],
        )
        .await
        .map(drop)
    }

    /// The names and addresses Slurm has for `node`: `NodeAddr` and `NodeHostName` of
    /// `scontrol show node -o`.
    pub async fn node_addresses(&self, node: &str) -> Result<Vec<String>, SlurmError> {
        let args = ["show".to_string(), "node".into(), "-o".into(), node.into()];
        let output = run(&self.config.scontrol, &args, &[]).await?;
        let found = parse_node_addresses(&output);
        if found.is_empty() {
            return Err(SlurmError::Output {
                program: "scontrol".into(),
                output: output.chars().take(200).collect(),
            });
        }
        Ok(found)
    }

    /// Replace job `job_id`'s comment (`scontrol update`; needs root or a Slurm operator).
    /// slurmctld refuses it once the job finished (a CI job of a second can): then the
    /// accounting database's record is changed instead (`sacctmgr modify job`, beside
    /// `scontrol`; it works where slurmdbd keeps job comments, `AccountingStoreFlags=job_comment`).
    /// `comment` is put in one argument, never through a shell.
    pub async fn set_comment(&self, job_id: u64, comment: &str) -> Result<(), SlurmError> {
        let args = [
            "update".to_string(),
            format!("JobId={job_id}"),
            format!("Comment={comment}"),
        ];
        match run(&self.config.scontrol, &args, &[]).await {
            Err(SlurmError::Failed { message, .. }) if message.contains("already finished") => {
                let sacctmgr = self.config.scontrol.with_file_name("sacctmgr");
                let args = [
                    "--immediate".to_string(),
                    "modify".into(),
                    "job".into(),
                    "where".into(),
                    format!("JobID={job_id}"),
                    "set".into(),
                    format!("Comment={comment}"),
                ];
                run(&sacctmgr, &args, &[]).await.map(drop)
            }
            other => other.map(drop),
        }
    }

    pub async fn cancel(&self, job_id: u64) -> Result<(), SlurmError> {
        run(&self.config.scancel, &[job_id.to_string()], &[])
            .await
            .map(drop)
    }
}

/// What every `squeue` here prints, one job a line: the fields a job's owner cannot write
/// first, the name last (it may hold `|`: all after the fifth `|` is the name).
const SQUEUE_FORMAT: &str = "--format=%i|%U|%T|%B|%N|%j";
/// What squeue says (exit 1) when asked for a job slurmctld does not know.
const UNKNOWN_JOB: &str = "Invalid job id specified";
/// Single-job queries in flight at once: a burst of finished runners is read in a few
/// rounds, without a crowd of processes.
const PARALLEL_QUERIES: usize = 4;

/// `squeue` output could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Unreadable {
    #[error("{0}")]
    State(#[from] UnknownState),
    #[error("not squeue output of {SQUEUE_FORMAT}: line {0}")]
    Line(usize),
}

/// Digits only (`str::parse` would also take a sign).
fn whole_number<T: std::str::FromStr>(text: &str) -> Option<T> {
    let text = text.trim();
    (!text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

/// Every job in `squeue --noheader` output of [`SQUEUE_FORMAT`]. Strict: a line that is not
/// `<id>|<uid>|<STATE>|<batch host>|<nodes>|<name>`, or a state this version does not know,
/// makes the whole answer unreadable: concluding that a job ended from a job we could not
/// read would free its slot while it runs.
pub fn parse_squeue_lines(output: &str) -> Result<Vec<QueuedJob>, Unreadable> {
    // A plain host name: not "n/a", "(null)", nor a node list like "n[1-2]" or "a,b".
    let host = |s: &str| {
        let s = s.trim();
        (!s.is_empty() && s != "n/a" && s != "(null)" && !s.contains(['[', ',', ' ']))
            .then(|| s.to_string())
    };
    let mut jobs = Vec::new();
    for (n, line) in output.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let bad = || Unreadable::Line(n + 1);
        let fields: Vec<&str> = line.splitn(6, '|').collect();
        let [id, uid, state, batch_host, nodes, name] = fields[..] else {
            return Err(bad());
        };
        jobs.push(QueuedJob {
            job_id: whole_number(id).ok_or_else(bad)?,
            user_id: whole_number(uid).ok_or_else(bad)?,
            state: SlurmState::parse(state.trim())?,
            node: host(batch_host).or_else(|| host(nodes)),
            name: name.to_string(),
        });
    }
    Ok(jobs)
}

/// `NodeAddr` and `NodeHostName` values of `scontrol show node -o` (one line per node).
pub fn parse_node_addresses(output: &str) -> Vec<String> {
    let mut found: Vec<String> = output
        .split_whitespace()
        .filter_map(|token| {
            token
                .strip_prefix("NodeAddr=")
                .or_else(|| token.strip_prefix("NodeHostName="))
        })
        .filter(|v| !v.is_empty() && *v != "(null)")
        .map(str::to_string)
        .collect();
    found.dedup();
    found
}

fn unreadable(program: &str, e: Unreadable) -> SlurmError {
    SlurmError::Output {
        program: program.into(),
        output: e.to_string(),
    }
}

fn scrub_error(e: SlurmError, credential: &RunnerCredential) -> SlurmError {
    match e {
        SlurmError::Failed { program, message } => SlurmError::Failed {
            program,
            message: credential.scrub(&message),
        },
        SlurmError::Output { program, output } => SlurmError::Output {
            program,
            output: credential.scrub(&output),
        },
    }
}

/// sbatch copies the submitter's environment into the job. When root submits for another user
/// (`--uid`), the job would start with root's `HOME`, `USER` and `LOGNAME`, and tools that keep
/// per-user state there (rootless dockerd, the runner itself) would fail on root's directories.
fn identity_env(user: &str) -> Result<Vec<(&'static str, String)>, SlurmError> {
    let failed = |message: String| SlurmError::Failed {
        program: "sbatch".into(),
        message,
    };
    let entry = nix::unistd::User::from_name(user)
        .map_err(|e| failed(format!("cannot look up Unix user {user}: {e}")))?
        .ok_or_else(|| failed(format!("no Unix user named {user}")))?;
    Ok(vec![
        ("HOME", entry.dir.display().to_string()),
        ("USER", entry.name.clone()),
        ("LOGNAME", entry.name),
    ])
}

async fn run(
    program: &PathBuf,
    args: &[String],
    env: &[(&str, String)],
) -> Result<String, SlurmError> {
    let name = program
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| program.display().to_string());
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(key, value)| (key, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = match tokio::time::timeout(COMMAND_TIMEOUT, child).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => {
            return Err(SlurmError::Failed {
                program: name,
                message: format!("cannot run {}: {e}", program.display()),
            })
        }
        Err(_) => {
            return Err(SlurmError::Failed {
                program: name,
                message: format!("no answer within {} s", COMMAND_TIMEOUT.as_secs()),
            })
        }
    };
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        // Any command line echoed back (sbatch does on a bad option) loses its credential.
        let message = redact_runner_options(stderr.trim())
            .chars()
            .take(500)
            .collect::<String>();
        return Err(SlurmError::Failed {
            program: name,
            message: format!("{} ({})", message, output.status),
        });
    }
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Of several jobs by a runner's name, the first submitted is the runner's (any other
    /// is a later copy), whatever order squeue lists them in.
    #[test]
    fn the_first_submitted_job_by_a_name_is_chosen() {
        let job = |job_id, name: &str| QueuedJob {
            job_id,
            name: name.into(),
            state: SlurmState::Running,
            user_id: 1000,
            node: None,
        };
        let jobs = [job(9, "r"), job(2, "other"), job(4, "r"), job(7, "r")];
        assert_eq!(first_named(&jobs, "r").map(|j| j.job_id), Some(4));
        assert_eq!(first_named(&jobs, "none"), None);
    }

    fn pool() -> PoolConfig {
        PoolConfig {
            name: "cpu".into(),
            labels: vec!["self-hosted".into()],
            priority: 0,
            max_runners: 1,
            image: Some("ubuntu:24.04".into()),
            partition: Some("debug".into()),
            cpus: Some(2),
            memory: Some("1G".into()),
            gres: None,
            time_limit: Some("10:00".into()),
            account: None,
            qos: None,
            extra_args: vec!["--exclusive".into()],
            job_script_args: vec!["--idle-timeout".into(), "5".into()],
            min_idle: 0,
            warm_hours: None,
            time_limit_secs: None,
        }
    }

    fn slurm(sbatch: &str) -> Slurm {
        Slurm::new(SlurmConfig {
            job_script: "/opt/job".into(),
            sbatch: sbatch.into(),
            squeue: "squeue".into(),
            scancel: "scancel".into(),
            scontrol: "scontrol".into(),
            runner_credentials: Default::default(),
            ticket_ttl_secs: 86_400,
            user: Some("gha-ci".into()),
            group: None,
            min_uid: 1000,
            user_map: Default::default(),
            unmapped: Default::default(),
            output: None,
            chdir: None,
        })
    }

    /// What `submit` reports when `sbatch` is the shell script `body` that fails.
    async fn submit_error_with_fake_sbatch(body: &str, cred: &RunnerCredential) -> String {
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("sbatch");
        std::fs::write(&fake, format!("#!/bin/sh\n{body}")).unwrap();
        let mut perms = std::fs::metadata(&fake).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&fake, perms).unwrap();
        let p = pool();
        let request = SubmitRequest {
            runner_name: "r",
            comment: "c",
            pool: &p,
            user: None,
            group: None,
            account: None,
            credential: cred,
        };
        // Another test thread that forks while the script is still open for writing makes
        // its exec fail with ETXTBSY for a moment: that is not the answer under test.
        for _ in 0..20 {
            let err = slurm(fake.to_str().unwrap())
                .submit(&request)
                .await
                .unwrap_err()
                .to_string();
            if !err.contains("Text file busy") {
                return err;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the fake sbatch stayed busy")
    }

    #[test]
    fn sbatch_arguments() {
        let cred = RunnerCredential::JitConfig("SECRET".into());
        let p = pool();
        let args = slurm("sbatch").sbatch_args(&SubmitRequest {
            runner_name: "slurm-cpu-1",
            comment: "gha runner=slurm-cpu-1",
            pool: &p,
            user: Some("gha-ci"),
            group: None,
            account: None,
            credential: &cred,
        });
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=slurm-cpu-1",
                "--comment=gha runner=slurm-cpu-1",
                "--no-requeue",
                "--partition=debug",
                "--cpus-per-task=2",
                "--mem=1G",
                "--time=10:00",
                "--uid=gha-ci",
                "--gid=gha-ci",
                "--gha-image=ubuntu:24.04",
                "--exclusive",
                "/opt/job",
                "--idle-timeout",
                "5"
            ]
        );
        assert_eq!(format!("{cred:?}"), "JitConfig(<redacted>)");
    }

    #[tokio::test]
    async fn sbatch_failure_never_shows_the_credential() {
        // Echoes its arguments to stderr and fails, like an sbatch that complains about the
        // command line it was given.
        let cred = RunnerCredential::JitConfig("c2VjcmV0LWppdA==".into());
        let err = submit_error_with_fake_sbatch(
            &format!("echo \"sbatch: error: bad option in $* --gha-runner=${RUNNER_OPTION_ENV}\" >&2\nexit 1\n"),
            &cred,
        )
        .await;
        assert!(err.contains("bad option"), "{err}");
        assert!(!err.contains("c2VjcmV0LWppdA=="), "{err}");
        assert!(err.contains("<redacted>"), "{err}");
    }

    #[tokio::test]
    async fn sbatch_echoing_a_truncated_or_wrapped_credential_never_shows_it() {
        // Like sbatch without the plugin: it echoes the unknown option cut short, then
        // (for good measure) the value alone, wrapped at 20 columns.
        let secret = "eyIuY3JlZGVudGlhbHMiOiJleUp6WTJobGJXVWlPaUpQUVhWMGFDSjkifQ==";
        let cred = RunnerCredential::JitConfig(secret.into());
        let err = submit_error_with_fake_sbatch(
            &r#"value="$ENV"
short=$(printf '%s' "$value" | cut -c1-20)
echo "sbatch: unrecognized option '--gha-runner=$short…'" >&2
printf '%s\n' "$value" | fold -w 20 | head -n 3 >&2
echo "Try \"sbatch --help\" for more information" >&2
exit 1
"#
            .replace("ENV", RUNNER_OPTION_ENV),
            &cred,
        )
        .await;
        assert!(err.contains("unrecognized option"), "{err}");
        assert!(err.contains("--gha-runner=<redacted>"), "{err}");
        for piece in secret.as_bytes().chunks(12) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(!err.contains(piece), "{piece} in {err}");
        }
    }

    #[test]
    fn any_runner_option_value_is_redacted() {
        assert_eq!(
            redact_runner_options(
                "bad '--gha-runner=abc…' and \"--gha-runner=x y\" --gha-runner=\n--gha-runner=tail"
            ),
            "bad '--gha-runner=<redacted>' and \"--gha-runner=<redacted> y\" --gha-runner=<redacted>\n--gha-runner=<redacted>"
        );
        assert_eq!(redact_runner_options("nothing here"), "nothing here");
    }

    #[test]
    fn squeue_lines_are_read_strictly() {
        let out = "12|1000|PENDING|n/a||slurm-cpu-abc\n\
                   14|1000|RUNNING|node7|node7|slurm-cpu-def\n\
                   16|1001|COMPLETED|node7|node7|slurm-x|1|RUNNING|\n";
        let jobs = parse_squeue_lines(out).unwrap();
        assert_eq!(
            jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(),
            [12, 14, 16]
        );
        assert!(jobs[0].is_active() && !jobs[0].is_running() && jobs[0].node.is_none());
        assert!(jobs[1].is_running() && jobs[1].node.as_deref() == Some("node7"));
        // A name that looks like more fields stays the name.
        assert_eq!(jobs[2].name, "slurm-x|1|RUNNING|");
        assert!(!jobs[2].is_active());
        assert_eq!(jobs[2].user_id, 1001);
        assert_eq!(parse_squeue_lines("\n"), Ok(Vec::new()));
        // A state this version does not know: the answer cannot be trusted.
        assert!(matches!(
            parse_squeue_lines("17|7|TELEPORTING|n/a||slurm-z"),
            Err(Unreadable::State(_))
        ));
        for bad in [
            "12|slurm-a|RUNNING|",
            r#"{"jobs":[{"job_id":3,"name":"slurm-a","job_state":["RUNNING"],"user_id":7}]}"#,
            "12_3|7|RUNNING|n/a||slurm-a",
            "12|-7|RUNNING|n/a||slurm-a",
            "|7|RUNNING|n/a||slurm-a",
            "12|7|PD|n/a||slurm-a",
        ] {
            assert!(parse_squeue_lines(bad).is_err(), "{bad}");
        }
        // Node: the batch host, else a single node; never a list or a placeholder.
        let node = |b: &str, n: &str| {
            parse_squeue_lines(&format!("1|7|RUNNING|{b}|{n}|x")).unwrap()[0]
                .node
                .clone()
        };
        assert_eq!(node("(null)", "n[1-2]"), None);
        assert_eq!(node("", "n3").as_deref(), Some("n3"));
        assert_eq!(node("n/a", "a,b"), None);
    }

    /// A `squeue` stand-in that records its arguments and answers like Slurm 22.05: one line
    /// for job 42, "Invalid job id" for any other id.
    fn recording_squeue(dir: &std::path::Path) -> Slurm {
        let fake = dir.join("squeue");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{log}'\n\
                 case \"$1\" in --jobs=42) echo '42|7|RUNNING|n1|n1|slurm-a' ;;\n\
                 --jobs=*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;;\n\
                 --user=7) echo '50|7|PENDING|n/a||slurm-b'; echo '51|7|PENDING|n/a||slurm-other' ;;\n\
                 *) exit 2 ;; esac\n",
                log = dir.join("args").display()
            ),
        )
        .unwrap();
        let mut perms = std::fs::metadata(&fake).unwrap().permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
        std::fs::set_permissions(&fake, perms).unwrap();
        let mut slurm = slurm("sbatch");
        slurm.config.squeue = fake;
        slurm
    }

    #[tokio::test]
    async fn queries_name_only_our_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let slurm = recording_squeue(dir.path());
        let jobs = slurm.jobs(&[42, 43]).await.unwrap();
        assert_eq!(jobs.iter().map(|j| j.job_id).collect::<Vec<_>>(), [42]);
        assert_eq!(slurm.job(43).await.unwrap(), None);
        let named = slurm.jobs_named(7, &["slurm-b".to_string()]).await.unwrap();
        assert_eq!(named.iter().map(|j| j.job_id).collect::<Vec<_>>(), [50]);
        // Nothing to ask: no query at all.
        assert!(slurm.jobs(&[]).await.unwrap().is_empty());
        assert!(slurm.jobs_named(7, &[]).await.unwrap().is_empty());
        let mut calls: Vec<String> = std::fs::read_to_string(dir.path().join("args"))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        calls.sort();
        let format = "--states=all --noheader --format=%i|%U|%T|%B|%N|%j";
        assert_eq!(
            calls,
            [
                format!("--jobs=42 {format}"),
                format!("--jobs=43 {format}"),
                format!("--jobs=43 {format}"),
                format!("--user=7 --name=slurm-b {format}"),
            ]
        );
    }

    #[test]
    fn ticket_runners_get_a_ticket_reference() {
        let ticket = "q8N3x-Zk0_aB1cD2eF3gH4iJ5kL6mN7oP8qR9sT0uV1";
        let cred = RunnerCredential::Ticket(ticket.into());
        let p = pool();
        let args = slurm("sbatch").sbatch_args(&SubmitRequest {
            runner_name: "slurm-cpu-1",
            comment: "c",
            pool: &p,
            user: None,
            group: None,
            account: None,
            credential: &cred,
        });
        assert!(!args.iter().any(|a| a.contains(ticket)), "{args:?}");
        assert_eq!(cred.option_value(), format!("ticket:{ticket}"));
        assert_eq!(format!("{cred:?}"), "Ticket(<redacted>)");
        let said = format!(
            "bad value ticket:{ticket} and {} and {}",
            &ticket[..20],
            &ticket[20..]
        );
        let scrubbed = cred.scrub(&said);
        assert!(
            !scrubbed.contains(&ticket[..12]) && !scrubbed.contains(&ticket[20..]),
            "{scrubbed}"
        );
    }

    #[tokio::test]
    async fn sbatch_failure_never_shows_the_ticket() {
        // Echoes its arguments, then the ticket alone wrapped at 20 columns.
        let ticket = "Zm9vYmFyYmF6cXV4cXV1eGNvcmdlZ3JhdWx0Z2FycGx5";
        let cred = RunnerCredential::Ticket(ticket[..43].into());
        let err = submit_error_with_fake_sbatch(
            &r#"echo "sbatch: error: bad option in $* --gha-runner=$ENV" >&2
printf '%s\n' "${ENV#ticket:}" | fold -w 20 >&2
exit 1
"#
            .replace("ENV", RUNNER_OPTION_ENV),
            &cred,
        )
        .await;
        assert!(err.contains("bad option"), "{err}");
        for piece in ticket.as_bytes()[..43].chunks(12) {
            let piece = std::str::from_utf8(piece).unwrap();
            assert!(piece.len() < 12 || !err.contains(piece), "{piece} in {err}");
        }
    }

    #[test]
    fn node_address_parsing() {
        let node = "NodeName=vm Arch=x86_64 NodeAddr=127.0.0.1 NodeHostName=vm Version=22.05.8 OS=Linux 6.1 #1 SMP";
        assert_eq!(parse_node_addresses(node), ["127.0.0.1", "vm"]);
        assert!(parse_node_addresses("nothing").is_empty());
    }
}
