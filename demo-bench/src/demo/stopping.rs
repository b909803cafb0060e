//! Stopping the drivers however their run ends: Ctrl-C (SIGINT), SIGTERM, or the terminal going
//! away (SIGHUP, e.g. a closed tmux pane or a dropped SSH session). One watcher thread hears the
//! three; after a hangup it points stdin, stdout and stderr at a file (`$GHA_HANGUP_LOG`, else
//! `/dev/null`), since every write to a hung-up terminal fails and a failing `println!` panics.
//!
//! The dispatchers a driver starts live in their own process group (a Ctrl-C reaches the driver,
//! which stops them in order), so a driver that died without stopping them would leave them
//! running. `demo` polls [`Stop::requested`] and stops everything in order; `bench`, a long
//! sequence of blocking phases, asks for [`OnStop::StopStartedAndExit`]: every dispatcher still
//! registered here is stopped, its run's Slurm jobs are cancelled, and the process exits.

use std::collections::BTreeMap;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};

/// What the watcher does once a stop signal arrived (after recording it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnStop {
    /// Only record it: the driver polls [`Stop::requested`] and stops in order.
    Record,
    /// Stop every registered dispatcher, cancel their runs' Slurm jobs, exit with 128 + signal.
    StopStartedAndExit,
}

/// Whether a stop signal arrived.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    pub fn requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// A started dispatcher: its pid and the runner-name prefix of its run's Slurm jobs.
#[derive(Debug, Clone)]
struct Started {
    pid: u32,
    runner_name_prefix: String,
}

static STARTED: Mutex<BTreeMap<u32, Started>> = Mutex::new(BTreeMap::new());

/// Records a dispatcher the driver started (until [`forget_dispatcher`]).
pub fn register_dispatcher(pid: u32, runner_name_prefix: &str) {
    if let Ok(mut started) = STARTED.lock() {
        started.insert(
            pid,
            Started {
                pid,
                runner_name_prefix: runner_name_prefix.to_owned(),
            },
        );
    }
}

/// The dispatcher `pid` was stopped (and reaped) by its owner.
pub fn forget_dispatcher(pid: u32) {
    if let Ok(mut started) = STARTED.lock() {
        started.remove(&pid);
    }
}

/// Starts the watcher thread. Call it once, early in `main`.
pub fn watch(on_stop: OnStop) -> std::io::Result<Stop> {
    let stop = Stop::default();
    let flag = stop.0.clone();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    // Registered here, before the thread runs: a signal from now on is heard, not fatal.
    let signals = runtime.block_on(async {
        Ok::<_, std::io::Error>((
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
            signal(SignalKind::hangup())?,
        ))
    })?;
    std::thread::Builder::new()
        .name("stop-signals".into())
        .spawn(move || {
            let (mut int, mut term, mut hup) = signals;
            let signo = runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => libc::SIGINT,
                    _ = term.recv() => libc::SIGTERM,
                    _ = hup.recv() => libc::SIGHUP,
                }
            });
            if signo == libc::SIGHUP {
                leave_the_terminal();
            }
            flag.store(true, Ordering::SeqCst);
            eprintln!("stopping: signal {signo} received");
            if on_stop == OnStop::StopStartedAndExit {
                stop_started();
                std::process::exit(128 + signo);
            }
        })?;
    Ok(stop)
}

/// Points fds 0, 1 and 2 at `$GHA_HANGUP_LOG` (appended) or `/dev/null`.
fn leave_the_terminal() {
    let target = std::env::var_os("GHA_HANGUP_LOG").unwrap_or_else(|| "/dev/null".into());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&target)
        .or_else(|_| std::fs::OpenOptions::new().write(true).open("/dev/null"));
    let Ok(file) = file else { return };
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors with a file we hold open; no memory is
        // touched, and Rust's std handles keep using the same fd numbers.
        unsafe { libc::dup2(file.as_raw_fd(), fd) };
    }
}

/// TERM (KILL after 15 s) every registered dispatcher, then cancel its run's Slurm jobs.
fn stop_started() {
    let started: Vec<Started> = match STARTED.lock() {
        Ok(started) => started.values().cloned().collect(),
        Err(_) => return,
    };
    if started.is_empty() {
        // Nothing to stop; and asking for the cluster now could start one.
        return;
    }
    for dispatcher in &started {
        stop_process(dispatcher.pid);
    }
    let cluster = e2e::Cluster::shared();
    for dispatcher in &started {
        let jobs = super::slurm::run_jobs(cluster, &dispatcher.runner_name_prefix);
        let ids: Vec<u32> = jobs.unwrap_or_default().iter().map(|job| job.id).collect();
        if let Err(error) = super::slurm::cancel(cluster, &ids) {
            eprintln!(
                "cancelling the Slurm jobs of {}: {error:#}",
                dispatcher.runner_name_prefix
            );
        }
    }
}

/// SIGTERM, then SIGKILL if `pid` still runs after 15 s (a zombie counts as gone).
fn stop_process(pid: u32) {
    let target = nix::unistd::Pid::from_raw(pid as i32);
    let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGTERM);
    let gone = test_support::wait_until("a dispatcher to exit", Duration::from_secs(15), || {
        !runs(pid)
    });
    if gone.is_err() {
        let _ = nix::sys::signal::kill(target, nix::sys::signal::Signal::SIGKILL);
    }
}

/// Does `pid` exist and is it not a zombie?
fn runs(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses, which may itself hold spaces.
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}
