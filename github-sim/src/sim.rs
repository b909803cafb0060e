//! `Sim`: one running simulator (server + delivery worker + JIT expiry sweeper), and the library
//! API tests use to drive it in-process.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use test_support::wait_until_async;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::SimConfig;
use crate::error::SimError;
use crate::faults::Faults;
use crate::model::*;
use crate::shared::Shared;

pub struct Sim {
    shared: Arc<Shared>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sim {
    /// Binds `config.listen` and serves until dropped or shut down.
    pub async fn start(config: SimConfig) -> Result<Sim, SimError> {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .map_err(|source| SimError::Bind {
                addr: config.listen.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| SimError::Bind {
            addr: config.listen.clone(),
            source,
        })?;
        let base_url = format!("http://{addr}");
        let (tx, rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared::new(config, base_url, tx));

        let app = crate::rest::router(shared.clone())
            .merge(crate::runner_api::router())
            .merge(crate::control::router())
            .fallback(|| async { crate::error::ApiError::not_found() })
            .with_state(shared.clone());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async {
                let _ = stop_rx.await;
            });
            if let Err(e) = serve.await {
                tracing::error!("github-sim server: {e}");
            }
        });
        let worker = tokio::spawn(crate::webhooks::worker(shared.clone(), rx));
        let sweeper = {
            let shared = shared.clone();
            tokio::spawn(async move {
                let c = &shared.config;
                let (ttl, offline, queue) =
                    (c.jit_config_ttl, c.runner_offline_after, c.queue_timeout);
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
        };
        Ok(Sim {
            shared,
            addr,
            stop: Some(stop_tx),
            tasks: vec![server, worker, sweeper],
        })
    }

    /// `http://127.0.0.1:PORT`: the REST base URL (and of `/_sim`, `/_runner`).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
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
            let _ = stop.send(());
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
