//! demo-bench: the drivers behind `ci/demo` and `ci/bench` (binaries `demo` and `bench`). They
//! run the whole system (the GitHub simulator in-process, the `gha-dispatcher` binary, the real
//! local Slurm with the plugin) through the cluster harness of the `e2e` crate. `demo` holds the
//! running stack, the demo workload, progress and the leftover check (the benchmarks reuse them);
//! `bench` holds the measurements and the report.

pub mod bench;
pub mod demo;
pub mod soak;
