//! spank-gha plugin, end to end through sbatch as the test user with the shipped job script:
//! the work dir (issue point 3), the image check (6), the runner launch (7) and idle teardown
//! (8). Every failure also leaves the node usable and nothing behind (10).

mod plugin_support;

use std::process::Command;

use e2e::Cluster;
use plugin_support::*;

#[test]
fn work_dir_is_private_owned_by_the_user_and_removed_after_the_job() {
    let cluster = Cluster::shared();
    let jit = jit_config("workdir");
    let script = "stat -c 'root %a %U:%G' $GHA_RUNNER_WORKDIR; stat -c 'file %a %U' $GHA_JITCONFIG_FILE; \
                  echo tmpdir=$TMPDIR xdg=$XDG_RUNTIME_DIR; touch $TMPDIR/x $XDG_RUNTIME_DIR/y && echo writable; \
                  echo idle=$GHA_IDLE_TIMEOUT docker=$GHA_DOCKER";
    let (job, info, output) = run_job(cluster, &[&format!("--gha-runner={jit}"), "--wrap", script]);
    let dir = workdir(job.id);
    let user = cluster.test_user();
    assert_eq!(info.state(), "COMPLETED", "{output}");
    assert!(
        output.contains(&format!("root 700 {user}:{user}\n")),
        "{output}"
    );
    assert!(output.contains(&format!("file 600 {user}\n")), "{output}");
    assert!(
        output.contains(&format!("tmpdir={0}/tmp xdg={0}/run\n", dir.display())),
        "{output}"
    );
    assert!(output.contains("writable\n"), "{output}");
    assert!(output.contains("idle=30 docker=off\n"), "{output}");
    assert_nothing_left(cluster, job.id);
}

#[test]
fn work_dirs_planted_by_a_user_neither_block_jobs_nor_are_followed() {
    let cluster = Cluster::shared();
    let jit = jit_config("planted");
    let job = cluster
        .sbatch(&[
            "--hold",
            &format!("--gha-runner={jit}"),
            "--wrap",
            "echo RAN",
        ])
        .unwrap();
    // The attack: the user pre-creates the next job ids' work dirs, at the old predictable
    // place and inside the plugin's parent (creating that parent if it is not there yet),
    // and plants a link to a directory of theirs at this job's path.
    let target = std::env::temp_dir().join(format!("spank-gha-planted-target-{}", job.id));
    let _ = std::fs::remove_dir_all(&target);
    std::fs::create_dir(&target).unwrap();
    let status = Command::new("chown")
        .arg(cluster.test_user())
        .arg(&target)
        .status()
        .unwrap();
    assert!(status.success());
    let (first, last) = (job.id, job.id + 200);
    let plant = format!(
        "for i in $(seq {first} {last}); do mkdir -p /tmp/gha-$i /tmp/spank-gha/gha-$((i + 1)); done; \
         ln -s {} /tmp/spank-gha/gha-{first}; ln -s {} /tmp/gha-{first}; true",
        target.display(),
        target.display()
    );
    let planted = cluster
        .command_as(cluster.test_user(), "sh")
        .args(["-c", &plant])
        .output()
        .unwrap();
    assert!(planted.status.success(), "{planted:?}");
    let status = cluster
        .command("scontrol")
        .args(["release", &job.id.to_string()])
        .status()
        .unwrap();
    assert!(status.success());

    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    assert_eq!(info.state(), "COMPLETED", "{output}");
    assert!(output.contains("RAN"), "{output}");
    assert_eq!(
        std::fs::read_dir(&target).unwrap().count(),
        0,
        "something was written through the link"
    );
    assert_nothing_left(cluster, job.id);
    let parent = std::fs::symlink_metadata("/tmp/spank-gha").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(parent.uid(), 0, "the work dirs' parent is root's");
    assert_eq!(parent.mode() & 0o7777, 0o711);
    let _ = std::fs::remove_dir_all(&target);
    for i in first..=last {
        let _ = std::fs::remove_dir(format!("/tmp/gha-{i}"));
    }
    let _ = std::fs::remove_file(format!("/tmp/gha-{first}"));
}

#[test]
fn image_under_the_root_is_accepted_and_handed_to_the_runner() {
    let cluster = Cluster::shared();
    let jit = jit_config("image-ok");
    for image in ["registry.example/gha/busybox:1", "registry.example/alias:1"] {
        let (job, info, output) = run_job(
            cluster,
            &[
                &format!("--gha-runner={jit}"),
                &format!("--gha-image={image}"),
                "--wrap",
                "echo image=$GHA_IMAGE path=$GHA_IMAGE_PATH; cat $GHA_IMAGE_PATH/etc/image-name",
            ],
        );
        assert_eq!(info.state(), "COMPLETED", "{image}: {output}");
        let root = cluster.dir().join("cvmfs/unpacked.cern.ch");
        assert!(
            output.contains(&format!("image={image} path={}/{image}\n", root.display())),
            "{output}"
        );
        assert!(output.contains("gha-busybox-image"), "{output}");
        assert_nothing_left(cluster, job.id);
    }
}

