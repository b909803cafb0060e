//! One of our runners: its lifecycle state as stored, its row, and its phase as scaling sees
//! it.

use super::{SlurmState, UnknownState};

/// Lifecycle of a runner we create. Intent is recorded before each side effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerState {
    /// Row written, `generate-jitconfig` not yet answered.
    Minting,
    /// Registered on GitHub, `sbatch` not yet confirmed.
    Submitting,
    /// A Slurm job exists.
    Submitted,
    /// `scancel --state=PENDING` sent because demand fell.
    Cancelling,
    /// Slurm job gone; the registration may still need deleting.
    Finished,
    /// Given up (lost credential after a restart, boot deadline, ...); cleaned up.
    Abandoned,
}

impl RunnerState {
    pub const ALL: [RunnerState; 6] = [
        RunnerState::Minting,
        RunnerState::Submitting,
        RunnerState::Submitted,
        RunnerState::Cancelling,
        RunnerState::Finished,
        RunnerState::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RunnerState::Minting => "minting",
            RunnerState::Submitting => "submitting",
            RunnerState::Submitted => "submitted",
            RunnerState::Cancelling => "cancelling",
            RunnerState::Finished => "finished",
            RunnerState::Abandoned => "abandoned",
        }
    }
    /// Strict: text naming no state is an error (a database written by a newer version,
    /// or damaged), never silently a state.
    pub fn parse(s: &str) -> Result<RunnerState, UnknownState> {
        RunnerState::ALL
            .into_iter()
            .find(|state| state.as_str() == s)
            .ok_or_else(|| UnknownState::new("runner state", s))
    }
    pub fn is_final(self) -> bool {
        matches!(self, RunnerState::Finished | RunnerState::Abandoned)
    }
}

/// How a refused redemption's reason starts in the runner's `last_error`.
pub const REDEMPTION_ERROR_PREFIX: &str = "redemption: ";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunnerRow {
    pub name: String,
    pub pool: String,
    pub scope: String,
    pub state: RunnerState,
    pub for_job_id: Option<u64>,
    pub github_runner_id: Option<u64>,
    pub slurm_job_id: Option<u64>,
    pub slurm_state: Option<SlurmState>,
    pub online: bool,
    pub ever_online: bool,
    pub busy: bool,
    pub assigned_job_id: Option<u64>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub submitted_at: Option<i64>,
    pub slurm_started_at: Option<i64>,
    pub finished_at: Option<i64>,
    /// The Unix user its Slurm job runs as; `None`: the service user (`slurm.user`).
    pub run_as: Option<String>,
    /// The Slurm account from the repository mapping; `None`: the pool's.
    pub account: Option<String>,
    /// sha256 (lowercase hex) of the runner's ticket; `None`: its JIT config went inline.
    pub ticket_hash: Option<String>,
    pub ticket_expires_at: Option<i64>,
    pub ticket_redeemed_at: Option<i64>,
    /// The runner scale set it belongs to (listener intake); `None`: registered through the
    /// REST API (webhook intake).
    pub scale_set_id: Option<u64>,
    /// The GitHub job it ran (repository, workflow, run, job), once it took one.
    pub ran_job: Option<String>,
}

impl RunnerRow {
    /// The Unix user its Slurm job runs as: its mapped user, else `service_user`
    /// (`slurm.user`). `None`: the dispatcher's own user.
    pub fn job_user<'a>(&'a self, service_user: Option<&'a str>) -> Option<&'a str> {
        self.run_as.as_deref().or(service_user)
    }

    /// Where the runner is in its life, as far as scaling (and ticket redemption) cares.
    pub fn phase(&self) -> RunnerPhase {
        match self.state {
            RunnerState::Cancelling => RunnerPhase::Cancelling,
            // First: a runner can take a job before its sbatch is even recorded.
            _ if self.busy || self.assigned_job_id.is_some() => RunnerPhase::Busy,
            RunnerState::Minting | RunnerState::Submitting => RunnerPhase::InFlight,
            // Was online and is gone: it ran (or is leaving after) a job we did not hear about.
            _ if self.ever_online && !self.online => RunnerPhase::Busy,
            _ if self.slurm_state == Some(SlurmState::Pending) => RunnerPhase::SlurmPending,
            _ if self.online => RunnerPhase::Idle,
            _ => RunnerPhase::Starting,
        }
    }

    /// It holds a GitHub registration: its ticket was redeemed, or (inline) it was minted.
    pub fn has_registration(&self) -> bool {
        match self.ticket_hash {
            Some(_) => self.ticket_redeemed_at.is_some(),
            None => self.github_runner_id.is_some(),
        }
    }

    /// A ticket runner whose ticket was never redeemed: no JIT config was minted for it, so
    /// it has no GitHub registration to look up or delete.
    pub fn never_registered(&self) -> bool {
        self.ticket_hash.is_some() && self.ticket_redeemed_at.is_none()
    }

    /// A ticket runner whose job got no JIT config: its ticket was never redeemed, or it was
    /// claimed and nothing was minted for it and no refusal recorded (the dispatcher died
    /// between claim and mint; a refused redemption is counted when refused). Asked when its
    /// Slurm job ends, before its registration (if any) is removed: a minted runner still
    /// has its id then, or has been online.
    pub fn got_no_config(&self) -> bool {
        let claimed_unminted = self.ticket_hash.is_some()
            && self.ticket_redeemed_at.is_some()
            && self.github_runner_id.is_none()
            && !self.ever_online
            && !self
                .last_error
                .as_deref()
                .is_some_and(|e| e.starts_with(REDEMPTION_ERROR_PREFIX));
        self.never_registered() || claimed_unminted
    }
}

