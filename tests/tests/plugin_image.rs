//! spank-gha plugin, end to end: the runner started inside an unpacked image (issue 16 §1) by
//! the test cluster's container runtime (`container_runtime=podman`), Docker used from inside
//! the image, the JIT config never on a command line while podman runs, Apptainer's command
//! line checked against a recorded stand-in (Apptainer does not install here), and the image
//! check's time bound against a FUSE mount that hangs every lookup.

mod plugin_support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use e2e::{Cluster, Submitted};
use plugin_support::*;
use test_support::wait_until;

/// The runner image the tests build, under the cluster's CVMFS-like image root.
const RUNNER_IMAGE: &str = "registry.example/gha/runner:1";

fn image_root(cluster: &Cluster) -> PathBuf {
    cluster.dir().join("cvmfs/unpacked.cern.ch")
}

/// Builds the runner image once per cluster (the script does nothing if it is there).
fn runner_image(cluster: &Cluster) -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _one_at_a_time = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let dest = image_root(cluster).join(RUNNER_IMAGE);
    let output = Command::new(
        cluster
            .repo_root()
            .join("tests/fixtures/build-runner-image"),
    )
    .arg(&dest)
    .arg(cluster.test_user())
    .output()
    .unwrap();
    assert!(output.status.success(), "building the image: {output:?}");
    dest
}

fn uid_of(user: &str) -> u32 {
    nix::unistd::User::from_name(user)
        .unwrap()
        .unwrap_or_else(|| panic!("no user {user}"))
        .uid
        .as_raw()
}

/// Asserts that no podman process of the job is alive (podman, its pause process, conmon, runc:
/// they carry the job's environment or its work dir) and that podman wrote nothing outside the
/// job's work dir (its usual places in the home, XDG_RUNTIME_DIR and /tmp).
fn assert_no_podman_left(cluster: &Cluster, job_id: u32) {
    let marker = format!("SLURM_JOB_ID={job_id}");
    let dir = workdir(job_id).display().to_string();
    wait_until("no podman process of the job", CLEANUP_TIMEOUT, || {
        let left: Vec<_> = e2e::procfs::processes()
            .into_iter()
            .filter(|p| !p.zombie)
            .filter(|p| {
                ["podman", "conmon", "runc"]
                    .iter()
                    .any(|n| p.cmdline.contains(n))
            })
            .filter(|p| p.has_env(&marker) || p.cmdline.contains(&dir))
            .map(|p| (p.pid, p.cmdline))
            .collect();
        if left.is_empty() {
            Ok(Some(()))
        } else {
            anyhow::bail!("left: {left:?}")
        }
    })
    .unwrap();
    let user = cluster.test_user();
    let uid = uid_of(user);
    let home = PathBuf::from(format!("/home/{user}"));
    for path in [
        home.join(".local/share/containers"),
        home.join(".config/containers"),
        PathBuf::from(format!("/run/user/{uid}/containers")),
        PathBuf::from(format!("/tmp/containers-user-{uid}")),
        PathBuf::from(format!("/tmp/podman-run-{uid}")),
        PathBuf::from(format!("/tmp/run-{uid}")),
    ] {
        assert!(!exists(&path), "podman left {}", path.display());
    }
}

/// Submits a runner job on the stand-in runner in the runner image with `env` for the stand-in
/// (e.g. `STANDIN_JOB_COMMAND`), extra sbatch `options` and the job script's `script_args`;
/// returns it and its JIT config.
fn submit_image_job(
    cluster: &Cluster,
    tag: &str,
    env: &[(&str, &str)],
    options: &[&str],
    script_args: &[&str],
) -> (Submitted, String) {
    runner_image(cluster);
    let jit = jit_config(tag);
    let image = format!("--gha-image={RUNNER_IMAGE}");
    let runner = format!("--gha-runner={jit}");
    let script = job_script(cluster);
    let root = stand_in_root(cluster);
    let mut args = vec![runner.as_str(), image.as_str()];
    args.extend_from_slice(options);
    args.extend([script.as_str(), "--runner-root", root.as_str()]);
    args.extend_from_slice(script_args);
    let job = sbatch_with_env(cluster, env, &args).unwrap();
    (job, jit)
}

