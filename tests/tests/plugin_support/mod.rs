//! Shared helpers of the spank-gha plugin tests (`plugin_*.rs`): runner configs, the shipped job
//! script, and the "nothing left behind" checks every test ends with.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use e2e::procfs::processes;
use e2e::{Cluster, JobInfo, Submitted};
use test_support::wait_until;

/// Bound on a short job from submission to its end.
pub const JOB_TIMEOUT: Duration = Duration::from_secs(90);
/// Bound on the epilog's teardown after a job has ended.
pub const CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A syntactically valid JIT config (base64 of the runner's JSON file map), unique per call so
/// a test can search logs and environments for it.
pub fn jit_config(tag: &str) -> String {
    let json = format!(
        r#"{{".runner":"{}","tag":"{tag}-{}-{}"}}"#,
        "eyJhZ2VudElkIjoxfQ==",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
    );
    let output = Command::new("base64")
        .arg("-w0")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .expect("piped stdin")
                .write_all(json.as_bytes())?;
            child.wait_with_output()
        })
        .expect("base64 runs");
    String::from_utf8(output.stdout).expect("base64 prints ASCII")
}

/// The shipped job script as slurm-up installs it.
pub fn job_script(cluster: &Cluster) -> String {
    cluster
        .dir()
        .join("libexec/gha-runner-job")
        .to_string_lossy()
        .into_owned()
}

/// The stand-in runner installed beside the cluster's runner.
pub fn stand_in_root(cluster: &Cluster) -> String {
    cluster
        .dir()
        .join("stand-in-runner")
        .to_string_lossy()
        .into_owned()
}

/// The work dir the plugin makes for a job.
pub fn workdir(job_id: u32) -> PathBuf {
    PathBuf::from(format!("/tmp/spank-gha/gha-{job_id}"))
}

