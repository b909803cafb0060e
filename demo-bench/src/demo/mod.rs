//! The demo's machinery, shared with the benchmarks: the running system (simulator and
//! dispatcher), the demo workload, following jobs, the live board, the
//! leftover check, and each run's makespan against its critical path.

pub mod leftovers;
pub mod makespan;
pub mod progress;
pub mod slurm;
pub mod stack;
pub mod stats;
pub mod stopping;
pub mod tracker;
pub mod workflow;
