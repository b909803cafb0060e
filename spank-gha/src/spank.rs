//! The safe layer over Slurm's SPANK API: the handle passed to each callback (job items, the
//! job's environment, option values), option registration with the callback that records what
//! the user passed, the plugstack.conf arguments, and Slurm's logging. Just the calls the plugin
//! makes; every `unsafe` block of the SPANK API is here. Nothing here keeps state between
//! callbacks (the option values live in [`crate::args`]).

use std::ffi::{c_char, c_int, CStr, CString};
use std::panic::catch_unwind;

use crate::args::{self, Opt};
use crate::ffi;

/// Result code a SPANK call returned when it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpankCode(pub ffi::spank_err_t);

impl std::fmt::Display for SpankCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // SAFETY: spank_strerror returns a static string for any code.
        let text = unsafe { ffi::spank_strerror(self.0) };
        if text.is_null() {
            write!(f, "SPANK error {}", self.0)
        } else {
            // SAFETY: non-null, NUL-terminated static string from Slurm.
            write!(f, "{}", unsafe { CStr::from_ptr(text) }.to_string_lossy())
        }
    }
}

fn check(rc: ffi::spank_err_t) -> Result<(), SpankCode> {
    if rc == ffi::ESPANK_SUCCESS {
        Ok(())
    } else {
        Err(SpankCode(rc))
    }
}

/// The handle Slurm passes to every callback, valid for that call only.
#[derive(Clone, Copy)]
pub struct Spank(ffi::spank_t);

/// Which program loaded the plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    Allocator,
    Local,
    Remote,
    Slurmd,
    JobScript,
    Unknown,
}

pub fn context() -> Context {
    // SAFETY: plain query of the plugin stack's state.
    match unsafe { ffi::spank_context() } {
        ffi::spank_context::S_CTX_ALLOCATOR => Context::Allocator,
        ffi::spank_context::S_CTX_LOCAL => Context::Local,
        ffi::spank_context::S_CTX_REMOTE => Context::Remote,
        ffi::spank_context::S_CTX_SLURMD => Context::Slurmd,
        ffi::spank_context::S_CTX_JOB_SCRIPT => Context::JobScript,
        ffi::spank_context::S_CTX_ERROR => Context::Unknown,
    }
}

impl Spank {
    /// # Safety
    /// `handle` must be the handle Slurm passed to the running callback.
    pub unsafe fn from_raw(handle: ffi::spank_t) -> Spank {
        Spank(handle)
    }

    /// Registers every option of [`Opt::ALL`] (in every context: sbatch on 22.05 ignores a
    /// static table). Slurm keeps the pointers for the life of the process, so the descriptions
    /// are leaked (once per process: init runs once).
    pub fn register_options(&self) -> Result<(), SpankCode> {
        for opt in Opt::ALL {
            let option: &'static mut ffi::spank_option = Box::leak(Box::new(raw_option(opt)));
            // SAFETY: valid handle; the option and its strings are 'static.
            check(unsafe { ffi::spank_option_register(self.0, option) })?;
        }
        Ok(())
    }

    /// The option's argument if the job was submitted with it (empty for a flag).
    pub fn option_value(&self, opt: Opt) -> Option<String> {
        let mut option = raw_option(opt);
        let mut arg: *mut c_char = std::ptr::null_mut();
        // SAFETY: valid handle and option; Slurm points `arg` at its own copy.
        let rc = unsafe { ffi::spank_option_getopt(self.0, &mut option, &mut arg) };
        if rc != ffi::ESPANK_SUCCESS {
            return None;
        }
        if arg.is_null() {
            return Some(String::new());
        }
        // SAFETY: Slurm returns a NUL-terminated string it owns.
        Some(
            unsafe { CStr::from_ptr(arg) }
                .to_string_lossy()
                .into_owned(),
        )
    }

    fn item_u32(&self, item: ffi::spank_item_t) -> Result<u32, SpankCode> {
        let mut value: u32 = 0;
        // SAFETY: the items asked for here take a single (uint32_t *) / (uid_t *) / (gid_t *).
        check(unsafe { ffi::spank_get_item(self.0, item, &mut value as *mut u32) })?;
        Ok(value)
    }

    pub fn job_id(&self) -> Result<u32, SpankCode> {
        self.item_u32(ffi::spank_item::S_JOB_ID)
    }

    pub fn step_id(&self) -> Result<u32, SpankCode> {
        self.item_u32(ffi::spank_item::S_JOB_STEPID)
    }

    pub fn job_uid(&self) -> Result<u32, SpankCode> {
        self.item_u32(ffi::spank_item::S_JOB_UID)
    }

    pub fn job_gid(&self) -> Result<u32, SpankCode> {
        self.item_u32(ffi::spank_item::S_JOB_GID)
    }

