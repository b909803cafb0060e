//! The `[slurm]` section: the commands, who runner jobs run as (and the repository mapping's
//! seed), and how a job gets its runner's credential.

use std::path::PathBuf;

use super::choices::{RunnerCredentials, UnmappedPolicy};
use super::issues::Issues;
use super::raw::{RawMapped, RawSlurm};
use crate::model::{check_key, RepoUser};

/// A ticket must outlive at least a short queue wait and the node's redemption.
pub const MIN_TICKET_TTL_SECS: u64 = 60;

#[derive(Debug, Clone)]
pub struct SlurmConfig {
    pub job_script: PathBuf,
    pub sbatch: PathBuf,
    pub squeue: PathBuf,
    pub scancel: PathBuf,
    /// For `scontrol show node` (the addresses of a ticket's node).
    pub scontrol: PathBuf,
    pub runner_credentials: RunnerCredentials,
    /// How long a ticket stays redeemable after its runner was created.
    pub ticket_ttl_secs: u64,
    pub user: Option<String>,
    pub group: Option<String>,
    /// The seed of the repository mapping (`owner` or `owner/repo` to user and account);
    /// at start, entries whose key is not in the database yet are added (see `usermap`).
    pub user_map: Vec<RepoUser>,
    pub unmapped: UnmappedPolicy,
    pub output: Option<String>,
    pub chdir: Option<PathBuf>,
}

/// Validates `[slurm]`.
pub(super) fn validate(raw: RawSlurm, issues: &mut Issues<'_>) -> SlurmConfig {
    let user_map = user_map(&raw, issues);
    if !raw.job_script.get_ref().is_absolute() {
        issues.at(
            "slurm.job_script",
            raw.job_script.span(),
            "must be an absolute path",
        );
    }

    if *raw.ticket_ttl_secs.get_ref() < MIN_TICKET_TTL_SECS {
        issues.at(
            "slurm.ticket_ttl_secs",
            raw.ticket_ttl_secs.span(),
            format!("must be at least {MIN_TICKET_TTL_SECS}"),
        );
    }

    SlurmConfig {
        job_script: raw.job_script.get_ref().clone(),
        sbatch: raw.sbatch,
        squeue: raw.squeue,
        scancel: raw.scancel,
        scontrol: raw.scontrol,
        runner_credentials: raw.runner_credentials,
        ticket_ttl_secs: *raw.ticket_ttl_secs.get_ref(),
        user: raw.user,
        group: raw.group,
        user_map,
        unmapped: raw.unmapped,
        output: raw.output,
        chdir: raw.chdir,
    }
}

/// `user_map` entries: valid keys, a user each, no key twice (case-insensitively).
fn user_map(raw: &RawSlurm, issues: &mut Issues<'_>) -> Vec<RepoUser> {
    let mut user_map = Vec::new();
    for (k, v) in &raw.user_map {
        let key = format!("slurm.user_map.\"{k}\"");
        if let Err(e) = check_key(k) {
            issues.at(&key, v.span(), e);
        }
        let (user, account) = match v.get_ref() {
            RawMapped::User(u) => (u.clone(), None),
            RawMapped::Full { user, account } => (user.clone(), account.clone()),
        };
        if user.is_empty() {
            issues.at(&key, v.span(), "empty user name");
        }
        if user_map
            .iter()
            .any(|e: &RepoUser| e.repo_key.eq_ignore_ascii_case(k))
        {
            issues.at(&key, v.span(), "mapped twice (names are case-insensitive)");
        }
        user_map.push(RepoUser {
            repo_key: k.clone(),
            unix_user: user,
            account,
        });
    }
    user_map
}
