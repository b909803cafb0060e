//! Closing the terminal in the middle of `ci/demo` stops everything it started, as Ctrl-C does.
//! Tried as a new user would: an interactive shell in a tmux pane runs `ci/demo`; once runner
//! jobs run, the tmux server goes away (every pane's terminal hangs up). Then no dispatcher, no
//! job process, no slurmstepd, no work dir and no cluster daemon may be left.
//!
//! `ci/demo` starts the cluster itself only when none is up (and then stops it), so this test
//! stops the shared cluster first and starts it again at the end, whatever happened. It is the
//! only test in this binary: no other test uses the cluster meanwhile (`cargo test` runs test
//! binaries one after another, and the e2e lock keeps other runs off the cluster).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use demo_bench::demo::leftovers::workdir_parents;
use demo_bench::demo::slurm;
use e2e::Cluster;
use test_support::wait_until;

/// A private tmux server, so the test's sessions never touch a user's.
const TMUX_SOCKET: &str = "spank-gha-hangup-test";

/// Starts the shared cluster again when dropped (the other test binaries expect it up).
struct RestartCluster<'a>(&'a Cluster);

impl Drop for RestartCluster<'_> {
    fn drop(&mut self) {
        let _ = tmux(&["kill-server"]);
        let restarted = Command::new(self.0.repo_root().join("ci/slurm-up"))
            .current_dir(self.0.repo_root())
            .output();
        if !restarted.is_ok_and(|out| out.status.success()) {
            eprintln!("could not start the test cluster again after the hangup test");
        }
    }
}

fn tmux(args: &[&str]) -> Result<std::process::Output> {
    let output = Command::new("tmux")
        .args(["-L", TMUX_SOCKET])
        .args(args)
        .output()
        .context("running tmux")?;
    Ok(output)
}

fn run_script(cluster: &Cluster, script: &str) -> Result<()> {
    let output = Command::new(cluster.repo_root().join(script))
        .current_dir(cluster.repo_root())
        .output()
        .with_context(|| format!("running {script}"))?;
    ensure!(
        output.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Pids of processes whose command line contains every one of `needles`.
fn processes_with(needles: &[&str]) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            needles.iter().all(|needle| cmdline.contains(needle))
        })
        .collect()
}

fn work_dirs(parents: &[PathBuf]) -> Vec<PathBuf> {
    parents
        .iter()
        .filter_map(|parent| std::fs::read_dir(parent).ok())
        .flat_map(|entries| entries.flatten().map(|entry| entry.path()))
        .filter(|path| {
            path.file_name()
                .is_some_and(|name| name.to_string_lossy().starts_with("gha-"))
        })
        .collect()
}

fn daemon_alive(cluster: &Cluster, pidfile: &str) -> bool {
    let pid = std::fs::read_to_string(cluster.dir().join(pidfile)).unwrap_or_default();
    let pid = pid.trim();
    !pid.is_empty()
        && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
            !stat
                .rsplit_once(')')
                .is_some_and(|(_, s)| s.trim().starts_with('Z'))
        })
}

/// What a stopped demo must not leave: each entry names a kind of leftover and what was found.
fn leftovers(cluster: &Cluster, parents: &[PathBuf]) -> Vec<String> {
    let mut found = Vec::new();
    let checks: [(&str, Vec<String>); 4] = [
        (
            "demo's gha-dispatcher",
            debug(processes_with(&["gha-dispatcher", "spank-gha-demo-"])),
        ),
        ("ci/demo or its driver", debug(processes_with(&["ci/demo"]))),
        (
            "slurmstepd (a job still on the node)",
            debug(processes_with(&["slurmstepd"])),
        ),
        ("work dirs", debug(work_dirs(parents))),
    ];
    for (what, list) in checks {
        if !list.is_empty() {
            found.push(format!("{what}: {}", list.join(", ")));
        }
    }
    if let Ok(processes) = cluster.processes_of(cluster.test_user()) {
        if !processes.is_empty() {
            found.push(format!(
                "processes of {}: {}",
                cluster.test_user(),
                processes.len()
            ));
        }
    }
    for (daemon, pidfile) in [
        ("slurmctld", "run/slurmctld.pid"),
        ("slurmd", "run/slurmd.pid"),
        ("munged", "munge/run/munged.pid"),
    ] {
        if daemon_alive(cluster, pidfile) {
            found.push(format!("{daemon} still running"));
        }
    }
    found
}

