//! Wiring: build every part from a validated config and its secrets, serve HTTP and run
//! the control loop until shutdown. The only module that knows every other one.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::api::{self, AppState};
use crate::clients::actions::ActionsClient;
use crate::clients::github::{https_client, Credentials, GithubClient};
use crate::clients::slurm::Slurm;
use crate::clients::users;
use crate::config::{AuthConfig, Config, GithubSecret, Secrets};
use crate::control::Controller;
use crate::intake::listener::{self, ListenerContext};
use crate::reconcile::Reconciler;
use crate::registrations::Registrations;
use crate::scale::Scaler;
use crate::scale_sets::ScaleSets;
use crate::stage::StageContext;
use crate::store::{self, Db};
use crate::submit::Submitter;
use crate::telemetry::{Metrics, SharedStatus, Telemetry};

/// A running dispatcher.
pub struct Running {
    pub local_addr: SocketAddr,
    stop: watch::Sender<bool>,
    server: JoinHandle<std::io::Result<()>>,
    control: JoinHandle<()>,
    /// The scale set listeners (each deletes its session when stopped).
    listeners: Vec<JoinHandle<()>>,
}

impl Running {
    /// Stop serving, let the control loop finish its current pass and the listeners delete
    /// their sessions.
    pub async fn shutdown(self) {
        let _ = self.stop.send(true);
        let _ = self.control.await;
        for listener in self.listeners {
            let _ = listener.await;
        }
        let _ = self.server.await;
    }

    /// Wait until either task ends (they only end on shutdown or a fatal server error).
    pub async fn wait(self) -> anyhow::Result<()> {
        let Running {
            server,
            control,
            stop,
            listeners,
            ..
        } = self;
        let result = tokio::select! {
            r = server => { let _ = stop.send(true); r }
            _ = control => { let _ = stop.send(true); Ok(Ok(())) }
        };
        for listener in listeners {
            let _ = listener.await;
        }
        result??;
        Ok(())
    }

    pub fn stop_handle(&self) -> watch::Sender<bool> {
        self.stop.clone()
    }
}

/// Add the config's `slurm.user_map` entries whose key is not in the database yet. Rows
/// already there (an earlier seed, or an API write) win, so API changes survive restarts.
/// Entries naming a user the passwd database does not know are skipped with an error
/// (a job submitted for it could only fail).
async fn seed_mapping(db: &Db, config: &Config) -> anyhow::Result<()> {
    let mut entries = config.slurm.user_map.clone();
    entries.retain(
        |e| match users::unix_user_exists(&e.unix_user) {
            Ok(true) => true,
            Ok(false) => {
                tracing::error!(key = %e.repo_key, user = %e.unix_user, "slurm.user_map names an unknown Unix user; entry not seeded");
                false
            }
            Err(err) => {
                tracing::error!(key = %e.repo_key, user = %e.unix_user, error = %err, "cannot look up the Unix user of a slurm.user_map entry; entry not seeded");
                false
            }
        },
    );
    if entries.is_empty() {
        return Ok(());
    }
    let inserted = db
        .call(move |c| store::seed_repo_users(c, &entries))
        .await
        .map_err(|e| anyhow::anyhow!("cannot seed the repository mapping: {e}"))?;
    tracing::info!(
        inserted,
        configured = config.slurm.user_map.len(),
        "repository mapping seeded from slurm.user_map"
    );
    Ok(())
}

async fn stopped(mut rx: watch::Receiver<bool>) {
    while !*rx.borrow() {
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Start on `config.listen`, or on `listener` when given (tests bind 127.0.0.1:0).
pub async fn start(
    config: Config,
    secrets: Secrets,
    listener: Option<TcpListener>,
) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let db = Db::open(&config.db_path).map_err(|e| {
        anyhow::anyhow!(
            "cannot open state database {}: {e}",
            config.db_path.display()
        )
    })?;
    seed_mapping(&db, &config).await?;
    let metrics = Arc::new(Metrics::new());
    let pools: Vec<(&str, u32)> = config
        .pools
        .iter()
        .map(|p| (p.name.as_str(), p.max_runners))
        .collect();
    metrics.zero_known_series(&pools);
    let ca_pem = read_ca(&config)?;
    let github = Arc::new(GithubClient::with_ca(
        &config.github.api_url,
        github_credentials(&config, &secrets)?,
        metrics.clone(),
        ca_pem.as_deref(),
    )?);
    let scale_sets = scale_sets(&config, &github, &metrics, ca_pem.as_deref())?;
    let wake = Arc::new(Notify::new());
    let shared = Arc::new(Mutex::new(SharedStatus::default()));
    let telemetry = Telemetry::new(metrics.clone(), shared.clone());
    let stages = stage_context(config.clone(), db.clone(), github, telemetry, &scale_sets);
    let (stop, stop_rx) = watch::channel(false);
    let state = AppState {
        config: config.clone(),
        db,
        webhook_secret: Arc::new(secrets.webhook_secret.clone()),
        metrics: metrics.clone(),
        wake: wake.clone(),
        shared: shared.clone(),
        admin_token: secrets.admin_token.clone().map(Arc::new),
        registrations: stages.registrations.clone(),
        slurm: stages.slurm.clone(),
        scale_sets: scale_sets.clone(),
        console: api::console::ConsoleShared::new(stop_rx.clone()),
    };
    let (local_addr, server) = serve(state, listener, &config, stop_rx.clone()).await?;
    let listeners = listener::spawn(
        ListenerContext::new(&stages, wake.clone(), scale_sets.clone()),
        stop_rx.clone(),
    );
    let controller = controller(stages, scale_sets, wake);
    let control = tokio::spawn(controller.run(stopped(stop_rx)));
    tracing::info!(%local_addr, "gha-dispatcher listening");
    Ok(Running {
        local_addr,
        stop,
        server,
        control,
        listeners,
    })
}

/// The certificate authorities `github.ca_file` adds, if it is set.
fn read_ca(config: &Config) -> anyhow::Result<Option<Vec<u8>>> {
    config
        .github
        .ca_file
        .as_ref()
        .map(|path| {
            std::fs::read(path)
                .map_err(|e| anyhow::anyhow!("github.ca_file: cannot read {}: {e}", path.display()))
        })
        .transpose()
}

/// Serve the API on `listener` (or `config.listen`) until `stop` turns true.
async fn serve(
    state: AppState,
    listener: Option<TcpListener>,
    config: &Config,
    stop: watch::Receiver<bool>,
) -> anyhow::Result<(SocketAddr, JoinHandle<std::io::Result<()>>)> {
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?,
    };
    let local_addr = listener.local_addr()?;
    let router = api::router(state);
    let server =
        tokio::spawn(async move { api::serve::serve(listener, router, stopped(stop)).await });
    Ok((local_addr, server))
}

