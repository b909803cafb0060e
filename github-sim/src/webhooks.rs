//! Webhook delivery: signs and posts `workflow_job` events with GitHub's headers, applies the
//! delivery faults (drop, duplicate, delay, reorder), keeps the delivery log, and redelivers.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::error::SimError;
use crate::faults::{percent_pick, Faults, DELIVERY_FAULT_KINDS};
use crate::model::DeliveryRecord;
use crate::shared::{Outgoing, Shared};
use crate::signature::{sign_sha1, sign_sha256};

/// The hook id GitHub shows for the App's webhook.
pub const HOOK_ID: u64 = 458_003_117;

struct Prepared {
    record_id: u64,
    guid: String,
    event: String,
    body: Vec<u8>,
    app_id: Option<u64>,
}

fn record(
    shared: &Shared,
    o: &Outgoing,
    guid: &str,
    body: &[u8],
    redelivery: bool,
    outcome: &str,
) -> u64 {
    let mut w = shared.lock();
    let id = w.next_id();
    w.deliveries.push(DeliveryRecord {
        id,
        guid: guid.to_string(),
        event: o.event.to_string(),
        action: Some(o.action.clone()),
        job_id: o.job_id,
        installation_id: o.installation_id,
        repository_id: o.repository_id,
        redelivery,
        outcome: outcome.to_string(),
        status: if outcome == "dropped" {
            "dropped by fault injection".into()
        } else {
            String::new()
        },
        status_code: 0,
        delivered_at: crate::time::now_iso(),
        duration: 0.0,
        body: String::from_utf8_lossy(body).into_owned(),
    });
    id
}

fn prepare(shared: &Shared, o: &Outgoing, guid: &str, redelivery: bool) -> Prepared {
    let body = serde_json::to_vec(&o.payload).unwrap_or_default();
    let record_id = record(shared, o, guid, &body, redelivery, "pending");
    let app_id = {
        let w = shared.lock();
        o.installation_id
            .and_then(|i| w.installations.get(&i).map(|i| i.app_id))
    };
    Prepared {
        record_id,
        guid: guid.to_string(),
        event: o.event.to_string(),
        body,
        app_id,
    }
}

async fn send(shared: Arc<Shared>, p: Prepared) {
    let target = shared.lock().webhook.clone();
    let started = Instant::now();
    let (outcome, status, code) = match target {
        None => ("failed", "no webhook configured".to_string(), 0u16),
        Some(t) => {
            let secret = t.secret.as_bytes();
            let mut req = shared
                .http
                .post(&t.url)
                .header("content-type", "application/json")
                .header("user-agent", "GitHub-Hookshot/sim")
                .header("x-github-event", &p.event)
                .header("x-github-delivery", &p.guid)
                .header("x-github-hook-id", HOOK_ID.to_string())
                .header("x-hub-signature-256", sign_sha256(secret, &p.body))
                .header("x-hub-signature", sign_sha1(secret, &p.body));
            if let Some(app) = p.app_id {
                req = req
                    .header("x-github-hook-installation-target-type", "integration")
                    .header("x-github-hook-installation-target-id", app.to_string());
            }
            if let Some(e) = &shared.config.enterprise {
                req = req
                    .header("x-github-enterprise-host", &e.host)
                    .header("x-github-enterprise-version", &e.version);
            }
            match req.body(p.body.clone()).send().await {
                Ok(r) if r.status().is_success() => {
                    ("delivered", "OK".to_string(), r.status().as_u16())
                }
                Ok(r) => (
                    "failed",
                    format!("Invalid HTTP Response: {}", r.status().as_u16()),
                    r.status().as_u16(),
                ),
                Err(e) if e.is_timeout() => ("failed", "timed out".to_string(), 0),
                Err(_) => ("failed", "failed to connect".to_string(), 0),
            }
        }
    };
    let mut w = shared.lock();
    if outcome == "delivered" {
        w.counters.deliveries_sent += 1;
    } else {
        w.counters.deliveries_failed += 1;
    }
    if let Some(d) = w.deliveries.iter_mut().find(|d| d.id == p.record_id) {
        d.outcome = outcome.to_string();
        d.status = status;
        d.status_code = code;
        d.duration = started.elapsed().as_secs_f64();
    }
}

/// Sends one event (once, or twice when duplicated), after the configured delay.
async fn dispatch(shared: Arc<Shared>, o: Outgoing, duplicate: bool, delay_ms: u64) {
    let guid = uuid::Uuid::new_v4().to_string();
    let first = prepare(&shared, &o, &guid, false);
    let second = duplicate.then(|| prepare(&shared, &o, &guid, false));
    let run = async move {
        if delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        }
        send(shared.clone(), first).await;
        if let Some(second) = second {
            send(shared, second).await;
        }
    };
    if delay_ms > 0 {
        tokio::spawn(run);
    } else {
        run.await;
    }
}

