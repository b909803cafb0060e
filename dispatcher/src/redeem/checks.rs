//! The redemption checks, pure functions over the facts they judge, and [`run`]: THE order
//! in which they are made (the contract's order of refusals). The handler runs `run` over
//! facts it gathers from MUNGE, the database and Slurm; the tests run the same `run` over
//! facts given up front, so the order is defined once and tested where it is defined.

use std::future::Future;
use std::net::IpAddr;

use redeem_contract::{RedeemRequest, RefusalCode};

use crate::clients::munge::Decoded;
use crate::clients::slurm::JobPlacement;
use crate::model::{RunnerRow, RunnerState};
use crate::scale::demand::RunnerDemand;

/// The check that a runner is still wanted, run where its facts are consistent (under the
/// database lock, with the single-use mark).
pub type NeededCheck = fn(&RunnerRow, RunnerDemand) -> Result<(), Refusal>;

/// Where a redemption's facts come from, each asked for only once the checks before it
/// passed. A fact that cannot be had is itself a refusal (e.g. `slurm_unavailable`).
pub trait Facts {
    /// The decoded MUNGE credential of the request.
    fn credential(&mut self) -> impl Future<Output = Result<Decoded, Refusal>> + Send;
    /// The runner row holding the request's ticket.
    fn ticket_holder(
        &mut self,
        req: &RedeemRequest,
    ) -> impl Future<Output = Result<Option<RunnerRow>, Refusal>> + Send;
    /// Slurm's view of the request's job.
    fn slurm_job(
        &mut self,
        req: &RedeemRequest,
    ) -> impl Future<Output = Result<Option<JobPlacement>, Refusal>> + Send;
    /// The uid the runner's job must run as (its mapped user, else the service user);
    /// `None` when that user cannot be looked up.
    fn runner_uid(&mut self, row: &RunnerRow) -> Option<u32>;
    /// The addresses of the node running the job.
    fn node_addresses(
        &mut self,
        node: &str,
    ) -> impl Future<Output = Result<Vec<IpAddr>, Refusal>> + Send;
    /// Atomically: the row as it is now (still unredeemed), the demand for it, `needed`,
    /// and the ticket marked used. The claimed row.
    fn claim(
        &mut self,
        row: &RunnerRow,
        needed: NeededCheck,
    ) -> impl Future<Output = Result<RunnerRow, Refusal>> + Send;
}

/// Every check, in the contract's order, stopping at the first refusal: the credential
/// (root, well-formed payload), the ticket (known, unused, unexpired, and not for another
/// job), the job (the one the dispatcher's own sbatch returned, the runner's user's,
/// running, on one node), the host (the credential comes from that node), the need (the
/// runner is still wanted). The claimed runner row when all pass.
pub async fn run(facts: &mut impl Facts, now: i64) -> Result<RunnerRow, Refusal> {
    let decoded = facts.credential().await?;
    let req = check_credential(&decoded)?;
    let holder = facts.ticket_holder(&req).await?;
    let row = check_ticket(holder, &req, now)?;
    let job = facts.slurm_job(&req).await?;
    let uid = facts.runner_uid(&row);
    check_recorded_job(&row, &req, job.as_ref(), uid)?;
    let node = check_job(&req, job.as_ref(), uid)?;
    let node_ips = facts.node_addresses(node).await?;
    check_host(decoded.encode_host, node, &node_ips)?;
    facts.claim(&row, check_needed).await
}

/// A refused redemption: its code and a message for the node's job output (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
    /// The refused job is one of ours that no runner's end will count as unredeemed: the
    /// refusal counts it (see [`check_recorded_job`]).
    pub counts_unredeemed: bool,
}

pub(super) fn refuse(code: RefusalCode, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
        counts_unredeemed: false,
    }
}

/// Only root on a node may redeem, and only a well-formed request.
pub fn check_credential(decoded: &Decoded) -> Result<RedeemRequest, Refusal> {
    if decoded.uid != 0 {
        return Err(refuse(
            RefusalCode::NotRoot,
            format!(
                "the MUNGE credential was made by uid {}, not root",
                decoded.uid
            ),
        ));
    }
    RedeemRequest::parse(&decoded.payload).ok_or_else(|| {
        refuse(
            RefusalCode::BadPayload,
            "the credential's payload is not {\"ticket\": <ticket>, \"job_id\": u32}",
        )
    })
}

