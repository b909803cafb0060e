//! gha-redeem: trades a late-binding runner ticket for the runner's JIT config, as root on the
//! node where the Slurm job runs (the spank-gha plugin starts it from `task_init_privileged`).
//!
//! ```text
//! GHA_TICKET=<opaque> gha-redeem --url <dispatcher_url> --job-id <slurm job id> \
//!     --munge-socket <socket> [--timeout SECS] [--dispatcher-uid UID]
//! ```
//! 1. `munge` signs the [`RedeemRequest`] `{"ticket":...,"job_id":...}` (so the dispatcher
//!    learns that root on a host of the MUNGE domain asks, and which host);
//! 2. `POST <url>/tickets/redeem` with that credential ([`dispatcher`]); a transient refusal
//!    (the route busy, MUNGE/Slurm/the database unavailable: nothing decided, the ticket not
//!    spent) is asked again with a fresh credential while the deadline allows;
//! 3. a 200 answer is a credential for uid 0 only, whose payload is a [`SealedAnswer`]: `unmunge`
//!    decodes it; it is taken only if the credential was made by the dispatcher's uid
//!    (`--dispatcher-uid`, 0 by default: any user can make a credential for root, e.g. one who
//!    took the dispatcher's port while it restarted) and it names this job and this ticket's
//!    sha256. The config then goes to stdout (and nowhere else).
//!
//! Exit status ([`HelperExit`]): 0 config printed; 2 the dispatcher refused the ticket; 3
//! anything else (bad arguments, MUNGE, the dispatcher unreachable or its answer unusable).
//! Every failure is one line on stderr, which the plugin shows to the job's user. The ticket
//! comes from the environment ([`TICKET_ENV`]), never argv (/proc/PID/cmdline is
//! world-readable), and neither it, the credentials nor the config are ever printed except the
//! config on stdout. The wire contract is the `redeem-contract` crate's.
//!
//! With `--job-ended` first, it instead tells the dispatcher that the job ended ([`ended`]: the
//! plugin's epilog runs it).
//!
//! Modules: [`cli`] (arguments), [`tool`] (the bounded child runner for munge/unmunge),
//! [`dispatcher`] (the HTTP request), [`answer`] (messages, refusals, the decoded config).
//!
//! [`SealedAnswer`]: redeem_contract::SealedAnswer

#![forbid(unsafe_code)]

mod answer;
mod cli;
mod dispatcher;
mod ended;
mod tool;

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use redeem_contract::TICKET_ENV;
use redeem_contract::{is_valid_ticket, HelperExit, RedeemRequest, MAX_TICKET, TICKET_CHARSET};

use answer::{config_from_unmunge, failed, Failure, UNMUNGE_ARGS};
use dispatcher::Attempt;
use tool::run_tool;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1).peekable();
    if args.peek().map(String::as_str) == Some(redeem_contract::helper_flag::JOB_ENDED) {
        args.next();
        return match ended::run(args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(failure) => {
                eprintln!("{}", failure.message);
                ExitCode::from(failure.exit.code())
            }
        };
    }
    match run() {
        Ok(config) => {
            let mut out = std::io::stdout().lock();
            if out
                .write_all(config.as_bytes())
                .and_then(|()| out.write_all(b"\n"))
                .and_then(|()| out.flush())
                .is_err()
            {
                eprintln!("cannot write the runner config to stdout");
                return ExitCode::from(HelperExit::Failed.code());
            }
            ExitCode::from(HelperExit::Redeemed.code())
        }
        Err(failure) => {
            eprintln!("{}", failure.message);
            ExitCode::from(failure.exit.code())
        }
    }
}

/// Checks the ticket's syntax (the contract's, as the plugin's `--gha-runner=ticket:` check),
/// which also makes it safe to put in a JSON string as it is. Never echoes it.
fn check_ticket(ticket: &str) -> Result<(), Failure> {
    if !is_valid_ticket(ticket) {
        return Err(failed(format!(
            "{TICKET_ENV} must hold 1 to {MAX_TICKET} characters from {TICKET_CHARSET}"
        )));
    }
    Ok(())
}

fn run() -> Result<String, Failure> {
    let args = cli::parse_args(std::env::args().skip(1))?;
    let ticket = std::env::var(TICKET_ENV).map_err(|_| {
        failed(format!(
            "{TICKET_ENV} is not set (the ticket is passed in the environment)"
        ))
    })?;
    check_ticket(&ticket)?;
    let deadline = Instant::now() + args.timeout;
    let socket = format!("--socket={}", args.munge_socket);

    let request = RedeemRequest {
        ticket: ticket.clone(),
        job_id: args.job_id,
    };
    let sealed = ask(&args, &request, &socket, deadline)?;
    drop(request);
    let mut unmunge_args = vec![socket];
    unmunge_args.extend(UNMUNGE_ARGS.map(String::from));
    let decoded = run_tool("unmunge", &unmunge_args, &sealed, deadline).map_err(|e| {
        failed(format!(
            "cannot decode the dispatcher's answer with unmunge: {e}"
        ))
    })?;
    config_from_unmunge(&decoded, args.dispatcher_uid, args.job_id, &ticket)
}

/// Time kept back for the last attempt's round trip when deciding to ask again.
const RESERVE: Duration = Duration::from_secs(2);

/// Asks the dispatcher until it answers, refuses for good, or the deadline is near: a
/// transient refusal (nothing decided, the ticket not spent) is asked again after its pause,
/// each time with a fresh credential (munged refuses a replayed one).
fn ask(
    args: &cli::Args,
    request: &RedeemRequest,
    socket: &str,
    deadline: Instant,
) -> Result<Vec<u8>, Failure> {
    loop {
        let credential = run_tool(
            "munge",
            &[socket.to_owned()],
            request.to_json().as_bytes(),
            deadline,
        )
        .map_err(|e| failed(format!("cannot create a MUNGE credential: {e}")))?;
        match dispatcher::redeem(args, credential.trim_ascii(), deadline)? {
            Attempt::Sealed(sealed) => return Ok(sealed),
            Attempt::Again { pause, failure } => {
                if Instant::now() + pause + RESERVE >= deadline {
                    return Err(failure);
                }
                std::thread::sleep(pause);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_the_ticket_without_echoing_it() {
        check_ticket("AbC-123_x~y.z+/=:").unwrap();
        for bad in ["", "has space", "quote\"secret", "new\nline"] {
            let err = check_ticket(bad).unwrap_err();
            assert!(!err.message.contains("secret"));
            assert_eq!(err.exit, HelperExit::Failed);
        }
        assert!(check_ticket(&"a".repeat(MAX_TICKET + 1)).is_err());
    }
}
