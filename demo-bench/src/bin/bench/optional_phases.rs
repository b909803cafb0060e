//! The phases that run only when asked: the warm pool (`--warm-jobs`), the drain
//! (`--drain`, `--drain-only`) and the dispatcher's load on slurmctld (`--foreign-jobs`).

use std::time::Duration;

use anyhow::Result;
use demo_bench::bench::dispatch::{self, Stack};
use demo_bench::bench::slurm_load;
use e2e::Cluster;

use super::drain_report::run_drain;
use super::{after_phases, report_dir, say, Args, Measured, Problems};

/// `--drain-only`: the drain, then what follows every run of the phases.
pub(super) fn drain_only(
    cluster: &Cluster,
    args: &Args,
    stack: &mut Stack,
    measured: &mut Measured,
    problems: &mut Problems,
) {
    problems.record("drain", drain_phase(cluster, args, stack, measured));
    after_phases(cluster, args, stack, measured, problems);
}

/// The drain and its floor, once the earlier phases' runners are gone.
pub(super) fn drain_phase(
    cluster: &Cluster,
    args: &Args,
    stack: &mut Stack,
    measured: &mut Measured,
) -> Result<()> {
    let counts = (args.drain, args.drain_floor_jobs);
    let limit = Duration::from_secs(args.drain_secs);
    let out = report_dir(cluster, args);
    measured.drain = Some(run_drain(stack, counts, &args.drain_intake, limit, &out)?);
    Ok(())
}

/// The dispatcher's load on slurmctld, without and with `--foreign-jobs` held jobs (when
/// given). True when nothing else is to be measured (`--slurm-load-only`).
pub(super) fn slurm_load_phase(
    args: &Args,
    stack: &mut Stack,
    measured: &mut Measured,
    problems: &mut Problems,
) -> bool {
    if args.foreign_jobs == 0 {
        return false;
    }
    say(format!(
        "Slurm load: {} s idle and {} jobs, then again with {} foreign held jobs",
        args.slurm_load_idle_secs, args.slurm_load_jobs, args.foreign_jobs
    ));
    let result = slurm_load::slurm_load(
        stack,
        args.foreign_jobs,
        Duration::from_secs(args.slurm_load_idle_secs),
        args.slurm_load_jobs,
    );
    problems.record("slurm load", result.map(|r| measured.slurm_load = Some(r)));
    args.slurm_load_only
}

/// Jobs on a warm pool, then as many cold starts (issue 16 part 2); none with 0.
pub(super) fn warm_phase(args: &Args, stack: &mut Stack, measured: &mut Measured) -> Result<()> {
    if args.warm_jobs == 0 {
        return Ok(());
    }
    say(format!(
        "{} jobs on a warm pool, then as many cold starts",
        args.warm_jobs
    ));
    measured.warm = Some(dispatch::warm(stack, args.warm_jobs)?);
    Ok(())
}
