//! What every stage of the control loop holds: the config, the database, the clients, the
//! telemetry and the registration remover. One value, cloned into each stage, so the stages
//! are built the same way and none of them builds another.

use std::sync::Arc;

use crate::clients::github::GithubClient;
use crate::clients::slurm::Slurm;
use crate::clients::users;
use crate::config::Config;
use crate::model::RunnerRow;
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

impl StageContext {
    /// The uid `row`'s Slurm job runs as (its mapped user, else the service user); `None`
    /// when that user cannot be looked up.
    pub fn runner_uid(&self, row: &RunnerRow) -> Option<u32> {
        users::uid_of(row.job_user(self.config.slurm.user.as_deref())?)
    }
}
