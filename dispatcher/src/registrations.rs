//! Our runners' GitHub registrations: minting one (REST `generate-jitconfig`, or the scale
//! set's `generatejitconfig` for a listener's runner), and removing one for every stage that
//! gives a runner up (reconcile, hygiene, submission): one place decides which API and
//! whether a call is needed at all.
//!
//! A ticket runner whose ticket was never redeemed has no registration (nothing was minted),
//! so no call is made; a runner missing from a complete listing is gone, so none either.

use std::collections::HashMap;
use std::sync::Arc;

use crate::clients::github::{
    DeleteOutcome, GhRunner, GithubClient, GithubError, MintError, MintedRunner,
};
use crate::model::{RunnerRow, Scope};
use crate::scale_sets::ScaleSets;
use crate::store::{self, Db};
use crate::telemetry::Telemetry;

/// Our runners as GitHub listed them in this pass, by name.
pub type Listed = HashMap<String, (Scope, GhRunner)>;

#[derive(Clone)]
pub struct Registrations {
    db: Db,
    github: Arc<GithubClient>,
    telemetry: Telemetry,
    scale_sets: ScaleSets,
    /// Where REST-registered runners go (`github.runner_group_id`).
    runner_group_id: u64,
}

impl Registrations {
    pub fn new(
        db: Db,
        github: Arc<GithubClient>,
        telemetry: Telemetry,
        scale_sets: ScaleSets,
        runner_group_id: u64,
    ) -> Registrations {
        Registrations {
            db,
            github,
            telemetry,
            scale_sets,
            runner_group_id,
        }
    }

    /// Register runner `name` and get its JIT config: in scale set `scale_set_id` when given
    /// (its labels are the set's), else through REST in `scope` with `labels`.
    pub async fn mint(
        &self,
        scope: &Scope,
        name: &str,
        labels: &[String],
        scale_set_id: Option<u64>,
    ) -> Result<MintedRunner, MintError> {
        let Some(set) = scale_set_id else {
            return self
                .github
                .generate_jitconfig(scope, name, labels, self.runner_group_id)
                .await;
        };
        match self.scale_sets.client(&scope.key()) {
            Some(actions) => actions.generate_jit_config(set, name).await,
            None => Err(MintError::Other(
                format!("{} is no longer a listener target", scope.key()).into(),
            )),
        }
    }

    /// The registration id of `row`'s runner, looked up by name when not recorded.
    async fn runner_id(&self, row: &RunnerRow, scope: &Scope) -> Result<Option<u64>, String> {
        if let Some(id) = row.github_runner_id {
            return Ok(Some(id));
        }
        match (row.scale_set_id, self.scale_sets.client(&row.scope)) {
            (Some(_), Some(actions)) => actions
                .find_runner(&row.name)
                .await
                .map_err(|e| e.to_string()),
            _ => self
                .github
                .find_runner(scope, &row.name)
                .await
                .map(|found| found.map(|r| r.id))
                .map_err(|e| e.to_string()),
        }
    }

    /// Remove registration `id`: through the scale set's service for a listener's runner.
    async fn unregister(
        &self,
        row: &RunnerRow,
        scope: &Scope,
        id: u64,
    ) -> Result<DeleteOutcome, String> {
        match (row.scale_set_id, self.scale_sets.client(&row.scope)) {
            (Some(_), Some(actions)) => actions.remove_runner(id).await.map_err(|e| e.to_string()),
            _ => self
                .github
                .delete_runner(scope, id)
                .await
                .map_err(|e: GithubError| e.to_string()),
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
        let id = match self.runner_id(row, &scope).await {
            Ok(id) => id,
            Err(e) => {
                self.telemetry.github_error("find_runner", &e);
                return false;
            }
        };
        let Some(id) = id else {
            self.forget(&row.name).await;
            return true;
        };
        match self.unregister(row, &scope, id).await {
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
