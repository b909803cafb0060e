//! The FFI boundary's failure policy: a callback body's error or panic is logged and turned
//! into the return code its SPANK callback may give without hurting the node. Panics never
//! cross into Slurm, and nothing is left poisoned for later callbacks (no locks are held).

use std::ffi::c_int;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a failing or panicking callback returns to Slurm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// Return an error: the caller fails (sbatch exits, the job fails, the plugin refuses to
    /// load for an admin's broken configuration).
    Fail,
    /// Log and return success: an error here would drain the node.
    LogOnly,
}

/// Runs `body`, logging its error or panic through `log`, and returns the callback's code.
pub fn guard(
    callback: &str,
    on_failure: OnFailure,
    log: impl Fn(&str),
    body: impl FnOnce() -> Result<(), String>,
) -> c_int {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return 0,
        Ok(Err(message)) => log(&message),
        Err(_) => log(&format!(
            "internal error (panic) in {callback}; see the daemon's stderr"
        )),
    }
    match on_failure {
        OnFailure::Fail => -1,
        OnFailure::LogOnly => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    #[test]
    fn panics_become_the_callbacks_failure_and_later_calls_still_work() {
        let logged = RefCell::new(Vec::new());
        let log = |m: &str| logged.borrow_mut().push(m.to_owned());
        let rc = guard("slurm_spank_task_init", OnFailure::Fail, log, || {
            panic!("boom")
        });
        assert_eq!(rc, -1);
        let rc = guard("slurm_spank_job_epilog", OnFailure::LogOnly, log, || {
            panic!("boom")
        });
        assert_eq!(
            rc, 0,
            "an epilog must never return an error (it drains the node)"
        );
        assert_eq!(
            guard("slurm_spank_init", OnFailure::Fail, log, || Ok(())),
            0
        );
        assert_eq!(
            guard("slurm_spank_init", OnFailure::Fail, log, || Err(
                "bad key".into()
            )),
            -1
        );
        let logged = logged.borrow();
        assert_eq!(logged.len(), 3);
        assert!(logged[0].contains("panic") && logged[0].contains("slurm_spank_task_init"));
        assert_eq!(logged[2], "bad key");
    }
}