/// Where one of our runners is in its life, as far as scaling cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RunnerPhase {
    /// Being minted or submitted right now.
    InFlight,
    /// Slurm job pending: the only phase that may be cancelled.
    SlurmPending,
    /// Slurm job running, runner not (yet) seen idle online.
    Starting,
    /// Online on GitHub, no job.
    Idle,
    /// Has (or had) a job: not spare capacity, never cancelled.
    Busy,
    /// Cancellation requested; counted against `max_runners` until gone.
    Cancelling,
}

#[cfg(test)]
impl RunnerRow {
    /// A runner row for tests: pool `cpu`, scope `org:acme`, everything else unset.
    pub(crate) fn example(name: &str, state: RunnerState) -> RunnerRow {
        RunnerRow {
            name: name.into(),
            pool: "cpu".into(),
            scope: "org:acme".into(),
            state,
            for_job_id: None,
            github_runner_id: None,
            slurm_job_id: None,
            slurm_state: None,
            online: false,
            ever_online: false,
            busy: false,
            assigned_job_id: None,
            last_error: None,
            created_at: 0,
            submitted_at: None,
            slurm_started_at: None,
            finished_at: None,
            run_as: None,
            account: None,
            ticket_hash: None,
            ticket_expires_at: None,
            ticket_redeemed_at: None,
            scale_set_id: None,
            ran_job: None,
        }
    }

    /// A ticket runner whose Slurm job 42 runs, its ticket unredeemed until `expires_at`.
    pub(crate) fn running_ticket_example(name: &str, expires_at: i64) -> RunnerRow {
        RunnerRow {
            for_job_id: Some(1),
            slurm_job_id: Some(42),
            slurm_state: Some(SlurmState::Running),
            submitted_at: Some(0),
            slurm_started_at: Some(0),
            ticket_hash: Some("h".into()),
            ticket_expires_at: Some(expires_at),
            ..RunnerRow::example(name, RunnerState::Submitted)
        }
    }
}

impl RunnerPhase {
    pub const ALL: [RunnerPhase; 6] = [
        RunnerPhase::InFlight,
        RunnerPhase::SlurmPending,
        RunnerPhase::Starting,
        RunnerPhase::Idle,
        RunnerPhase::Busy,
        RunnerPhase::Cancelling,
    ];

    /// The `phase` label of the runner gauge.
    pub const fn as_str(self) -> &'static str {
        match self {
            RunnerPhase::InFlight => "in_flight",
            RunnerPhase::SlurmPending => "slurm_pending",
            RunnerPhase::Starting => "starting",
            RunnerPhase::Idle => "idle",
            RunnerPhase::Busy => "busy",
            RunnerPhase::Cancelling => "cancelling",
        }
    }

    /// Capacity for a queued job: on its way, or online without a job.
    pub fn is_spare(self) -> bool {
        matches!(
            self,
            RunnerPhase::InFlight
                | RunnerPhase::SlurmPending
                | RunnerPhase::Starting
                | RunnerPhase::Idle
        )
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_job_got_no_config_when_its_ticket_was_never_redeemed_or_never_minted() {
        let unclaimed = RunnerRow::running_ticket_example("r", 100);
        assert!(unclaimed.got_no_config(), "never redeemed");
        let claimed = RunnerRow {
            ticket_redeemed_at: Some(50),
            ..unclaimed.clone()
        };
        assert!(
            claimed.got_no_config(),
            "the dispatcher died between claim and mint"
        );
        let minted = RunnerRow {
            github_runner_id: Some(7),
            ..claimed.clone()
        };
        assert!(!minted.got_no_config());
        let online_then_forgotten = RunnerRow {
            ever_online: true,
            ..claimed.clone()
        };
        assert!(!online_then_forgotten.got_no_config());
        let refused = RunnerRow {
            last_error: Some(format!(
                "{REDEMPTION_ERROR_PREFIX}generate-jitconfig failed"
            )),
            ..claimed
        };
        assert!(!refused.got_no_config(), "counted when refused");
    }
    use super::*;

    fn row(state: RunnerState) -> RunnerRow {
        RunnerRow {
            scope: "org:a".into(),
            slurm_job_id: Some(1),
            slurm_state: Some(SlurmState::Pending),
            ..RunnerRow::example("r", state)
        }
    }

    #[test]
    fn phases() {
        assert_eq!(row(RunnerState::Minting).phase(), RunnerPhase::InFlight);
        assert_eq!(
            row(RunnerState::Submitted).phase(),
            RunnerPhase::SlurmPending
        );
        let running = RunnerRow {
            slurm_state: Some(SlurmState::Running),
            ..row(RunnerState::Submitted)
        };
        assert_eq!(running.phase(), RunnerPhase::Starting);
        let idle = RunnerRow {
            online: true,
            ever_online: true,
            ..running.clone()
        };
        assert_eq!(idle.phase(), RunnerPhase::Idle);
        let gone = RunnerRow {
            online: false,
            ..idle
        };
        assert_eq!(gone.phase(), RunnerPhase::Busy);
        // A job can reach a runner before its sbatch is recorded: busy wins over in-flight.
        let early = RunnerRow {
            assigned_job_id: Some(9),
            ..row(RunnerState::Submitting)
        };
        assert_eq!(early.phase(), RunnerPhase::Busy);
        let cancelling = RunnerRow {
            busy: true,
            ..row(RunnerState::Cancelling)
        };
        assert_eq!(cancelling.phase(), RunnerPhase::Cancelling);
    }

    #[test]
    fn unknown_states_are_errors() {
        for state in RunnerState::ALL {
            assert_eq!(RunnerState::parse(state.as_str()), Ok(state));
        }
        let err = RunnerState::parse("zombie").unwrap_err();
        assert_eq!(err.to_string(), "unknown runner state \"zombie\"");
    }
}
