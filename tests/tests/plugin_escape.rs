//! Processes that outlive their job: a workflow step that escapes with `cd /; env -i setsid`
//! (no SLURM_JOB_ID, not in the work dir) is ended with its job under proctrack/cgroup, and
//! a runner job's epilog ends every process of a user who has no other job on the node. Runs as the
//! second test user, whose jobs no other test of this binary submits.

mod plugin_support;

use std::process::Command;
use std::time::Duration;

use e2e::Cluster;
use plugin_support::*;
use test_support::wait_until;

const USER: &str = "gha-ci-2";

fn running(needle: &str) -> bool {
    e2e::procfs::processes()
        .iter()
        .any(|p| !p.zombie && p.cmdline.contains(needle))
}

fn wait_gone(needle: &str) {
    wait_until(&format!("{needle:?} to be gone"), CLEANUP_TIMEOUT, || {
        anyhow::Ok((!running(needle)).then_some(()))
    })
    .unwrap();
}

fn runner_job(cluster: &Cluster, command: &str) -> (e2e::Submitted, String) {
    let (job, info, output) = stand_in_runner_job(cluster, USER, "escape", command);
    assert_eq!(info.state(), "COMPLETED", "{output}");
    (job, output)
}

#[test]
fn escaped_processes_do_not_outlive_their_users_jobs() {
    let cluster = Cluster::shared();
    let base = 600_000 + std::process::id() % 10_000 * 10;

    // 1. The escape, under proctrack/cgroup: gone when runner job 1 ends, before job 2 starts.
    let escaped = format!("sleep {base}");
    let (job1, output) = runner_job(
        cluster,
        &format!(
            "cd /; env -i setsid sh -c 'exec {escaped}' </dev/null >/dev/null 2>&1 & echo escaped"
        ),
    );
    assert!(output.contains("escaped"), "{output}");
    wait_gone(&escaped);
    assert_nothing_left(cluster, job1.id);
    let (job2, output) = runner_job(
        cluster,
        "echo files: $(ls -A $GHA_RUNNER_WORKDIR | tr '\\n' ' '); echo second",
    );
    assert!(output.contains("second"), "{output}");
    // The runner's own log names the config's digest; the listing must not hold the file.
    let files = output
        .lines()
        .find(|l| l.starts_with("files:"))
        .unwrap_or_else(|| panic!("no listing in {output}"));
    assert!(
        files.contains("runner") && !files.contains("jitconfig"),
        "the config file was left: {files}"
    );
    assert!(!running(&escaped));
    assert_nothing_left(cluster, job2.id);

    // 2. A process of the user outside every job (what escapes the cgroup) is spared while the
    // user has another job here, left alone when a job that is not a runner ends (the plugin
    // touches only runner jobs), and ended by the epilog of the user's last runner job.
    let stray = format!("sleep {}", base + 1);
    let status = Command::new("runuser")
        .args([
            "-u",
            USER,
            "--",
            "setsid",
            "-f",
            "sh",
            "-c",
            &format!("exec {stray}"),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    wait_until("the stray to run", Duration::from_secs(10), || {
        anyhow::Ok(running(&stray).then_some(()))
    })
    .unwrap();
    let other_sleep = format!("sleep {}", base + 2);
    let other = cluster
        .sbatch_as(USER, &["--wrap", &format!("exec {other_sleep}")])
        .unwrap();
    cluster
        .wait_for_state(other.id, "RUNNING", JOB_TIMEOUT)
        .unwrap();
    let (job3, _) = runner_job(cluster, "true");
    assert_nothing_left(cluster, job3.id);
    assert!(running(&stray), "killed although the user has another job");
    assert!(running(&other_sleep), "the other job's process was killed");
    cluster.scancel(other.id).unwrap();
    cluster.wait_for_end(other.id, JOB_TIMEOUT).unwrap();
    assert!(running(&stray), "a job that is not a runner swept its user");
    let (job4, _) = runner_job(cluster, "true");
    wait_gone(&stray);
    assert_nothing_left(cluster, job4.id);
    cluster.assert_node_healthy().unwrap();
}
