//! What every stage of the control loop holds: the config, the database, the clients, the
//! telemetry and the registration remover. One value, cloned into each stage, so the stages
//! are built the same way and none of them builds another.

use std::sync::Arc;

use crate::clients::github::GithubClient;
use crate::clients::slurm::Slurm;
use crate::config::Config;
use crate::registrations::Registrations;
use crate::store::Db;
use crate::telemetry::Telemetry;

#[derive(Clone)]
pub struct StageContext {
    pub config: Arc<Config>,
    pub db: Db,
    pub github: Arc<GithubClient>,
    pub slurm: Slurm,
    pub telemetry: Telemetry,
    pub registrations: Registrations,
}
