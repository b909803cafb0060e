//! The ticket-redemption wire contract, defined once for its three parties:
//! - the plugin (`spank-gha`), which accepts `--gha-runner=ticket:<ticket>` and judges the
//!   exit status of the helper it runs;
//! - `gha-redeem`, the helper that sends the request from the node and reads the answer;
//! - `gha-dispatcher`, which issues tickets and serves [`REDEEM_PATH`].
//!
//! The exchange: the node POSTs a MUNGE credential whose payload is a [`RedeemRequest`] to
//! `<dispatcher_url>`[`REDEEM_PATH`]; the dispatcher answers 200 with the JIT config sealed in a
//! MUNGE credential for root, or with a [`RefusalBody`] and the status of its [`RefusalCode`].
//! The sealed payload is a [`SealedAnswer`]: the config bound to the job id and the ticket's
//! sha256, and the node accepts it only from a credential made by the dispatcher's uid
//! (root by default), so a process that answers in the dispatcher's place (its port taken
//! while it restarts) or replays another job's answer is refused.
//! `gha-redeem` exits with a [`HelperExit`] code.
//!
//! The same helper also tells the dispatcher that a runner job ended (`gha-redeem --job-ended`,
//! run by the plugin's epilog as root): a MUNGE credential whose payload is a
//! [`JobEndedNotice`], POSTed to [`JOB_ENDED_PATH`]. The dispatcher takes it only from root and
//! for a job id it submitted; MUNGE refuses a replayed credential, and the job id is inside the
//! signed payload. The answer is a status only (204, or a [`RefusalBody`]); the epilog never
//! waits long for it, and never fails because of it.
//!
//! Without the `json` feature this crate has no dependencies, so the plugin links nothing new.

#[cfg(feature = "json")]
mod json;
#[cfg(feature = "json")]
pub use json::{ticket_sha256, JobEndedNotice, RedeemRequest, RefusalBody, SealedAnswer};

/// Where the dispatcher serves redemptions (appended to the plugin's `dispatcher_url`).
pub const REDEEM_PATH: &str = "/tickets/redeem";

/// Where the dispatcher takes end notices (appended to the plugin's `dispatcher_url`).
pub const JOB_ENDED_PATH: &str = "/runners/job-ended";

/// Prefix of a late-binding `--gha-runner` value: `ticket:<ticket>`.
pub const TICKET_PREFIX: &str = "ticket:";

/// Longest ticket any party accepts.
pub const MAX_TICKET: usize = 1024;

/// Length of the tickets the dispatcher issues: 32 random bytes, base64url without padding.
pub const ISSUED_TICKET_LEN: usize = 43;

/// The characters a ticket may hold, as shown in error messages.
pub const TICKET_CHARSET: &str = "A-Z a-z 0-9 . _ ~ + / = : -";

/// The environment variable through which the plugin hands the ticket to `gha-redeem` (never
/// argv: `/proc/PID/cmdline` is world-readable).
pub const TICKET_ENV: &str = "GHA_TICKET";

/// `gha-redeem`'s command line, as the plugin writes it and the helper reads it:
/// `gha-redeem --url <dispatcher_url> --job-id <id> --munge-socket <path> --timeout <secs>
/// --dispatcher-uid <uid>`.
pub mod helper_flag {
    /// The dispatcher's base URL (the plugin's `dispatcher_url`).
    pub const URL: &str = "--url";
    /// The Slurm job the ticket was issued for.
    pub const JOB_ID: &str = "--job-id";
    /// The local munged's socket.
    pub const MUNGE_SOCKET: &str = "--munge-socket";
    /// The helper's own bound, in whole seconds.
    pub const TIMEOUT: &str = "--timeout";
    /// The uid whose MUNGE credentials alone are accepted as the dispatcher's answer (the
    /// plugin's `dispatcher_uid`; 0 when not given).
    pub const DISPATCHER_UID: &str = "--dispatcher-uid";
    /// The end-notice mode (no value, first): `gha-redeem --job-ended --url <dispatcher_url>
    /// --job-id <id> --munge-socket <path> --timeout <secs>`; no ticket.
    pub const JOB_ENDED: &str = "--job-ended";
}

