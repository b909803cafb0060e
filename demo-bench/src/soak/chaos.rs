//! What the soak does to the running system: restarts of the cluster's daemons (slurmctld,
//! slurmd, munged: stopped with SIGTERM, started again as `ci/slurm-up` starts them), a runner
//! job cancelled while it runs a GitHub job, and the node lost (slurmd, every slurmstepd and
//! every process of the job user SIGKILLed, the node marked down, then back after a pause).
//! A daemon killed here may stay a zombie (PID 1 does not reap in this container), so "gone"
//! means not running, zombie or not.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use test_support::wait_until;

use e2e::Cluster;

/// The pid in `pidfile` if that process runs `program` and is not a zombie.
pub fn running_pid(pidfile: &Path, program: &str) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ")?.1.chars().next()?;
    (comm.trim() == program && state != 'Z').then_some(pid)
}

fn is_running(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(") ")?.1.chars().next()? != 'Z'))
        .unwrap_or(false)
}

/// Sends `signal` to the daemon of `pidfile` and waits until it is gone.
fn stop_daemon(pidfile: &Path, program: &str, signal: Signal) -> Result<()> {
    let Some(pid) = running_pid(pidfile, program) else {
        bail!("{program} is not running ({})", pidfile.display());
    };
    kill(Pid::from_raw(pid), signal).with_context(|| format!("signalling {program}"))?;
    wait_until(
        &format!("{program} to exit"),
        Duration::from_secs(60),
        || !is_running(pid),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("starting {what}"))?;
    ensure!(
        output.status.success(),
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

/// Waits until the node is usable again (`ReturnToService=2` brings it back once slurmd
/// registers; an admin's `down` is resumed).
pub fn wait_node_healthy(cluster: &Cluster, node: &str) -> Result<()> {
    wait_until("the node to be usable", Duration::from_secs(120), || {
        let state = cluster.node_state().unwrap_or_default();
        if state.starts_with("down") || state.starts_with("drain") {
            let _ = set_node_state(cluster, node, "resume");
        }
        cluster.assert_node_healthy().is_ok()
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn pidfile(cluster: &Cluster, name: &str) -> PathBuf {
    cluster.dir().join("run").join(format!("{name}.pid"))
}

pub fn restart_slurmctld(cluster: &Cluster) -> Result<()> {
    stop_daemon(&pidfile(cluster, "slurmctld"), "slurmctld", Signal::SIGTERM)?;
    run(
        cluster.command("slurmctld").arg("-f").arg(cluster.conf()),
        "slurmctld",
    )?;
    wait_until("slurmctld to answer", Duration::from_secs(60), || {
        cluster
            .command("scontrol")
            .arg("ping")
            .output()
            .is_ok_and(|o| o.status.success() && String::from_utf8_lossy(&o.stdout).contains("UP"))
    })
    .map_err(|e| anyhow::anyhow!("{e}"))
}

pub fn start_slurmd(cluster: &Cluster) -> Result<()> {
    run(
        cluster.command("slurmd").arg("-f").arg(cluster.conf()),
        "slurmd",
    )
}

/// slurmd stopped and started while runner jobs run: their slurmstepds carry on.
pub fn restart_slurmd(cluster: &Cluster, node: &str) -> Result<()> {
    stop_daemon(&pidfile(cluster, "slurmd"), "slurmd", Signal::SIGTERM)?;
    start_slurmd(cluster)?;
    wait_node_healthy(cluster, node)
}

pub fn restart_munged(cluster: &Cluster) -> Result<()> {
    let dir = cluster.dir().join("munge");
    stop_daemon(&dir.join("run/munged.pid"), "munged", Signal::SIGTERM)?;
    let arg = |flag: &str, path: &str| format!("{flag}={}", dir.join(path).display());
    run(
        Command::new("runuser").args([
            "-u",
            "munge",
            "--",
            "munged",
            &arg("--socket", "run/munge.socket"),
            &arg("--key-file", "munge.key"),
            &arg("--pid-file", "run/munged.pid"),
            &arg("--log-file", "log/munged.log"),
            &arg("--seed-file", "lib/munged.seed"),
        ]),
        "munged",
    )
}

pub fn set_node_state(cluster: &Cluster, node: &str, state: &str) -> Result<()> {
    let mut command = cluster.command("scontrol");
    command.args([
        "update",
        &format!("nodename={node}"),
        &format!("state={state}"),
    ]);
    if state == "down" {
        command.arg("reason=soak-node-loss");
    }
    run(&mut command, "scontrol update")
}

pub fn node_name(cluster: &Cluster) -> Result<String> {
    let out = cluster
        .command("sinfo")
        .args(["-h", "-o", "%N"])
        .output()
        .context("sinfo")?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The node dies: slurmd, every slurmstepd and every process of the job user SIGKILLed (as a
/// lost machine loses them), then slurmctld is told it is down. Returns the killed
/// slurmstepds' count.
pub fn lose_node(cluster: &Cluster, node: &str) -> Result<usize> {
    if let Some(pid) = running_pid(&pidfile(cluster, "slurmd"), "slurmd") {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let mut stepds = 0;
    for process in e2e::procfs::processes() {
        if process.cmdline.starts_with("slurmstepd") {
            let _ = kill(Pid::from_raw(process.pid as i32), Signal::SIGKILL);
            stepds += 1;
        }
    }
    for (pid, _) in cluster.processes_of(cluster.test_user())? {
        let _ = kill(Pid::from_raw(pid as i32), Signal::SIGKILL);
    }
    set_node_state(cluster, node, "down")?;
    Ok(stepds)
}

/// The node back: slurmd started (its plugin sweeps the lost jobs' work dirs), resumed.
pub fn bring_node_back(cluster: &Cluster, node: &str) -> Result<()> {
    if running_pid(&pidfile(cluster, "slurmd"), "slurmd").is_none() {
        start_slurmd(cluster)?;
    }
    wait_node_healthy(cluster, node)
}
