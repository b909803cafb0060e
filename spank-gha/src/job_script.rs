//! Job script context (a root child of slurmd): the epilog tears down whatever a job left on
//! the node, on every kind of ending. It never returns an error for what it could not clean,
//! because an epilog error drains the node; that is logged.
//!
//! - A `--gha-runner` job: its processes (marked with its job id, or inside its work dir) are
//!   killed and the work dir the plugin made is removed ([`workdir::remove`], bounded).
//! - When such a job's user (uid at least `min_uid`) has no other job on this node: every
//!   process of that user is killed, the classic Slurm epilog rule. A workflow step that
//!   escaped with `cd /; env -i setsid ...` carries neither the job id nor the work dir, and
//!   would otherwise stay to read the user's next runner config. Only runner jobs are swept
//!   this way: the plugin is loaded cluster-wide, and other jobs are not its business (nor
//!   worth a `squeue` call to slurmctld at the end of every job).
//! - Then, when a dispatcher is configured, it is told that the runner job ended
//!   (`gha-redeem --job-ended`, MUNGE-signed by root), so the runner's slot is freed at once
//!   rather than at the dispatcher's next poll. Bounded by [`NOTICE_LIMIT`]; a dispatcher that
//!   is down or refuses costs a log line, never the node.

use std::process::Command;
use std::time::Duration;

use redeem_contract::helper_flag;

use crate::args::Opt;
use crate::config::Config;
use crate::helper::run_bounded;
use crate::spank::{log_error, log_info, Spank};
use crate::workdir::{self, JobDir, Removal};

/// How long the epilog keeps killing a job's processes before giving up on survivors.
const KILL_LIMIT: Duration = Duration::from_secs(10);
/// Bound on asking Slurm which jobs the user still has on this node.
const SQUEUE_LIMIT: Duration = Duration::from_secs(10);
/// Bound on deleting a work dir (a huge or deep tree is left for the admin after it).
const REMOVE_LIMIT: Duration = Duration::from_secs(30);

/// Bound on telling the dispatcher that a runner job ended (the helper's own bound is one
/// second less, so that it can say what timed out).
const NOTICE_LIMIT: Duration = Duration::from_secs(5);

/// The end notice's helper argv (no secret in it: nothing but the job id).
pub fn notice_args(url: &str, job_id: u32, config: &Config) -> Vec<String> {
    let mut args = vec![helper_flag::JOB_ENDED.to_string()];
    args.extend(crate::redeem::common_args(
        url,
        job_id,
        config,
        NOTICE_LIMIT.as_secs() - 1,
    ));
    args
}

/// Tells the dispatcher (if any) that runner job `job_id` ended; logs what went wrong.
fn notify_dispatcher(config: &Config, job_id: u32) {
    let Some(url) = config.dispatcher_url.as_deref() else {
        return;
    };
    let result = run_bounded(
        Command::new(&config.redeem_helper).args(notice_args(url, job_id, config)),
        &[("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")],
        None,
        NOTICE_LIMIT,
    );
    match result {
        Ok(output) if output.status.success() => {}
        Ok(output) => log_info(&format!(
            "job {job_id}: the dispatcher was not told that the runner ended ({}); it will \
             notice by polling Slurm",
            crate::redeem::first_line(&output.stderr).unwrap_or_else(|| output.status.to_string())
        )),
        Err(e) => log_info(&format!(
            "job {job_id}: the dispatcher was not told that the runner ended ({e}); it will \
             notice by polling Slurm"
        )),
    }
}

fn id_from(spank_value: Result<u32, crate::spank::SpankCode>, env_name: &str) -> Option<u32> {
    spank_value
        .ok()
        .or_else(|| std::env::var(env_name).ok()?.parse().ok())
}

