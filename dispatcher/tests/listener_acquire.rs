//! The scale set listener against GitHub's failures between a message and its acquisition
//! (`app::start`, a fake Slurm, the GitHub simulator): an offer whose message was
//! acknowledged does not come again, so an `acquirejobs` that fails must be tried again. The
//! last full soak left two jobs queued for good behind one 503 there.

use std::time::Duration;

use github_sim::{ScaleSetFaults, Sim};

mod support;

fn acquired(sim: &Sim) -> u64 {
    sim.counters().scaleset.jobs_acquired
}

fn offered(sim: &Sim) -> u64 {
    sim.counters().scaleset.jobs_offered
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acquisition_that_fails_is_retried_until_the_job_is_acquired() {
    let sim = support::sim().await;
    // Four 503s: every try of one acquisition (the client tries a 5xx call three times), and
    // the first try of the next. Nothing re-offers the job (the re-offer quirk is off).
    sim.set_scaleset_faults(ScaleSetFaults {
        acquire_errors: 4,
        ..ScaleSetFaults::default()
    });
    let dir = tempfile::tempdir().expect("a temporary directory");
    support::fake_slurm(dir.path());
    let config = support::ConfigBuilder::new(dir.path())
        .widgets_on_fake_slurm(&sim)
        .set(
            "github",
            "targets",
            r#"[{ org = "acme", intake = "listener" }]"#,
        )
        .pool("cpu", &["linux"], 2)
        .build();
    let _running = support::start(config).await;
    support::queue_one_job(&sim);
    support::wait_until("the job to be offered", Duration::from_secs(30), || {
        offered(&sim) >= 1
    })
    .await;
    support::wait_until(
        "the offered job to be acquired after a failed acquisition",
        Duration::from_secs(30),
        || acquired(&sim) >= 1,
    )
    .await;
    assert_eq!(
        sim.scaleset_faults().acquire_errors,
        0,
        "every injected failure fired: the failed acquisition was tried again"
    );
    assert_eq!(
        offered(&sim),
        1,
        "the job was offered once: no re-offer did the work"
    );
}