#[test]
fn missing_or_escaping_images_fail_the_job_naming_the_image() {
    let cluster = Cluster::shared();
    let jit = jit_config("image-bad");
    for (image, reason) in [
        ("registry.example/gha/nothing:1", "does not exist"),
        ("registry.example/broken/file:1", "does not exist"),
        ("registry.example/escape:1", "resolves outside"),
    ] {
        let (job, info, output) = run_job(
            cluster,
            &[
                &format!("--gha-runner={jit}"),
                &format!("--gha-image={image}"),
                "--wrap",
                "echo RUNNER-STARTED",
            ],
        );
        assert_eq!(info.state(), "FAILED", "{image}: {output}");
        assert!(!output.contains("RUNNER-STARTED"), "{output}");
        assert!(output.contains(&format!("image '{image}'")), "{output}");
        assert!(output.contains(reason), "{output}");
        assert_nothing_left(cluster, job.id);
    }
}

#[test]
fn job_script_starts_run_sh_from_a_per_job_runner_root_with_the_jit_config() {
    let cluster = Cluster::shared();
    let jit = jit_config("launch");
    let stand_in = stand_in_root(cluster);
    let job = sbatch_with_env(
        cluster,
        &[
            ("STANDIN_JOB_AFTER", "0"),
            (
                "STANDIN_JOB_COMMAND",
                "pwd; ls -d _work 2>/dev/null; echo job-done",
            ),
        ],
        &[
            &format!("--gha-runner={jit}"),
            &job_script(cluster),
            "--runner-root",
            &stand_in,
        ],
    )
    .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    let dir = workdir(job.id);
    assert_eq!(info.state(), "COMPLETED", "{output}");
    assert!(
        output.contains(&format!(
            "stand-in: root={}/runner bin={stand_in}/bin listener=2.999.0-stand-in",
            dir.display()
        )),
        "{output}"
    );
    assert!(
        output.contains(&format!("jitconfig sha256={}", sha256_hex(&jit))),
        "{output}"
    );
    assert!(output.contains("Running job: stand-in-job"), "{output}");
    assert!(output.contains("job-done"), "{output}");
    assert!(
        output.contains("spank-gha: runner exited with status 0"),
        "{output}"
    );
    assert!(!output.contains(&jit), "the JIT config was printed");
    assert_nothing_left(cluster, job.id);
}

#[test]
fn job_script_uses_the_clusters_runner_root_by_default() {
    let cluster = Cluster::shared();
    let jit = jit_config("default-root");
    let job = cluster
        .sbatch(&[
            &format!("--gha-runner={jit}"),
            &job_script(cluster),
            "--idle-timeout",
            "5",
        ])
        .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    // The config is not one GitHub issued, so whichever runner is installed refuses it or idles;
    // either way the job ran the cluster's runner from its own copy and ended.
    assert!(
        output.contains(&format!(
            "spank-gha: starting the runner from {}/runner in {}/runner",
            cluster.dir().display(),
            workdir(job.id).display()
        )),
        "{output}"
    );
    assert!(info.is_finished(), "{info:?}");
    assert!(!output.contains(&jit), "the JIT config was printed");
    assert_nothing_left(cluster, job.id);
}

#[test]
fn job_script_outside_a_runner_job_explains_itself() {
    let cluster = Cluster::shared();
    let (job, info, output) = run_job(cluster, &[&job_script(cluster)]);
    assert_eq!(info.state(), "FAILED", "{output}");
    assert!(
        output.contains("submit with 'sbatch --gha-runner="),
        "{output}"
    );
    assert_nothing_left(cluster, job.id);
}

#[test]
fn idle_runner_is_stopped_with_sigint_and_the_job_ends() {
    let cluster = Cluster::shared();
    let jit = jit_config("idle");
    let (job, info, output) = run_job(
        cluster,
        &[
            &format!("--gha-runner={jit}"),
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
            "--idle-timeout",
            "2",
        ],
    );
    assert_eq!(info.state(), "COMPLETED", "{output}");
    assert_idle_runner_stopped_by_sigint(&output, 2);
    assert_nothing_left(cluster, job.id);
}

#[test]
fn idle_runner_ignoring_signals_gets_sigterm_then_sigkill() {
    let cluster = Cluster::shared();
    let jit = jit_config("stubborn");
    let job = sbatch_with_env(
        cluster,
        &[("STANDIN_IGNORE_INT", "1"), ("STANDIN_IGNORE_TERM", "1")],
        &[
            &format!("--gha-runner={jit}"),
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
            "--idle-timeout",
            "1",
        ],
    )
    .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    assert_eq!(info.state(), "COMPLETED", "{output}");
    let sigint = output.find("stopping it (SIGINT)").expect("SIGINT line");
    let sigterm = output.find("sending SIGTERM").expect("SIGTERM line");
    let sigkill = output.find("sending SIGKILL").expect("SIGKILL line");
    assert!(sigint < sigterm && sigterm < sigkill, "{output}");
    assert!(output.contains("stand-in: ignoring SIGINT"), "{output}");
    assert_nothing_left(cluster, job.id);
}

#[test]
fn runner_that_started_a_job_is_never_stopped_for_idleness() {
    let cluster = Cluster::shared();
    let jit = jit_config("busy");
    // The job outlives the idle timeout several times over.
    let job = sbatch_with_env(
        cluster,
        &[
            ("STANDIN_JOB_AFTER", "0"),
            ("STANDIN_JOB_COMMAND", "sleep 5"),
        ],
        &[
            &format!("--gha-runner={jit}"),
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
            "--idle-timeout",
            "1",
        ],
    )
    .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    assert_eq!(info.state(), "COMPLETED", "{output}");
    assert!(
        output.contains("completed with result: Succeeded"),
        "{output}"
    );
    assert!(!output.contains("idle"), "{output}");
    assert!(!output.contains("Exiting..."), "{output}");
    assert_nothing_left(cluster, job.id);
}
