//! The FFI boundary: the symbols slurmd's plugin loader looks up, the option table, and the
//! dispatch of each SPANK callback to the module of the context it runs in. Every callback body
//! runs inside `catch_unwind`; a panic is logged and turned into the callback's failure policy.
//! No state here can be poisoned by a panic: options are kept per thread in plain `RefCell`s
//! that are written whole.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr};
use std::panic::catch_unwind;

use crate::boundary::OnFailure;
use crate::config::Config;
use crate::ffi;
use crate::spank::{self, log_error, Context, Spank};

const OPTION_RUNNER: c_int = 0;
const OPTION_IMAGE: c_int = 1;
const OPTION_DOCKER: c_int = 2;

thread_local! {
    /// Values the option callback received (sbatch/srun validate them in init_post_opt).
    static SEEN_OPTIONS: RefCell<[Option<String>; 3]> = const { RefCell::new([None, None, None]) };
}

/// Slurm's option callback: only records the value. Validation happens in init_post_opt,
/// because Slurm echoes the argument when a callback fails ("Invalid --x argument: <value>").
unsafe extern "C" fn option_seen(val: c_int, optarg: *const c_char, _remote: c_int) -> c_int {
    let stored = catch_unwind(|| {
        let value = if optarg.is_null() {
            String::new()
        } else {
            // SAFETY: Slurm passes a NUL-terminated argument.
            unsafe { CStr::from_ptr(optarg) }
                .to_string_lossy()
                .into_owned()
        };
        if let Ok(index) = usize::try_from(val) {
            SEEN_OPTIONS.with(|seen| {
                if let Some(slot) = seen.borrow_mut().get_mut(index) {
                    *slot = Some(value);
                }
            });
        }
    });
    if stored.is_err() {
        log_error("internal error while recording an option");
    }
    0
}

pub(crate) fn seen_option(val: c_int) -> Option<String> {
    let index = usize::try_from(val).ok()?;
    SEEN_OPTIONS.with(|seen| seen.borrow().get(index).cloned().flatten())
}

/// Builds the `spank_option` descriptions of our options.
pub struct OptionRegistry {
    options: [ffi::spank_option; 3],
}

impl OptionRegistry {
    pub fn new() -> OptionRegistry {
        let option =
            |name: &'static CStr, arginfo: Option<&'static CStr>, usage: &'static CStr, val| {
                ffi::spank_option {
                    name: name.as_ptr().cast_mut(),
                    arginfo: arginfo.map_or(std::ptr::null_mut(), |a| a.as_ptr().cast_mut()),
                    usage: usage.as_ptr().cast_mut(),
                    has_arg: c_int::from(arginfo.is_some()),
                    val,
                    cb: Some(option_seen),
                }
            };
        OptionRegistry {
            options: [
                option(
                    c"gha-runner",
                    Some(c"jitconfig"),
                    c"Run this job as a GitHub Actions runner host: the runner's base64 JIT config, or ticket:<reference>",
                    OPTION_RUNNER,
                ),
                option(
                    c"gha-image",
                    Some(c"image"),
                    c"Runner image under the cluster's image root (registry/image:tag)",
                    OPTION_IMAGE,
                ),
                option(
                    c"gha-docker",
                    None,
                    c"Start a rootless Docker daemon for the runner (where the cluster offers it on request)",
                    OPTION_DOCKER,
                ),
            ],
        }
    }

    pub fn runner(&mut self) -> &mut ffi::spank_option {
        &mut self.options[0]
    }

    pub fn image(&mut self) -> &mut ffi::spank_option {
        &mut self.options[1]
    }

    pub fn docker(&mut self) -> &mut ffi::spank_option {
        &mut self.options[2]
    }

    /// Registers every option. Slurm keeps the pointers for the life of the process, so the
    /// descriptions are leaked (once per process: init runs once).
    fn register(self, spank: Spank) -> Result<(), String> {
        for option in self.options {
            let option: &'static mut ffi::spank_option = Box::leak(Box::new(option));
            spank
                .register_option(option)
                .map_err(|e| format!("cannot register an option: {e}"))?;
        }
        Ok(())
    }
}

impl Default for OptionRegistry {
    fn default() -> Self {
        Self::new()
    }
}

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
    let args = unsafe { spank::args(argc, argv) };
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
#[no_mangle]
pub unsafe extern "C" fn slurm_spank_init(
    sp: ffi::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    guard("slurm_spank_init", OnFailure::Fail, || {
        // SAFETY: Slurm's handle and arguments.
        let spank = unsafe { Spank::from_raw(sp) };
        let config = unsafe { config(argc, argv) }?;
        OptionRegistry::new().register(spank)?;
        if spank::context() == Context::Slurmd {
            crate::slurmd::init(&config);
        }
        Ok(())
    })
}

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
        let config = unsafe { config(argc, argv) }?;
        crate::remote::task_init_privileged(spank, &config, &mut OptionRegistry::new());
        Ok(())
    });
    if rc != 0 {
        crate::remote::record_failure("internal error while preparing the job (see slurmd's log)");
    }
    0
}

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

#[no_mangle]
pub unsafe extern "C" fn slurm_spank_job_epilog(
    sp: ffi::spank_t,
    argc: c_int,
    argv: *mut *mut c_char,
) -> c_int {
    guard("slurm_spank_job_epilog", OnFailure::LogOnly, || {
        // SAFETY: Slurm's handle and arguments.
        let spank = unsafe { Spank::from_raw(sp) };
        let config = unsafe { config(argc, argv) }?;
        crate::job_script::epilog(spank, &config, &mut OptionRegistry::new())
    })
}
