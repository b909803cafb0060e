//! The state shared by every handler, and the sub-state each handler module asks for.

use std::sync::{Arc, Mutex};

use axum::extract::FromRef;
use tokio::sync::Notify;

use super::console::{ConsoleShared, ConsoleState};
use super::repositories::RepositoriesState;
use super::status::StatusState;
use crate::clients::slurm::Slurm;
use crate::config::Config;
use crate::ended::EndedState;
use crate::intake::IntakeState;
use crate::redeem::RedeemState;
use crate::registrations::Registrations;
use crate::scale_sets::ScaleSets;
use crate::store::Db;
use crate::telemetry::{Metrics, SharedStatus};

#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub db: Db,
    pub webhook_secret: Arc<Vec<u8>>,
    pub metrics: Arc<Metrics>,
    /// Wakes the control loop when a delivery or the mapping changed demand.
    pub wake: Arc<Notify>,
    pub shared: Arc<Mutex<SharedStatus>>,
    /// Needed by `POST /repositories/{username}`; `None`: the mapping is read-only.
    pub admin_token: Option<Arc<String>>,
    /// Ticket redemption mints JIT configs and asks Slurm about the redeeming job.
    pub registrations: Registrations,
    pub slurm: Slurm,
    /// The listeners' scale sets (demand, status).
    pub scale_sets: ScaleSets,
    /// The web console's sessions and streams.
    pub console: ConsoleShared,
}

impl FromRef<AppState> for IntakeState {
    fn from_ref(app: &AppState) -> IntakeState {
        IntakeState {
            config: app.config.clone(),
            db: app.db.clone(),
            webhook_secret: app.webhook_secret.clone(),
            metrics: app.metrics.clone(),
            wake: app.wake.clone(),
            slurm: app.slurm.clone(),
        }
    }
}

impl FromRef<AppState> for EndedState {
    fn from_ref(app: &AppState) -> EndedState {
        EndedState {
            config: app.config.clone(),
            db: app.db.clone(),
            metrics: app.metrics.clone(),
            wake: app.wake.clone(),
        }
    }
}

impl FromRef<AppState> for RedeemState {
    fn from_ref(app: &AppState) -> RedeemState {
        RedeemState {
            config: app.config.clone(),
            db: app.db.clone(),
            metrics: app.metrics.clone(),
            registrations: app.registrations.clone(),
            scale_sets: app.scale_sets.clone(),
            slurm: app.slurm.clone(),
        }
    }
}

impl FromRef<AppState> for RepositoriesState {
    fn from_ref(app: &AppState) -> RepositoriesState {
        RepositoriesState {
            config: app.config.clone(),
            db: app.db.clone(),
            admin_token: app.admin_token.clone(),
            wake: app.wake.clone(),
        }
    }
}

impl FromRef<AppState> for StatusState {
    fn from_ref(app: &AppState) -> StatusState {
        StatusState {
            config: app.config.clone(),
            db: app.db.clone(),
            shared: app.shared.clone(),
            admin_token: app.admin_token.clone(),
            scale_sets: app.scale_sets.clone(),
        }
    }
}

impl FromRef<AppState> for ConsoleState {
    fn from_ref(app: &AppState) -> ConsoleState {
        ConsoleState {
            config: app.config.clone(),
            db: app.db.clone(),
            shared: app.shared.clone(),
            admin_token: app.admin_token.clone(),
            sessions: app.console.sessions.clone(),
            repositories: RepositoriesState::from_ref(app),
            slurm: app.slurm.clone(),
            streams: app.console.streams.clone(),
            nodes: app.console.nodes.clone(),
            stopping: app.console.stopping.clone(),
        }
    }
}
