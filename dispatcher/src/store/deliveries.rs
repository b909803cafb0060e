//! The `deliveries` table: which `X-GitHub-Delivery` ids and which bodies (their sha256)
//! were recorded, so a redelivery changes nothing, nor does a captured delivery replayed
//! under a new id (for as long as deliveries are kept: see `prune`).

use rusqlite::{params, Connection};

use super::jobs::{apply_job_update, JobTransition};
use crate::model::{now_secs, JobUpdate};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOutcome {
    New,
    Duplicate,
}

/// One `X-GitHub-Delivery` to record, with the job update it carries.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub delivery_id: String,
    pub event: String,
    pub action: Option<String>,
    pub update: Option<JobUpdate>,
    /// The sha256 (hex) of the signed body.
    pub body_sha256: Option<String>,
}

/// Record a delivery (with no body digest) and the job update it carries in one
/// transaction. A delivery id seen before changes nothing.
pub fn record_delivery(
    conn: &mut Connection,
    delivery_id: &str,
    event: &str,
    action: Option<&str>,
    update: Option<&JobUpdate>,
) -> rusqlite::Result<(DeliveryOutcome, JobTransition)> {
    let tx = conn.transaction()?;
    let outcome = record_delivery_in(&tx, delivery_id, event, action, update, None)?;
    tx.commit()?;
    Ok(outcome)
}

/// [`record_delivery`] inside the caller's transaction (webhook intake batches them:
/// the store's group commit). A body digest seen before, under any id, changes nothing.
pub fn record_delivery_in(
    tx: &Connection,
    delivery_id: &str,
    event: &str,
    action: Option<&str>,
    update: Option<&JobUpdate>,
    body_sha256: Option<&str>,
) -> rusqlite::Result<(DeliveryOutcome, JobTransition)> {
    let inserted = tx.execute(
        "INSERT OR IGNORE INTO deliveries (delivery_id, event, action, job_id, received_at, body_sha256) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![delivery_id, event, action, update.map(|u| u.job_id as i64), now_secs(), body_sha256],
    )?;
    if inserted == 0 {
        return Ok((DeliveryOutcome::Duplicate, JobTransition::default()));
    }
    let transition = match update {
        Some(u) => apply_job_update(tx, u)?,
        None => JobTransition::default(),
    };
    Ok((DeliveryOutcome::New, transition))
}
