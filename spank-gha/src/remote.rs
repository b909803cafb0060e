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
use std::path::PathBuf;

use crate::config::{Config, DockerMode};
use crate::helper::RunAs;
use crate::options::{self, RunnerValueKind};
use crate::spank::{log_debug, log_error, log_info, Spank};
use crate::{ffi, image, redeem, workdir};

thread_local! {
    /// Set by `task_init_privileged`, reported by `task_init`. Both run in the task's own
    /// single-threaded process after slurmstepd forked it, so nothing else touches it.
    static PENDING_FAILURE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// The job's view of an option: from the option machinery, or from the variables that carry
/// it (the only source with `--export=NONE`).
fn option_value(spank: Spank, option: &mut ffi::spank_option, name: &str) -> Option<String> {
    if let Some(value) = spank.option_value(option) {
        return Some(value);
    }
    let var = options::option_env_name(name);
    spank
        .getenv(&var)
        .or_else(|| spank.getenv(&format!("SLURM_SPANK_{var}")))
}

pub fn task_init_privileged(
    spank: Spank,
    config: &Config,
    registry: &mut crate::plugin::OptionRegistry,
) {
    if let Err(message) = prepare_batch_step(spank, config, registry) {
        record_failure(&message);
    }
}

/// Remembers why the job cannot run, for `task_init` to report.
pub fn record_failure(message: &str) {
    PENDING_FAILURE.with(|slot| *slot.borrow_mut() = Some(message.to_owned()));
}

/// Everything root does for the batch step. Returns the message for the job's user on failure.
fn prepare_batch_step(
    spank: Spank,
    config: &Config,
    registry: &mut crate::plugin::OptionRegistry,
) -> Result<(), String> {
    let started = std::time::Instant::now();
    let step = spank
        .step_id()
        .map_err(|e| format!("cannot read the step id: {e}"))?;
    if step != ffi::BATCH_STEP_ID {
        return Ok(());
    }
    let Some(runner) = option_value(spank, registry.runner(), options::RUNNER_OPTION) else {
        return Ok(());
    };
    let kind = options::validate_runner_value(&runner).map_err(|e| e.to_string())?;
    let job_id = spank
        .job_id()
        .map_err(|e| format!("cannot read the job id: {e}"))?;
    let uid = spank
        .job_uid()
        .map_err(|e| format!("cannot read the job's user: {e}"))?;
    let gid = spank
        .job_gid()
        .map_err(|e| format!("cannot read the job's group: {e}"))?;
    let image_name = option_value(spank, registry.image(), options::IMAGE_OPTION)
        .or_else(|| config.default_image.clone());
    let docker_requested = option_value(spank, registry.docker(), options::DOCKER_OPTION).is_some();
    let docker = match config.docker {
        DockerMode::Rootless => true,
        DockerMode::OnRequest => docker_requested,
        DockerMode::Off if docker_requested => {
            return Err("--gha-docker: this cluster does not provide Docker (docker=off)".into())
        }
        DockerMode::Off => false,
    };

    let image_path: Option<PathBuf> = match &image_name {
        Some(name) => Some(
            image::check_image(
                name,
                config.image_root.as_deref(),
                Some(RunAs { uid, gid }),
                config.image_check_timeout,
            )
            .map_err(|e| e.to_string())?,
        ),
        None => None,
    };

    // A ticket is traded for the config only now, when the job is about to run (late
    // binding); the work dir is made only once there is a config to put in it.
    let jitconfig = match kind {
        RunnerValueKind::JitConfig => runner.clone(),
        RunnerValueKind::Ticket => {
            let ticket = runner
                .strip_prefix(options::TICKET_PREFIX)
                .ok_or("--gha-runner: not a ticket:<reference> value")?;
            let redeem_started = std::time::Instant::now();
            let redeemed = redeem::redeem(config, ticket, job_id)?;
            log_info(&format!(
                "job {job_id}: runner ticket redeemed in {:.1} ms",
                redeem_started.elapsed().as_secs_f64() * 1000.0
            ));
            redeemed
        }
    };

    let dir = workdir::create(&config.workdir_base, job_id, uid, gid, jitconfig.as_bytes())
        .map_err(|e| format!("cannot prepare the job's work dir: {e}"))?;
    drop(jitconfig);
    let display = |p: &PathBuf| p.to_string_lossy().into_owned();
    let mut env: Vec<(&str, String)> = vec![
        ("GHA_RUNNER_WORKDIR", display(&dir.root)),
        ("GHA_JITCONFIG_FILE", display(&dir.jitconfig)),
        (
            "GHA_RUNNER_KIND",
            match kind {
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
        ("GHA_DOCKER", if docker { "rootless" } else { "off" }.into()),
        (
            "GHA_DOCKER_TIMEOUT",
            config.docker_timeout.as_secs().to_string(),
        ),
    ];
    if docker {
        env.push((
            "DOCKER_HOST",
            format!("unix://{}/docker.sock", dir.run.to_string_lossy()),
        ));
    }
    if let (Some(name), Some(path)) = (&image_name, &image_path) {
        env.push(("GHA_IMAGE", name.clone()));
        env.push(("GHA_IMAGE_PATH", display(path)));
    }
    if let Some(url) = &config.dispatcher_url {
        env.push(("GHA_DISPATCHER_URL", url.clone()));
    }
    for (name, value) in env {
        spank
            .setenv(name, &value)
            .map_err(|e| format!("cannot set {name} for the job: {e}"))?;
    }
    log_info(&format!(
        "job {job_id}: work dir {} ready for uid {uid} (docker {}, image {}) in {:.1} ms",
        dir.root.display(),
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
            for name in names.iter().filter(|n| options::is_option_env_var(n)) {
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
