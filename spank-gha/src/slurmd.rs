//! slurmd context: the long-lived daemon loads the plugin once at start. The configuration has
//! already been checked by the caller; this records what the node will do, and sweeps the work
//! dirs of jobs that ended without their epilog ([`crate::sweep`]; never blocks the start).

use crate::config::Config;
use crate::spank::{log_error, log_info};
use crate::sweep;

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
    let swept = sweep::sweep_stale_work_dirs(&config.workdir_base);
    if swept.proc_unreadable {
        log_error("cannot read /proc: stale work dirs are left for now");
    }
    if swept.removed > 0 {
        log_info(&format!(
            "removing {} work dir(s) of jobs that ended without their epilog (node lost)",
            swept.removed
        ));
    }
    for error in &swept.errors {
        log_error(error);
    }
}
