//! The foundation itself: the harness reaches a real Slurm, jobs run as the non-root test user,
//! and end states and outputs are what the job did.

use std::time::Duration;

use e2e::Cluster;

const JOB_TIMEOUT: Duration = Duration::from_secs(60);

#[test]
fn batch_job_runs_as_the_test_user_and_completes() {
    let cluster = Cluster::shared();
    let job = cluster
        .sbatch(&[
            "--wrap",
            "echo user=$(id -un) uid=$(id -u) job=$SLURM_JOB_ID; echo done",
        ])
        .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();

    assert_eq!(info.state(), "COMPLETED", "{info:?}");
    assert_eq!(info.exit_code(), "0:0");
    let output = cluster.output(&job);
    assert!(
        output.contains(&format!("user={} ", cluster.test_user())),
        "job did not run as the test user: {output:?}"
    );
    assert!(!output.contains("uid=0 "), "job ran as root: {output:?}");
    assert!(output.contains(&format!("job={}\n", job.id)), "{output:?}");
    assert!(output.ends_with("done\n"), "{output:?}");
    cluster.assert_node_healthy().unwrap();
}

#[test]
fn failing_job_reports_its_exit_code() {
    let cluster = Cluster::shared();
    let job = cluster
        .sbatch(&["--wrap", "echo about to fail; exit 3"])
        .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();

    assert_eq!(info.state(), "FAILED", "{info:?}");
    assert_eq!(info.exit_code(), "3:0");
    assert_eq!(cluster.output(&job), "about to fail\n");
    cluster.assert_node_healthy().unwrap();
}

#[test]
fn cancelled_job_ends_cancelled_and_leaves_no_process() {
    let cluster = Cluster::shared();
    let marker = format!("gha-harness-cancel-{}", std::process::id());
    let job = cluster
        .sbatch(&[
            "--wrap",
            &format!("echo started; exec bash -c 'exec -a {marker} sleep 300'"),
        ])
        .unwrap();
    cluster
        .wait_for_output(&job, "started", JOB_TIMEOUT)
        .unwrap();
    cluster.scancel(job.id).unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();

    assert_eq!(info.state(), "CANCELLED", "{info:?}");
    test_support::wait_until("the cancelled job's process to exit", JOB_TIMEOUT, || {
        let left = cluster.processes_of(cluster.test_user())?;
        anyhow::Ok((!left.iter().any(|(_, cmd)| cmd.contains(&marker))).then_some(()))
    })
    .unwrap();
    cluster.assert_node_healthy().unwrap();
}

#[test]
fn sbatch_refusal_is_reported_not_hidden() {
    let cluster = Cluster::shared();
    let output = cluster
        .try_sbatch_as(
            cluster.test_user(),
            &["--partition=no-such-partition", "--wrap", "true"],
        )
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("invalid partition"), "{stderr}");
}