/// The runner row the ticket belongs to: known, unused, unexpired, and for this Slurm job:
/// the one the dispatcher's sbatch returned (a job anyone named like the runner is not).
pub fn check_ticket(
    row: Option<RunnerRow>,
    req: &RedeemRequest,
    now: i64,
) -> Result<RunnerRow, Refusal> {
    let Some(row) = row else {
        return Err(refuse(
            RefusalCode::UnknownTicket,
            "no runner holds this ticket",
        ));
    };
    if row.ticket_redeemed_at.is_some() {
        return Err(refuse(
            RefusalCode::TicketUsed,
            format!("the ticket of runner {} was already redeemed", row.name),
        ));
    }
    if row.ticket_expires_at.is_none_or(|at| now >= at) {
        return Err(refuse(
            RefusalCode::TicketExpired,
            format!("the ticket of runner {} has expired", row.name),
        ));
    }
    match row.slurm_job_id {
        Some(id) if id != u64::from(req.job_id) => Err(refuse(
            RefusalCode::WrongJob,
            format!("the ticket belongs to Slurm job {id}, not {}", req.job_id),
        )),
        // No job recorded: refused by `check_recorded_job`, once Slurm said whose job it is.
        _ => Ok(row),
    }
}

/// The ticket is good only for the job the dispatcher's own sbatch returned: a runner with
/// none recorded redeems for no job (one merely named like it, as its user, may be anyone's
/// copy of the ticket). When the job is named like the runner and runs as its user, and the
/// runner is over, the job is most likely the runner's own whose sbatch answer a crash lost
/// after recovery had given the row up: no runner's end will count it, so the refusal does.
/// (A live row's job is adopted by name by crash recovery, and counted when it ends.)
pub fn check_recorded_job(
    row: &RunnerRow,
    req: &RedeemRequest,
    job: Option<&JobPlacement>,
    runner_uid: Option<u32>,
) -> Result<(), Refusal> {
    if row.slurm_job_id.is_some() {
        return Ok(());
    }
    let named_like_it = job.is_some_and(|j| j.name == row.name && Some(j.user_id) == runner_uid);
    Err(Refusal {
        counts_unredeemed: named_like_it && row.state.is_final(),
        ..refuse(
            RefusalCode::WrongJob,
            format!(
                "no Slurm job is recorded for runner {}, so not {}",
                row.name, req.job_id
            ),
        )
    })
}

/// The job must run as the runner's user (`runner_uid`) and be running now; the node running
/// its batch script is returned.
pub fn check_job<'a>(
    req: &RedeemRequest,
    job: Option<&'a JobPlacement>,
    runner_uid: Option<u32>,
) -> Result<&'a str, Refusal> {
    let not_running = |state: &dyn std::fmt::Display| {
        refuse(
            RefusalCode::JobNotRunning,
            format!("Slurm job {} is {state}, not running", req.job_id),
        )
    };
    let Some(job) = job else {
        return Err(not_running(&"unknown to Slurm"));
    };
    if runner_uid != Some(job.user_id) {
        return Err(refuse(
            RefusalCode::WrongJob,
            format!(
                "Slurm job {} runs as uid {}, not as the runner's user",
                req.job_id, job.user_id
            ),
        ));
    }
    if !job.is_running() {
        return Err(not_running(&job.state));
    }
    job.node.as_deref().ok_or_else(|| {
        refuse(
            RefusalCode::WrongHost,
            format!("Slurm job {} has no single node", req.job_id),
        )
    })
}

/// The credential must come from the job's node.
pub fn check_host(
    encode_host: Option<IpAddr>,
    node: &str,
    node_ips: &[IpAddr],
) -> Result<(), Refusal> {
    match encode_host {
        Some(ip)
            if node_ips
                .iter()
                .any(|n| n.to_canonical() == ip.to_canonical()) =>
        {
            Ok(())
        }
        Some(ip) => Err(refuse(
            RefusalCode::WrongHost,
            format!("the credential comes from {ip}, not from node {node}"),
        )),
        None => Err(refuse(
            RefusalCode::WrongHost,
            "the credential names no encoding host",
        )),
    }
}