/// Largest redemption request body (a MUNGE credential around a ~100-byte payload is ~300
/// characters).
pub const MAX_REQUEST_BYTES: usize = 8 * 1024;

/// Largest answer the node reads: a credential around a JIT config of at most 64 KiB, base64'd
/// once more by MUNGE.
pub const MAX_ANSWER_BYTES: u64 = 256 * 1024;

/// Is `c` allowed in a ticket? (It also makes a ticket safe inside a JSON string as it is.)
pub fn is_ticket_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._~+/=:-".contains(c)
}

/// Is `ticket` (the part after [`TICKET_PREFIX`]) well formed: 1 to [`MAX_TICKET`] characters
/// for which [`is_ticket_char`] holds?
pub fn is_valid_ticket(ticket: &str) -> bool {
    !ticket.is_empty() && ticket.len() <= MAX_TICKET && ticket.chars().all(is_ticket_char)
}

/// How `gha-redeem` ends; the plugin reads its status this way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelperExit {
    /// The JIT config was printed on stdout.
    Redeemed,
    /// The dispatcher refused the ticket (its answer was not 200); stderr says why.
    Refused,
    /// Anything else: bad arguments, MUNGE, the dispatcher unreachable or its answer unusable.
    Failed,
}

impl HelperExit {
    /// The process exit status.
    pub const fn code(self) -> u8 {
        match self {
            HelperExit::Redeemed => 0,
            HelperExit::Refused => 2,
            HelperExit::Failed => 3,
        }
    }

    /// The outcome an exit status stands for (`None` for a status outside the contract).
    pub fn from_code(code: i32) -> Option<HelperExit> {
        [
            HelperExit::Redeemed,
            HelperExit::Refused,
            HelperExit::Failed,
        ]
        .into_iter()
        .find(|exit| i32::from(exit.code()) == code)
    }
}

/// Why the dispatcher refused a redemption: the `error` of the JSON answer, its HTTP status,
/// and the `result` label of the dispatcher's redemption metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RefusalCode {
    TooLarge,
    BadCredential,
    NotRoot,
    BadPayload,
    UnknownTicket,
    TicketUsed,
    TicketExpired,
    WrongJob,
    JobNotRunning,
    WrongHost,
    NotNeeded,
    GithubUnavailable,
    /// munge/unmunge cannot be run: nothing was decided about the caller.
    MungeUnavailable,
    /// squeue/scontrol failed: the job could not be checked.
    SlurmUnavailable,
    DatabaseUnavailable,
    /// Too many requests at once on the route: nothing was decided.
    Busy,
}

impl RefusalCode {
    /// Every code, in the order the dispatcher checks them.
    pub const ALL: [RefusalCode; 16] = [
        RefusalCode::TooLarge,
        RefusalCode::BadCredential,
        RefusalCode::NotRoot,
        RefusalCode::BadPayload,
        RefusalCode::UnknownTicket,
        RefusalCode::TicketUsed,
        RefusalCode::TicketExpired,
        RefusalCode::WrongJob,
        RefusalCode::JobNotRunning,
        RefusalCode::WrongHost,
        RefusalCode::NotNeeded,
        RefusalCode::GithubUnavailable,
        RefusalCode::MungeUnavailable,
        RefusalCode::SlurmUnavailable,
        RefusalCode::DatabaseUnavailable,
        RefusalCode::Busy,
    ];

