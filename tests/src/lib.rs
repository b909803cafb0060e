//! End-to-end test support: a handle on the real single-node Slurm that `ci/slurm-up` starts,
//! with the real spank-gha plugin loaded. Tests submit jobs as the non-root test user, wait for
//! conditions with deadlines (never fixed sleeps), and read outputs and node state.

pub mod bench;
pub mod cluster;
pub mod demo;
pub mod dispatcher_slot;
pub mod procfs;
pub mod wait;

pub use cluster::{Cluster, JobInfo, Submitted};
pub use dispatcher_slot::DispatcherSlot;
pub use wait::wait_for;
