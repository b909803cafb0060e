//! The outside world the dispatcher talks to: GitHub's REST API and Actions service (runner
//! scale sets), Slurm's commands, MUNGE and the passwd database.
//!
//! I/O only, no policy: a client says what was answered (typed), the stages decide what it
//! means. Secrets handed to a client (tokens, JIT configs, tickets) never come back in one of
//! its errors.

pub mod actions;
pub mod github;
pub mod munge;
pub mod slurm;
pub mod users;
