//! The Prometheus registry (OpenMetrics text through `prometheus-client`): every stage counts
//! here; `GET /metrics` renders it.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use std::sync::atomic::AtomicU64;

use crate::model::RunnerPhase;

type Labels = Vec<(String, String)>;

pub struct Metrics {
    registry: Registry,
    pub webhook_deliveries: Family<Labels, Counter>,
    pub queue_to_submit: Histogram,
    pub queue_to_runner_start: Histogram,
    pub runners: Family<Labels, Gauge>,
    pub queued_jobs: Family<Labels, Gauge>,
    pub pool_max_runners: Family<Labels, Gauge>,
    pub api_calls: Family<Labels, Counter>,
    pub rate_limit_remaining: Gauge,
    pub rate_limit_limit: Gauge,
    pub sbatch_submissions: Counter,
    pub sbatch_failures: Counter,
    pub runners_cancelled: Counter,
    pub runners_reaped: Family<Labels, Counter>,
    pub jobs_not_ours: Counter,
    pub jobs_refused: Family<Labels, Counter>,
    pub reconcile_errors: Family<Labels, Counter>,
    pub ticket_redemptions: Family<Labels, Counter>,
    pub tickets_unredeemed: Counter,
    pub job_end_notices: Family<Labels, Counter>,
    pub actions_calls: Family<Labels, Counter>,
    pub listener_polls: Counter,
    pub listener_messages: Family<Labels, Counter>,
    pub listener_session_conflicts: Counter,
    pub listener_jobs_acquired: Counter,
    pub jobs_accounted: Counter,
    pub runner_jobs_node_failed: Counter,
    /// Warm pools: idle runner-seconds (what keeping runners ready costs), per pool.
    pub warm_idle_seconds: Family<Labels, Counter<f64, AtomicU64>>,
    pub warm_target: Family<Labels, Gauge>,
    pub warm_idle: Family<Labels, Gauge>,
}

