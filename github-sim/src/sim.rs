//! `Sim`: one running simulator (server + delivery worker + JIT expiry sweeper), and the library
//! API tests use to drive it in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use test_support::wait_until_async;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use crate::config::{Enterprise, SimConfig};
use crate::error::SimError;
use crate::faults::{Faults, ScaleSetFaults};
use crate::model::*;
use crate::shared::Shared;
use crate::tls::ServerIdentity;

pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

async fn bind(listen: &str) -> Result<(TcpListener, SocketAddr), SimError> {
    let bind_err = |source| SimError::Bind {
        addr: listen.to_string(),
        source,
    };
    let listener = TcpListener::bind(listen).await.map_err(bind_err)?;
    let addr = listener.local_addr().map_err(bind_err)?;
    Ok((listener, addr))
}

/// Serves `app` over plain HTTP until `stop` turns true.
fn serve_plain(
    listener: TcpListener,
    app: Router,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
            let _ = stop.wait_for(|stopped| *stopped).await;
        });
        if let Err(e) = serve.await {
            tracing::error!("github-sim server: {e}");
        }
    })
}

/// Serves `app` over HTTPS with `identity` until `stop` turns true.
fn serve_tls(
    listener: TcpListener,
    app: Router,
    identity: ServerIdentity,
    mut stop: watch::Receiver<bool>,
) -> Vec<JoinHandle<()>> {
    let handle = axum_server::Handle::new();
    let server = {
        let handle = handle.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::tls::serve_https(listener, app, &identity, handle).await {
                tracing::error!("github-sim server: {e}");
            }
        })
    };
    let stopper = tokio::spawn(async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
        handle.shutdown();
    });
    vec![server, stopper]
}

fn not_found_fallback(router: Router<Arc<Shared>>, shared: &Arc<Shared>) -> Router {
    router
        .fallback(|| async { crate::error::ApiError::not_found() })
        .with_state(shared.clone())
}

impl Sim {
    /// Binds `config.listen` and serves until dropped or shut down: plain HTTP, or HTTPS with
    /// `config.tls` (the runner service then on a plain port of its own), the REST API under
    /// `/api/v3` when `config.enterprise` is set.
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        let (listener, addr) = bind(&config.listen).await?;
        let scheme = if config.tls.is_some() {
            "https"
        } else {
            "http"
        };
        let prefix = if config.enterprise.is_some() {
            Enterprise::API_PREFIX
        } else {
            ""
        };
        let runner = match config.tls {
            Some(_) => Some(bind(&SocketAddr::new(addr.ip(), 0).to_string()).await?),
            None => None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let mut shared = Shared::new(config, format!("{scheme}://{addr}{prefix}"), tx);
        if let Some((_, runner_addr)) = &runner {
            shared.runner_base_url = format!("http://{runner_addr}");
        }
        let shared = Arc::new(shared);

        let api = crate::rest::router(shared.clone());
        let mut app = if prefix.is_empty() {
            api
        } else {
            Router::new().nest(prefix, api)
        }
        .merge(crate::control::router())
        .merge(crate::scaleset::router(shared.clone()));
        if runner.is_none() {
            app = app.merge(crate::runner_api::router());
        }
        let app = not_found_fallback(app, &shared);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = match shared.config.tls.clone() {
            None => vec![serve_plain(listener, app, stop_rx.clone())],
            Some(identity) => serve_tls(listener, app, identity, stop_rx.clone()),
        };
        if let Some((runner_listener, _)) = runner {
            let runner_app = not_found_fallback(crate::runner_api::router(), &shared);
            tasks.push(serve_plain(runner_listener, runner_app, stop_rx));
        }
        tasks.push(tokio::spawn(crate::webhooks::worker(shared.clone(), rx)));
        tasks.push(sweeper(shared.clone()));
        tasks.push(scaleset_sweeper(shared.clone()));
        Ok(Sim {
            shared,
            addr,
            stop: Some(stop_tx),
            tasks,
        })
    }

    /// The REST base URL: `http://127.0.0.1:PORT`, `https://…` with TLS, ending in `/api/v3`
    /// for an Enterprise Server (`/_sim` is at the host's root).
    pub fn url(&self) -> String {
        self.shared.base_url.clone()
    }

