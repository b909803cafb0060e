//! The fake actions runner listener (`bin/Runner.Listener`): takes `run --jitconfig <base64>`
//! (or the config in `ACTIONS_RUNNER_INPUT_JITCONFIG`, removed from the environment at once),
//! connects to the simulator named in the config, prints the real runner's lines, runs one job's
//! step with `sh -c`, reports the result and exits. SIGINT idle: `Exiting...`; SIGTERM during a
//! job: the job fails with the runner's shutdown message.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use github_sim::jit::{self, JitConfig};
use github_sim::runner_api::{Heartbeat, JobResult, SessionCreated};
use github_sim::state::JobMessage;
use github_sim::time::runner_console_stamp as stamp;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::signal::unix::{signal, SignalKind};

const RUNNER_VERSION: &str = "2.329.0";
const SHUTDOWN_MESSAGE: &str = "The runner has received a shutdown signal. This can happen when the runner service is stopped, or a manually started runner is canceled.";

fn jitconfig_arg(args: &[String]) -> Option<String> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if a == "--jitconfig" {
            return it.next().cloned();
        }
        if let Some(v) = a.strip_prefix("--jitconfig=") {
            return Some(v.to_string());
        }
    }
    None
}

/// The runner root: the parent of the directory of argv[0] (not /proc/self/exe, so a per-job
/// root whose `bin/` is a symlink keeps its own work folder).
fn runner_root(argv0: &str) -> PathBuf {
    let p = Path::new(argv0);
    let p = if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir().unwrap_or_default().join(p)
    };
    p.parent()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Prefix of the variables the real runner reads its command-line inputs from
/// (`ACTIONS_RUNNER_INPUT_JITCONFIG`, as GitHub's actions-runner-controller passes the config).
const INPUT_ENV_PREFIX: &str = "ACTIONS_RUNNER_INPUT_";

/// Takes the `ACTIONS_RUNNER_INPUT_*` variables out of this process's environment, as the real
/// runner does, so no job step inherits them; returns the JIT config among them.
fn take_input_env() -> Option<String> {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| name.starts_with(INPUT_ENV_PREFIX))
        .collect();
    let jitconfig = std::env::var(format!("{INPUT_ENV_PREFIX}JITCONFIG")).ok();
    for name in names {
        // Still single-threaded: no runtime or thread has started yet.
        std::env::remove_var(name);
    }
    jitconfig
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().collect();
    let from_env = take_input_env();
    let Some(encoded) = jitconfig_arg(&args).or(from_env).filter(|c| !c.is_empty()) else {
        eprintln!("Not configured. Run config.(sh/cmd) to configure the runner.");
        return ExitCode::from(1);
    };
    let cfg = match jit::decode(&encoded) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let root = runner_root(args.first().map(String::as_str).unwrap_or("."));
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    ExitCode::from(rt.block_on(run(cfg, root)))
}

struct Conn {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Conn {
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
    }
}

async fn message(r: reqwest::Response) -> String {
    r.json::<serde_json::Value>()
        .await
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_default()
}

async fn run(cfg: JitConfig, root: PathBuf) -> u8 {
    let (Ok(mut sigint), Ok(mut sigterm)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        eprintln!("installing signal handlers failed");
        return 1;
    };
    let Some(token) = cfg.token().map(str::to_string) else {
        eprintln!("Could not find file '.credentials'.");
        return 1;
    };
    let conn = Conn {
        http: reqwest::Client::new(),
        base: cfg.runner.server_url.trim_end_matches('/').to_string(),
        token,
    };
    println!();
    println!("√ Connected to GitHub");
    println!();
    let session = match open_session(&conn).await {
        Ok(s) => s,
        Err(code) => return code,
    };
    println!("Current runner version: '{RUNNER_VERSION}'");
    println!("{}: Listening for Jobs", stamp());

    let sid = session.session_id.clone();
    let job = match next_job(&conn, &sid, &mut sigint, &mut sigterm).await {
        Ok(job) => job,
        Err(code) => return code,
    };

    println!("{}: Running job: {}", stamp(), job.name);
    let outcome = run_job(&conn, &cfg, &root, &job, &mut sigint, &mut sigterm).await;
    let (result, printed) = match outcome {
        Outcome::Succeeded => ("succeeded", "Succeeded"),
        Outcome::Failed => ("failed", "Failed"),
        Outcome::Cancelled => ("cancelled", "Canceled"),
        Outcome::Shutdown => ("failed", "Failed"),
    };
    report(&conn, job.job_id, result).await;
    println!(
        "{}: Job {} completed with result: {printed}",
        stamp(),
        job.name
    );
    close_session(&conn, &sid).await;
    0
}