/// sha256 of a string, as hex.
pub fn sha256_hex(text: &str) -> String {
    let output = Command::new("sh")
        .args([
            "-c",
            "printf '%s' \"$1\" | sha256sum | cut -d' ' -f1",
            "sh",
            text,
        ])
        .output()
        .expect("sha256sum runs");
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Live (not zombie) processes that belong to the job: their environment names it, or their
/// command line or working directory points into its work dir (a rootless dockerd, its
/// containers' shims).
pub fn job_processes(job_id: u32) -> Vec<(u32, String)> {
    let marker = format!("SLURM_JOB_ID={job_id}");
    let dir = format!("/tmp/spank-gha/gha-{job_id}");
    processes()
        .into_iter()
        .filter(|p| !p.zombie && p.pid != std::process::id())
        .filter(|p| {
            p.has_env(&marker)
                || p.cmdline.contains(&format!("{dir}/"))
                || p.cmdline.ends_with(&dir)
                || p.cwd().is_some_and(|cwd| cwd.starts_with(&dir))
        })
        .map(|p| (p.pid, p.cmdline))
        .collect()
}

/// Live processes running as a subordinate id (a rootless container's users), any job.
pub fn subordinate_id_processes() -> Vec<(u32, String)> {
    processes()
        .into_iter()
        .filter(|p| !p.zombie && (100_000..165_536).contains(&p.uid))
        .map(|p| (p.pid, p.cmdline))
        .collect()
}

/// Waits until nothing of the job is left on the node (work dir, processes, dockerd and its
/// containers) and asserts the node is still usable.
pub fn assert_nothing_left(cluster: &Cluster, job_id: u32) {
    let dir = workdir(job_id);
    wait_until(
        &format!("job {job_id} to leave nothing behind"),
        CLEANUP_TIMEOUT,
        || {
            let procs = job_processes(job_id);
            let exists = fs::symlink_metadata(&dir).is_ok();
            if procs.is_empty() && !exists {
                Ok(Some(()))
            } else {
                bail!(
                    "left behind: work dir exists={exists}, processes={procs:?}, state={:?}",
                    cluster.job_info(job_id).map(|i| i.state().to_owned())
                )
            }
        },
    )
    .unwrap();
    cluster.assert_node_healthy().unwrap();
}

/// Asserts that a runner job's output shows an idle runner stopped by the first signal: SIGINT,
/// the stand-in's "Exiting...", no SIGTERM, and the job ending as planned.
pub fn assert_idle_runner_stopped_by_sigint(output: &str, idle_secs: u32) {
    assert!(
        output.contains(&format!(
            "spank-gha: runner idle for {idle_secs} s without starting a job: stopping it (SIGINT)"
        )),
        "{output}"
    );
    assert!(output.contains("Exiting..."), "{output}");
    assert!(!output.contains("SIGTERM"), "{output}");
    assert!(
        output.contains("spank-gha: idle runner stopped; ending the job"),
        "{output}"
    );
}

/// Submits, waits for the end, and returns the end state and the output.
pub fn run_job(cluster: &Cluster, args: &[&str]) -> (Submitted, JobInfo, String) {
    let job = cluster.sbatch(args).unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    // The output file is complete once the job has ended.
    let output = cluster.output(&job);
    (job, info, output)
}

/// Submits a job with extra environment variables for the stand-in runner.
pub fn sbatch_with_env(
    cluster: &Cluster,
    env: &[(&str, &str)],
    args: &[&str],
) -> Result<Submitted> {
    let mut exports = String::from("--export=ALL");
    for (k, v) in env {
        if v.contains(',') {
            bail!("--export cannot carry commas: {k}");
        }
        exports.push_str(&format!(",{k}={v}"));
    }
    let mut all = vec![exports.as_str()];
    all.extend_from_slice(args);
    cluster.sbatch(&all)
}

/// Runs a runner job as `user` on the stand-in runner, whose one GitHub job runs `command` at
/// once (no commas: it travels in `--export`); waits for its end and returns the job, its
/// end state and its output.
pub fn stand_in_runner_job(
    cluster: &Cluster,
    user: &str,
    tag: &str,
    command: &str,
) -> (Submitted, JobInfo, String) {
    assert!(!command.contains(','), "--export cannot carry commas");
    let jit = jit_config(tag);
    let job = cluster
        .sbatch_as(
            user,
            &[
                &format!("--export=ALL,STANDIN_JOB_AFTER=0,STANDIN_JOB_COMMAND={command}"),
                &format!("--gha-runner={jit}"),
                &job_script(cluster),
                "--runner-root",
                &stand_in_root(cluster),
            ],
        )
        .unwrap();
    let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
    let output = cluster.output(&job);
    (job, info, output)
}

/// A copy of the cluster's slurm.conf whose PlugStackConfig is `plugstack`, for client-side
/// checks of other plugin configurations (sbatch loads the plugin stack itself).
pub fn client_conf_with_plugstack(
    cluster: &Cluster,
    tag: &str,
    plugstack: &str,
) -> Result<PathBuf> {
    let base = std::env::temp_dir().join(format!("spank-gha-test-{tag}-{}", std::process::id()));
    fs::create_dir_all(&base)?;
    let stack = base.join("plugstack.conf");
    fs::write(&stack, plugstack)?;
    let conf = fs::read_to_string(cluster.conf()).context("reading slurm.conf")?;
    let conf: String = conf
        .lines()
        .map(|line| {
            if line.starts_with("PlugStackConfig=") {
                format!("PlugStackConfig={}", stack.display())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let path = base.join("slurm.conf");
    fs::write(&path, conf + "\n")?;
    for p in [&base, &stack, &path] {
        let mode = if p.is_dir() { 0o755 } else { 0o644 };
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(mode))?;
    }
    Ok(path)
}

/// The plugin as slurm-up installed it.
pub fn plugin_so(cluster: &Cluster) -> PathBuf {
    cluster.dir().join("lib/spank_gha.so")
}

/// The plugin's arguments in the cluster's plugstack.conf.
pub fn plugin_line(cluster: &Cluster) -> String {
    fs::read_to_string(cluster.dir().join("etc/plugstack.conf"))
        .unwrap()
        .trim()
        .to_owned()
}

pub fn read_logs(cluster: &Cluster) -> String {
    let mut all = String::new();
    for name in ["slurmd.log", "slurmctld.log"] {
        all.push_str(&fs::read_to_string(cluster.dir().join("log").join(name)).unwrap_or_default());
    }
    all
}

pub fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}
