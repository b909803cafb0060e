//! Samples the soak takes while it runs, for the end checks: the tickets slurmctld holds in
//! its saved job environments (root's; how the soak learns the tickets it must look for
//! elsewhere), `scontrol show job` of running runner jobs, the environments of the job user's
//! processes, and the dispatcher's memory (resident size per process, first and peak). Nothing
//! here prints what it sampled: the samples are only searched.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Serialize;

use crate::demo::slurm;
use e2e::Cluster;

/// The samples so far.
#[derive(Debug, Default)]
pub struct Samples {
    pub tickets: BTreeSet<String>,
    /// `scontrol show job` texts of running runner jobs.
    pub slurm_records: Vec<String>,
    /// `(command line, environment)` of the job user's processes; the runner's own process
    /// is told apart ([`is_runner_process`]), since it is started with the config in its
    /// environment by design.
    pub environments: Vec<(String, Vec<u8>)>,
    pub memory: BTreeMap<u32, Memory>,
}

/// One dispatcher process's resident memory, MiB.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Memory {
    pub first_mib: f64,
    pub last_mib: f64,
    pub peak_mib: f64,
    pub samples: usize,
}

/// The environment variable the dispatcher's sbatch carries the ticket in.
const TICKET_MARK: &str = "ticket:";

/// Tickets in a saved job environment (any bytes around them).
pub fn tickets_in(bytes: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(bytes);
    let mut found = Vec::new();
    let mut rest = text.as_ref();
    while let Some(at) = rest.find(TICKET_MARK) {
        rest = &rest[at + TICKET_MARK.len()..];
        let ticket: String = rest
            .chars()
            .take_while(|c| redeem_contract::is_ticket_char(*c))
            .collect();
        if ticket.len() == redeem_contract::ISSUED_TICKET_LEN {
            found.push(ticket);
        }
    }
    found
}

impl Samples {
    /// Reads the tickets of the jobs slurmctld has saved (`StateSaveLocation/hash.*/job.*/`).
    pub fn harvest_tickets(&mut self, cluster: &Cluster) {
        let state = cluster.dir().join("state");
        let Ok(hashes) = std::fs::read_dir(&state) else {
            return;
        };
        for hash in hashes.flatten() {
            let Ok(jobs) = std::fs::read_dir(hash.path()) else {
                continue;
            };
            for job in jobs.flatten() {
                if let Ok(bytes) = std::fs::read(job.path().join("environment")) {
                    self.tickets.extend(tickets_in(&bytes));
                }
            }
        }
    }

    /// `scontrol show job` of every running job of the run.
    pub fn sample_slurm_records(&mut self, cluster: &Cluster, prefix: &str) {
        let Ok(jobs) = slurm::run_jobs(cluster, prefix) else {
            return;
        };
        for job in jobs.iter().filter(|j| j.state == "RUNNING") {
            if let Ok(record) = cluster.job_record(job.id) {
                self.slurm_records.push(record);
            }
        }
    }

    /// The environment of every process of the job user now.
    pub fn sample_environments(&mut self, cluster: &Cluster) {
        let user = cluster.test_user();
        for (pid, cmdline) in cluster.processes_of(user).unwrap_or_default() {
            let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
                continue;
            };
            // A process that exec'd between the reads (the job script's subshell becoming
            // the runner, say) has an environment of another program than `cmdline`: which
            // one is unknown, so the sample is dropped (the next round takes it again).
            if e2e::procfs::cmdline(pid).as_deref() == Some(cmdline.as_str()) {
                self.environments.push((cmdline, environ));
            }
        }
    }

    /// The dispatcher's resident size now.
    pub fn sample_memory(&mut self, pid: u32) {
        let Ok((rss, peak)) = e2e::procfs::memory_mib(pid) else {
            return;
        };
        let memory = self.memory.entry(pid).or_insert_with(|| Memory {
            first_mib: rss,
            ..Memory::default()
        });
        memory.last_mib = rss;
        memory.peak_mib = memory.peak_mib.max(peak).max(rss);
        memory.samples += 1;
    }
}

/// Is the process with `cmdline` the runner itself, started with its config in the
/// environment (which it removes at once; `/proc/PID/environ` still shows what it started
/// with)? The job script starts it as `setsid ./run.sh`; `run.sh`, a bash script, runs as
/// `/bin/bash ./run.sh` until it execs the listener (the real runner's stays, with its
/// `run-helper.sh`, for the whole job). A shell running anything else is not the runner.
pub fn is_runner_process(cmdline: &str) -> bool {
    let mut words = cmdline.split(' ').map(file_name);
    let first = words.next().unwrap_or_default();
    if RUNNER_PROGRAMS.contains(&first.as_str()) {
        return true;
    }
    let launches_runner = matches!(first.as_str(), "setsid" | "bash" | "sh");
    launches_runner
        && words
            .next()
            .is_some_and(|w| RUNNER_SCRIPTS.contains(&w.as_str()))
}

/// The runner's programs and its entry scripts.
const RUNNER_PROGRAMS: [&str; 2] = ["Runner.Listener", "fake-runner"];
const RUNNER_SCRIPTS: [&str; 2] = ["run.sh", "run-helper.sh"];

fn file_name(word: &str) -> String {
    Path::new(word)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tickets_of_the_issued_length_only() {
        let ticket = "a".repeat(redeem_contract::ISSUED_TICKET_LEN);
        let env = format!("X=1\0SLURM_SPANK__SLURM_SPANK_OPTION_spank_gha_gha_runner=ticket:{ticket}\0ticket:short\0");
        assert_eq!(tickets_in(env.as_bytes()), vec![ticket]);
    }

    #[test]
    fn the_runner_is_told_from_other_processes_by_its_command_line() {
        for runner in [
            "/tmp/x/runner/bin/Runner.Listener run",
            "setsid ./run.sh",
            "/bin/bash ./run.sh",
            "/bin/bash /home/u/runner/run-helper.sh",
        ] {
            assert!(is_runner_process(runner), "{runner}");
        }
        for other in [
            "/bin/sh",
            "/bin/bash /usr/libexec/spank-gha/gha-runner-job",
            "setsid dockerd-rootless.sh",
            "/bin/bash -c ./run.sh",
            "run.sh-not",
        ] {
            assert!(!is_runner_process(other), "{other}");
        }
    }
}
