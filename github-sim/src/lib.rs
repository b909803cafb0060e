//! github-sim: a GitHub simulator (REST, auth, webhooks, faults, runner protocol) and the pieces the
//! fake actions runner shares with it. See `API.md` in the crate for the public interface.

#![recursion_limit = "256"]

pub mod auth;
pub mod config;
pub mod control;
pub mod error;
pub mod faults;
pub mod fixtures;
pub mod jit;
pub mod model;
pub mod render;
pub mod rest;
pub mod runner_api;
pub mod runner_install;
pub mod scaleset;
pub mod scenario;
pub mod shared;
pub mod signature;
pub mod sim;
pub mod state;
pub mod test_keys;
pub mod time;
pub mod tls;
pub mod webhooks;

pub use config::SimConfig;
pub use faults::{Faults, ScaleSetFaults};
pub use model::{
    AppSpec, Counters, DeliveryRecord, EndpointCount, InstallationSpec, JobSpec, JobView,
    RunCreated, RunView, RunnerView, SimSnapshot, TimelineEvent, TimelineKind, WebhookTarget,
    WorkflowSpec,
};
pub use sim::Sim;
pub use state::lost_communication;
pub use tls::{ServerIdentity, TestCa};
