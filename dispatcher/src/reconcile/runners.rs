//! Runners from GitHub: the online/busy state of ours in every scope they may be registered
//! in. Only a complete listing lets later steps conclude that a registration is gone.

use std::collections::HashMap;

use super::Reconciler;
use crate::model::Scope;
use crate::registrations::Listed;
use crate::store;

impl Reconciler {
    /// The configured scopes, plus those of our runners registered on one repository of an
    /// organization target (see `scale::placement`: repositories with a user of their own), live or
    /// final with a registration: hygiene concludes "gone" from a listing, so it must cover them.
    /// `None` when the database could not say.
    async fn scopes(&self) -> Option<Vec<Scope>> {
        let mut scopes: Vec<Scope> = self
            .ctx
            .config
            .github
            .targets
            .iter()
            .map(|t| t.scope.clone())
            .collect();
        let ours = self
            .ctx
            .db
            .call(|c| {
                let mut rows = store::live_runners(c)?;
                rows.extend(store::final_runners_with_registration(c)?);
                Ok(rows)
            })
            .await;
        match ours {
            Ok(rows) => scopes.extend(rows.iter().filter_map(|r| Scope::from_key(&r.scope))),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read runner scopes");
                return None;
            }
        }
        scopes.sort();
        scopes.dedup();
        Some(scopes)
    }

    /// Online/busy state of our runners. `None` when any scope could not be listed.
    pub(super) async fn sync_runners_from_github(&self) -> Option<Listed> {
        let prefix = self.prefix();
        let mut all = HashMap::new();
        let scopes = self.scopes().await;
        let mut complete = scopes.is_some();
        for scope in scopes.unwrap_or_default() {
            match self.ctx.github.list_runners(&scope).await {
                Ok(list) => {
                    for r in list.into_iter().filter(|r| r.name.starts_with(&prefix)) {
                        all.insert(r.name.clone(), (scope.clone(), r));
                    }
                }
                Err(e) => {
                    self.ctx.telemetry.github_error("list_runners", &e);
                    complete = false;
                }
            }
        }
        let observed: Vec<(String, u64, bool, bool)> = all
            .values()
            .map(|(_, r)| (r.name.clone(), r.id, r.is_online(), r.busy))
            .collect();
        let result = self
            .ctx
            .db
            .call(move |c| store::set_runners_github(c, &observed))
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "cannot record runner states");
        }
        if complete {
            // Runners we know of that GitHub no longer lists are offline (an ephemeral
            // runner removes itself after its job).
            let names: Vec<String> = all.keys().cloned().collect();
            self.ctx
                .db
                .record("runner state", move |c| {
                    store::mark_unlisted_offline(c, &names.into_iter().collect())
                })
                .await;
            Some(all)
        } else {
            None
        }
    }
}
