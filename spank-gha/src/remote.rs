//! Remote context (slurmstepd): sets up the batch step of a `--gha-runner` job.
//!
//! Failures the user caused must fail the job without draining the node, and only an error
//! from `task_init` does that on Slurm 22.05. So the root-side work happens in
//! `task_init_privileged` (in the task's own process, just after fork), which never returns an
//! error: it records the failure, and `task_init` (same process, as the user, just before
//! exec) reports it and fails the job. Every step also loses the option variables that carry
//! the JIT config, so no workflow step can read it. A `ticket:` job gets its config here too,
//! redeemed at the dispatcher ([`redeem`]) before the work dir exists, so a refused ticket
//! leaves nothing behind.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::Instant;

use redeem_contract::TICKET_PREFIX;

use crate::args::{self, Opt, RunnerValueKind};
use crate::config::{Config, DockerMode};
use crate::helper::RunAs;
use crate::spank::{log_debug, log_error, log_info, Spank};
use crate::workdir::JobDir;
use crate::{ffi, image, redeem, workdir};

thread_local! {
    /// Set by `task_init_privileged`, reported by `task_init`. Both run in the task's own
    /// single-threaded process after slurmstepd forked it, so nothing else touches it.
    static PENDING_FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The job's view of an option: from the option machinery, or from the variables that carry
/// it (the only source with `--export=NONE`).
fn option_value(spank: Spank, opt: Opt) -> Option<String> {
    if let Some(value) = spank.option_value(opt) {
        return Some(value);
    }
    let var = opt.env_name();
    spank
        .getenv(&var)
        .or_else(|| spank.getenv(&format!("SLURM_SPANK_{var}")))
}

pub fn task_init_privileged(spank: Spank, config: &Config) {
    if let Err(message) = prepare_batch_step(spank, config) {
        record_failure(&message);
    }
}

/// Remembers why the job cannot run, for `task_init` to report.
pub fn record_failure(message: &str) {
    PENDING_FAILURE.with(|slot| *slot.borrow_mut() = Some(message.to_owned()));
}

/// Who the job is.
struct Job {
    id: u32,
    uid: u32,
    gid: u32,
}

fn job(spank: Spank) -> Result<Job, String> {
    Ok(Job {
        id: spank
            .job_id()
            .map_err(|e| format!("cannot read the job id: {e}"))?,
        uid: spank
            .job_uid()
            .map_err(|e| format!("cannot read the job's user: {e}"))?,
        gid: spank
            .job_gid()
            .map_err(|e| format!("cannot read the job's group: {e}"))?,
    })
}

/// Root and system accounts (uid below `min_uid`) never run a runner: a workflow would run with
/// their rights, and the epilog's end-of-job sweep of the user's processes would hit daemons.
fn check_user(config: &Config, uid: u32) -> Result<(), String> {
    let min = config.min_uid();
    if uid == 0 {
        return Err("--gha-runner: jobs of root cannot run a GitHub Actions runner; submit as an ordinary user".into());
    }
    if uid < min {
        return Err(format!(
            "--gha-runner: uid {uid} is a system account (below min_uid {min}); runners run only \
             for ordinary users"
        ));
    }
    Ok(())
}

/// Whether the job gets a rootless dockerd.
fn docker_wanted(config: &Config, requested: bool) -> Result<bool, String> {
    match config.docker {
        DockerMode::Rootless => Ok(true),
        DockerMode::OnRequest => Ok(requested),
        DockerMode::Off if requested => {
            Err("--gha-docker: this cluster does not provide Docker (docker=off)".into())
        }
        DockerMode::Off => Ok(false),
    }
}

/// The runner's JIT config: the value itself, or a ticket traded for it only now, when the job
/// is about to run (late binding).
fn jitconfig(
    config: &Config,
    runner: &str,
    kind: RunnerValueKind,
    job_id: u32,
) -> Result<String, String> {
    match kind {
        RunnerValueKind::JitConfig => Ok(runner.to_owned()),
        RunnerValueKind::Ticket => {
            let ticket = runner
                .strip_prefix(TICKET_PREFIX)
                .ok_or("--gha-runner: not a ticket:<reference> value")?;
            let started = Instant::now();
            let redeemed = redeem::redeem(config, ticket, job_id)?;
            log_info(&format!(
                "job {job_id}: runner ticket redeemed in {:.1} ms",
                started.elapsed().as_secs_f64() * 1000.0
            ));
            Ok(redeemed)
        }
    }
}

/// What the job's environment gets.
struct Setup<'a> {
    dir: &'a JobDir,
    kind: RunnerValueKind,
    docker: bool,
    /// The image's name and checked path.
    image: Option<(&'a str, &'a Path)>,
}

