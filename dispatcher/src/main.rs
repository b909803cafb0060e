//! `gha-dispatcher` command line: `serve`, `check-config`, `status`, `repositories`,
//! `console-link`, `init` (its own module, `gha_dispatcher::init`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gha_dispatcher::api::status::{render_table, Status};
use gha_dispatcher::config::{Config, ConfigError};

const DEFAULT_CONFIG: &str = "/etc/gha-dispatcher/config.toml";

#[derive(Parser)]
#[command(
    name = "gha-dispatcher",
    version,
    about = "GitHub Actions runners on Slurm: the dispatcher daemon"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        #[arg(long, short, env = "GHA_DISPATCHER_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Validate the config file and the secret files it names; print every problem.
    CheckConfig {
        #[arg(long, short, env = "GHA_DISPATCHER_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
    },
    /// Print pools and runners of a running dispatcher.
    Status {
        /// Base URL of the dispatcher; default: from the config's `server.listen`.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, short, env = "GHA_DISPATCHER_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// Print the JSON document instead of tables.
        #[arg(long)]
        json: bool,
    },
    /// Print the repositories whose jobs run as USER (default: you), proving who you are
    /// with a MUNGE credential (run it on a login node of the cluster).
    Repositories {
        /// Base URL of the dispatcher; default: from the config's `server.listen`.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, short, env = "GHA_DISPATCHER_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// munged's socket; default: the config's `server.munge_socket`, else munge's own.
        #[arg(long)]
        munge_socket: Option<PathBuf>,
        /// Print the JSON list.
        #[arg(long)]
        json: bool,
        /// The Unix user; default: the one running this command.
        user: Option<String>,
    },
    /// Print a short-lived, one-use link to your read-only view of the web console, proving
    /// who you are with a MUNGE credential (run it on a login node of the cluster).
    ConsoleLink {
        /// Base URL of the dispatcher as your browser reaches it; default: from the config's
        /// `server.listen`.
        #[arg(long)]
        url: Option<String>,
        #[arg(long, short, env = "GHA_DISPATCHER_CONFIG", default_value = DEFAULT_CONFIG)]
        config: PathBuf,
        /// munged's socket; default: the config's `server.munge_socket`, else munge's own.
        #[arg(long)]
        munge_socket: Option<PathBuf>,
    },
    /// Write a starting config and its secret files; create the GitHub App from a manifest.
    Init(Box<gha_dispatcher::init::InitArgs>),
}

