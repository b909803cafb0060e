//! Allocator (sbatch, salloc) and local (srun) contexts: refuse malformed option values before
//! anything is submitted, with a message that never repeats the value.

use crate::args::{self, seen, Opt};

/// Called from init_post_opt, after Slurm has handed every option to our callback.
pub fn validate_options() -> Result<(), String> {
    let runner = seen(Opt::Runner);
    if let Some(value) = &runner {
        args::validate_runner_value(value).map_err(|e| e.to_string())?;
    }
    if let Some(image) = seen(Opt::Image) {
        if runner.is_none() {
            return Err("--gha-image needs --gha-runner".into());
        }
        args::validate_image_name(&image).map_err(|e| format!("--gha-image: {e}"))?;
    }
    if seen(Opt::Docker).is_some() && runner.is_none() {
        return Err("--gha-docker needs --gha-runner".into());
    }
    Ok(())
}
