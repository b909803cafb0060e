//! What the server's tasks share: the world behind one mutex, the wake-up for the runners'
//! long-polls, and the hand-off of webhooks to the delivery worker. After each change it turns
//! the world's `JobEvent`s into `workflow_job` payloads (rendered by `render`) and queues them.

use std::sync::{Mutex, MutexGuard};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::config::SimConfig;
use crate::render;
use crate::state::{JobEvent, World};
use crate::time::iso;

/// A webhook waiting to be handed to the delivery worker.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub event: &'static str,
    pub action: String,
    pub job_id: Option<u64>,
    pub installation_id: Option<u64>,
    pub repository_id: Option<u64>,
    pub payload: Value,
}

impl Outgoing {
    /// The `workflow_job` webhook for `event`, rendered against the world it happened in.
    fn workflow_job(w: &World, event: &JobEvent) -> Option<Outgoing> {
        let repo = w.repos.get(&event.job.repo_key)?;
        Some(Outgoing {
            event: "workflow_job",
            action: event.action.clone(),
            job_id: Some(event.job.id),
            installation_id: w.any_installation_on(&repo.owner).map(|i| i.id),
            repository_id: Some(repo.id),
            payload: render::workflow_job_webhook(w, &event.job, &event.action),
        })
    }
}

/// Everything the server's tasks share.
pub struct Shared {
    pub config: SimConfig,
    pub base_url: String,
    /// Where the runner service (`/_runner`) is: `base_url`'s host, or a plain-HTTP port of its
    /// own when the API is served over HTTPS.
    pub runner_base_url: String,
    world: Mutex<World>,
    /// Woken whenever jobs or runners change, for the runners' long-polls.
    pub changed: Notify,
    webhook_tx: mpsc::UnboundedSender<Outgoing>,
    /// Client for webhook deliveries (timeout = `config.webhook_timeout`).
    pub http: reqwest::Client,
}

impl Shared {
    pub fn new(
        config: SimConfig,
        base_url: String,
        webhook_tx: mpsc::UnboundedSender<Outgoing>,
    ) -> Self {
        let http = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .build()
            .unwrap_or_default();
        Self {
            http,
            config,
            world: Mutex::new(World::new(base_url.clone())),
            runner_base_url: base_url.clone(),
            base_url,
            changed: Notify::new(),
            webhook_tx,
        }
    }

    /// Read access (a panicking holder cannot poison the simulator for good).
    pub fn lock(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs a change, then hands its webhooks to the delivery worker and wakes the runners.
    pub fn mutate<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let (result, _) = self.change(f);
        self.changed.notify_waiters();
        result
    }

    /// Like `mutate`, but wakes the runners only if the change produced webhooks (a job moved).
    /// The runners' long-poll uses it: waking itself on every look would spin.
    pub fn mutate_quiet<R>(&self, f: impl FnOnce(&mut World) -> R) -> R {
        let (result, moved) = self.change(f);
        if moved {
            self.changed.notify_waiters();
        }
        result
    }

    /// Runs `f` under the lock, renders the webhooks of the job events it left while the world
    /// is still as they describe it, and queues them; true if there were any.
    fn change<R>(&self, f: impl FnOnce(&mut World) -> R) -> (R, bool) {
        let (result, outbox) = {
            let mut w = self.lock();
            let r = f(&mut w);
            let events = w.take_events();
            let outbox: Vec<Outgoing> = events
                .iter()
                .filter_map(|e| Outgoing::workflow_job(&w, e))
                .collect();
            (r, outbox)
        };
        let moved = !outbox.is_empty();
        for o in outbox {
            // The worker only stops with the server; then nobody is left to deliver to.
            let _ = self.webhook_tx.send(o);
        }
        (result, moved)
    }

    pub fn now_iso(&self) -> String {
        iso(Utc::now())
    }
}
