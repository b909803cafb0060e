//! The running control loop (`app::start`, a fake Slurm, the GitHub simulator): a slow GitHub
//! does not hold back the scale pass that a webhook or a freed slot wakes. The GitHub job poll
//! runs beside the loop's passes (the soak measured polls of about 40 s at a 20% error share,
//! and slots idled behind them). (That a short rate-limit pause does not stop submission is
//! `GithubClient::blocked_long`'s test in github_client.rs: here the loop's own runner pass,
//! every second, would wait the pause out too.)

use std::path::Path;
use std::time::Duration;

use gha_dispatcher::app::Running;
use github_sim::model::WebhookTarget;
use github_sim::{Faults, Sim};

mod support;

const SECRET: &str = "webhook-secret-for-the-loop";
/// How long the slowed listings take: far longer than the test waits for the runner.
const SLOW_LISTING: Duration = Duration::from_secs(120);

fn listings(sim: &Sim) -> u64 {
    sim.counters()
        .api
        .get("GET /repos/{owner}/{repo}/actions/runs")
        .map_or(0, |count| count.calls)
}

/// The dispatcher (ticket mode, the fake Slurm, a pool of 2, a 1-s reconcile period) with the
/// simulator's webhooks pointed at it, once its first job poll listed `acme/widgets` (from
/// then on that repository's webhook jobs count as demand). A poll lists the queued runs,
/// then the running ones, and the simulator counts a call once answered: the third answer
/// (the next poll's) means the first poll is done. After only the first, a fault set then
/// could hold the first poll's second listing, and the webhook's job would never count.
async fn start_loop() -> (Sim, tempfile::TempDir, Running) {
    let sim = support::sim().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    support::fake_slurm(dir.path());
    let config = support::ConfigBuilder::new(dir.path())
        .widgets_on_fake_slurm(&sim)
        .webhook_secret(SECRET)
        .set("scaling", "reconcile_interval_secs", "1")
        .pool("cpu", &["linux"], 2)
        .build();
    let running = support::start(config).await;
    sim.set_webhook(WebhookTarget {
        url: format!("http://{}/webhook", running.local_addr),
        secret: SECRET.into(),
    });
    support::wait_until("the first job poll", Duration::from_secs(20), || {
        listings(&sim) >= 3
    })
    .await;
    (sim, dir, running)
}

/// Whether the fake sbatch ran.
fn submitted(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("names")).is_ok_and(|n| !n.is_empty())
}

fn fault_fired(sim: &Sim, kind: &str) -> bool {
    sim.counters().faults_injected.contains_key(kind)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_job_poll_does_not_hold_back_scaling() {
    let (sim, dir, _running) = start_loop().await;
    sim.set_faults(Faults {
        latency_ms: SLOW_LISTING.as_millis() as u64,
        only_path_contains: Some("/actions/runs".into()),
        ..Faults::default()
    });
    support::wait_until("a job poll held by GitHub", Duration::from_secs(20), || {
        fault_fired(&sim, "rest latency")
    })
    .await;
    // The poll is sequential: no listing is answered until the held one is.
    let answered_before = listings(&sim);

    support::queue_one_job(&sim);
    support::wait_until(
        "a runner submitted for the webhook's job while the poll waits",
        Duration::from_secs(20),
        || submitted(dir.path()),
    )
    .await;
    assert_eq!(
        listings(&sim),
        answered_before,
        "the held listing is still waiting: the runner did not wait for it"
    );
}