fn seconds_buckets() -> impl Iterator<Item = f64> {
    // 0.25 s .. about 17 min
    exponential_buckets(0.25, 2.0, 13)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("gha_dispatcher");
        let m = Metrics {
            webhook_deliveries: Family::default(),
            queue_to_submit: Histogram::new(seconds_buckets()),
            queue_to_runner_start: Histogram::new(seconds_buckets()),
            runners: Family::default(),
            queued_jobs: Family::default(),
            pool_max_runners: Family::default(),
            api_calls: Family::default(),
            rate_limit_remaining: Gauge::default(),
            rate_limit_limit: Gauge::default(),
            sbatch_submissions: Counter::default(),
            sbatch_failures: Counter::default(),
            runners_cancelled: Counter::default(),
            runners_reaped: Family::default(),
            jobs_not_ours: Counter::default(),
            jobs_refused: Family::default(),
            reconcile_errors: Family::default(),
            ticket_redemptions: Family::default(),
            tickets_unredeemed: Counter::default(),
            job_end_notices: Family::default(),
            actions_calls: Family::default(),
            listener_polls: Counter::default(),
            listener_messages: Family::default(),
            listener_session_conflicts: Counter::default(),
            listener_jobs_acquired: Counter::default(),
            jobs_accounted: Counter::default(),
            runner_jobs_node_failed: Counter::default(),
            warm_idle_seconds: Family::default(),
            warm_target: Family::default(),
            warm_idle: Family::default(),
            registry: Registry::default(),
        };
        m.register_demand(&mut registry);
        m.register_outcomes(&mut registry);
        m.register_listener(&mut registry);
        m.register_warm(&mut registry);
        Metrics { registry, ..m }
    }

    /// Intake, latency, runner and GitHub families.
    fn register_demand(&self, registry: &mut Registry) {
        registry.register(
            "webhook_deliveries",
            "Webhook deliveries by outcome",
            self.webhook_deliveries.clone(),
        );
        registry.register(
            "queue_to_submit_seconds",
            "From the dispatcher first learning of a queued job (its webhook received, or a poll when the webhook was missed) to sbatch accepting the runner made for it",
            self.queue_to_submit.clone(),
        );
        registry.register(
            "queue_to_runner_start_seconds",
            "From a job first seen queued to it being seen in progress on a runner",
            self.queue_to_runner_start.clone(),
        );
        registry.register(
            "runners",
            "Our runners per pool and phase",
            self.runners.clone(),
        );
        registry.register(
            "queued_jobs",
            "Unassigned queued jobs per pool",
            self.queued_jobs.clone(),
        );
        registry.register(
            "pool_max_runners",
            "Each pool's max_runners (alerts compare the runners of a pool with it)",
            self.pool_max_runners.clone(),
        );
        registry.register(
            "github_api_calls",
            "GitHub REST calls by endpoint and status",
            self.api_calls.clone(),
        );
        registry.register(
            "github_rate_limit_remaining",
            "x-ratelimit-remaining from the last GitHub answer",
            self.rate_limit_remaining.clone(),
        );
        registry.register(
            "github_rate_limit_limit",
            "x-ratelimit-limit from the last GitHub answer",
            self.rate_limit_limit.clone(),
        );
    }

    /// Slurm, cleanup, refusal and ticket families.
    fn register_outcomes(&self, registry: &mut Registry) {
        registry.register(
            "sbatch_submissions",
            "Successful sbatch calls",
            self.sbatch_submissions.clone(),
        );
        registry.register(
            "sbatch_failures",
            "Failed sbatch calls",
            self.sbatch_failures.clone(),
        );
        registry.register(
            "runners_cancelled",
            "Surplus pending Slurm jobs cancelled",
            self.runners_cancelled.clone(),
        );
        registry.register(
            "runners_reaped",
            "Runner registrations or jobs cleaned up, by reason",
            self.runners_reaped.clone(),
        );
        registry.register(
            "jobs_not_ours",
            "Queued jobs that matched no pool or target",
            self.jobs_not_ours.clone(),
        );
        registry.register(
            "jobs_refused",
            "Queued jobs of ours given no runner, by reason (unmapped: no user for the repository under slurm.unmapped = \"refuse\")",
            self.jobs_refused.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Reconcile steps that failed, by step",
            self.reconcile_errors.clone(),
        );
        registry.register(
            "ticket_redemptions",
            "POST /tickets/redeem answers, by result (ok or the error code)",
            self.ticket_redemptions.clone(),
        );
        registry.register(
            "job_end_notices",
            "POST /runners/job-ended answers (a node's epilog: a runner job ended), by result (finished, already_final or the error code)",
            self.job_end_notices.clone(),
        );
        registry.register(
            "tickets_unredeemed",
            "Ticket runners whose Slurm job got no JIT config: it ended without redeeming its ticket (cancelled while pending, refused, failed before redemption), or the ticket was spent and GitHub failed the mint",
            self.tickets_unredeemed.clone(),
        );
        registry.register(
            "runner_jobs_node_failed",
            "Runner Slurm jobs that ended NODE_FAIL (their node was lost mid-job)",
            self.runner_jobs_node_failed.clone(),
        );
    }

    /// The scale set listener's families (message-queue polls apart from other calls).
    fn register_listener(&self, registry: &mut Registry) {
        registry.register(
            "actions_service_calls",
            "Actions service calls (runner scale sets) by endpoint and status, message-queue polls included",
            self.actions_calls.clone(),
        );
        registry.register(
            "listener_polls",
            "Message-queue long polls made by scale set listeners (not REST: no rate limit)",
            self.listener_polls.clone(),
        );
        registry.register(
            "listener_messages",
            "Scale set job messages applied, by type (redeliveries not counted)",
            self.listener_messages.clone(),
        );
        registry.register(
            "listener_session_conflicts",
            "Session creations refused because an earlier session is still active (409)",
            self.listener_session_conflicts.clone(),
        );
        registry.register(
            "listener_jobs_acquired",
            "Jobs acquired for our scale sets",
            self.listener_jobs_acquired.clone(),
        );
        registry.register(
            "jobs_accounted",
            "GitHub jobs recorded against the Slurm job of the runner that ran them",
            self.jobs_accounted.clone(),
        );
    }

    /// Warm pools (`min_idle`): their target, their idle runners, what idling costs.
    fn register_warm(&self, registry: &mut Registry) {
        registry.register(
            "warm_idle_runner_seconds",
            "Runner-seconds spent idle in warm pools (min_idle): the allocation keeping runners ready costs",
            self.warm_idle_seconds.clone(),
        );
        registry.register(
            "warm_target",
            "Idle runners a warm pool wants now (min_idle per target, 0 outside warm_hours)",
            self.warm_target.clone(),
        );
        registry.register(
            "warm_idle",
            "Idle runners of a warm pool now",
            self.warm_idle.clone(),
        );
    }

    /// A warm pool's gauges, and `idle_seconds` more of idling.
    pub fn set_warm(&self, pool: &str, target: i64, idle: i64, idle_seconds: f64) {
        let label = vec![("pool".to_string(), pool.to_string())];
        self.warm_target.get_or_create(&label).set(target);
        self.warm_idle.get_or_create(&label).set(idle);
        self.warm_idle_seconds
            .get_or_create(&label)
            .inc_by(idle_seconds);
    }

    pub fn actions_call(&self, endpoint: &str, status: u16) {
        self.actions_calls
            .get_or_create(&vec![
                ("endpoint".to_string(), endpoint.to_string()),
                ("status".to_string(), status.to_string()),
            ])
            .inc();
    }

    pub fn listener_poll(&self) {
        self.listener_polls.inc();
    }

    pub fn listener_message(&self, kind: &str) {
        self.listener_messages
            .get_or_create(&vec![("type".to_string(), kind.to_string())])
            .inc();
    }

    pub fn webhook(&self, outcome: &str) {
        self.webhook_deliveries
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .inc();
    }

    pub fn api_call(&self, endpoint: &str, status: u16) {
        self.api_calls
            .get_or_create(&vec![
                ("endpoint".to_string(), endpoint.to_string()),
                ("status".to_string(), status.to_string()),
            ])
            .inc();
    }

    pub fn reaped(&self, reason: &str) {
        self.runners_reaped
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    pub fn jobs_refused(&self, reason: &str) {
        self.jobs_refused
            .get_or_create(&vec![("reason".to_string(), reason.to_string())])
            .inc();
    }

    pub fn reconcile_error(&self, step: &str) {
        self.reconcile_errors
            .get_or_create(&vec![("step".to_string(), step.to_string())])
            .inc();
    }

    pub fn job_end_notice(&self, result: &str) {
        self.job_end_notices
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc();
    }

    pub fn ticket_redemption(&self, result: &str) {
        self.ticket_redemptions
            .get_or_create(&vec![("result".to_string(), result.to_string())])
            .inc();
    }

    pub fn set_runners(&self, pool: &str, phase: RunnerPhase, count: i64) {
        self.runners
            .get_or_create(&vec![
                ("pool".to_string(), pool.to_string()),
                ("phase".to_string(), phase.as_str().to_string()),
            ])
            .set(count);
    }

    pub fn set_queued(&self, pool: &str, count: i64) {
        self.queued_jobs
            .get_or_create(&vec![("pool".to_string(), pool.to_string())])
            .set(count);
    }

    /// Every series the shipped dashboard and alert rules read, at zero (and each pool's
    /// `max_runners`) from the start: a labelled family is not rendered until it has a series,
    /// and `increase()` in an alert misses the first event of a series that did not exist before.
    pub fn zero_known_series(&self, pools: &[(&str, u32)]) {
        let one = |key: &str, value: &str| vec![(key.to_string(), value.to_string())];
        for outcome in [
            "accepted",
            "duplicate",
            "bad_signature",
            "malformed",
            "db_error",
            "timeout",
        ] {
            self.webhook_deliveries
                .get_or_create(&one("outcome", outcome))
                .inc_by(0);
        }
        for reason in [
            "boot_deadline",
            "ticket_expired",
            "orphan_slurm_job",
            "warm_rotated",
            "warm_surplus",
        ] {
            self.runners_reaped
                .get_or_create(&one("reason", reason))
                .inc_by(0);
        }
        for reason in ["unmapped", "split_listener"] {
            self.jobs_refused
                .get_or_create(&one("reason", reason))
                .inc_by(0);
        }
        for kind in ["JobAvailable", "JobAssigned", "JobStarted", "JobCompleted"] {
            self.listener_messages
                .get_or_create(&one("type", kind))
                .inc_by(0);
        }
        self.reconcile_errors
            .get_or_create(&one("step", "squeue"))
            .inc_by(0);
        self.ticket_redemptions
            .get_or_create(&one("result", "ok"))
            .inc_by(0);
        for (pool, max_runners) in pools {
            self.pool_max_runners
                .get_or_create(&one("pool", pool))
                .set(i64::from(*max_runners));
            self.set_queued(pool, 0);
            for phase in RunnerPhase::ALL {
                self.set_runners(pool, phase, 0);
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_the_named_families() {
        let m = Metrics::new();
        m.webhook("accepted");
        m.api_call("POST /orgs/{org}/actions/runners/generate-jitconfig", 201);
        m.queue_to_submit.observe(1.5);
        m.set_runners("cpu", RunnerPhase::Idle, 2);
        m.ticket_redemption("ok");
        m.tickets_unredeemed.inc();
        let text = m.render();
        for needle in [
            "gha_dispatcher_webhook_deliveries_total{outcome=\"accepted\"} 1",
            "gha_dispatcher_queue_to_submit_seconds_count 1",
            "gha_dispatcher_runners{pool=\"cpu\",phase=\"idle\"} 2",
            "gha_dispatcher_github_api_calls_total{endpoint=\"POST /orgs/{org}/actions/runners/generate-jitconfig\",status=\"201\"} 1",
            "gha_dispatcher_ticket_redemptions_total{result=\"ok\"} 1",
            "gha_dispatcher_tickets_unredeemed_total 1",
            "# EOF",
        ] {
            assert!(text.contains(needle), "missing {needle} in\n{text}");
        }
    }
}
