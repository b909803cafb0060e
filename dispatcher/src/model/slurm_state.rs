//! A Slurm job's state as `squeue %T` prints it.

use super::UnknownState;

/// Every state (and state flag `squeue` prints in its place) of Slurm's job state codes.
/// Parsing is strict: a state not listed here is an error, so an unfamiliar Slurm makes the
/// queue unreadable (nothing is concluded) instead of making a live job look gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SlurmState {
    Pending,
    Configuring,
    Running,
    Suspended,
    Completing,
    Completed,
    Cancelled,
    Failed,
    Timeout,
    NodeFail,
    Preempted,
    BootFail,
    Deadline,
    OutOfMemory,
    Revoked,
    Requeued,
    RequeueFed,
    RequeueHold,
    Resizing,
    ResvDelHold,
    Signaling,
    SpecialExit,
    StageOut,
    Stopped,
    PowerUpNode,
    UpdateDb,
    LaunchFailed,
    ReconfigFail,
}

impl SlurmState {
    pub const ALL: [SlurmState; 28] = [
        SlurmState::Pending,
        SlurmState::Configuring,
        SlurmState::Running,
        SlurmState::Suspended,
        SlurmState::Completing,
        SlurmState::Completed,
        SlurmState::Cancelled,
        SlurmState::Failed,
        SlurmState::Timeout,
        SlurmState::NodeFail,
        SlurmState::Preempted,
        SlurmState::BootFail,
        SlurmState::Deadline,
        SlurmState::OutOfMemory,
        SlurmState::Revoked,
        SlurmState::Requeued,
        SlurmState::RequeueFed,
        SlurmState::RequeueHold,
        SlurmState::Resizing,
        SlurmState::ResvDelHold,
        SlurmState::Signaling,
        SlurmState::SpecialExit,
        SlurmState::StageOut,
        SlurmState::Stopped,
        SlurmState::PowerUpNode,
        SlurmState::UpdateDb,
        SlurmState::LaunchFailed,
        SlurmState::ReconfigFail,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            SlurmState::Pending => "PENDING",
            SlurmState::Configuring => "CONFIGURING",
            SlurmState::Running => "RUNNING",
            SlurmState::Suspended => "SUSPENDED",
            SlurmState::Completing => "COMPLETING",
            SlurmState::Completed => "COMPLETED",
            SlurmState::Cancelled => "CANCELLED",
            SlurmState::Failed => "FAILED",
            SlurmState::Timeout => "TIMEOUT",
            SlurmState::NodeFail => "NODE_FAIL",
            SlurmState::Preempted => "PREEMPTED",
            SlurmState::BootFail => "BOOT_FAIL",
            SlurmState::Deadline => "DEADLINE",
            SlurmState::OutOfMemory => "OUT_OF_MEMORY",
            SlurmState::Revoked => "REVOKED",
            SlurmState::Requeued => "REQUEUED",
            SlurmState::RequeueFed => "REQUEUE_FED",
            SlurmState::RequeueHold => "REQUEUE_HOLD",
            SlurmState::Resizing => "RESIZING",
            SlurmState::ResvDelHold => "RESV_DEL_HOLD",
            SlurmState::Signaling => "SIGNALING",
            SlurmState::SpecialExit => "SPECIAL_EXIT",
            SlurmState::StageOut => "STAGE_OUT",
            SlurmState::Stopped => "STOPPED",
            SlurmState::PowerUpNode => "POWER_UP_NODE",
            SlurmState::UpdateDb => "UPDATE_DB",
            SlurmState::LaunchFailed => "LAUNCH_FAILED",
            SlurmState::ReconfigFail => "RECONFIG_FAIL",
        }
    }

    pub fn parse(s: &str) -> Result<SlurmState, UnknownState> {
        SlurmState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState::new("Slurm job state", s))
    }

    /// After these Slurm will not run the job again.
    pub const fn is_terminal(self) -> bool {
        matches!(
            self,
            SlurmState::Completed
                | SlurmState::Cancelled
                | SlurmState::Failed
                | SlurmState::Timeout
                | SlurmState::NodeFail
                | SlurmState::Preempted
                | SlurmState::BootFail
                | SlurmState::Deadline
                | SlurmState::OutOfMemory
                | SlurmState::Revoked
        )
    }

    /// Pending, running, completing, suspended...: not over yet.
    pub const fn is_active(self) -> bool {
        !self.is_terminal()
    }

    /// The batch step may be starting: the only time a ticket may be redeemed.
    pub const fn is_running(self) -> bool {
        matches!(self, SlurmState::Running | SlurmState::Configuring)
    }
}

impl std::fmt::Display for SlurmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_round_trip_and_unknown_ones_are_errors() {
        for state in SlurmState::ALL {
            assert_eq!(SlurmState::parse(state.as_str()), Ok(state));
        }
        assert!(SlurmState::parse("pending").is_err());
        assert!(SlurmState::parse("").is_err());
        assert!(SlurmState::Pending.is_active() && SlurmState::Completing.is_active());
        assert!(!SlurmState::Cancelled.is_active());
        assert!(SlurmState::Configuring.is_running() && !SlurmState::Completing.is_running());
    }
}
