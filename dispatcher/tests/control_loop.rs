//! The running control loop (`app::start`, a fake Slurm, the GitHub simulator): what runs
//! beside what. The GitHub job poll runs beside the loop's passes, so a slow GitHub (retries
//! and rate-limit pauses; the soak measured passes of about 40 s at a 20% error share) does
//! not hold back the scale pass that a webhook or a freed slot wakes.

use std::path::Path;
use std::time::Duration;

use github_sim::model::{JobSpec, WebhookTarget, WorkflowSpec};
use github_sim::Faults;
use support::script;

mod support;

const SECRET: &str = "webhook-secret-for-the-loop";
/// How long the slowed listings take: far longer than the test waits for the runner.
const SLOW_LISTING: Duration = Duration::from_secs(120);

/// sbatch records each job name and answers a job id; squeue knows no job (each runner's job
/// "ended" at once, which is all this test needs); scancel does nothing.
fn fake_slurm(d: &Path) {
    script(
        &d.join("sbatch"),
        &format!(
            "printf '%s\\n' \"$@\" | sed -n 's/^--job-name=//p' >> '{}/names'\necho 101",
            d.display()
        ),
    );
    script(
        &d.join("squeue"),
        "case \"$1\" in --jobs=*) echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1 ;; esac",
    );
    script(&d.join("scancel"), "true");
}

fn listings(sim: &github_sim::Sim) -> u64 {
    sim.counters()
        .api
        .get("GET /repos/{owner}/{repo}/actions/runs")
        .map_or(0, |count| count.calls)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_slow_job_poll_does_not_hold_back_scaling() {
    let sim = support::sim().await;
    let dir = tempfile::tempdir().expect("a temporary directory");
    fake_slurm(dir.path());
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
    // The first poll lists the repository: from then on its webhook jobs count as demand.
    support::wait_until("the first job poll", Duration::from_secs(20), || {
        listings(&sim) > 0
    })
    .await;
    sim.set_faults(Faults {
        latency_ms: SLOW_LISTING.as_millis() as u64,
        only_path_contains: Some("/actions/runs".into()),
        ..Faults::default()
    });
    support::wait_until("a job poll held by GitHub", Duration::from_secs(20), || {
        sim.counters().faults_injected.contains_key("rest latency")
    })
    .await;
    // The poll is sequential: no listing is answered until the held one is.
    let answered_before = listings(&sim);

    sim.enqueue_workflow(WorkflowSpec {
        repo: "acme/widgets".into(),
        name: "ci".into(),
        jobs: vec![JobSpec::new("build", &["self-hosted", "linux"])],
        delay_ms: 0,
    })
    .expect("enqueueing a run");
    let names = dir.path().join("names");
    support::wait_until(
        "a runner submitted for the webhook's job while the poll waits",
        Duration::from_secs(20),
        || std::fs::read_to_string(&names).is_ok_and(|n| !n.is_empty()),
    )
    .await;
    assert_eq!(
        listings(&sim),
        answered_before,
        "the held listing is still waiting: the runner did not wait for it"
    );
}