fn job_env(config: &Config, setup: &Setup) -> Vec<(&'static str, String)> {
    let display = |p: &Path| p.to_string_lossy().into_owned();
    let dir = setup.dir;
    let mut env: Vec<(&str, String)> = vec![
        ("GHA_RUNNER_WORKDIR", display(&dir.root)),
        ("GHA_JITCONFIG_FILE", display(&dir.jitconfig)),
        (
            "GHA_RUNNER_KIND",
            match setup.kind {
                RunnerValueKind::JitConfig => "jitconfig".into(),
                RunnerValueKind::Ticket => "ticket".into(),
            },
        ),
        ("TMPDIR", display(&dir.tmp)),
        ("XDG_RUNTIME_DIR", display(&dir.run)),
        ("GHA_RUNNER_ROOT", display(&config.runner_root)),
        (
            "GHA_IDLE_TIMEOUT",
            config.idle_timeout.as_secs().to_string(),
        ),
        ("GHA_STOP_GRACE", config.stop_grace.as_secs().to_string()),
        (
            "GHA_DOCKER",
            if setup.docker { "rootless" } else { "off" }.into(),
        ),
        (
            "GHA_DOCKER_TIMEOUT",
            config.docker_timeout.as_secs().to_string(),
        ),
    ];
    if setup.docker {
        env.push((
            "DOCKER_HOST",
            format!("unix://{}/docker.sock", dir.run.to_string_lossy()),
        ));
    }
    if let Some((name, path)) = setup.image {
        env.push(("GHA_IMAGE", name.to_owned()));
        env.push(("GHA_IMAGE_PATH", display(path)));
        env.push((
            "GHA_CONTAINER_RUNTIME",
            config.container_runtime.as_str().into(),
        ));
    }
    if let Some(url) = &config.dispatcher_url {
        env.push(("GHA_DISPATCHER_URL", url.clone()));
    }
    env
}

/// Everything root does for the batch step. Returns the message for the job's user on failure.
fn prepare_batch_step(spank: Spank, config: &Config) -> Result<(), String> {
    let started = Instant::now();
    let step = spank
        .step_id()
        .map_err(|e| format!("cannot read the step id: {e}"))?;
    if step != ffi::BATCH_STEP_ID {
        return Ok(());
    }
    let Some(runner) = option_value(spank, Opt::Runner) else {
        return Ok(());
    };
    let kind = args::validate_runner_value(&runner).map_err(|e| e.to_string())?;
    let job = job(spank)?;
    check_user(config, job.uid)?;
    let image_name = option_value(spank, Opt::Image).or_else(|| config.default_image.clone());
    let docker = docker_wanted(config, option_value(spank, Opt::Docker).is_some())?;
    let image_path: Option<PathBuf> = match &image_name {
        Some(name) => Some(
            image::check_image(
                name,
                config.image_root.as_deref(),
                Some(RunAs {
                    uid: job.uid,
                    gid: job.gid,
                }),
                config.image_check_timeout,
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };
    // The work dir is made only once there is a config to put in it.
    let jitconfig = jitconfig(config, &runner, kind, job.id)?;
    let dir = workdir::create(
        &config.workdir_base,
        job.id,
        job.uid,
        job.gid,
        jitconfig.as_bytes(),
    )
    .map_err(|e| format!("cannot prepare the job's work dir: {e}"))?;
    drop(jitconfig);
    let setup = Setup {
        dir: &dir,
        kind,
        docker,
        image: image_name.as_deref().zip(image_path.as_deref()),
    };
    for (name, value) in job_env(config, &setup) {
        spank
            .setenv(name, &value)
            .map_err(|e| format!("cannot set {name} for the job: {e}"))?;
    }
    log_info(&format!(
        "job {}: work dir {} ready for uid {} (docker {}, image {}) in {:.1} ms",
        job.id,
        dir.root.display(),
        job.uid,
        if docker { "rootless" } else { "off" },
        image_name.as_deref().unwrap_or("none"),
        started.elapsed().as_secs_f64() * 1000.0
    ));
    Ok(())
}

/// Removes every copy of our options from the step's environment.
pub fn scrub_option_variables(spank: Spank) {
    match spank.job_env_names() {
        Ok(names) => {
            for name in names.iter().filter(|n| args::is_option_env_var(n)) {
                if let Err(e) = spank.unsetenv(name) {
                    log_error(&format!(
                        "cannot remove {name} from the job's environment: {e}"
                    ));
                }
            }
        }
        Err(e) => log_debug(&format!("cannot list the job's environment: {e}")),
    }
}

/// Runs as the job's user just before exec. Returns the failure recorded by
/// `task_init_privileged`, which fails the job (and only the job).
pub fn task_init(spank: Spank) -> Result<(), String> {
    scrub_option_variables(spank);
    match PENDING_FAILURE.with(|slot| slot.borrow_mut().take()) {
        Some(message) => Err(message),
        None => Ok(()),
    }
}
