//! Creating a runner: its row first (intent), then its credential, then `sbatch`.
//!
//! Inline mode mints the JIT config before sbatch (the row is `minting` until GitHub
//! answers). Ticket mode mints nothing here: the row goes straight to `submitting` with the
//! ticket's hash, and the registration is made when the node redeems the ticket.

use std::time::Instant;

use rand::Rng;

use super::Submitter;
use crate::clients::github::MintError;
use crate::clients::slurm::RunnerCredential;
use crate::config::RunnerCredentials;
use crate::model::{now_secs, Placement, RunnerState};
use crate::redeem::Ticket;
use crate::scale::NewRunner;
use crate::store;

/// A unique runner name of at most 64 characters: `<prefix>-<pool>-<16 hex>`.
pub fn runner_name(prefix: &str, pool: &str) -> String {
    let suffix: u64 = rand::rng().random();
    let mut name = format!("{prefix}-{pool}-{suffix:016x}");
    name.truncate(64);
    name
}

impl Submitter {
    pub(super) async fn create_runner(&self, runner: &NewRunner) {
        let name = runner_name(
            &self.ctx.config.github.runner_name_prefix,
            &runner.pool.name,
        );
        match self.ctx.config.slurm.runner_credentials {
            RunnerCredentials::Ticket => self.create_ticket_runner(runner, name).await,
            RunnerCredentials::Inline => self.create_inline_runner(runner, name).await,
        }
    }

    /// Inline mode: record `minting`, mint the JIT config, record the registration, then
    /// sbatch with the config itself.
    async fn create_inline_runner(&self, runner: &NewRunner, name: String) {
        let NewRunner {
            pool,
            placement,
            for_job,
            scale_set_id,
        } = runner.clone();
        let scope = placement.scope.clone();
        let (n, p, s) = (name.clone(), pool.name.clone(), scope.key());
        if let Err(e) = self
            .ctx
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                store::insert_minting_runner(&tx, &n, &p, &s, for_job)?;
                record_placement(&tx, &n, &placement, scale_set_id)?;
                tx.commit()
            })
            .await
        {
            tracing::error!(error = %e, "cannot record runner intent; not minting");
            return;
        }
        let minted = self
            .ctx
            .registrations
            .mint(&scope, &name, &pool.labels, scale_set_id)
            .await;
        let minted = match minted {
            Ok(m) => m,
            Err(MintError::NameTaken) => return self.name_taken(&name).await,
            Err(MintError::Other(e)) => {
                self.ctx.telemetry.github_error("generate_jitconfig", &e);
                // The call may have registered the runner before failing; recovery of a
                // `minting` row (next full pass) looks it up by name and removes it.
                return;
            }
        };
        let (n, id) = (name.clone(), minted.runner_id);
        if let Err(e) = self
            .ctx
            .db
            .call(move |c| store::set_runner_registered(c, &n, id))
            .await
        {
            tracing::error!(error = %e, "cannot record registration");
            return;
        }
        let credential = RunnerCredential::JitConfig(minted.encoded_jit_config);
        self.credentials()
            .insert(name.clone(), (credential, Instant::now()));
        tracing::info!(runner = %name, pool = %pool.name, scope = %scope.key(), job = ?for_job, scale_set = ?scale_set_id, "runner registered");
        self.submit(&name).await;
    }

    /// generate-jitconfig answered 409. Only possible if the name was registered before:
    /// look it up and remove it.
    async fn name_taken(&self, name: &str) {
        tracing::warn!(runner = %name, "runner name already registered; removing it");
        let row = self.ctx.db.runner(name).await.ok().flatten();
        if let Some(row) = row {
            if self.ctx.registrations.delete(&row, "name_conflict").await {
                self.ctx
                    .db
                    .set_runner_state_logged(
                        name,
                        RunnerState::Abandoned,
                        Some("name already registered".into()),
                    )
                    .await;
            }
        }
    }

    /// Ticket mode: no JIT config before the job starts. The row goes straight to
    /// `submitting` with the ticket's hash; the ticket itself lives only in memory (for sbatch
    /// retries) and on the sbatch command line. A crash before sbatch loses it, and crash
    /// recovery abandons the row (nothing registered, nothing to delete).
    async fn create_ticket_runner(&self, runner: &NewRunner, name: String) {
        let ticket = Ticket::issue();
        let expires_at = now_secs().saturating_add(
            i64::try_from(self.ctx.config.slurm.ticket_ttl_secs).unwrap_or(i64::MAX),
        );
        let NewRunner {
            pool,
            placement,
            for_job,
            scale_set_id,
        } = runner.clone();
        let (n, p, s) = (name.clone(), pool.name.clone(), placement.scope.key());
        let hash = ticket.hash().to_string();
        let to_record = placement.clone();
        if let Err(e) = self
            .ctx
            .db
            .call(move |c| {
                let tx = c.transaction()?;
                store::insert_ticket_runner(&tx, &n, &p, &s, for_job, &hash, expires_at)?;
                record_placement(&tx, &n, &to_record, scale_set_id)?;
                tx.commit()
            })
            .await
        {
            tracing::error!(error = %e, "cannot record runner intent; not submitting");
            return;
        }
        let credential = RunnerCredential::Ticket(ticket.into_secret());
        self.credentials()
            .insert(name.clone(), (credential, Instant::now()));
        tracing::info!(runner = %name, pool = %pool.name, scope = %placement.scope.key(), job = ?for_job, scale_set = ?scale_set_id, "ticket runner created");
        self.submit(&name).await;
    }
}

/// Who a new runner's row runs as, and its scale set: written in its creation's transaction.
fn record_placement(
    tx: &rusqlite::Connection,
    name: &str,
    placement: &Placement,
    scale_set_id: Option<u64>,
) -> rusqlite::Result<()> {
    store::set_runner_identity(
        tx,
        name,
        placement.user.as_deref(),
        placement.account.as_deref(),
    )?;
    match scale_set_id {
        Some(id) => store::set_runner_scale_set(tx, name, id),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn runner_names_are_unique_and_short() {
        let long_prefix = "p".repeat(20);
        let long_pool = "q".repeat(20);
        let names: HashSet<String> = (0..1000)
            .map(|_| runner_name(&long_prefix, &long_pool))
            .collect();
        assert_eq!(names.len(), 1000);
        assert!(names.iter().all(|n| n.len() <= 64));
    }
}
