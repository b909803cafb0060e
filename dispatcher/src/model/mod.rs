//! The domain model: what a GitHub job, one of our runners and a Slurm job can be, and the
//! naming and placement rules they follow.
//!
//! Pure types with strict parsing: every state is an enum, and text that names no state
//! (from the database, GitHub or Slurm) is an [`UnknownState`] error, never a guess. Every
//! other module speaks these types, so this one depends on nothing in the crate.

mod clock;
mod job;
mod mapping;
mod runner;
mod scope;
mod slurm_state;
mod unread;

pub use clock::{now_millis, now_secs, parse_timestamp};
pub use job::{JobRow, JobStatus, JobUpdate};
pub use mapping::{check_key, valid_owner, valid_repo_name, Placement, RepoUser};
pub use runner::{RunnerPhase, RunnerRow, RunnerState, REDEMPTION_ERROR_PREFIX};
pub use scope::Scope;
pub use slurm_state::SlurmState;
pub use unread::Unread;

/// Text that names none of a type's states.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} {value:?}")]
pub struct UnknownState {
    /// What was being parsed, e.g. "runner state".
    pub kind: &'static str,
    pub value: String,
}

impl UnknownState {
    fn new(kind: &'static str, value: &str) -> UnknownState {
        UnknownState {
            kind,
            // Bounded: the text may come from outside.
            value: value.chars().take(64).collect(),
        }
    }
}
