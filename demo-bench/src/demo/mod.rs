//! The demo's machinery, shared with the benchmarks: the running system (simulator and
//! dispatcher), the demo workload, following jobs, the live board, and the leftover check.

pub mod leftovers;
pub mod progress;
pub mod slurm;
pub mod stack;
pub mod stats;
pub mod stopping;
pub mod tracker;
pub mod workflow;
