//! The report's listener section (issue 13's numbers): the scale set listener beside the
//! webhook intake, measured in the same run; one function per line of its table.

use super::{summary_of, Args, Measured};
use demo_bench::bench::dispatch::{PoolFill, ProtocolDelta, SequentialResult};
use demo_bench::bench::report::{ms, Metric};
use demo_bench::demo::stats::Summary;
use std::collections::BTreeMap;

fn not_measured(why: &str) -> String {
    format!("not measured ({why})")
}

pub(super) fn listener_metrics(m: &Measured, args: &Args) -> Vec<Metric> {
    let mut out = Vec::new();
    latency(m, &mut out);
    rest_per_job(m, &mut out);
    idle_per_target(m, &mut out);
    burst_fill(m, args, &mut out);
    crash(m, args, &mut out);
    out
}

fn p50_p95(s: &Summary) -> String {
    format!("p50 {}, p95 {} (n={})", ms(s.p50), ms(s.p95), s.count)
}

/// L1 and L2: queued → sbatch accepted, queued → runner process started, both intakes.
fn latency(m: &Measured, out: &mut Vec<Metric>) {
    let pick = |s: &Option<SequentialResult>, f: fn(&SequentialResult) -> &Vec<f64>| {
        s.as_ref().and_then(|s| Summary::of(f(s)))
    };
    let to_sbatch = (
        pick(&m.sequential, |s| &s.queued_to_sbatch_secs),
        pick(&m.sequential_listener, |s| &s.queued_to_sbatch_secs),
    );
    out.push(Metric {
        id: "L1".into(),
        name: "job queued on GitHub → sbatch accepted".into(),
        goal: "(no number given)".into(),
        measured: match &to_sbatch {
            (Some(w), Some(l)) => format!("listener {} ; webhook {}", p50_p95(l), p50_p95(w)),
            _ => not_measured("a sequential phase did not run"),
        },
        meets_goal: None,
        how: "one job at a time on an idle node, each intake in turn in the same dispatcher: \
              from just before the job is queued in the simulator to the timing wrapper seeing \
              sbatch exit with the job accepted. Webhook: the delivery through the relay; \
              listener: the long-poll answer (JobAvailable), acquirejobs, then the statistics \
              message (JobAssigned) the dispatcher scales on."
            .into(),
    });
    let floor = m
        .with_plugin
        .as_deref()
        .and_then(|t| summary_of(t, |j| j.submit_to_start_secs));
    let started = (
        pick(&m.sequential, |s| &s.queued_to_runner_start_secs),
        pick(&m.sequential_listener, |s| &s.queued_to_runner_start_secs),
    );
    out.push(Metric {
        id: "L2".into(),
        name: "job queued on GitHub → runner process started, listener vs webhook".into(),
        goal: "each within 1.25× the floor".into(),
        measured: match (&started, &floor) {
            ((Some(w), Some(l)), Some(f)) => format!(
                "listener {} ({:.2}× floor); webhook {} ({:.2}×); bare `sbatch --wrap` floor {}",
                p50_p95(l),
                l.p50 / f.p50,
                p50_p95(w),
                w.p50 / f.p50,
                p50_p95(f)
            ),
            _ => not_measured("a sequential phase or the floor did not run"),
        },
        meets_goal: match (&started, &floor) {
            ((Some(w), Some(l)), Some(f)) => Some(l.p50 <= 1.25 * f.p50 && w.p50 <= 1.25 * f.p50),
            _ => None,
        },
        how: "as metric 2, for each intake: from just before the job is queued to the kernel's \
              start time of the runner's Runner.Listener process; the floor is metric 2's."
            .into(),
    });
}

fn protocol_text(p: &ProtocolDelta, per: f64, unit: &str) -> String {
    format!(
        "Actions service {:.2}{unit}, queue polls {:.2}{unit}, acknowledgements {:.2}{unit}",
        p.actions_calls as f64 / per,
        p.queue_polls as f64 / per,
        p.queue_deletes as f64 / per
    )
}

/// L3: REST calls per job per target; the scale set protocol apart.
fn rest_per_job(m: &Measured, out: &mut Vec<Metric>) {
    let per_job = |s: &SequentialResult| {
        let jobs = s.jobs.max(1) as f64;
        (
            s.api_calls_paid as f64 / jobs,
            s.app_calls_paid as f64 / jobs,
        )
    };
    out.push(Metric {
        id: "L3".into(),
        name: "GitHub REST calls per job, per target".into(),
        goal: "≤ 2".into(),
        measured: match (&m.sequential, &m.sequential_listener) {
            (Some(w), Some(l)) => {
                let (wt, wa) = per_job(w);
                let (lt, la) = per_job(l);
                format!(
                    "listener {lt:.2} (+ {la:.2} App token calls); webhook {wt:.2} (+ {wa:.2}); \
                     listener's protocol per job, not REST: {}",
                    protocol_text(&l.protocol, l.jobs.max(1) as f64, "")
                )
            }
            _ => not_measured("a sequential phase did not run"),
        },
        meets_goal: match (&m.sequential, &m.sequential_listener) {
            (Some(w), Some(l)) => {
                let (wt, wa) = per_job(w);
                let (lt, la) = per_job(l);
                Some(wt + wa <= 2.0 && lt + la <= 2.0)
            }
            _ => None,
        },
        how: "the sequential phases' REST calls whose path names the target's organization \
              (`acme` by webhook, `labs` by listener; the simulator counts per account), 304s \
              free, divided by the jobs; the App's installation-token calls serve both targets \
              and are shown apart. Message-queue polls and acknowledgements and Actions-service \
              calls (scale sets, sessions, acquirejobs, generatejitconfig) are counted apart: \
              they are not rate-limited REST calls."
            .into(),
    });
}