/// The runner is still wanted: not being cancelled or over, and its jobs not all covered.
pub fn check_needed(row: &RunnerRow, demand: RunnerDemand) -> Result<(), Refusal> {
    if row.state == RunnerState::Cancelling || row.state.is_final() {
        return Err(refuse(
            RefusalCode::NotNeeded,
            format!("runner {} is {}", row.name, row.state.as_str()),
        ));
    }
    // A runner wanted for warmth (the pool's min_idle) is needed like one for a job.
    if demand.queued + demand.warm <= demand.others_ready {
        return Err(refuse(
            RefusalCode::NotNeeded,
            format!(
                "no job needs runner {}: {} queued, {} kept warm, {} other runners ready",
                row.name, demand.queued, demand.warm, demand.others_ready
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SlurmState;

    const NOW: i64 = 1_000_000;
    const RUNNER_UID: u32 = 1000;

    fn row(name: &str) -> RunnerRow {
        RunnerRow::running_ticket_example(name, NOW + 60)
    }

    fn decoded(uid: u32, payload: &str) -> Decoded {
        Decoded {
            uid,
            encode_host: Some("10.0.0.7".parse().unwrap()),
            payload: payload.as_bytes().to_vec(),
        }
    }

    fn job(state: &str) -> JobPlacement {
        JobPlacement {
            job_id: 42,
            name: "r".into(),
            state: SlurmState::parse(state).unwrap(),
            user_id: RUNNER_UID,
            node: Some("node7".into()),
        }
    }

    const GOOD_PAYLOAD: &str = r#"{"ticket":"T","job_id":42}"#;

    /// Every fact a redemption looks at, as the handler gathers them.
    struct Facts {
        decoded: Decoded,
        row: Option<RunnerRow>,
        job: Option<JobPlacement>,
        node_ips: Vec<IpAddr>,
        demand: RunnerDemand,
    }

    fn good() -> Facts {
        Facts {
            decoded: decoded(0, GOOD_PAYLOAD),
            row: Some(row("r")),
            job: Some(job("RUNNING")),
            node_ips: vec!["10.0.0.7".parse().unwrap()],
            demand: RunnerDemand {
                queued: 1,
                warm: 0,
                others_ready: 0,
            },
        }
    }

    impl super::Facts for Facts {
        async fn credential(&mut self) -> Result<Decoded, Refusal> {
            Ok(Decoded {
                uid: self.decoded.uid,
                encode_host: self.decoded.encode_host,
                payload: self.decoded.payload.clone(),
            })
        }
        async fn ticket_holder(&mut self, _: &RedeemRequest) -> Result<Option<RunnerRow>, Refusal> {
            Ok(self.row.clone())
        }
        async fn slurm_job(&mut self, _: &RedeemRequest) -> Result<Option<JobPlacement>, Refusal> {
            Ok(self.job.clone())
        }
        fn runner_uid(&mut self, _: &RunnerRow) -> Option<u32> {
            Some(RUNNER_UID)
        }
        async fn node_addresses(&mut self, _: &str) -> Result<Vec<IpAddr>, Refusal> {
            Ok(self.node_ips.clone())
        }
        async fn claim(
            &mut self,
            row: &RunnerRow,
            needed: NeededCheck,
        ) -> Result<RunnerRow, Refusal> {
            needed(row, self.demand).map(|()| row.clone())
        }
    }

    /// The handler's order ([`run`] itself), over facts given up front.
    fn decide(mut f: Facts) -> Result<(), RefusalCode> {
        let checked = block_on(run(&mut f, NOW));
        checked.map(drop).map_err(|r| r.code)
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime")
            .block_on(future)
    }

    /// A runner with no Slurm job recorded redeems for none. Its refused job is counted as
    /// unredeemed by the refusal only when no runner's end will count it: the job is named
    /// like the runner, runs as its user, and the runner is over (given up by crash recovery
    /// before Slurm had the job).
    #[test]
    fn a_runner_with_no_job_recorded_redeems_for_none() {
        let refused = |state: RunnerState, job_name: &str, job_uid: u32| {
            let mut f = good();
            let r = f.row.as_mut().unwrap();
            r.slurm_job_id = None;
            r.state = state;
            let j = f.job.as_mut().unwrap();
            j.name = job_name.into();
            j.user_id = job_uid;
            block_on(run(&mut f, NOW))
                .map(drop)
                .map_err(|r| (r.code, r.counts_unredeemed))
        };
        let wrong_job = |counted| Err((RefusalCode::WrongJob, counted));
        assert_eq!(
            refused(RunnerState::Submitting, "r", RUNNER_UID),
            wrong_job(false)
        );
        assert_eq!(
            refused(RunnerState::Abandoned, "r", RUNNER_UID),
            wrong_job(true)
        );
        assert_eq!(
            refused(RunnerState::Finished, "r", RUNNER_UID),
            wrong_job(true)
        );
        // Someone else's job, or a job of another name: not one of ours.
        assert_eq!(
            refused(RunnerState::Abandoned, "r", RUNNER_UID + 1),
            wrong_job(false)
        );
        assert_eq!(
            refused(RunnerState::Abandoned, "other", RUNNER_UID),
            wrong_job(false)
        );
    }

    #[test]
    fn every_refusal_in_the_contract_order() {
        assert_eq!(decide(good()), Ok(()));
        // Each case breaks one fact, and everything checked after it too: the earlier
        // check must win.
        let all_broken = || Facts {
            decoded: Decoded {
                encode_host: Some("10.9.9.9".parse().unwrap()),
                ..decoded(1000, "not json")
            },
            row: Some(RunnerRow {
                ticket_redeemed_at: Some(NOW - 5),
                ticket_expires_at: Some(NOW - 1),
                slurm_job_id: Some(41),
                state: RunnerState::Cancelling,
                ..row("r")
            }),
            job: Some(job("PENDING")),
            node_ips: vec![],
            demand: RunnerDemand {
                queued: 0,
                warm: 0,
                others_ready: 3,
            },
        };
        let mut f = all_broken();
        assert_eq!(decide(f), Err(RefusalCode::NotRoot));
        f = all_broken();
        f.decoded.uid = 0;
        assert_eq!(decide(f), Err(RefusalCode::BadPayload));
        f = all_broken();
        f.decoded = Decoded {
            encode_host: Some("10.9.9.9".parse().unwrap()),
            ..decoded(0, GOOD_PAYLOAD)
        };
        let fix_credential = f.decoded.payload.clone();
        f.row = None;
        assert_eq!(decide(f), Err(RefusalCode::UnknownTicket));
        let with_credential = || {
            let mut f = all_broken();
            f.decoded.uid = 0;
            f.decoded.payload = fix_credential.clone();
            f
        };
        assert_eq!(decide(with_credential()), Err(RefusalCode::TicketUsed));
        let mut f = with_credential();
        f.row.as_mut().unwrap().ticket_redeemed_at = None;
        assert_eq!(decide(f), Err(RefusalCode::TicketExpired));
        let with_ticket = || {
            let mut f = with_credential();
            let r = f.row.as_mut().unwrap();
            r.ticket_redeemed_at = None;
            r.ticket_expires_at = Some(NOW + 1);
            f
        };
        assert_eq!(decide(with_ticket()), Err(RefusalCode::WrongJob));
        let with_job_id = || {
            let mut f = with_ticket();
            f.row.as_mut().unwrap().slurm_job_id = Some(42);
            f
        };
        // The right job id, but run by someone else (uid checked before the state).
        let mut f = with_job_id();
        f.job.as_mut().unwrap().user_id = RUNNER_UID + 1;
        assert_eq!(decide(f), Err(RefusalCode::WrongJob));
        assert_eq!(decide(with_job_id()), Err(RefusalCode::JobNotRunning));
        let mut f = with_job_id();
        f.job = None;
        assert_eq!(decide(f), Err(RefusalCode::JobNotRunning));
        let with_running = || {
            let mut f = with_job_id();
            f.job = Some(job("RUNNING"));
            f
        };
        assert_eq!(decide(with_running()), Err(RefusalCode::WrongHost));
        let with_host = || {
            let mut f = with_running();
            f.node_ips = vec!["10.9.9.9".parse().unwrap()];
            f
        };
        // The row is being cancelled: not needed whatever the demand.
        let mut f = with_host();
        f.demand = RunnerDemand {
            queued: 5,
            warm: 0,
            others_ready: 0,
        };
        assert_eq!(decide(f), Err(RefusalCode::NotNeeded));
        let mut f = with_host();
        f.row.as_mut().unwrap().state = RunnerState::Submitted;
        assert_eq!(decide(f), Err(RefusalCode::NotNeeded));
        let submitted_with = |queued, warm, others_ready| {
            let mut f = with_host();
            f.row.as_mut().unwrap().state = RunnerState::Submitted;
            f.demand = RunnerDemand {
                queued,
                warm,
                others_ready,
            };
            decide(f)
        };
        assert_eq!(submitted_with(4, 0, 3), Ok(()));
        // No job waits, but the pool keeps two warm and one other is ready: still wanted.
        assert_eq!(submitted_with(0, 2, 1), Ok(()));
        assert_eq!(submitted_with(0, 2, 2), Err(RefusalCode::NotNeeded));
    }

    #[test]
    fn credential_checks() {
        assert_eq!(
            check_credential(&decoded(1000, GOOD_PAYLOAD))
                .unwrap_err()
                .code,
            RefusalCode::NotRoot
        );
        let req = check_credential(&decoded(0, &format!("{GOOD_PAYLOAD}\n"))).unwrap();
        assert_eq!((req.ticket.as_str(), req.job_id), ("T", 42));
        assert!(!format!("{req:?}").contains("\"T\""));
        for bad in [
            "",
            "null",
            r#"{"ticket":"T"}"#,
            r#"{"job_id":42}"#,
            r#"{"ticket":1,"job_id":42}"#,
            r#"{"ticket":"T","job_id":-1}"#,
            r#"{"ticket":"T","job_id":4294967296}"#,
            r#"{"ticket":"T","job_id":"42"}"#,
            r#"["T",42]"#,
        ] {
            assert_eq!(
                check_credential(&decoded(0, bad)).unwrap_err().code,
                RefusalCode::BadPayload,
                "{bad}"
            );
        }
    }

    #[test]
    fn ticket_and_job_checks() {
        let req = RedeemRequest {
            ticket: "T".into(),
            job_id: 42,
        };
        assert_eq!(check_ticket(Some(row("r")), &req, NOW).unwrap().name, "r");
        let expired = RunnerRow {
            ticket_expires_at: Some(NOW),
            ..row("r")
        };
        assert_eq!(
            check_ticket(Some(expired), &req, NOW).unwrap_err().code,
            RefusalCode::TicketExpired
        );
        // No job id recorded (sbatch not answered, or failing and retried): no job may
        // redeem, whatever its name.
        let unrecorded = RunnerRow {
            slurm_job_id: None,
            state: RunnerState::Submitting,
            ..row("r")
        };
        let named_like_it = job("RUNNING");
        assert_eq!(
            check_recorded_job(&unrecorded, &req, Some(&named_like_it), Some(RUNNER_UID))
                .unwrap_err()
                .code,
            RefusalCode::WrongJob
        );
        // The job of another user (or of a user that cannot be looked up).
        for uid in [None, Some(RUNNER_UID + 1)] {
            assert_eq!(
                check_job(&req, Some(&job("RUNNING")), uid)
                    .unwrap_err()
                    .code,
                RefusalCode::WrongJob
            );
        }
        assert_eq!(
            check_job(&req, Some(&job("CONFIGURING")), Some(RUNNER_UID)),
            Ok("node7")
        );
        for state in [
            "PENDING",
            "COMPLETING",
            "COMPLETED",
            "CANCELLED",
            "SUSPENDED",
        ] {
            assert_eq!(
                check_job(&req, Some(&job(state)), Some(RUNNER_UID))
                    .unwrap_err()
                    .code,
                RefusalCode::JobNotRunning,
                "{state}"
            );
        }
        let nowhere = JobPlacement {
            node: None,
            ..job("RUNNING")
        };
        assert_eq!(
            check_job(&req, Some(&nowhere), Some(RUNNER_UID))
                .unwrap_err()
                .code,
            RefusalCode::WrongHost
        );
    }

    #[test]
    fn host_check_compares_addresses() {
        let ips: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()];
        assert!(check_host(Some("127.0.0.1".parse().unwrap()), "n", &ips).is_ok());
        assert!(check_host(Some("::ffff:127.0.0.1".parse().unwrap()), "n", &ips).is_ok());
        let e = check_host(Some("10.0.0.1".parse().unwrap()), "n", &ips).unwrap_err();
        assert_eq!(e.code, RefusalCode::WrongHost);
        assert!(e.message.contains("10.0.0.1") && e.message.contains('n'));
        assert_eq!(
            check_host(None, "n", &ips).unwrap_err().code,
            RefusalCode::WrongHost
        );
        assert_eq!(
            check_host(Some("127.0.0.1".parse().unwrap()), "n", &[])
                .unwrap_err()
                .code,
            RefusalCode::WrongHost
        );
    }
}