fn debug<T: std::fmt::Debug>(items: Vec<T>) -> Vec<String> {
    items.iter().map(|item| format!("{item:?}")).collect()
}

/// Is the demo in full swing: its dispatcher up, two runner jobs (named `demo-...`) running,
/// work dirs made? Then a leftover of each kind would be seen.
fn demo_running(cluster: &Cluster, parents: &[PathBuf]) -> Result<bool, String> {
    if processes_with(&["gha-dispatcher", "spank-gha-demo-"]).is_empty() {
        return Err("no demo dispatcher yet".into());
    }
    let jobs = slurm::run_jobs(cluster, "demo-").map_err(|e| format!("{e:#}"))?;
    let running = jobs.iter().filter(|job| job.state == "RUNNING").count();
    if running < 2 {
        return Err(format!("{running} demo runner jobs running"));
    }
    Ok(!work_dirs(parents).is_empty())
}

fn start_demo_in_tmux(repo: &Path, hangup_log: &Path) -> Result<()> {
    let _ = tmux(&["kill-server"]);
    let started = tmux(&[
        "new-session",
        "-d",
        "-s",
        "demo",
        "-x",
        "160",
        "-y",
        "50",
        "bash",
        "--norc",
        "--noprofile",
        "-i",
    ])?;
    ensure!(
        started.status.success(),
        "tmux new-session failed: {}",
        String::from_utf8_lossy(&started.stderr)
    );
    let command = format!(
        "cd {} && GHA_CARGO_PROFILE=dev GHA_HANGUP_LOG={} ci/demo --timeout-secs 900",
        repo.display(),
        hangup_log.display()
    );
    let typed = tmux(&["send-keys", "-t", "demo", &command, "Enter"])?;
    ensure!(typed.status.success(), "tmux send-keys failed");
    Ok(())
}

#[test]
fn closing_the_terminal_stops_the_demo_and_everything_it_started() -> Result<()> {
    let cluster = Cluster::shared();
    let parents = workdir_parents(cluster);
    let _restart = RestartCluster(cluster);
    run_script(cluster, "ci/slurm-down")?;
    let scratch = tempfile::tempdir().context("a scratch dir")?;
    let hangup_log = scratch.path().join("hangup.log");
    start_demo_in_tmux(cluster.repo_root(), &hangup_log)?;

    // ci/demo builds (little to do after the tests' build), starts the cluster and the stack;
    // then runners redeem their tickets and the plugin makes their work dirs.
    wait_until(
        "demo runners running in their work dirs",
        Duration::from_secs(600),
        || demo_running(cluster, &parents),
    )?;

    // The terminal goes away: tmux hangs up every pane's terminal.
    let closed = tmux(&["kill-server"])?;
    ensure!(closed.status.success(), "tmux kill-server failed");

    let left = wait_until(
        "the demo to stop everything it started",
        Duration::from_secs(120),
        || {
            let left = leftovers(cluster, &parents);
            if left.is_empty() {
                Ok(Some(()))
            } else {
                Err(left.join("; "))
            }
        },
    );
    let log = std::fs::read_to_string(&hangup_log).unwrap_or_default();
    left.with_context(|| format!("after the hangup; what ci/demo wrote after it:\n{log}"))?;
    ensure!(
        log.contains("hangup"),
        "ci/demo wrote nothing about the hangup to {}:\n{log}",
        hangup_log.display()
    );
    Ok(())
}