    /// Where the fake runner talks to the simulator (`<url>/_runner`).
    pub fn runner_url(&self) -> String {
        self.shared.runner_base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    pub fn add_org(&self, login: &str) -> u64 {
        self.shared.mutate(|w| w.add_org(login))
    }

    pub fn add_repo(&self, owner: &str, name: &str) -> u64 {
        self.shared.mutate(|w| w.add_repo(owner, name))
    }

    pub fn add_app(&self, spec: AppSpec) -> Result<(), SimError> {
        self.shared.mutate(|w| w.add_app(&spec))
    }

    pub fn add_installation(&self, spec: InstallationSpec) -> Result<u64, SimError> {
        self.shared.mutate(|w| w.add_installation(&spec))
    }

    /// The browser step of GitHub's App manifest flow: `owner` creates an App from `manifest`;
    /// the code to convert at `POST /app-manifests/{code}/conversions`.
    pub fn submit_app_manifest(
        &self,
        owner: &str,
        manifest: serde_json::Value,
    ) -> Result<String, SimError> {
        self.shared
            .mutate(|w| crate::rest::manifests::submit(w, owner, manifest))
    }

    pub fn add_pat(&self, token: &str, scopes: &[&str]) {
        let scopes = scopes.iter().map(|s| s.to_string()).collect();
        self.shared
            .mutate(|w| w.pats.insert(token.to_string(), scopes));
    }

    pub fn set_webhook(&self, target: WebhookTarget) {
        self.shared.mutate(|w| w.webhook = Some(target));
    }

    pub fn enqueue_workflow(&self, spec: WorkflowSpec) -> Result<RunCreated, SimError> {
        let spec = crate::scenario::expand_counts(spec);
        self.shared.mutate(|w| w.enqueue_workflow(&spec))
    }

    /// Approves a job waiting for its environment (it becomes queued).
    pub fn approve_job(&self, job_id: u64) -> Result<(), SimError> {
        self.shared.mutate(|w| w.approve_job(job_id))
    }

    pub fn cancel_run(&self, run_id: u64) -> Result<(), SimError> {
        self.shared.mutate(|w| w.cancel_run(run_id))
    }

    pub fn snapshot(&self) -> SimSnapshot {
        self.shared.lock().snapshot()
    }

    pub fn job(&self, id: u64) -> Option<JobView> {
        let w = self.shared.lock();
        w.jobs.get(&id).map(|j| w.job_view(j))
    }

    pub fn jobs(&self) -> Vec<JobView> {
        self.snapshot().jobs
    }

    pub fn runs(&self) -> Vec<RunView> {
        self.snapshot().runs
    }

    pub fn runners(&self) -> Vec<RunnerView> {
        self.snapshot().runners
    }

    /// Job and runner moments in milliseconds, oldest first (see [`TimelineEvent`]).
    pub fn timeline(&self) -> Vec<TimelineEvent> {
        self.shared.lock().timeline.clone()
    }

    pub fn counters(&self) -> Counters {
        self.shared.lock().counters.clone()
    }

    /// Every JIT config `generate-jitconfig` has answered, oldest first.
    pub fn issued_jit_configs(&self) -> Vec<crate::state::IssuedJitConfig> {
        self.shared.lock().issued_jit_configs.clone()
    }

    pub fn deliveries(&self) -> Vec<DeliveryRecord> {
        self.shared.lock().deliveries.clone()
    }

    pub fn redeliver(&self, delivery_id: u64) -> Result<u64, SimError> {
        crate::webhooks::redeliver(&self.shared, delivery_id)
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.mutate(|w| w.faults = faults);
    }

    pub fn faults(&self) -> Faults {
        self.shared.lock().faults.clone()
    }

    /// The scale set protocol's fault knobs (effective immediately).
    pub fn set_scaleset_faults(&self, faults: ScaleSetFaults) {
        self.shared.mutate(|w| w.scale.faults = faults);
    }

    pub fn scaleset_faults(&self) -> ScaleSetFaults {
        self.shared.lock().scale.faults.clone()
    }

    /// A scale set's statistics as its messages carry them (`None`: no such set).
    pub fn scale_set_statistics(&self, id: u64) -> Option<serde_json::Value> {
        let w = self.shared.lock();
        w.scale
            .sets
            .contains_key(&id)
            .then(|| w.scale_set_statistics(id))
    }

    /// Polls the state (`test_support::wait_until_async`) until `cond` holds or `timeout`
    /// passes; true if it held.
    pub async fn wait_for(&self, timeout: Duration, cond: impl Fn(&SimSnapshot) -> bool) -> bool {
        let what = "the simulator's state to satisfy the condition";
        wait_until_async(what, timeout, || async { cond(&self.snapshot()) })
            .await
            .is_ok()
    }

    /// Same as `wait_for` but over the delivery log.
    pub async fn wait_for_deliveries(
        &self,
        timeout: Duration,
        cond: impl Fn(&[DeliveryRecord]) -> bool,
    ) -> bool {
        let what = "the delivery log to satisfy the condition";
        wait_until_async(what, timeout, || async { cond(&self.deliveries()) })
            .await
            .is_ok()
    }

    pub async fn shutdown(mut self) {
        self.stop_now();
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }

    fn stop_now(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(true);
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.stop_now();
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Expires unused JIT configs, reaps lost runners and cancels jobs queued too long.
fn sweeper(shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let c = &shared.config;
        let (ttl, offline, queue) = (c.jit_config_ttl, c.runner_offline_after, c.queue_timeout);
        let tick = (ttl.min(offline).min(queue) / 4)
            .clamp(Duration::from_millis(20), Duration::from_secs(5));
        loop {
            tokio::time::sleep(tick).await;
            shared.mutate_quiet(|w| {
                w.expire_unused_jit(ttl);
                w.reap_lost_runners(offline);
                w.expire_queued(queue);
            });
        }
    })
}

/// The scale set protocol's clock: abandoned sessions expire, the re-offer quirk fires, and
/// queued jobs are routed to their sets; long polls are woken when that made news.
fn scaleset_sweeper(shared: Arc<Shared>) -> JoinHandle<()> {
    tokio::spawn(async move {
        let ttl = shared.config.scaleset_session_ttl;
        let tick = (ttl / 4).clamp(Duration::from_millis(20), Duration::from_millis(100));
        loop {
            tokio::time::sleep(tick).await;
            let news = shared.mutate_quiet(|w| {
                let expired = w.expire_sessions(ttl);
                let reoffered = w.reoffer_sweep();
                expired || reoffered
            });
            if news {
                shared.changed.notify_waiters();
            }
        }
    })
}