    /// The `error` field of the answer.
    pub const fn as_str(self) -> &'static str {
        match self {
            RefusalCode::TooLarge => "too_large",
            RefusalCode::BadCredential => "bad_credential",
            RefusalCode::NotRoot => "not_root",
            RefusalCode::BadPayload => "bad_payload",
            RefusalCode::UnknownTicket => "unknown_ticket",
            RefusalCode::TicketUsed => "ticket_used",
            RefusalCode::TicketExpired => "ticket_expired",
            RefusalCode::WrongJob => "wrong_job",
            RefusalCode::JobNotRunning => "job_not_running",
            RefusalCode::WrongHost => "wrong_host",
            RefusalCode::NotNeeded => "not_needed",
            RefusalCode::GithubUnavailable => "github_unavailable",
            RefusalCode::MungeUnavailable => "munge_unavailable",
            RefusalCode::SlurmUnavailable => "slurm_unavailable",
            RefusalCode::DatabaseUnavailable => "database_unavailable",
            RefusalCode::Busy => "busy",
        }
    }

    /// The code named by an answer's `error` field.
    pub fn parse(text: &str) -> Option<RefusalCode> {
        RefusalCode::ALL.into_iter().find(|c| c.as_str() == text)
    }

    /// The HTTP status the dispatcher answers with.
    pub const fn http_status(self) -> u16 {
        match self {
            RefusalCode::TooLarge => 413,
            RefusalCode::BadCredential
            | RefusalCode::NotRoot
            | RefusalCode::WrongJob
            | RefusalCode::WrongHost => 403,
            RefusalCode::BadPayload => 400,
            RefusalCode::UnknownTicket => 404,
            RefusalCode::TicketUsed | RefusalCode::JobNotRunning => 409,
            RefusalCode::TicketExpired | RefusalCode::NotNeeded => 410,
            RefusalCode::GithubUnavailable
            | RefusalCode::MungeUnavailable
            | RefusalCode::SlurmUnavailable
            | RefusalCode::DatabaseUnavailable
            | RefusalCode::Busy => 503,
        }
    }

    /// May the node simply ask again? True when nothing was decided about the ticket and it
    /// was not spent: the route was busy, or MUNGE, Slurm or the database could not be asked.
    /// Not after `github_unavailable`: the ticket was spent before GitHub failed.
    pub const fn is_transient(self) -> bool {
        matches!(
            self,
            RefusalCode::Busy
                | RefusalCode::MungeUnavailable
                | RefusalCode::SlurmUnavailable
                | RefusalCode::DatabaseUnavailable
        )
    }
}

impl std::fmt::Display for RefusalCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticket_syntax() {
        assert!(is_valid_ticket("AbC-123_x~y.z+/=:"));
        assert!(is_valid_ticket(&"a".repeat(MAX_TICKET)));
        for bad in ["", "has space", "quote\"", "new\nline", "semi;colon"] {
            assert!(!is_valid_ticket(bad), "{bad:?}");
        }
        assert!(!is_valid_ticket(&"a".repeat(MAX_TICKET + 1)));
    }

    #[test]
    fn exit_codes_round_trip() {
        for exit in [
            HelperExit::Redeemed,
            HelperExit::Refused,
            HelperExit::Failed,
        ] {
            assert_eq!(HelperExit::from_code(exit.code().into()), Some(exit));
        }
        assert_eq!(HelperExit::from_code(1), None);
        assert_eq!(HelperExit::Refused.code(), 2);
        assert_eq!(HelperExit::Failed.code(), 3);
    }

    #[test]
    fn refusal_codes_are_distinct_and_parse_back() {
        let mut names: Vec<_> = RefusalCode::ALL.iter().map(|c| c.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), RefusalCode::ALL.len());
        for code in RefusalCode::ALL {
            assert_eq!(RefusalCode::parse(code.as_str()), Some(code));
            assert!((400..600).contains(&code.http_status()), "{code}");
        }
        assert_eq!(RefusalCode::parse("nonsense"), None);
        assert!(RefusalCode::Busy.is_transient());
        assert!(!RefusalCode::GithubUnavailable.is_transient());
        assert!(!RefusalCode::TicketUsed.is_transient());
    }
}
