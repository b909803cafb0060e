//! Bare Slurm jobs timed on the real cluster: the floor for "queued → runner started"
//! (`sbatch --wrap` submit-to-start) and the plugin's overhead (submit-to-end with and without
//! the plugin, and with a `--gha-runner` job). Jobs run one after another on an otherwise idle
//! node, as the non-root test user. Start times come from the kernel (`/proc/<pid>/stat` of the
//! batch shell, 10 ms ticks on `CLOCK_BOOTTIME`); ends are when squeue stops listing the job
//! (epilog included), polled every 10 ms.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use serde::Serialize;
use test_support::wait_until_every;

use e2e::procfs::{boottime_now, clock_ticks_per_second};
use e2e::Cluster;

/// The wrapped command: prints the batch shell's start time in clock ticks since boot.
const PRINT_START: &str = "cut -d' ' -f22 /proc/$$/stat";

#[derive(Debug, Clone, Serialize)]
pub struct JobTiming {
    pub job_id: u32,
    pub submit_to_start_secs: f64,
    pub submit_to_end_secs: f64,
}

/// Is the job still listed as pending, running or completing?
fn listed(cluster: &Cluster, id: u32) -> Result<bool> {
    let output = cluster
        .command("squeue")
        .args([
            "--noheader",
            "--format=%T",
            "--states=PENDING,RUNNING,CONFIGURING,COMPLETING,SUSPENDED",
            "--jobs",
            &id.to_string(),
        ])
        .output()
        .context("running squeue")?;
    // A job the controller no longer knows makes squeue fail: it is not listed either.
    Ok(output.status.success() && !String::from_utf8_lossy(&output.stdout).trim().is_empty())
}

/// Waits (polling every 10 ms) until Slurm no longer lists the job; returns when that was seen.
pub fn wait_gone(cluster: &Cluster, id: u32, timeout: Duration) -> Result<f64> {
    let what = format!("job {id} to leave squeue");
    let seen = wait_until_every(&what, timeout, Duration::from_millis(10), || {
        match listed(cluster, id) {
            Ok(true) => None,
            Ok(false) => Some(Ok(boottime_now())),
            Err(error) => Some(Err(error)),
        }
    });
    match seen {
        Ok(seen) => seen,
        Err(_) => bail!("job {id} still listed by squeue after {timeout:?}"),
    }
}

/// Waits (polling every 5 ms, up to `timeout`) until the node is idle: a job submitted then is
/// scheduled at once instead of on slurmctld's next periodic pass, which would quantise every
/// sample to about a second. Returns whether it was idle (a shared cluster may never be).
pub fn wait_node_idle(cluster: &Cluster, timeout: Duration) -> Result<bool> {
    let idle = wait_until_every(
        "an idle node",
        timeout,
        Duration::from_millis(5),
        || match cluster.node_state() {
            Ok(state) => (state == "idle").then_some(Ok(())),
            Err(error) => Some(Err(error)),
        },
    );
    match idle {
        Ok(looked) => looked.map(|()| true),
        Err(_) => Ok(false),
    }
}

/// Submits `count` jobs one after another with `extra_args` (sbatch options), each running
/// the start-time probe, and times each. `warmup` more jobs run first and are not recorded.
pub fn time_jobs(
    cluster: &Cluster,
    extra_args: &[String],
    count: usize,
    warmup: usize,
) -> Result<Vec<JobTiming>> {
    let ticks = clock_ticks_per_second();
    let mut timings = Vec::with_capacity(count);
    for i in 0..count + warmup {
        let mut args: Vec<&str> = extra_args.iter().map(String::as_str).collect();
        args.extend(["--wrap", PRINT_START]);
        wait_node_idle(cluster, Duration::from_secs(30))?;
        let submitted_at = boottime_now();
        let job = cluster.sbatch(&args)?;
        let ended_at = wait_gone(cluster, job.id, Duration::from_secs(120))?;
        let info = cluster.job_info(job.id)?;
        ensure!(
            info.state() == "COMPLETED",
            "timing job {} ended {} ({}): {}",
            job.id,
            info.state(),
            info.exit_code(),
            cluster.output(&job)
        );
        let output = cluster.output(&job);
        let started_ticks: f64 = output
            .lines()
            .next()
            .and_then(|line| line.trim().parse().ok())
            .with_context(|| format!("job {} printed no start time: {output:?}", job.id))?;
        let _ = std::fs::remove_file(&job.output);
        if i >= warmup {
            timings.push(JobTiming {
                job_id: job.id,
                submit_to_start_secs: started_ticks / ticks - submitted_at,
                submit_to_end_secs: ended_at - submitted_at,
            });
        }
    }
    Ok(timings)
}

