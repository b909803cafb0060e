//! slurmd context: the long-lived daemon loads the plugin once at start. The configuration has
//! already been checked by the caller; this records what the node will do.

use crate::config::Config;
use crate::spank::log_info;

pub fn init(config: &Config) {
    log_info(&format!(
        "loaded for Slurm {}.{:02}: work dirs under {}, runner in {}, docker {}, idle timeout {} s",
        crate::SLURM_VERSION_NUMBER >> 16,
        (crate::SLURM_VERSION_NUMBER >> 8) & 0xff,
        config.workdir_base.display(),
        config.runner_root.display(),
        config.docker.as_str(),
        config.idle_timeout.as_secs()
    ));
}
