//! gha-dispatcher: turns GitHub Actions' queued workflow jobs into Slurm jobs that each
//! start one ephemeral self-hosted runner, and cleans up after them.
//!
//! Layers, each depending only on those before it: `model` (states and rules) → `config`,
//! `telemetry` → `store` (all SQL), `clients` (GitHub, Slurm, MUNGE, passwd) → the stages
//! `scale`, `intake`, `registrations` (+ `stage`), `reconcile`, `redeem`, `submit` → `api`,
//! `control` (the loop that sequences the stages) → `app` (wiring). `init` (the setup command:
//! starting config, secrets, the GitHub App manifest flow) stands apart; only main.rs uses it.

pub mod accounting;
pub mod api;
pub mod app;
pub mod clients;
pub mod config;
pub mod control;
pub mod ended;
pub mod init;
pub mod intake;
pub mod model;
pub mod reconcile;
pub mod redeem;
pub mod registrations;
pub mod scale;
pub mod scale_sets;
pub mod stage;
pub mod store;
pub mod submit;
pub mod telemetry;
