//! End-to-end test support: a handle on the real single-node Slurm that `ci/slurm-up` starts,
//! with the real spank-gha plugin loaded (`cluster`, `procfs`), the cluster's one dispatcher
//! address (`dispatcher_slot`), the dispatcher's config file typed (`dispatcher_config`), the
//! GitHub simulator set up as the dispatcher expects it (`sim_world`) and MUNGE credentials
//! (`munge`), a systemd unit run as systemd would (`systemd_unit`), and the dispatcher binary
//! built in the test's profile (`built`). The tests in `tests/` and the demo and benchmark drivers (crate `demo-bench`)
//! use it. Waiting is `test_support::wait_until` (never fixed sleeps).

pub mod built;
pub mod cluster;
pub mod dispatcher_config;
pub mod dispatcher_slot;
pub mod munge;
pub mod procfs;
pub mod sim_world;
pub mod systemd_unit;

pub use cluster::{Cluster, JobInfo, Submitted};
pub use dispatcher_slot::DispatcherSlot;
