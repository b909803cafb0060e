//! Late-binding runner tickets: issuing them and redeeming them (`POST /tickets/redeem`).
//!
//! In ticket mode a runner's Slurm job carries `--gha-runner=ticket:<43 chars>` instead of a
//! JIT config. When the job starts, root on its node sends a MUNGE credential whose payload is
//! the contract's `RedeemRequest`; only if every check passes is the JIT config minted, and it
//! goes back sealed in a MUNGE credential only root can open (`--restrict-uid=0`). The
//! database keeps the ticket's sha256, never the ticket; tickets, credentials and configs are
//! never logged nor put in an error. The wire shapes and refusal codes are `redeem-contract`'s.
//!
//! `ticket` issues and hashes; `checks` holds the pure checks and [`checks::run`], the one
//! definition of their order; `handler` gathers the facts and mints.

pub mod checks;
mod handler;
mod ticket;

use std::sync::Arc;

pub use handler::redeem;
pub use ticket::{ticket_hash, Ticket};

use crate::clients::slurm::Slurm;
use crate::config::Config;
use crate::registrations::Registrations;
use crate::scale_sets::ScaleSets;
use crate::store::Db;
use crate::telemetry::Metrics;

/// What the redemption handler needs (an `axum` sub-state: this module never names the API's
/// state).
#[derive(Clone)]
pub struct RedeemState {
    pub config: Arc<Config>,
    pub db: Db,
    pub metrics: Arc<Metrics>,
    /// Mints JIT configs for claimed tickets (REST, or the runner's scale set).
    pub registrations: Registrations,
    /// The listeners' scale sets, whose waiting jobs are demand too.
    pub scale_sets: ScaleSets,
    /// Asks where the redeeming job runs.
    pub slurm: Slurm,
}
