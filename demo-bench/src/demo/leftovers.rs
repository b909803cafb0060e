//! What a run must not leave behind once it is over: Slurm jobs, runner registrations on
//! GitHub, per-job work dirs, and processes of the job user. Checked after every demo and
//! benchmark run; "none" is the only good answer.

use std::collections::BTreeSet;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use github_sim::Sim;
use serde::Serialize;
use test_support::wait_until;

use crate::demo::slurm;
use e2e::Cluster;

#[derive(Debug, Clone, Default, Serialize)]
pub struct Leftovers {
    /// `id state name` of the run's Slurm jobs still listed by squeue.
    pub slurm_jobs: Vec<String>,
    /// Names of runners still registered with (simulated) GitHub.
    pub runner_registrations: Vec<String>,
    /// `<workdir_base>/spank-gha/gha-<jobid>` directories (and their `.made` records).
    pub work_dirs: Vec<PathBuf>,
    /// `pid program` of processes owned by the job user (arguments left out: they may hold
    /// a credential).
    pub processes: Vec<String>,
}

impl Leftovers {
    pub fn is_empty(&self) -> bool {
        self.slurm_jobs.is_empty()
            && self.runner_registrations.is_empty()
            && self.work_dirs.is_empty()
            && self.processes.is_empty()
    }

    /// Looks now. `extra_job_ids` are Slurm jobs the run is known to have created, in case their
    /// names do not carry the prefix.
    pub fn collect(
        cluster: &Cluster,
        sim: &Sim,
        prefix: &str,
        extra_job_ids: &BTreeSet<u32>,
    ) -> Result<Leftovers> {
        let slurm_jobs = slurm::jobs_of(cluster, cluster.test_user())?
            .into_iter()
            .filter(|job| {
                job.name.contains(prefix)
                    || job.comment.contains(prefix)
                    || extra_job_ids.contains(&job.id)
            })
            .map(|job| format!("{} {} {}", job.id, job.state, job.name))
            .collect();
        let runner_registrations = sim.runners().into_iter().map(|r| r.name).collect();
        let mut work_dirs = Vec::new();
        for base in workdir_parents(cluster) {
            let Ok(entries) = std::fs::read_dir(&base) else {
                continue;
            };
            for entry in entries.flatten() {
                if is_job_work_dir(&entry.file_name().to_string_lossy()) {
                    work_dirs.push(entry.path());
                }
            }
        }
        work_dirs.sort();
        let processes = cluster
            .processes_of(cluster.test_user())
            .context("listing the job user's processes")?
            .into_iter()
            .map(|(pid, cmd)| format!("{pid} {}", program_only(&cmd)))
            .collect();
        Ok(Leftovers {
            slurm_jobs,
            runner_registrations,
            work_dirs,
            processes,
        })
    }

    /// Polls until nothing is left, `timeout` passes or `give_up()` says so (Ctrl-C); returns
    /// what was found last. Runners that got no job stop by themselves after the plugin's idle
    /// timeout, so this can take that long.
    pub fn wait_until_none(
        cluster: &Cluster,
        sim: &Sim,
        prefix: &str,
        extra_job_ids: &BTreeSet<u32>,
        timeout: Duration,
        give_up: &dyn Fn() -> bool,
    ) -> Result<Leftovers> {
        let mut found = None;
        let looked = wait_until("nothing left over", timeout, || {
            match Leftovers::collect(cluster, sim, prefix, extra_job_ids) {
                Ok(now) => {
                    let done = now.is_empty() || give_up();
                    found = Some(now);
                    done.then_some(Ok(()))
                }
                Err(error) => Some(Err(error)),
            }
        });
        if let Ok(Err(error)) = looked {
            return Err(error);
        }
        // Timed out or not: what the last look found.
        found.context("the leftovers were never looked at")
    }
}

impl fmt::Display for Leftovers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(
                f,
                "none (Slurm jobs 0, runner registrations 0, work dirs 0, job-user processes 0)"
            );
        }
        write!(
            f,
            "Slurm jobs {}, runner registrations {}, work dirs {}, job-user processes {}",
            self.slurm_jobs.len(),
            self.runner_registrations.len(),
            self.work_dirs.len(),
            self.processes.len()
        )?;
        for job in &self.slurm_jobs {
            write!(f, "\n    slurm job: {job}")?;
        }
        for name in &self.runner_registrations {
            write!(f, "\n    runner: {name}")?;
        }
        for dir in &self.work_dirs {
            write!(f, "\n    work dir: {}", dir.display())?;
        }
        for process in &self.processes {
            write!(f, "\n    process: {process}")?;
        }
        Ok(())
    }
}

/// The plugin names a job's work dir `gha-<jobid>` and its record `gha-<jobid>.made`.
fn is_job_work_dir(name: &str) -> bool {
    let name = name.strip_suffix(".made").unwrap_or(name);
    name.strip_prefix("gha-")
        .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// The program of a command line: its arguments may carry a runner's credential
/// (`run.sh --jitconfig <value>`), and nothing here may print one.
fn program_only(cmdline: &str) -> String {
    match cmdline.split_once(' ') {
        Some((program, _)) => format!("{program} …"),
        None => cmdline.to_owned(),
    }
}

/// Where the plugin creates per-job work dirs: the root-owned [`spank_gha::workdir::PARENT`]
/// inside its `workdir_base` in plugstack.conf (`/tmp` when not set, the plugin's default).
pub fn workdir_parents(cluster: &Cluster) -> Vec<PathBuf> {
    let plugstack =
        std::fs::read_to_string(cluster.dir().join("etc/plugstack.conf")).unwrap_or_default();
    let configured: Vec<PathBuf> = plugstack
        .split_whitespace()
        .filter_map(|arg| arg.strip_prefix("workdir_base="))
        .map(PathBuf::from)
        .collect();
    let bases = if configured.is_empty() {
        vec![PathBuf::from("/tmp")]
    } else {
        configured
    };
    bases
        .into_iter()
        .map(|base| base.join(spank_gha::workdir::PARENT))
        .collect()
}

/// The plugin's `docker=` mode on this cluster (`off` when the plugin is not loaded).
pub fn plugin_docker_mode(cluster: &Cluster) -> String {
    let plugstack =
        std::fs::read_to_string(cluster.dir().join("etc/plugstack.conf")).unwrap_or_default();
    if plugstack.trim().is_empty() {
        return "no plugin".into();
    }
    plugstack
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("docker="))
        .unwrap_or("off")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_arguments_are_never_shown() {
        let shown = program_only("/tmp/gha-1/runner/bin/Runner.Listener run --jitconfig c2VjcmV0");
        assert_eq!(shown, "/tmp/gha-1/runner/bin/Runner.Listener …");
        assert_eq!(program_only("sleep"), "sleep");
    }

    #[test]
    fn only_job_work_dirs_count() {
        assert!(is_job_work_dir("gha-274"));
        assert!(is_job_work_dir("gha-274.made"));
        assert!(!is_job_work_dir("gha-274.other"));
        assert!(!is_job_work_dir("gha-crash-markersWSMhkU"));
        assert!(!is_job_work_dir("gha-"));
    }
}