    /// Names of the variables in the job's environment (remote context only).
    pub fn job_env_names(&self) -> Result<Vec<String>, SpankCode> {
        let mut env: *mut *mut c_char = std::ptr::null_mut();
        // SAFETY: S_JOB_ENV takes (char ***); Slurm keeps ownership of the array.
        check(unsafe { ffi::spank_get_item(self.0, ffi::spank_item::S_JOB_ENV, &mut env) })?;
        let mut names = Vec::new();
        if env.is_null() {
            return Ok(names);
        }
        for i in 0.. {
            // SAFETY: NULL-terminated array of NUL-terminated strings owned by Slurm.
            let entry = unsafe { *env.add(i) };
            if entry.is_null() {
                break;
            }
            // SAFETY: a non-null entry of that array.
            let bytes = unsafe { CStr::from_ptr(entry) }.to_bytes();
            let name = bytes.split(|b| *b == b'=').next().unwrap_or_default();
            names.push(String::from_utf8_lossy(name).into_owned());
        }
        Ok(names)
    }

    /// A variable from the job's environment (remote context only).
    pub fn getenv(&self, name: &str) -> Option<String> {
        let name = CString::new(name).ok()?;
        // Room for the largest --gha-runner value plus slack.
        let mut buf = vec![0u8; args::MAX_RUNNER_VALUE + 4096];
        let len = c_int::try_from(buf.len()).ok()?;
        // SAFETY: valid handle, NUL-terminated name, buffer of `len` bytes.
        let rc = unsafe {
            ffi::spank_getenv(self.0, name.as_ptr(), buf.as_mut_ptr() as *mut c_char, len)
        };
        if rc != ffi::ESPANK_SUCCESS {
            return None;
        }
        let end = buf.iter().position(|b| *b == 0)?;
        buf.truncate(end);
        String::from_utf8(buf).ok()
    }

    pub fn setenv(&self, name: &str, value: &str) -> Result<(), SpankCode> {
        let (Ok(name), Ok(value)) = (CString::new(name), CString::new(value)) else {
            return Err(SpankCode(ffi::slurm_err_t_ESPANK_BAD_ARG));
        };
        // SAFETY: valid handle and NUL-terminated strings (Slurm copies them).
        check(unsafe { ffi::spank_setenv(self.0, name.as_ptr(), value.as_ptr(), 1) })
    }

    pub fn unsetenv(&self, name: &str) -> Result<(), SpankCode> {
        let name = CString::new(name).map_err(|_| SpankCode(ffi::slurm_err_t_ESPANK_BAD_ARG))?;
        // SAFETY: valid handle and NUL-terminated name.
        check(unsafe { ffi::spank_unsetenv(self.0, name.as_ptr()) })
    }
}

/// The `spank_option` describing `opt`, with [`option_seen`] as its callback.
fn raw_option(opt: Opt) -> ffi::spank_option {
    ffi::spank_option {
        name: opt.c_name().as_ptr().cast_mut(),
        arginfo: opt
            .arginfo()
            .map_or(std::ptr::null_mut(), |a| a.as_ptr().cast_mut()),
        usage: opt.usage().as_ptr().cast_mut(),
        has_arg: c_int::from(opt.arginfo().is_some()),
        val: opt.val(),
        cb: Some(option_seen),
    }
}

/// Slurm's option callback: only records the value ([`args::record_seen`]). Validation
/// happens in init_post_opt, because Slurm echoes the argument when a callback fails
/// ("Invalid --x argument: <value>").
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
        if let Some(opt) = Opt::from_val(val) {
            args::record_seen(opt, value);
        }
    });
    if stored.is_err() {
        log_error("internal error while recording an option");
    }
    0
}

/// Converts a callback's `argc/argv` (the plugstack.conf arguments) to strings.
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings (Slurm guarantees it).
pub unsafe fn plugstack_args(argc: c_int, argv: *mut *mut c_char) -> Vec<String> {
    let count = usize::try_from(argc).unwrap_or(0);
    if argv.is_null() {
        return Vec::new();
    }
    (0..count)
        // SAFETY: `argv` holds `argc` entries (the caller's contract).
        .map(|i| unsafe { *argv.add(i) })
        .filter(|p| !p.is_null())
        // SAFETY: each non-null entry is a NUL-terminated string.
        .map(|p| unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
        .collect()
}

fn c_message(message: &str) -> CString {
    CString::new(message.replace('\0', "?")).unwrap_or_default()
}

/// Logs an error through Slurm (to the daemon's log, or the user's terminal for sbatch/srun).
pub fn log_error(message: &str) {
    let message = c_message(&format!("spank-gha: {message}"));
    // SAFETY: "%s" with one NUL-terminated string.
    unsafe { ffi::slurm_error(c"%s".as_ptr(), message.as_ptr()) }
}

/// Logs an informational line to the daemon's log.
pub fn log_info(message: &str) {
    let message = c_message(&format!("spank-gha: {message}"));
    // SAFETY: "%s" with one NUL-terminated string.
    unsafe { ffi::slurm_info(c"%s".as_ptr(), message.as_ptr()) }
}

/// Logs a debug line to the daemon's log.
pub fn log_debug(message: &str) {
    let message = c_message(&format!("spank-gha: {message}"));
    // SAFETY: "%s" with one NUL-terminated string.
    unsafe { ffi::slurm_debug(c"%s".as_ptr(), message.as_ptr()) }
}