/// The stand-in's environment for a GitHub job that runs `command` at once.
fn job_running(command: &str) -> [(&'static str, &str); 2] {
    [("STANDIN_JOB_AFTER", "0"), ("STANDIN_JOB_COMMAND", command)]
}

/// Waits for a job to end, asserts it completed, and returns its output.
fn completed_output(cluster: &Cluster, job: &Submitted) -> String {
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(job);
    assert_eq!(info.state(), "COMPLETED", "{output}");
    output
}

#[test]
fn runner_runs_inside_the_image_and_docker_works_from_inside() {
    let cluster = Cluster::shared();
    let host_os = fs::read_to_string("/etc/os-release").unwrap();
    assert!(!host_os.contains("spank-gha-test-image"), "{host_os}");
    let command = "echo inside-os=$(. /etc/os-release && echo $ID); echo uid=$(id -u); \
                   echo tmpdir=$TMPDIR; touch $TMPDIR/from-inside && echo tmp-writable; \
                   tar -C / -c bin/busybox | docker import - inside-image:1 >/dev/null && \
                   docker run --rm inside-image:1 /bin/busybox echo container-from-inside";
    let (job, _) = submit_image_job(
        cluster,
        "image-podman",
        &job_running(command),
        &["--gha-docker"],
        &[],
    );
    let output = completed_output(cluster, &job);
    let job_id = job.id;
    assert!(
        output.contains(&format!(
            "spank-gha: starting the runner in image {RUNNER_IMAGE} with podman\n"
        )),
        "{output}"
    );
    assert!(
        output.contains("inside-os=spank-gha-test-image\n"),
        "{output}"
    );
    let uid = uid_of(cluster.test_user());
    assert!(output.contains(&format!("uid={uid}\n")), "{output}");
    let dir = workdir(job_id);
    assert!(
        output.contains(&format!("tmpdir={}/tmp\n", dir.display())),
        "{output}"
    );
    assert!(output.contains("tmp-writable\n"), "{output}");
    assert!(output.contains("container-from-inside\n"), "{output}");
    assert_nothing_left(cluster, job_id);
    assert_no_podman_left(cluster, job_id);
}

#[test]
fn an_idle_runner_in_the_image_gets_sigint_through_podman() {
    let cluster = Cluster::shared();
    let (job, _) = submit_image_job(cluster, "image-idle", &[], &[], &["--idle-timeout", "2"]);
    let output = completed_output(cluster, &job);
    assert!(
        output.contains("with podman\n") && output.contains("Listening for Jobs"),
        "{output}"
    );
    // podman passes the SIGINT on to run.sh inside, which exits at once.
    assert_idle_runner_stopped_by_sigint(&output, 2);
    assert_nothing_left(cluster, job.id);
    assert_no_podman_left(cluster, job.id);
}

/// Another user reads every process's command line for as long as it runs, like
/// `ps -eo args` in a loop: what it saw, once told to stop.
struct CmdlineWatcher {
    child: Child,
    stop: PathBuf,
}

impl CmdlineWatcher {
    fn start(cluster: &Cluster, user: &str) -> CmdlineWatcher {
        let stop =
            std::env::temp_dir().join(format!("spank-gha-watch-stop-{}", std::process::id()));
        let _ = fs::remove_file(&stop);
        let script = "import os, sys, time\n\
            seen = set()\n\
            while not os.path.exists(sys.argv[1]):\n\
            \x20   for pid in os.listdir('/proc'):\n\
            \x20       try:\n\
            \x20           seen.add(open('/proc/%s/cmdline' % pid, 'rb').read())\n\
            \x20       except OSError:\n\
            \x20           pass\n\
            \x20   time.sleep(0.002)\n\
            for c in seen:\n\
            \x20   sys.stdout.write(c.replace(b'\\0', b' ').decode('utf-8', 'replace') + '\\n')\n";
        let child = cluster
            .command_as(user, "/usr/bin/python3")
            .args(["-c", script])
            .arg(&stop)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        CmdlineWatcher { child, stop }
    }

    fn finish(self) -> String {
        fs::write(&self.stop, b"").unwrap();
        let output = self.child.wait_with_output().unwrap();
        let _ = fs::remove_file(&self.stop);
        assert!(output.status.success(), "watcher: {output:?}");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

#[test]
fn jit_config_is_on_no_command_line_while_podman_runs_the_runner() {
    let cluster = Cluster::shared();
    runner_image(cluster);
    let other_user = "gha-ci-2";
    assert_ne!(other_user, cluster.test_user());
    // The test hands the config to sbatch on its command line (the dispatcher does it in
    // sbatch's environment), so the watch starts once sbatch is done; it must see the job's
    // podman command line (asserted below), so it watched while the runner ran.
    let (job, jit) = submit_image_job(cluster, "image-cmdline", &job_running("sleep 3"), &[], &[]);
    let watcher = CmdlineWatcher::start(cluster, other_user);
    let output = completed_output(cluster, &job);
    let seen = watcher.finish();
    let job_id = job.id;
    let dir = workdir(job_id).display().to_string();
    let podman_lines: Vec<&str> = seen
        .lines()
        .filter(|l| l.contains("podman") && l.contains("--rootfs") && l.contains(&dir))
        .collect();
    assert!(
        !podman_lines.is_empty(),
        "the watcher never saw the job's podman command line: {output}"
    );
    assert!(
        podman_lines
            .iter()
            .any(|l| l.contains("--env ACTIONS_RUNNER_INPUT_JITCONFIG ")),
        "{podman_lines:?}"
    );
    // The whole config, a slice of it, and any value handed to the variable.
    let slice = &jit[jit.len() / 2..jit.len() / 2 + 24];
    for needle in [jit.as_str(), slice, "ACTIONS_RUNNER_INPUT_JITCONFIG="] {
        let hits: Vec<&str> = seen.lines().filter(|l| l.contains(needle)).collect();
        assert!(hits.is_empty(), "{needle} seen on command lines: {hits:?}");
    }
    assert_nothing_left(cluster, job_id);
}

#[test]
fn a_missing_runtime_fails_the_job_instead_of_running_on_the_host() {
    let cluster = Cluster::shared();
    // The job's PATH holds no podman: the node as if podman were not installed.
    let env = [("PATH", "/nonexistent")];
    let (job, _) = submit_image_job(cluster, "image-no-runtime", &env, &[], &[]);
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    assert_eq!(info.state(), "FAILED", "{output}");
    assert!(
        output.contains(&format!(
            "spank-gha: error: container_runtime=podman: podman is not installed on this node, \
             so the runner cannot start in image {RUNNER_IMAGE}\n"
        )),
        "{output}"
    );
    assert!(!output.contains("starting the runner"), "{output}");
    assert!(!output.contains("Listening for Jobs"), "{output}");
    assert_nothing_left(cluster, job.id);
}

/// A fake `apptainer` that records its arguments and environment, then runs the command the
/// way `apptainer exec` would, on the host (there is no Apptainer here to enter the image).
const RECORDING_APPTAINER: &str = r#"#!/bin/bash
printf '%s\n' "$@" >"$RECORD_DIR/argv"
env >"$RECORD_DIR/env"
[ "$1" = exec ] || exit 64
shift
pwd=
while [ $# -gt 0 ]; do
    case $1 in
    --bind) shift 2 ;;
    --pwd) pwd=$2; shift 2 ;;
    -*) exit 65 ;;
    *) break ;;
    esac