/// What happens to one delivery.
struct DeliveryFaults {
    drop: bool,
    dup: bool,
    delay: u64,
    reorder: bool,
    window: u64,
    /// No more "next N" reorders: flush what is held now.
    reorder_done: bool,
}

/// Decides one delivery's faults ("next N" first, then the percentage's turn) and counts them.
fn delivery_faults(shared: &Shared) -> DeliveryFaults {
    let mut w = shared.lock();
    let f = &mut w.faults;
    let mut out = DeliveryFaults {
        drop: Faults::take(&mut f.drop_deliveries),
        dup: false,
        delay: f.delivery_delay_ms,
        reorder: false,
        window: f.reorder_window_ms(),
        reorder_done: true,
    };
    out.dup = !out.drop && Faults::take(&mut f.duplicate_deliveries);
    out.reorder = !out.drop && Faults::take(&mut f.reorder_deliveries);
    out.reorder_done = f.reorder_deliveries == 0;
    let asked = out.drop || out.dup || out.reorder;
    let percent = f.delivery_fault_percent;
    let percent_delay = f.percent_delay_ms();
    if !asked && percent > 0 {
        let n = w.counters.fault_candidates.deliveries;
        w.counters.fault_candidates.deliveries += 1;
        if let Some(turn) = percent_pick(n, percent) {
            let kind = (turn % 4) as usize;
            match kind {
                0 => out.drop = true,
                1 => out.dup = true,
                2 => out.delay = percent_delay,
                // Held for the window while later deliveries pass it.
                _ => {
                    out.reorder = true;
                    out.reorder_done = false;
                }
            }
            w.counters.fault_injected(DELIVERY_FAULT_KINDS[kind]);
        }
    }
    if out.drop {
        w.counters.deliveries_dropped += 1;
    }
    if out.dup {
        w.counters.deliveries_duplicated += 1;
    }
    out
}

/// The delivery worker: one per simulator, in event order unless a fault says otherwise.
pub async fn worker(shared: Arc<Shared>, mut rx: mpsc::UnboundedReceiver<Outgoing>) {
    let mut held: Vec<(Outgoing, bool)> = Vec::new();
    let mut flush_at: Option<tokio::time::Instant> = None;
    loop {
        let next = match flush_at {
            Some(at) => tokio::select! {
                o = rx.recv() => o.map(Some),
                _ = tokio::time::sleep_until(at) => Some(None),
            },
            None => rx.recv().await.map(Some),
        };
        let Some(next) = next else { break };
        let Some(o) = next else {
            // Reorder window over: send what was held, newest first.
            flush_at = None;
            let delay = shared.lock().faults.delivery_delay_ms;
            for (o, dup) in held.drain(..).rev() {
                dispatch(shared.clone(), o, dup, delay).await;
            }
            continue;
        };
        let DeliveryFaults {
            drop,
            dup,
            delay,
            reorder,
            window,
            reorder_done,
        } = delivery_faults(&shared);
        if drop {
            let guid = uuid::Uuid::new_v4().to_string();
            let body = serde_json::to_vec(&o.payload).unwrap_or_default();
            record(&shared, &o, &guid, &body, false, "dropped");
            continue;
        }
        if reorder {
            held.push((o, dup));
            if reorder_done {
                flush_at = None;
                for (o, dup) in held.drain(..).rev() {
                    dispatch(shared.clone(), o, dup, delay).await;
                }
            } else if flush_at.is_none() {
                flush_at = Some(tokio::time::Instant::now() + Duration::from_millis(window));
            }
            continue;
        }
        dispatch(shared.clone(), o, dup, delay).await;
    }
}

/// Sends a logged delivery again with the same GUID; returns the new attempt's id.
pub fn redeliver(shared: &Arc<Shared>, delivery_id: u64) -> Result<u64, SimError> {
    let (o, guid) = {
        let w = shared.lock();
        let d = w
            .deliveries
            .iter()
            .find(|d| d.id == delivery_id)
            .ok_or(SimError::UnknownDelivery(delivery_id))?;
        let payload = serde_json::from_str(&d.body).unwrap_or_default();
        (
            Outgoing {
                event: "workflow_job",
                action: d.action.clone().unwrap_or_default(),
                job_id: d.job_id,
                installation_id: d.installation_id,
                repository_id: d.repository_id,
                payload,
            },
            d.guid.clone(),
        )
    };
    let p = prepare(shared, &o, &guid, true);
    let id = p.record_id;
    tokio::spawn(send(shared.clone(), p));
    Ok(id)
}