/// Restarts the test cluster through `ci/slurm-down` and `ci/slurm-up`, with or without the
/// plugin. Everything running on it is cancelled.
pub fn restart_cluster(cluster: &Cluster, with_plugin: bool) -> Result<()> {
    run_script(cluster.repo_root(), "ci/slurm-down", &[])?;
    let env: &[(&str, &str)] = if with_plugin {
        &[]
    } else {
        &[("GHA_WITHOUT_PLUGIN", "1")]
    };
    run_script(cluster.repo_root(), "ci/slurm-up", env)?;
    let plugstack = std::fs::read_to_string(cluster.dir().join("etc/plugstack.conf"))
        .context("reading plugstack.conf")?;
    ensure!(
        plugstack.trim().is_empty() != with_plugin,
        "the restarted cluster {} the plugin",
        if with_plugin { "lacks" } else { "still has" }
    );
    Ok(())
}

/// The plugin work's own overhead benchmark (`spank-gha/benches/bench-plugin`), if it exists:
/// it alternates clusters without and with the plugin and also times rootless dockerd. Its
/// stdout (a summary table) is returned as lines; the cluster is left up with the plugin.
pub fn run_plugin_bench(
    cluster: &Cluster,
    jobs: usize,
    rounds: usize,
    docker_jobs: usize,
) -> Result<Option<Vec<String>>> {
    let script = cluster.repo_root().join("spank-gha/benches/bench-plugin");
    if !script.is_file() {
        return Ok(None);
    }
    let mut command = Command::new(&script);
    command
        .args([
            jobs.to_string(),
            rounds.to_string(),
            docker_jobs.to_string(),
        ])
        .current_dir(cluster.repo_root());
    if std::env::var_os("GHA_CARGO_PROFILE").is_none() {
        command.env("GHA_CARGO_PROFILE", "release");
    }
    let output = command
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        output.status.success(),
        "{} failed ({}):\n{}",
        script.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(Some(
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_owned)
            .collect(),
    ))
}

/// The mean added per job, in ms, from bench-plugin's "added per job (mean): X ms" line.
pub fn plugin_bench_added_ms(lines: &[String]) -> Option<f64> {
    lines.iter().find_map(|line| {
        line.strip_prefix("added per job (mean): ")?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

fn run_script(repo_root: &Path, script: &str, env: &[(&str, &str)]) -> Result<()> {
    let mut command = Command::new(repo_root.join(script));
    command.current_dir(repo_root);
    for (key, value) in env {
        command.env(key, value);
    }
    if std::env::var_os("GHA_CARGO_PROFILE").is_none() {
        command.env("GHA_CARGO_PROFILE", "release");
    }
    let output = command
        .output()
        .with_context(|| format!("running {script}"))?;
    ensure!(
        output.status.success(),
        "{script} failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_added_time_from_the_plugin_bench() {
        let lines = vec![
            "without plugin             n=40   mean=  100.0 ms".to_owned(),
            "added per job (mean): 12.5 ms; with image check: 14.0 ms".to_owned(),
        ];
        assert_eq!(plugin_bench_added_ms(&lines), Some(12.5));
        assert_eq!(plugin_bench_added_ms(&lines[..1]), None);
    }
}