done
[ -d "$1" ] || exit 66
shift
cd "$pwd" && exec "$@"
"#;

/// Runs the shipped job script outside Slurm with the environment the plugin would give it
/// for an image job with `container_runtime=apptainer`; `path` is the script's PATH.
fn apptainer_job(base: &Path, jit: &str, path: &str) -> std::process::Output {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let work = base.join("work");
    let _ = fs::remove_dir_all(&work);
    for dir in ["tmp", "run"] {
        fs::create_dir_all(work.join(dir)).unwrap();
    }
    fs::write(work.join("jitconfig"), jit).unwrap();
    let d = |p: &Path| p.display().to_string();
    Command::new("/bin/bash")
        .arg(repo.join("spank-gha/libexec/gha-runner-job"))
        .env_clear()
        .envs([
            ("PATH", path.to_owned()),
            ("RECORD_DIR", d(base)),
            ("GHA_RUNNER_WORKDIR", d(&work)),
            ("GHA_JITCONFIG_FILE", d(&work.join("jitconfig"))),
            (
                "GHA_RUNNER_ROOT",
                d(&repo.join("tests/fixtures/stand-in-runner")),
            ),
            ("TMPDIR", d(&work.join("tmp"))),
            ("XDG_RUNTIME_DIR", d(&work.join("run"))),
            ("GHA_IMAGE", RUNNER_IMAGE.to_owned()),
            ("GHA_IMAGE_PATH", d(&base.join("image"))),
            ("GHA_CONTAINER_RUNTIME", "apptainer".to_owned()),
            ("GHA_IDLE_TIMEOUT", "30".to_owned()),
            ("STANDIN_JOB_AFTER", "0".to_owned()),
        ])
        .output()
        .unwrap()
}