fn load(path: &std::path::Path) -> Result<Config, ExitCode> {
    Config::load(path).map_err(|e| {
        eprintln!("{}: {e}", path.display());
        ExitCode::from(2)
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::CheckConfig { config } => check_config(&config),
        Command::Serve { config } => serve_command(&config),
        Command::Status { url, config, json } => status(url, &config, json),
        Command::Init(args) => match gha_dispatcher::init::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gha-dispatcher init: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Repositories {
            url,
            config,
            munge_socket,
            json,
            user,
        } => match repositories(url, &config, munge_socket, json, user) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gha-dispatcher repositories: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::ConsoleLink {
            url,
            config,
            munge_socket,
        } => match console_link(url, &config, munge_socket) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("gha-dispatcher console-link: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn check_config(config: &std::path::Path) -> ExitCode {
    let cfg = match Config::load(config) {
        Ok(cfg) => cfg,
        Err(e) => {
            eprintln!("{}: {e}", config.display());
            return ExitCode::from(2);
        }
    };
    match cfg.load_secrets() {
        Ok(_) => {
            println!("{}: OK ({} pools)", config.display(), cfg.pools.len());
            ExitCode::SUCCESS
        }
        Err(ConfigError::Invalid { issues }) => {
            eprintln!("{}: invalid config:", config.display());
            for issue in issues {
                eprintln!("  {issue}");
            }
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(2)
        }
    }
}

fn serve_command(config: &std::path::Path) -> ExitCode {
    init_logging();
    let cfg = match load(config) {
        Ok(c) => c,
        Err(code) => return code,
    };
    let secrets = match cfg.load_secrets() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let runtime = match serve_runtime() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(serve(cfg, secrets)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "gha-dispatcher stopped");
            ExitCode::FAILURE
        }
    }
}

fn status(url: Option<String>, config: &std::path::Path, json: bool) -> ExitCode {
    let cfg = Config::load(config).ok();
    let url = match (url, &cfg) {
        (Some(u), _) => u,
        (None, Some(cfg)) => format!("http://{}", cfg.listen),
        (None, None) => match load(config) {
            Ok(cfg) => format!("http://{}", cfg.listen),
            Err(code) => return code,
        },
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let fetched = admin_authorization(cfg.as_ref())
        .and_then(|auth| runtime.block_on(fetch_status(&url, &auth)));
    match fetched {
        Ok(status) => {
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&status).unwrap_or_default()
                );
            } else {
                print!("{}", render_table(&status));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cannot read status from {url}: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `/status` is the admin's: the admin token when this user can read it, else a MUNGE
/// credential (root's is an admin's).
fn admin_authorization(cfg: Option<&Config>) -> anyhow::Result<String> {
    let token = cfg
        .and_then(|c| c.admin_token_file.as_ref())
        .and_then(|path| std::fs::read_to_string(path).ok())
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if let Some(token) = token {
        return Ok(format!("Bearer {token}"));
    }
    let socket = cfg.and_then(|c| c.munge_socket.clone());
    let credential = gha_dispatcher::clients::munge::encode(socket.as_deref())?;
    Ok(format!("MUNGE {credential}"))
}

/// The dispatcher's URL and munged's socket for a command run on a login node: as given, else
/// from the config. A login node may have no readable config: it is only needed for what was
/// not given.
fn login_node_target(
    url: Option<String>,
    config: &std::path::Path,
    munge_socket: Option<PathBuf>,
) -> anyhow::Result<(String, Option<PathBuf>)> {
    let cfg = if url.is_none() || munge_socket.is_none() {
        Config::load(config).ok()
    } else {
        None
    };
    let url = match (url, &cfg) {
        (Some(u), _) => u,
        (None, Some(cfg)) => format!("http://{}", cfg.listen),
        (None, None) => anyhow::bail!("give --url (cannot read {})", config.display()),
    };
    let socket = munge_socket.or_else(|| cfg.as_ref().and_then(|c| c.munge_socket.clone()));
    Ok((url, socket))
}

fn repositories(
    url: Option<String>,
    config: &std::path::Path,
    munge_socket: Option<PathBuf>,
    json: bool,
    user: Option<String>,
) -> anyhow::Result<()> {
    let (url, socket) = login_node_target(url, config, munge_socket)?;
    let user = match user {
        Some(u) => u,
        None => {
            let uid = nix::unistd::getuid().as_raw();
            gha_dispatcher::clients::users::unix_user_name(uid)?
                .ok_or_else(|| anyhow::anyhow!("uid {uid} has no user name; give USER"))?
        }
    };
    let credential = gha_dispatcher::clients::munge::encode(socket.as_deref())?;
    let runtime = tokio::runtime::Runtime::new()?;
    let body: serde_json::Value = runtime.block_on(async {
        let response = local_client()?
            .get(format!("{}/repositories/{user}", url.trim_end_matches('/')))
            .header("Authorization", format!("MUNGE {credential}"))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await?;
        if !status.is_success() {
            let message = body["error"].as_str().unwrap_or("no message").to_string();
            anyhow::bail!("{url} answered {status}: {message}");
        }
        Ok(body)
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
        return Ok(());
    }
    let list = body.as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        println!("no repositories are mapped to {user}");
    }
    for entry in list {
        let repository = entry["repository"].as_str().unwrap_or("?");
        match entry["account"].as_str() {
            Some(account) => println!("{repository}\taccount={account}"),
            None => println!("{repository}"),
        }
    }
    Ok(())
}

/// `POST /console/api/links` with this user's MUNGE credential; prints the link.
fn console_link(
    url: Option<String>,
    config: &std::path::Path,
    munge_socket: Option<PathBuf>,
) -> anyhow::Result<()> {
    let (url, socket) = login_node_target(url, config, munge_socket)?;
    let credential = gha_dispatcher::clients::munge::encode(socket.as_deref())?;
    let base = url.trim_end_matches('/').to_string();
    let body: serde_json::Value = tokio::runtime::Runtime::new()?.block_on(async {
        let response = local_client()?
            .post(format!("{base}/console/api/links"))
            .header("Authorization", format!("MUNGE {credential}"))
            .send()
            .await?;
        let status = response.status();
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        if !status.is_success() {
            let message = body["error"].as_str().unwrap_or("no message").to_string();
            anyhow::bail!("{base} answered {status}: {message}");
        }
        Ok(body)
    })?;
    let path = body["path"].as_str().unwrap_or_default();
    let minutes = body["expires_in_secs"].as_i64().unwrap_or(0) / 60;
    println!("{base}{path}");
    eprintln!("(opens once, within {minutes} minutes; read-only)");
    Ok(())
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let json = std::env::var("GHA_DISPATCHER_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn serve(cfg: Config, secrets: gha_dispatcher::config::Secrets) -> anyhow::Result<()> {
    let running = gha_dispatcher::app::start(cfg, secrets, None).await?;
    let stop = running.stop_handle();
    tokio::spawn(async move {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
        tracing::info!("shutting down");
        let _ = stop.send(true);
    });
    running.wait().await
}

/// An HTTP client for the admin commands, which talk to this host's dispatcher: never through
/// `HTTPS_PROXY`/`HTTP_PROXY` (set for GitHub, not for the local daemon).
fn local_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder().no_proxy().build()?)
}

async fn fetch_status(url: &str, authorization: &str) -> anyhow::Result<Status> {
    let response = local_client()?
        .get(format!("{}/status", url.trim_end_matches('/')))
        .header("Authorization", authorization)
        .send()
        .await?;
    let status = response.status();
    if !status.is_success() {
        let body: serde_json::Value = response.json().await.unwrap_or_default();
        let message = body["error"].as_str().unwrap_or("no message").to_string();
        anyhow::bail!("answered {status}: {message}");
    }
    Ok(response.json().await?)
}

/// Database calls are serialised on one SQLite connection, so more blocking threads than a few
/// only wait on its lock: under a burst of webhooks tokio's default (up to 512) made hundreds of
/// threads, each with its own stack and malloc arena, for no extra throughput.
const MAX_BLOCKING_THREADS: usize = 8;

/// glibc gives every thread that allocates its own malloc arena (up to 8 per core) and keeps
/// what a burst freed in each of them: after 10,000 queued webhooks the daemon's RSS was
/// 56-82 MiB with the default and 40 MiB with two arenas (ci/bench, metric 5a).
const MALLOC_ARENAS: libc::c_int = 2;

fn serve_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    #[cfg(target_env = "gnu")]
    // SAFETY: called before the runtime starts any thread; mallopt only sets a tunable.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, MALLOC_ARENAS);
    }
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .build()
}
