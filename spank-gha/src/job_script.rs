//! Job script context (a root child of slurmd): the epilog tears down whatever a runner job left
//! on the node, on every kind of ending. It never returns an error, because an epilog error
//! drains the node; what it could not clean is logged.

use std::time::Duration;

use crate::args::Opt;
use crate::config::Config;
use crate::spank::{log_error, log_info, Spank};
use crate::workdir::{self, JobDir};

/// How long the epilog keeps killing a job's processes before giving up on survivors.
const KILL_LIMIT: Duration = Duration::from_secs(10);

fn id_from(spank_value: Result<u32, crate::spank::SpankCode>, env_name: &str) -> Option<u32> {
    spank_value
        .ok()
        .or_else(|| std::env::var(env_name).ok()?.parse().ok())
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
    let was_runner_job = spank.option_value(Opt::Runner).is_some();
    let has_dir = std::fs::symlink_metadata(&dir).is_ok();
    if !was_runner_job && !has_dir {
        return Ok(());
    }
    if uid != 0 {
        let report = crate::cleanup::kill_job_processes(job_id, uid, &dir, KILL_LIMIT);
        if !report.survivors.is_empty() {
            log_error(&format!(
                "job {job_id}: processes {:?} survived SIGKILL for {KILL_LIMIT:?}",
                report.survivors
            ));
        }
        if report.killed > 0 {
            log_info(&format!(
                "job {job_id}: killed {} leftover processes",
                report.killed
            ));
        }
    }
    match workdir::remove(&config.workdir_base, job_id) {
        Ok(true) => log_info(&format!(
            "job {job_id}: removed {} (teardown in {:.1} ms)",
            dir.display(),
            started.elapsed().as_secs_f64() * 1000.0
        )),
        Ok(false) => {}
        Err(e) => log_error(&format!(
            "job {job_id}: cannot remove {}: {e}",
            dir.display()
        )),
    }
    Ok(())
}
