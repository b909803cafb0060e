//! The exported symbols slurmd's plugin loader looks up (`plugin_*`, `slurm_spank_*`; the linker
//! version script hides everything else) and the dispatch of each SPANK callback to the module
//! of the context it runs in: [`crate::allocator`], [`crate::remote`], [`crate::job_script`],
//! [`crate::slurmd`]. Every callback body runs under [`crate::boundary::guard`]: a panic is
//! logged and turned into the callback's failure policy. Nothing here keeps state.

use std::ffi::{c_char, c_int};

use crate::boundary::OnFailure;
use crate::config::Config;
use crate::ffi;
use crate::spank::{self, log_error, Context, Spank};

fn guard(
    callback: &str,
    on_failure: OnFailure,
    body: impl FnOnce() -> Result<(), String>,
) -> c_int {
    crate::boundary::guard(callback, on_failure, log_error, body)
}

/// # Safety
/// Slurm's callback arguments.
unsafe fn config(argc: c_int, argv: *mut *mut c_char) -> Result<Config, String> {
    // SAFETY: forwarded from Slurm.
    let args = unsafe { spank::plugstack_args(argc, argv) };
    Config::parse(&args).map_err(|e| e.to_string())
}

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static plugin_name: [u8; 10] = *b"spank_gha\0";

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static plugin_type: [u8; 6] = *b"spank\0";

#[no_mangle]
#[allow(non_upper_case_globals)]
pub static plugin_version: u32 = ffi::SLURM_VERSION_NUMBER;

/// Every context: register the options (sbatch ignores a static table on 22.05) and check the
/// configuration, so a broken plugstack.conf is reported wherever the plugin loads.
///
/// # Safety
/// Called by Slurm with its handle and the plugstack.conf arguments.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init(
    sp: ffi::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    guard("slurm_spank_init", OnFailure::Fail, || {
        // SAFETY: Slurm's handle and arguments.
        let spank = unsafe { Spank::from_raw(sp) };
        // SAFETY: as above.
        let config = unsafe { config(argc, argv) }?;
        spank
            .register_options()
            .map_err(|e| format!("cannot register an option: {e}"))?;
        if spank::context() == Context::Slurmd {
            crate::slurmd::init(&config);
        }
        Ok(())
    })
}

/// # Safety
/// Called by Slurm.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init_post_opt(
    _sp: ffi::spank_t,
    _argc: c_int,
    _argv: *mut *mut c_char,
) -> c_int {
    match spank::context() {
        Context::Allocator | Context::Local => guard(
            "slurm_spank_init_post_opt",
            OnFailure::Fail,
            crate::allocator::validate_options,
        ),
        _ => 0,
    }
}

/// # Safety
/// Called by Slurm with its handle and the plugstack.conf arguments.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_task_init_privileged(
    sp: ffi::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    // An error returned here is not measured to spare the node; failures go to task_init.
    let rc = guard("slurm_spank_task_init_privileged", OnFailure::Fail, || {
        // SAFETY: Slurm's handle and arguments.
        let spank = unsafe { Spank::from_raw(sp) };
        // SAFETY: as above.
        let config = unsafe { config(argc, argv) }?;
        crate::remote::task_init_privileged(spank, &config);
        Ok(())
    });
    if rc != 0 {
        crate::remote::record_failure("internal error while preparing the job (see slurmd's log)");
    }
    0
}

/// # Safety
/// Called by Slurm with its handle.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_task_init(
    sp: ffi::spank_t,
    _argc: c_int,
    _argv: *mut *mut c_char,
) -> c_int {
    guard("slurm_spank_task_init", OnFailure::Fail, || {
        // SAFETY: Slurm's handle.
        let spank = unsafe { Spank::from_raw(sp) };
        crate::remote::task_init(spank).map_err(|message| {
            // The task's stderr is the job's error file: the user sees why the job failed.
            eprintln!("spank-gha: error: {message}");
            message
        })
    })
}

/// # Safety
/// Called by Slurm with its handle and the plugstack.conf arguments.
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_job_epilog(
    sp: ffi::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    guard("slurm_spank_job_epilog", OnFailure::LogOnly, || {
        // SAFETY: Slurm's handle and arguments.
        let spank = unsafe { Spank::from_raw(sp) };
        // SAFETY: as above.
        let config = unsafe { config(argc, argv) }?;
        crate::job_script::epilog(spank, &config)
    })
}