/// Whether user `uid` has a job on this node other than `job_id` (configuring, running or
/// suspended: a job that is itself ending does not count). `squeue` is asked, bounded in time;
/// an error means "cannot tell".
fn other_jobs_on_node(job_id: u32, uid: u32) -> Result<bool, String> {
    let node = std::env::var("SLURMD_NODENAME").unwrap_or_else(|_| "localhost".into());
    let conf = std::env::var("SLURM_CONF").unwrap_or_default();
    let mut env = vec![("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")];
    if !conf.is_empty() {
        env.push(("SLURM_CONF", &conf));
    }
    let output = run_bounded(
        Command::new("squeue").args([
            "--noheader",
            "--format=%A",
            "--states=CONFIGURING,RUNNING,SUSPENDED,STOPPED",
            &format!("--nodelist={node}"),
            &format!("--user={uid}"),
        ]),
        &env,
        None,
        SQUEUE_LIMIT,
    )
    .map_err(|e| e.to_string())?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        return Err(format!(
            "squeue failed: {}",
            stderr.lines().next().unwrap_or("")
        ));
    }
    let own = job_id.to_string();
    Ok(String::from_utf8_lossy(&output.stdout)
        .split_whitespace()
        .any(|id| id != own))
}

/// Whether every process of `uid` goes: an ordinary user with no other job here.
fn sweep_whole_user(config: &Config, job_id: u32, uid: u32) -> bool {
    if uid == 0 || uid < config.min_uid() {
        return false;
    }
    match other_jobs_on_node(job_id, uid) {
        Ok(others) => !others,
        Err(e) => {
            log_error(&format!(
                "job {job_id}: cannot tell whether uid {uid} has other jobs here ({e}); \
                 leaving its processes outside the job alone"
            ));
            false
        }
    }
}

pub fn epilog(spank: Spank, config: &Config) -> Result<(), String> {
    let started = std::time::Instant::now();
    let Some(job_id) = id_from(spank.job_id(), "SLURM_JOB_ID") else {
        return Err("epilog: cannot tell which job ended".into());
    };
    let Some(uid) = id_from(spank.job_uid(), "SLURM_JOB_UID") else {
        return Err(format!("epilog: cannot tell the user of job {job_id}"));
    };
    let dir = JobDir::path_for(&config.workdir_base, job_id);
    let runner_job = spank.option_value(Opt::Runner).is_some() || dir.exists();
    let whole_user = runner_job && sweep_whole_user(config, job_id, uid);
    if uid != 0 && runner_job {
        let report = crate::cleanup::kill_job_processes(job_id, uid, &dir, whole_user, KILL_LIMIT);
        if !report.survivors.is_empty() {
            log_error(&format!(
                "job {job_id}: processes {:?} survived SIGKILL for {KILL_LIMIT:?}",
                report.survivors
            ));
        }
        if report.killed > 0 {
            log_info(&format!(
                "job {job_id}: killed {} leftover processes{}",
                report.killed,
                if whole_user {
                    " (the user has no other job on this node)"
                } else {
                    ""
                }
            ));
        }
    }
    match workdir::remove(&config.workdir_base, job_id, uid, REMOVE_LIMIT) {
        Ok(Removal::Removed) => log_info(&format!(
            "job {job_id}: removed {} (teardown in {:.1} ms)",
            dir.display(),
            started.elapsed().as_secs_f64() * 1000.0
        )),
        Ok(Removal::Nothing) => {}
        Ok(Removal::NotOurs) => log_error(&format!(
            "job {job_id}: {} is not the directory the plugin made for uid {uid}; left in place",
            dir.display()
        )),
        Err(e) => log_error(&format!("job {job_id}: {e}")),
    }
    if runner_job {
        notify_dispatcher(config, job_id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_end_notice_names_the_mode_first_and_only_the_job() {
        let config =
            Config::parse(&["dispatcher_url=http://127.0.0.1:6820", "munge_socket=/m/s"]).unwrap();
        assert_eq!(
            notice_args("http://127.0.0.1:6820", 7, &config),
            [
                "--job-ended",
                "--url",
                "http://127.0.0.1:6820",
                "--job-id",
                "7",
                "--munge-socket",
                "/m/s",
                "--timeout",
                "4"
            ]
        );
    }
}
