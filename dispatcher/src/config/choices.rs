//! The settings that are one of a few words (serde reads them directly, kebab-case), shared
//! by the file's shape and the validated config.

use serde::Deserialize;

/// What jobs of a repository with no `user_map`/API entry do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UnmappedPolicy {
    /// Run as `slurm.user` (the service user).
    #[default]
    ServiceUser,
    /// Give them no runner; counted in `jobs_refused_total{reason="unmapped"}` and `/status`.
    Refuse,
}

/// How a runner's job gets its JIT config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunnerCredentials {
    /// `--gha-runner=ticket:<opaque>`: the node redeems the ticket when the job starts
    /// (`POST /tickets/redeem`), and only then is the JIT config minted.
    #[default]
    Ticket,
    /// `--gha-runner=<JIT config>`, minted before `sbatch` (kept in slurmctld's state).
    Inline,
}

/// How a target's queued jobs reach the dispatcher.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Intake {
    /// GitHub posts `workflow_job` webhooks to `POST /webhook` (GitHub must reach us), and
    /// reconcile polls the target's repositories for what a webhook missed.
    #[default]
    Webhook,
    /// A runner scale set per pool, whose message session the dispatcher long-polls over
    /// outbound HTTPS (`intake::listener`): nothing needs to reach us.
    Listener,
}
