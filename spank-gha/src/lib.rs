//! spank-gha: a Slurm SPANK plugin that turns a batch job submitted with `--gha-runner` into a
//! safe, self-cleaning host for one ephemeral GitHub Actions runner.
//!
//! Layout (after NVIDIA pyxis): the exported symbols in [`plugin`] dispatch each callback to the
//! module of its context ([`allocator`], [`remote`], [`job_script`], [`slurmd`]) under the
//! failure policy of [`boundary`]. Below them: the job options in [`args`], the strict
//! plugstack.conf `key=value` [`config`], and the pieces the remote side and the epilog compose:
//! [`workdir`], [`image`], [`redeem`] (late-bound tickets traded for JIT configs by the
//! `gha-redeem` helper), [`helper`] (fork, drop privileges, exec, time bound) and [`cleanup`]
//! (the epilog's teardown). Every raw call lives in [`spank`] (the SPANK API), `ffi` (its
//! bindings) and [`sys`] (libc); the rest of the crate may not use `unsafe`.
//!
//! Modules only import downwards: contexts → pieces → `args`/`config` → `spank`/`sys`/`ffi`.
#![deny(unsafe_code)]

pub mod args;
pub mod boundary;
pub mod cleanup;
pub mod config;
pub mod helper;
pub mod image;
pub mod redeem;
pub mod sweep;
#[allow(unsafe_code)]
pub mod sys;
pub mod workdir;

#[allow(unsafe_code)]
mod ffi;

// The parts that call into Slurm: left out of unit-test builds, whose executables have no
// Slurm to resolve the `spank_*` symbols against.
#[cfg(not(test))]
mod allocator;
#[cfg(not(test))]
mod job_script;
#[cfg(not(test))]
#[allow(unsafe_code)]
mod plugin;
#[cfg(not(test))]
mod remote;
#[cfg(not(test))]
mod slurmd;
#[cfg(not(test))]
#[allow(unsafe_code)]
mod spank;

/// The plugin's name as Slurm knows it; option variables are named after it
/// (`_SLURM_SPANK_OPTION_spank_gha_gha_runner`).
pub const PLUGIN_NAME: &str = "spank_gha";

/// Version of the Slurm whose headers this plugin was built against (`SLURM_VERSION_NUMBER`).
pub const SLURM_VERSION_NUMBER: u32 = ffi::SLURM_VERSION_NUMBER;