/// The GitHub credentials the configured authentication and its secret make.
fn github_credentials(config: &Config, secrets: &Secrets) -> anyhow::Result<Credentials> {
    Ok(match (&config.github.auth, &secrets.github) {
        (
            AuthConfig::App {
                app_id,
                installation_id,
                ..
            },
            GithubSecret::AppKeyPem(pem),
        ) => Credentials::App {
            app_id: *app_id,
            key: jsonwebtoken::EncodingKey::from_rsa_pem(pem).map_err(|_| {
                anyhow::anyhow!("github.private_key_file is not an RSA private key in PEM format")
            })?,
            installation_id: *installation_id,
        },
        (AuthConfig::Token { .. }, GithubSecret::Token(token)) => Credentials::Token(token.clone()),
        _ => anyhow::bail!("GitHub credentials do not match the configured authentication"),
    })
}

/// One Actions service client per listener target (the REST client bootstraps them).
fn scale_sets(
    config: &Config,
    github: &Arc<GithubClient>,
    metrics: &Arc<Metrics>,
    ca_pem: Option<&[u8]>,
) -> anyhow::Result<ScaleSets> {
    let mut clients = std::collections::HashMap::new();
    for target in config.github.listener_targets() {
        let http = https_client(config.github.api_url.starts_with("https://"), ca_pem)?;
        let client = ActionsClient::new(
            http,
            github.clone(),
            target.scope.clone(),
            config.github.config_url(&target.scope),
            metrics.clone(),
        );
        clients.insert(target.scope.key(), Arc::new(client));
    }
    Ok(ScaleSets::new(clients))
}

/// The control loop and its stages.
fn controller(ctx: StageContext, scale_sets: ScaleSets, wake: Arc<Notify>) -> Controller {
    let scale = Scaler::new(ctx.clone(), scale_sets);
    let period = Duration::from_secs(ctx.config.scaling.reconcile_interval_secs);
    let github = ctx.github.clone();
    let reconcile = Reconciler::new(ctx.clone());
    let submit = Submitter::new(ctx);
    Controller::new(reconcile, scale, submit, github, wake, period)
}

/// The control loop's stages over `config` and `db`, without the HTTP server and without
/// running the loop: for tests that run passes one at a time, and crash between any two
/// steps by dropping a pass (dispatcher/tests/prop_reconcile.rs). Its metrics come back too.
pub fn stages_only(
    config: Config,
    db: Db,
    credentials: Credentials,
) -> anyhow::Result<(Controller, Arc<Metrics>)> {
    let config = Arc::new(config);
    let metrics = Arc::new(Metrics::new());
    let github = Arc::new(GithubClient::new(
        &config.github.api_url,
        credentials,
        metrics.clone(),
    )?);
    let telemetry = Telemetry::new(
        metrics.clone(),
        Arc::new(Mutex::new(SharedStatus::default())),
    );
    let scale_sets = ScaleSets::default();
    let stages = stage_context(config, db, github, telemetry, &scale_sets);
    let wake = Arc::new(Notify::new());
    Ok((controller(stages, scale_sets, wake), metrics))
}

/// What every stage holds, the registrations (REST and scale sets) among it.
fn stage_context(
    config: Arc<Config>,
    db: Db,
    github: Arc<GithubClient>,
    telemetry: Telemetry,
    scale_sets: &ScaleSets,
) -> StageContext {
    let registrations = Registrations::new(
        db.clone(),
        github.clone(),
        telemetry.clone(),
        scale_sets.clone(),
        config.github.runner_group_id,
    );
    StageContext {
        slurm: Slurm::new(config.slurm.clone()),
        config,
        db,
        github,
        telemetry,
        registrations,
    }
}
