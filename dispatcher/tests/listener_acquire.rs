//! The scale set listener against GitHub's failures between a message and its acquisition
//! (`app::start`, a fake Slurm, the GitHub simulator): once a message's id is the next poll's
//! `lastMessageId`, its offers do not come again, so an `acquirejobs` that fails must be
//! tried again, and so must the offers of a message whose acknowledgement failed. The last
//! full soak left two jobs queued for good behind one 503 on `acquirejobs`.

use std::time::Duration;

use gha_dispatcher::app::Running;
use github_sim::{ScaleSetFaults, Sim};

mod support;

/// How many times the dispatcher's Actions client tries a call that answers 5xx.
const CLIENT_TRIES: u32 = 4;

fn acquired(sim: &Sim) -> u64 {
    sim.counters().scaleset.jobs_acquired
}

fn offered(sim: &Sim) -> u64 {
    sim.counters().scaleset.jobs_offered
}

/// The dispatcher listening on `acme` with `faults` set before anything is asked, and one job
/// queued; returns once the job was offered. Nothing re-offers it (the re-offer quirk is off).
async fn offer_one_job(faults: ScaleSetFaults) -> (Sim, tempfile::TempDir, Running) {
    let sim = support::sim().await;
    sim.set_scaleset_faults(faults);
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
    let running = support::start(config).await;
    support::queue_one_job(&sim);
    support::wait_until("the job to be offered", Duration::from_secs(30), || {
        offered(&sim) >= 1
    })
    .await;
    (sim, dir, running)
}

/// The job was acquired, by the listener trying again: every injected failure fired, and the
/// job was offered once (no re-offer did the work).
async fn assert_acquired_after_the_failures(sim: &Sim, what: &str) {
    support::wait_until(what, Duration::from_secs(30), || acquired(sim) >= 1).await;
    assert_eq!(
        sim.scaleset_faults(),
        ScaleSetFaults::default(),
        "every injected failure fired"
    );
    assert_eq!(
        offered(sim),
        1,
        "the job was offered once: no re-offer did the work"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_acquisition_that_fails_is_retried_until_the_job_is_acquired() {
    // Every try of one acquisition fails.
    let (sim, _dir, _running) = offer_one_job(ScaleSetFaults {
        acquire_errors: CLIENT_TRIES,
        ..ScaleSetFaults::default()
    })
    .await;
    assert_acquired_after_the_failures(
        &sim,
        "the offered job to be acquired after a failed acquisition",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_offers_of_a_message_whose_acknowledgement_failed_are_acquired() {
    // Every try of the acknowledgement fails; the message's id is recorded all the same, so
    // the next poll's `lastMessageId` passes it and it is never delivered again.
    let (sim, _dir, _running) = offer_one_job(ScaleSetFaults {
        ack_errors: CLIENT_TRIES,
        ..ScaleSetFaults::default()
    })
    .await;
    assert_acquired_after_the_failures(
        &sim,
        "the offered job to be acquired after its message's acknowledgement failed",
    )
    .await;
}
