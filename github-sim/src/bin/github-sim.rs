//! `github-sim`: run the GitHub simulator (`serve`) or install the fake runner (`install-runner`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use github_sim::config::Enterprise;
use github_sim::{Sim, SimConfig, TestCa};

#[derive(Parser)]
#[command(
    name = "github-sim",
    about = "GitHub simulator and fake actions runner installer"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve the simulator until SIGINT/SIGTERM.
    Serve {
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Scenario file (JSON) applied at start.
        #[arg(long)]
        scenario: Option<PathBuf>,
        /// Unused JIT configs expire after this many seconds.
        #[arg(long)]
        jit_config_ttl_secs: Option<u64>,
        /// Installation tokens expire after this many seconds.
        #[arg(long)]
        token_ttl_secs: Option<u64>,
        /// Serve the API over HTTPS with a certificate from a CA made now, written to
        /// DIR/ca.pem (what a client trusts, e.g. the dispatcher's github.ca_file).
        #[arg(long, value_name = "DIR")]
        tls_dir: Option<PathBuf>,
        /// Act as a GitHub Enterprise Server named HOST: the API under /api/v3, webhooks with
        /// the X-GitHub-Enterprise-* headers.
        #[arg(long, value_name = "HOST")]
        enterprise_host: Option<String>,
    },
    /// Lay out DIR/run.sh and DIR/bin/Runner.Listener (the fake runner).
    InstallRunner {
        dir: PathBuf,
        /// The fake-runner binary to install (default: the one next to this executable).
        #[arg(long)]
        listener: Option<PathBuf>,
    },
}

fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Cmd::InstallRunner { dir, listener } => {
            let listener = match listener {
                Some(l) => l,
                None => github_sim::runner_install::default_listener()
                    .context("no fake-runner binary next to github-sim; pass --listener")?,
            };
            github_sim::runner_install::install(&dir, &listener)?;
            println!("installed fake runner in {}", dir.display());
            Ok(())
        }
        Cmd::Serve {
            listen,
            scenario,
            jit_config_ttl_secs,
            token_ttl_secs,
            tls_dir,
            enterprise_host,
        } => {
            let mut config = SimConfig {
                listen,
                enterprise: enterprise_host.map(|host| Enterprise {
                    host,
                    version: "3.14.0".into(),
                }),
                ..SimConfig::default()
            };
            if let Some(dir) = tls_dir {
                config.tls = Some(make_tls(&dir)?);
            }
            if let Some(s) = jit_config_ttl_secs {
                config.jit_config_ttl = Duration::from_secs(s);
            }
            if let Some(s) = token_ttl_secs {
                config.installation_token_ttl = Duration::from_secs(s);
            }
            let rt = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
            rt.block_on(serve(config, scenario))
        }
    }
}

/// A fresh CA (its certificate written to DIR/ca.pem) and a loopback certificate from it.
fn make_tls(dir: &std::path::Path) -> Result<github_sim::ServerIdentity> {
    let ca = TestCa::new()?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca_path = dir.join("ca.pem");
    std::fs::write(&ca_path, ca.cert_pem())
        .with_context(|| format!("writing {}", ca_path.display()))?;
    println!("github-sim CA certificate in {}", ca_path.display());
    Ok(ca.issue(&github_sim::tls::LOOPBACK_NAMES)?)
}

async fn serve(config: SimConfig, scenario: Option<PathBuf>) -> Result<()> {
    let sim = Sim::start(config).await?;
    if let Some(path) = scenario {
        let sc = github_sim::scenario::load(&path)?;
        let base = path.parent().map(|p| p.to_path_buf());
        github_sim::scenario::apply(sim.shared(), sc, base.as_deref())?;
    }
    println!("github-sim listening on {}", sim.url());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    sim.shutdown().await;
    Ok(())
}
