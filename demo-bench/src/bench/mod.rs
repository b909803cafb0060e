//! The benchmarks (issue 7): measurements on the real local Slurm and the simulator, written
//! as a JSON and a Markdown report. Not tests: nothing here asserts a speed.

pub mod cluster_jobs;
pub mod dispatch;
pub mod relay;
pub mod report;
pub mod sbatch_timing;
pub mod slurm_floor;
pub mod slurm_load;
pub mod squeue_cost;
pub mod timeline;
