//! gha-dispatcher: turns GitHub Actions' queued workflow jobs into Slurm jobs that each
//! start one ephemeral self-hosted runner, and cleans up after them.

pub mod app;
pub mod config;
pub mod control;
pub mod db;
pub mod github;
pub mod group_commit;
pub mod metrics;
pub mod munge;
pub mod pools;
pub mod repositories;
pub mod scaler;
pub mod server;
pub mod signature;
pub mod slurm;
pub mod status;
pub mod tickets;
pub mod usermap;
pub mod webhook;
