//! spank-gha plugin, end to end: rootless Docker per job (issue point 5) and teardown on every
//! kind of ending (9): success, failure, scancel, time limit, runner crash, node-side kill.
//! Each ending is followed by the same check: no work dir, no process of the job (including
//! escaped ones, dockerd and containers), node still usable (10).

mod plugin_support;

use std::time::Duration;

use e2e::Cluster;
use plugin_support::*;
use test_support::wait_until;

/// A marker no other test's process carries, so its absence proves a container was reaped.
fn marker_seconds(job_tag: u32) -> String {
    format!("{}", 400_000 + (std::process::id() % 10_000) * 10 + job_tag)
}

fn processes_with(needle: &str) -> Vec<(u32, String)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
        if stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().next())
            == Some("Z")
        {
            continue;
        }
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(needle) {
            found.push((pid, cmdline));
        }
    }
    found
}

fn assert_no_process_with(needle: &str) {
    wait_until(
        &format!("no process running {needle:?}"),
        CLEANUP_TIMEOUT,
        || {
            let found = processes_with(needle);
            if found.is_empty() {
                Ok(Some(()))
            } else {
                anyhow::bail!("still running: {found:?}")
            }
        },
    )
    .unwrap();
}

/// The stand-in job: import the fake CVMFS busybox image into the job's dockerd, run a
/// container to completion and leave another one running.
fn docker_job_command(cluster: &Cluster, sleep_marker: &str, then: &str) -> String {
    let image = cluster
        .dir()
        .join("cvmfs/unpacked.cern.ch/registry.example/gha/busybox:1");
    format!(
        "echo docker-host=$DOCKER_HOST; tar -C {} -c . | docker import - gha-busybox:1 >/dev/null && \
         docker run --rm gha-busybox:1 /bin/busybox echo container-ran && \
         docker run -d gha-busybox:1 /bin/busybox sleep {sleep_marker} >/dev/null && echo container-started; {then}",
        image.display()
    )
}

#[test]
fn rootless_docker_runs_containers_and_is_gone_after_the_job() {
    let cluster = Cluster::shared();
    let jit = jit_config("docker");
    let marker = marker_seconds(1);
    let job = sbatch_with_env(
        cluster,
        &[
            ("STANDIN_JOB_AFTER", "0"),
            (
                "STANDIN_JOB_COMMAND",
                &docker_job_command(cluster, &marker, "true"),
            ),
        ],
        &[
            &format!("--gha-runner={jit}"),
            "--gha-docker",
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
        ],
    )
    .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    assert_eq!(info.state(), "COMPLETED", "{output}");
    assert!(
        output.contains("spank-gha: docker: rootless dockerd ready at"),
        "{output}"
    );
    assert!(
        output.contains(&format!(
            "docker-host=unix://{}/run/docker.sock\n",
            workdir(job.id).display()
        )),
        "{output}"
    );
    assert!(output.contains("container-ran\n"), "{output}");
    assert!(output.contains("container-started\n"), "{output}");
    assert_nothing_left(cluster, job.id);
    assert_no_process_with(&format!("sleep {marker}"));
    assert_no_process_with(&format!("/tmp/spank-gha/gha-{}/", job.id));
}

#[test]
fn docker_that_cannot_start_fails_the_job_with_the_reason() {
    let cluster = Cluster::shared();
    let jit = jit_config("docker-broken");
    // A setting rootlesskit refuses: dockerd never comes up.
    let job = sbatch_with_env(
        cluster,
        &[("DOCKERD_ROOTLESS_ROOTLESSKIT_MTU", "not-a-number")],
        &[
            &format!("--gha-runner={jit}"),
            "--gha-docker",
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
        ],
    )
    .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    assert_eq!(info.state(), "FAILED", "{output}");
    assert!(
        output.contains("spank-gha: error: docker: rootless dockerd exited before answering"),
        "{output}"
    );
    assert!(
        !output.contains("Listening for Jobs"),
        "the runner started: {output}"
    );
    assert_nothing_left(cluster, job.id);
}

#[test]
fn docker_is_refused_where_the_cluster_has_none_configured_per_job() {
    // docker=on-request here: without --gha-docker the job gets no daemon.
    let cluster = Cluster::shared();
    let jit = jit_config("no-docker");
    let (job, info, output) = run_job(
        cluster,
        &[
            &format!("--gha-runner={jit}"),
            "--wrap",
            "echo docker=$GHA_DOCKER host=${DOCKER_HOST:-none}",
        ],
    );
    assert_eq!(info.state(), "COMPLETED", "{output}");
    assert!(output.contains("docker=off host=none\n"), "{output}");
    assert_nothing_left(cluster, job.id);
}