#[test]
fn apptainer_gets_the_image_binds_and_working_dir_and_the_config_only_in_its_environment() {
    let base = std::env::temp_dir().join(format!("spank-gha-apptainer-{}", std::process::id()));
    let _ = fs::remove_dir_all(&base);
    fs::create_dir_all(base.join("bin")).unwrap();
    fs::create_dir_all(base.join("image")).unwrap();
    let fake = base.join("bin/apptainer");
    fs::write(&fake, RECORDING_APPTAINER).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&fake, fs::Permissions::from_mode(0o755)).unwrap();
    let jit = jit_config("apptainer");

    let out = apptainer_job(
        &base,
        &jit,
        &format!("{}:/usr/bin:/bin", base.join("bin").display()),
    );
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "spank-gha: starting the runner in image {RUNNER_IMAGE} with apptainer\n"
        )),
        "{text}"
    );
    assert!(text.contains("Running job: stand-in-job"), "{text}");
    assert!(
        text.contains(&format!("jitconfig sha256={}", sha256_hex(&jit))),
        "{text}"
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let runner_root = repo
        .join("tests/fixtures/stand-in-runner")
        .display()
        .to_string();
    let work = base.join("work").display().to_string();
    let argv = fs::read_to_string(base.join("argv")).unwrap();
    let expected = [
        "exec".to_owned(),
        "--bind".to_owned(),
        work.clone(),
        "--bind".to_owned(),
        format!("{runner_root}:{runner_root}:ro"),
        "--pwd".to_owned(),
        format!("{work}/runner"),
        base.join("image").display().to_string(),
        format!("{work}/runner/run.sh"),
    ];
    assert_eq!(argv.lines().collect::<Vec<_>>(), expected);
    let env = fs::read_to_string(base.join("env")).unwrap();
    assert!(
        env.lines()
            .any(|l| l == format!("ACTIONS_RUNNER_INPUT_JITCONFIG={jit}")),
        "the config is not in apptainer's environment"
    );
    assert!(env.contains(&format!("TMPDIR={work}/tmp\n")), "{env}");

    // Without apptainer on the node: one line, and no runner on the host.
    let out = apptainer_job(&base, &jit, "/usr/bin:/bin");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(
        text,
        format!(
            "spank-gha: error: container_runtime=apptainer: apptainer is not installed on this \
             node, so the runner cannot start in image {RUNNER_IMAGE}\n"
        )
    );
    let _ = fs::remove_dir_all(&base);
}

/// A FUSE filesystem mounted (as root, allow_other) inside the image root whose every lookup
/// hangs; unmounted when dropped, also when the test fails.
struct HangingMount {
    daemon: Child,
    at: PathBuf,
}

impl HangingMount {
    fn mount(cluster: &Cluster, at: PathBuf) -> HangingMount {
        assert!(
            Path::new("/dev/fuse").exists(),
            "no /dev/fuse on this machine"
        );
        fs::create_dir_all(&at).unwrap();
        let daemon = Command::new(cluster.repo_root().join("tests/fixtures/hanging-fuse"))
            .arg(&at)
            .args(["-f", "-o", "allow_other"])
            .spawn()
            .unwrap();
        let mount = HangingMount { daemon, at };
        let needle = format!(" {} ", mount.at.display());
        wait_until("the hanging FUSE mount", Duration::from_secs(20), || {
            let mounts = fs::read_to_string("/proc/self/mountinfo")?;
            anyhow::Ok(mounts.contains(&needle).then_some(()))
        })
        .unwrap();
        mount
    }
}

impl Drop for HangingMount {
    fn drop(&mut self) {
        // Killing the daemon aborts the connection: the lookups blocked in it return.
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
        let _ = fs::remove_dir(&self.at);
    }
}

/// The plugin's image_check_timeout in the cluster's plugstack.conf.
fn image_check_timeout(cluster: &Cluster) -> Duration {
    let line = plugin_line(cluster);
    let secs = line
        .split_whitespace()
        .find_map(|arg| arg.strip_prefix("image_check_timeout="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no image_check_timeout in {line}"));
    Duration::from_secs(secs)
}

#[test]
fn an_image_root_that_hangs_fails_the_job_within_the_time_bound_and_keeps_the_node() {
    let cluster = Cluster::shared();
    let limit = image_check_timeout(cluster);
    let mount = HangingMount::mount(cluster, image_root(cluster).join("hang.example"));
    let image = "hang.example/runner:1";
    let jit = jit_config("image-hang");
    let submitted = Instant::now();
    let job = cluster
        .sbatch(&[
            &format!("--gha-runner={jit}"),
            &format!("--gha-image={image}"),
            "--wrap",
            "echo SHOULD-NOT-RUN",
        ])
        .unwrap();
    let expected = format!("spank-gha: error: image '{image}' could not be checked: realpath did not finish within {limit:?} and was killed");
    let output = cluster
        .wait_for_output(&job, &expected, limit + JOB_TIMEOUT)
        .unwrap();
    let took = submitted.elapsed();
    eprintln!("hanging image root: the job failed {took:?} after submission (bound {limit:?})");
    assert!(took >= limit, "failed before the bound: {took:?}: {output}");
    // The bound plus the job's start and end (about a second here) with room for a busy node.
    assert!(took < limit + Duration::from_secs(15), "{took:?}: {output}");
    // The lookup it started is blocked in the kernel until the mount answers or goes away.
    drop(mount);
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    assert_eq!(info.state(), "FAILED", "{output}");
    assert!(!output.contains("SHOULD-NOT-RUN"), "{output}");
    assert_nothing_left(cluster, job.id);
    let leftover: Vec<_> = e2e::procfs::processes()
        .into_iter()
        .filter(|p| !p.zombie && p.cmdline.contains("hang.example"))
        .map(|p| (p.pid, p.cmdline))
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
}