/// L4: calls per idle hour per target.
fn idle_per_target(m: &Measured, out: &mut Vec<Metric>) {
    out.push(Metric {
        id: "L4".into(),
        name: "GitHub REST calls per idle hour, per target".into(),
        goal: "< 120 (304s free)".into(),
        measured: match &m.idle {
            Some(i) => format!(
                "listener {:.0}/h; webhook {:.0}/h ({} free 304s); App tokens {:.0}/h for both; \
                 listener's protocol, not REST: {} ({} pools' sessions, {:.0} s window)",
                i.listener_target.paid_per_hour,
                i.webhook_target.paid_per_hour,
                i.webhook_target.not_modified,
                i.app_calls_paid as f64 * 3600.0 / i.window_secs,
                protocol_text(&i.protocol, i.window_secs / 3600.0, "/h"),
                demo_bench::bench::dispatch::pools().len(),
                i.window_secs
            ),
            None => not_measured("idle phase did not run"),
        },
        meets_goal: m.idle.as_ref().map(|i| {
            i.listener_target.paid_per_hour < 120.0 && i.webhook_target.paid_per_hour < 120.0
        }),
        how: "the idle window of metric 3b, split by the organization each REST path names. \
              The listener long-polls each pool's message queue (the simulator answers an empty \
              poll after 50 s, as GitHub does), so its idle traffic is polls, not REST."
            .into(),
    });
}

fn fills_text(all: Option<f64>, pools: &BTreeMap<String, PoolFill>) -> String {
    format!(
        "{} ({})",
        all.map_or("not reached".into(), |s| format!("{s:.2} s")),
        pools
            .iter()
            .map(|(name, f)| format!(
                "{name}: demand {}, max {}, at {}",
                f.demand,
                f.max_runners,
                f.reached_after_secs
                    .map_or("never".into(), |s| format!("{s:.2} s"))
            ))
            .collect::<Vec<_>>()
            .join("; ")
    )
}

/// L5: the listener burst's pool fill, beside the webhook burst's.
fn burst_fill(m: &Measured, args: &Args, out: &mut Vec<Metric>) {
    let b = m.listener_burst.as_ref();
    out.push(Metric {
        id: "L5".into(),
        name: format!(
            "burst of {} jobs queued at once: every pool at its demand or max_runners",
            args.listener_burst
        ),
        goal: "(no number given)".into(),
        measured: match b {
            Some(b) => format!(
                "listener {} after the enqueue; {}; {} of {} succeeded, {} ran twice, REST {:.3}/job, {}",
                fills_text(b.all_pools_at_target_secs, &b.pools),
                m.burst.as_ref().map_or("webhook burst not run".into(), |w| format!(
                    "webhook burst ({} jobs): {} after the first webhook",
                    args.burst,
                    fills_text(w.all_pools_at_target_secs, &w.pools)
                )),
                b.completed_success,
                b.jobs,
                b.ran_more_than_once,
                b.api_calls_per_job,
                b.drain_secs.map_or(
                    format!("not all done within the {} s drain window", args.burst_drain_secs),
                    |s| format!("all done after {s:.0} s")
                )
            ),
            None => not_measured("listener burst did not run"),
        },
        meets_goal: b.map(|b| b.ran_more_than_once == 0 && b.completed_other == 0),
        how: "all the burst's jobs queued in the listened organization in one call (70% on the \
              cpu pool's scale set, 20% large, 10% arm; `runs-on: <scale set>`), no webhook; \
              runners registered with the simulator per pool polled every 50 ms, as for 4b. \
              Meets: no job ran twice, none failed."
            .into(),
    });
}

/// L6: kill -9 three times during a listened burst.
fn crash(m: &Measured, args: &Args, out: &mut Vec<Metric>) {
    let c = m.crash.as_ref();
    out.push(Metric {
        id: "L6".into(),
        name: format!(
            "kill -9 ×{} during a {}-job listened burst",
            args.crash_kills, args.crash_jobs
        ),
        goal: "every job once; every extra Slurm job unredeemed and counted; nothing left".into(),
        measured: match c {
            Some(c) => format!(
                "ran once {}/{} (twice: {}, never: {}), {} succeeded; sbatch accepted {}, JIT \
                 configs {}, so {} ended unredeemed; the metric counted {}; {} session conflicts \
                 (409) waited out, sessions back {} s after each restart; left: {}; sessions \
                 after the clean stop: {}",
                c.ran_once,
                c.jobs,
                c.ran_more_than_once.len(),
                c.never_ran,
                c.completed_success,
                c.slurm_jobs_submitted,
                c.jit_configs_issued,
                c.unredeemed_by_record,
                c.unredeemed_by_metric,
                c.session_conflicts,
                c.resumed_after_secs
                    .iter()
                    .map(|s| format!("{s:.0}"))
                    .collect::<Vec<_>>()
                    .join("/"),
                c.leftovers,
                c.sessions_active_after_stop
            ),
            None => not_measured("crash phase did not run"),
        },
        meets_goal: c.map(|c| c.all_checks_pass),
        how: format!(
            "a dispatcher of its own (simulator with scaleset_session_ttl {} s); the jobs queued \
             at once on the listener target, the dispatcher killed with SIGKILL each time \
             another quarter of them completed and restarted on the same state. Once: \
             Counters.job_runs assignments == 1 for every job. Unredeemed: Slurm jobs sbatch \
             accepted (timing wrapper) minus JIT configs the scale sets issued, against \
             gha_dispatcher_tickets_unredeemed_total summed over the processes (each scraped \
             just before its kill). Left: Slurm jobs, registrations, work dirs, job-user \
             processes; then sessions after SIGTERM.",
            args.crash_session_ttl_secs
        ),
    });
}