#[test]
fn scancel_of_a_busy_runner_with_docker_and_escaped_processes_leaves_nothing() {
    let cluster = Cluster::shared();
    let jit = jit_config("scancel");
    let marker = marker_seconds(2);
    let escaped = marker_seconds(3);
    let then =
        format!("setsid sleep {escaped} </dev/null >/dev/null 2>&1 & echo escaped; sleep 600");
    let job = sbatch_with_env(
        cluster,
        &[
            ("STANDIN_JOB_AFTER", "0"),
            (
                "STANDIN_JOB_COMMAND",
                &docker_job_command(cluster, &marker, &then),
            ),
        ],
        &[
            &format!("--gha-runner={jit}"),
            "--gha-docker",
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
        ],
    )
    .unwrap();
    cluster
        .wait_for_output(&job, "escaped\n", JOB_TIMEOUT)
        .unwrap();
    assert!(
        !processes_with(&format!("sleep {marker}")).is_empty(),
        "no container running"
    );
    cluster.scancel(job.id).unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    assert_eq!(info.state(), "CANCELLED", "{}", cluster.output(&job));
    assert_nothing_left(cluster, job.id);
    assert_no_process_with(&format!("sleep {marker}"));
    assert_no_process_with(&format!("sleep {escaped}"));
}

#[test]
fn runner_crash_ends_the_job_and_leaves_nothing() {
    let cluster = Cluster::shared();
    let escaped = marker_seconds(4);
    // The "job" starts a daemon that keeps the runner's output open, then the runner dies.
    let command = format!("setsid sleep {escaped} & sleep 0.2; kill -KILL $$");
    let user = cluster.test_user();
    let (job, info, output) = stand_in_runner_job(cluster, user, "crash", &command);
    assert_eq!(info.state(), "FAILED", "{output}");
    assert!(
        output.contains("spank-gha: runner exited with status 137"),
        "{output}"
    );
    assert_nothing_left(cluster, job.id);
    assert_no_process_with(&format!("sleep {escaped}"));
}

#[test]
fn node_side_kill_of_the_job_script_leaves_nothing() {
    let cluster = Cluster::shared();
    let jit = jit_config("node-kill");
    let job = cluster
        .sbatch(&[
            &format!("--gha-runner={jit}"),
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
        ])
        .unwrap();
    cluster
        .wait_for_output(&job, "Listening for Jobs", JOB_TIMEOUT)
        .unwrap();
    let script = job_processes(job.id)
        .into_iter()
        .find(|(_, cmd)| cmd.contains("slurm_script"))
        .expect("the job script is running");
    let status = std::process::Command::new("kill")
        .args(["-KILL", &script.0.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    assert_eq!(info.state(), "FAILED", "{}", cluster.output(&job));
    assert_nothing_left(cluster, job.id);
}

#[test]
fn time_limit_ends_a_busy_runner_and_leaves_nothing() {
    let cluster = Cluster::shared();
    let jit = jit_config("timeout");
    let escaped = marker_seconds(5);
    let command = format!("setsid sleep {escaped} </dev/null >/dev/null 2>&1 & sleep 600");
    let job = sbatch_with_env(
        cluster,
        &[
            ("STANDIN_JOB_AFTER", "0"),
            ("STANDIN_JOB_COMMAND", &command),
        ],
        &[
            "--time=1",
            &format!("--gha-runner={jit}"),
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
        ],
    )
    .unwrap();
    // Slurm's minimum limit is a minute, enforced on its own timer.
    let info = cluster
        .wait_for_end(job.id, Duration::from_secs(240))
        .unwrap();
    assert_eq!(info.state(), "TIMEOUT", "{}", cluster.output(&job));
    assert_nothing_left(cluster, job.id);
    assert_no_process_with(&format!("sleep {escaped}"));
}

/// A workflow step leaves a tree in the work dir deeper than a path can be (4,000 levels:
/// 8,000 characters, past PATH_MAX): a deletion that walks full paths fails on it. The
/// epilog's bounded removal still takes it all, and the node stays up.
#[test]
fn a_tree_too_deep_for_a_path_is_removed_and_the_node_stays_up() {
    let cluster = Cluster::shared();
    // Perl walks down by relative names (a shell's `cd` stops near PATH_MAX).
    let deepen = "perl -e 'for (1..4000) { mkdir q(d) or die $!; chdir q(d) or die $! }' \
                  && echo deep-tree-made";
    let user = cluster.test_user();
    let (job, info, output) = stand_in_runner_job(cluster, user, "deep-tree", deepen);
    assert_eq!(info.state(), "COMPLETED", "{output}");
    assert!(output.contains("deep-tree-made"), "{output}");
    assert_nothing_left(cluster, job.id);
}
