//! spank-gha: a Slurm SPANK plugin that turns a batch job submitted with `--gha-runner` into a
//! safe, self-cleaning host for one ephemeral GitHub Actions runner.
//!
//! Layout (after NVIDIA pyxis): one module per SPANK context behind the dispatch in
//! [`plugin`], a strict `key=value` [`config`], the user-facing [`options`], and the pieces the
//! remote side composes: [`workdir`], [`image`], [`redeem`] (late-bound tickets traded for JIT
//! configs by the `gha-redeem` helper binary), [`helper`] (time-bounded child processes) and
//! [`cleanup`] (the epilog's teardown).

pub mod boundary;
pub mod cleanup;
pub mod config;
pub mod helper;
pub mod image;
pub mod options;
pub mod redeem;
pub mod workdir;

mod ffi;

// The parts that call into Slurm: left out of unit-test builds, whose executables have no
// Slurm to resolve the `spank_*` symbols against.
#[cfg(not(test))]
mod allocator;
#[cfg(not(test))]
mod job_script;
#[cfg(not(test))]
mod plugin;
#[cfg(not(test))]
mod remote;
#[cfg(not(test))]
mod slurmd;
#[cfg(not(test))]
mod spank;

/// The plugin's name as Slurm knows it; option variables are named after it
/// (`_SLURM_SPANK_OPTION_spank_gha_gha_runner`).
pub const PLUGIN_NAME: &str = "spank_gha";

/// Version of the Slurm whose headers this plugin was built against (`SLURM_VERSION_NUMBER`).
pub const SLURM_VERSION_NUMBER: u32 = ffi::SLURM_VERSION_NUMBER;
