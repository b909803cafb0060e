//! Removing our runners' GitHub registrations, for every stage that gives a runner up
//! (reconcile, hygiene, submission): one place decides when a call is needed at all.
//!
//! A ticket runner whose ticket was never redeemed has no registration (nothing was minted),
//! so no call is made; a runner missing from a complete listing is gone, so none either.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clients::github::{DeleteOutcome, GhRunner, GithubClient};
use crate::model::{RunnerRow, Scope};
use crate::store::{self, Db};
use crate::telemetry::Telemetry;

/// Our runners as GitHub listed them in this pass, by name.
pub type Listed = HashMap<String, (Scope, GhRunner)>;

#[derive(Clone)]
pub struct Registrations {
    db: Db,
    github: Arc<GithubClient>,
    telemetry: Telemetry,
}

impl Registrations {
    pub fn new(db: Db, github: Arc<GithubClient>, telemetry: Telemetry) -> Registrations {
        Registrations {
            db,
            github,
            telemetry,
        }
    }

    /// Delete `row`'s registration (looked up by name when its id is unknown). True when it
    /// is gone; false when it is kept (busy) or GitHub could not be asked.
    pub async fn delete(&self, row: &RunnerRow, reason: &str) -> bool {
        if row.never_registered() && self.still_never_registered(&row.name).await {
            // Nothing was minted for it: no call, and nothing to forget.
            return true;
        }
        let Some(scope) = Scope::from_key(&row.scope) else {
            return false;
        };
        let id = match row.github_runner_id {
            Some(id) => Some(id),
            None => match self.github.find_runner(&scope, &row.name).await {
                Ok(found) => found.map(|r| r.id),
                Err(e) => {
                    self.telemetry.github_error("find_runner", &e);
                    return false;
                }
            },
        };
        let Some(id) = id else {
            self.forget(&row.name).await;
            return true;
        };
        match self.github.delete_runner(&scope, id).await {
            Ok(DeleteOutcome::Deleted) | Ok(DeleteOutcome::AlreadyGone) => {
                self.telemetry.metrics.reaped(reason);
                tracing::info!(runner = %row.name, reason, "runner registration removed");
                self.forget(&row.name).await;
                true
            }
            Ok(DeleteOutcome::Busy) => {
                tracing::info!(runner = %row.name, "runner is running a job; registration kept");
                false
            }
            Err(e) => {
                self.telemetry.github_error("delete_runner", &e);
                false
            }
        }
    }

    /// Remove a registration, without a call when this pass's complete listing shows it gone.
    pub async fn remove(&self, row: &RunnerRow, reason: &str, listed: Option<&Listed>) -> bool {
        if listed.is_some_and(|l| !l.contains_key(&row.name)) {
            self.forget(&row.name).await;
            return true;
        }
        self.delete(row, reason).await
    }

    /// The registration is gone: the row no longer names one.
    pub async fn forget(&self, name: &str) {
        let name = name.to_string();
        self.db
            .record("registration gone", move |c| {
                store::clear_registration(c, &name)
            })
            .await;
    }

    /// Whether `name`'s ticket is still unredeemed now (the row given may predate a
    /// redemption that raced with this pass). A database error answers no: then GitHub is asked.
    async fn still_never_registered(&self, name: &str) -> bool {
        matches!(
            self.db.runner(name).await,
            Ok(Some(row)) if row.never_registered()
        )
    }
}