/// Opens the runner's session; the listener's exit code when that fails.
async fn open_session(conn: &Conn) -> Result<SessionCreated, u8> {
    match conn.post("/sessions").send().await {
        Ok(r) if r.status().is_success() => match r.json::<SessionCreated>().await {
            Ok(s) => Ok(s),
            Err(e) => {
                eprintln!("Failed to create a session: {e}");
                Err(1)
            }
        },
        Ok(r) if r.status().as_u16() == 409 => {
            eprintln!("{}", message(r).await);
            Err(5)
        }
        Ok(r) => {
            eprintln!("Failed to create a session. {}", message(r).await);
            Err(1)
        }
        Err(e) => {
            eprintln!("Failed to connect to {}: {e}", conn.base);
            Err(2)
        }
    }
}

/// Long-polls for the job (any one the runner's labels cover); the exit code when the runner
/// stops first (a signal, or its registration is gone).
async fn next_job(
    conn: &Conn,
    sid: &str,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> Result<JobMessage, u8> {
    loop {
        let poll = conn
            .http
            .get(format!("{}/sessions/{sid}/job", conn.base))
            .bearer_auth(&conn.token)
            .send();
        tokio::select! {
            _ = sigint.recv() => {
                println!("Exiting...");
                close_session(conn, sid).await;
                return Err(0);
            }
            _ = sigterm.recv() => {
                println!("Exiting...");
                close_session(conn, sid).await;
                return Err(0);
            }
            r = poll => match r {
                Ok(r) if r.status().as_u16() == 200 => match r.json::<JobMessage>().await {
                    Ok(j) => return Ok(j),
                    Err(e) => eprintln!("{}: bad job message: {e}", stamp()),
                },
                Ok(r) if r.status().as_u16() == 204 => {}
                Ok(r) if matches!(r.status().as_u16(), 401 | 404) => {
                    eprintln!("{}: {}", stamp(), message(r).await);
                    return Err(1);
                }
                Ok(r) => {
                    eprintln!("{}: job poll answered {}", stamp(), r.status());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    eprintln!("{}: {e}; retrying", stamp());
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

enum Outcome {
    Succeeded,
    Failed,
    Cancelled,
    Shutdown,
}

async fn close_session(conn: &Conn, sid: &str) {
    let _ = conn
        .http
        .delete(format!("{}/sessions/{sid}", conn.base))
        .bearer_auth(&conn.token)
        .send()
        .await;
}

async fn report(conn: &Conn, job_id: u64, result: &str) {
    for attempt in 0..5 {
        match conn
            .post(&format!("/jobs/{job_id}/result"))
            .json(&JobResult {
                result: result.into(),
            })
            .send()
            .await
        {
            Ok(r) if r.status().is_success() || r.status().as_u16() == 409 => return,
            Ok(r) => eprintln!("{}: reporting the result answered {}", stamp(), r.status()),
            Err(e) => eprintln!("{}: reporting the result: {e}", stamp()),
        }
        tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
    }
}

fn stop_step(child: &tokio::process::Child) {
    if let Some(pid) = child.id() {
        let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGTERM);
    }
}

async fn run_job(
    conn: &Conn,
    cfg: &JitConfig,
    root: &Path,
    job: &JobMessage,
    sigint: &mut tokio::signal::unix::Signal,
    sigterm: &mut tokio::signal::unix::Signal,
) -> Outcome {
    let repo_name = job
        .repository
        .rsplit('/')
        .next()
        .unwrap_or("repo")
        .to_string();
    let work = root.join(&cfg.runner.work_folder);
    let workspace = work.join(&repo_name).join(&repo_name);
    let temp = work.join("_temp");
    for d in [&workspace, &temp] {
        if let Err(e) = std::fs::create_dir_all(d) {
            eprintln!("creating {}: {e}", d.display());
            return Outcome::Failed;
        }
    }
    let mut heartbeat = tokio::time::interval(Duration::from_millis(500));
    // Simulated work time first; signals and cancellation interrupt it like a step.
    let sleep = tokio::time::sleep(Duration::from_millis(job.duration_ms));
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => break,
            _ = sigterm.recv() => { println!("{SHUTDOWN_MESSAGE}"); return Outcome::Shutdown; }
            _ = sigint.recv() => { println!("Exiting..."); println!("{SHUTDOWN_MESSAGE}"); return Outcome::Shutdown; }
            _ = heartbeat.tick() => if cancel_requested(conn, job.job_id).await { return Outcome::Cancelled; },
        }
    }
    let Some(command) = job.command.as_deref() else {
        return Outcome::Succeeded;
    };
    let Some(mut child) = spawn_step(cfg, job, command, &workspace, &temp) else {
        return Outcome::Failed;
    };
    let outcome = loop {
        tokio::select! {
            st = child.wait() => break match st {
                Ok(s) if s.success() => Outcome::Succeeded,
                _ => Outcome::Failed,
            },
            _ = sigterm.recv() => { println!("{SHUTDOWN_MESSAGE}"); stop_step(&child); break Outcome::Shutdown; }
            _ = sigint.recv() => { println!("Exiting..."); println!("{SHUTDOWN_MESSAGE}"); stop_step(&child); break Outcome::Shutdown; }
            _ = heartbeat.tick() => if cancel_requested(conn, job.job_id).await { stop_step(&child); break Outcome::Cancelled; },
        }
    };
    if matches!(outcome, Outcome::Shutdown | Outcome::Cancelled) {
        // Give the step a moment to exit on SIGTERM, then make sure it is gone.
        if tokio::time::timeout(Duration::from_secs(5), child.wait())
            .await
            .is_err()
        {
            if let Some(pid) = child.id() {
                let _ = killpg(Pid::from_raw(pid as i32), Signal::SIGKILL);
            }
            let _ = child.wait().await;
        }
    }
    outcome
}

/// Starts the job's step: `sh -c <command>` in the workspace, with the variables a real runner
/// sets, in its own process group.
fn spawn_step(
    cfg: &JitConfig,
    job: &JobMessage,
    command: &str,
    workspace: &Path,
    temp: &Path,
) -> Option<tokio::process::Child> {
    match Command::new("sh")
        .arg("-c")
        .arg(command)
        .current_dir(workspace)
        .env("GITHUB_ACTIONS", "true")
        .env("CI", "true")
        .env("GITHUB_JOB", &job.name)
        .env("GITHUB_RUN_ID", job.run_id.to_string())
        .env("GITHUB_RUN_ATTEMPT", "1")
        .env("GITHUB_REPOSITORY", &job.repository)
        .env("GITHUB_WORKSPACE", workspace)
        .env("RUNNER_NAME", &cfg.runner.agent_name)
        .env("RUNNER_TEMP", temp)
        .env("RUNNER_OS", "Linux")
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("starting the step: {e}");
            None
        }
    }
}

async fn cancel_requested(conn: &Conn, job_id: u64) -> bool {
    match conn.post(&format!("/jobs/{job_id}/heartbeat")).send().await {
        Ok(r) if r.status().is_success() => r
            .json::<Heartbeat>()
            .await
            .map(|h| h.cancel)
            .unwrap_or(false),
        _ => false,
    }
}
