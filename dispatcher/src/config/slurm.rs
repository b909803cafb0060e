//! The `[slurm]` section: the commands, who runner jobs run as (and the repository mapping's
//! seed), and how a job gets its runner's credential.

use std::path::PathBuf;

use super::choices::{RunnerCredentials, UnmappedPolicy};
use super::issues::Issues;
use super::raw::{RawMapped, RawSlurm};
use super::runner_users as users;
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
    /// The lowest uid a runner job may run as (root and system accounts are below).
    pub min_uid: u32,
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
    let min_uid = runner_users(&raw, &user_map, issues);
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
        user: raw.user.map(|u| u.into_inner()),
        group: raw.group,
        min_uid,
        user_map,
        unmapped: raw.unmapped,
        output: raw.output,
        chdir: raw.chdir,
    }
}

/// `slurm.min_uid` (by default `UID_MIN` of `/etc/login.defs`); the service user and every
/// mapped user must be at or above it, and there must be a service user if unmapped
/// repositories use it (else runner jobs would run as the dispatcher's user, root).
fn runner_users(raw: &RawSlurm, user_map: &[RepoUser], issues: &mut Issues<'_>) -> u32 {
    let min_uid = raw
        .min_uid
        .as_ref()
        .map(|m| *m.get_ref())
        .unwrap_or_else(users::default_min_uid);
    if let Some(m) = raw.min_uid.as_ref().filter(|m| *m.get_ref() == 0) {
        issues.at("slurm.min_uid", m.span(), "must be above 0 (root)");
    }
    match &raw.user {
        Some(user) => {
            if let Some(why) = users::refuse_runner_user(user.get_ref(), min_uid) {
                issues.at("slurm.user", user.span(), why);
            }
        }
        None if raw.unmapped == UnmappedPolicy::ServiceUser => issues.at(
            "slurm.user",
            0..0,
            "not set, and unmapped = \"service-user\": runner jobs would run as the dispatcher's own user (root)",
        ),
        None => {}
    }
    for (entry, (key, value)) in user_map.iter().zip(&raw.user_map) {
        if let Some(why) = users::refuse_runner_user(&entry.unix_user, min_uid) {
            issues.at(format!("slurm.user_map.\"{key}\""), value.span(), why);
        }
    }
    min_uid
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
