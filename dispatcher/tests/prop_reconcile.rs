//! Reconciliation and scaling against a model, with random event sequences: the real stages
//! (`app::stages_only`: reconcile, scale, submit over the real SQLite store in a temporary
//! directory), the GitHub simulator, and a fake Slurm whose queue is a file this test moves
//! on (jobs start, end, or vanish while pending). Webhooks arrive in any order, twice, late or
//! never; passes run in any order; the dispatcher crashes between any two steps (a pass is
//! dropped at a random moment, or right after an sbatch that Slurm took, and the stages are
//! built afresh from the database).
//!
//! After every step: never more live Slurm jobs than `max_runners`, never a cancelled job
//! that had started, never two sbatch calls for the same runner (the intent). At the end,
//! after calm full passes: the demand is met (as many runners alive as queued jobs, up to
//! `max_runners`) and no pending job is surplus.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use gha_dispatcher::clients::github::Credentials;
use gha_dispatcher::control::Controller;
use gha_dispatcher::model::{JobStatus, JobUpdate, RunnerState};
use gha_dispatcher::store::{Db, Delivery};
use gha_dispatcher::telemetry::Metrics;
use github_sim::model::{JobSpec, WorkflowSpec};
use github_sim::Sim;
use proptest::prelude::*;
use support::script;
use test_support::wait_until_async;

mod support;

const MAX_RUNNERS: u32 = 3;

/// The fake Slurm: `jobs` holds `id name STATE` lines; sbatch appends a PENDING job (and,
/// after Slurm took the job, hangs once when `crash-after-sbatch` exists, or fails once when
/// `fail-after-sbatch` does; its id counter is replaced whole, so a kill cannot leave it
/// empty); scancel drops
/// the job (with `--state=PENDING` only a pending one); both note rule breaks in
/// `violations`; scancel fails, doing nothing, while `scancel-fails` exists (slurmctld
/// away). One lock serialises them.
fn fake_slurm(d: &Path, uid: u32) {
    let sbatch = r#"exec 9>'@D@/lock'; flock 9
name=$(printf '%s\n' "$@" | sed -n 's/^--job-name=//p')
grep -qx "$name" '@D@/names' 2>/dev/null && echo "sbatch twice for $name" >> '@D@/violations'
echo "$name" >> '@D@/names'
id=$(cat '@D@/next-id' 2>/dev/null || echo 100)
echo $((id + 1)) > '@D@/next-id.new'; mv '@D@/next-id.new' '@D@/next-id'
echo "$id $name PENDING" >> '@D@/jobs'
if [ -f '@D@/crash-after-sbatch' ]; then rm -f '@D@/crash-after-sbatch'; flock -u 9; sleep 60; fi
if [ -f '@D@/fail-after-sbatch' ]; then
  rm -f '@D@/fail-after-sbatch'; echo 'sbatch: error: Socket timed out on send/recv operation' >&2; exit 1
fi
echo "$id""#;
    // As Slurm 22.05 answers the dispatcher's two queries: one job id (unknown: an error), or
    // one user's jobs with some names. Anything else is a rule break (a whole-queue dump).
    let squeue = r#"exec 9>'@D@/lock'; flock 9
touch '@D@/jobs'
case "$1" in
--jobs=*)
  awk -v id="${1#--jobs=}" -v uid=@UID@ '$1 == id { print $1 "|" uid "|" $3 "|n/a||" $2; found = 1 } END { exit !found }' '@D@/jobs' ||
    { echo 'slurm_load_jobs error: Invalid job id specified' >&2; exit 1; } ;;
--user=@UID@)
  awk -v names=",${2#--name=}," -v uid=@UID@ 'index(names, "," $2 ",") { print $1 "|" uid "|" $3 "|n/a||" $2 }' '@D@/jobs' ;;
--user=*) ;;
*) echo "squeue $*" >> '@D@/violations'; exit 2 ;;
esac"#;
    // As Slurm: `--state=PENDING` leaves a job that started alone (checked under the lock).
    let scancel = r#"exec 9>'@D@/lock'; flock 9
[ -f '@D@/scancel-fails' ] && { echo 'scancel: error: Unable to contact slurm controller' >&2; exit 1; }
only_pending=
for id in "$@"; do
  case $id in --state=PENDING) only_pending=1; continue ;; *[!0-9]*) continue ;; esac
  if grep -q "^$id .* RUNNING$" '@D@/jobs'; then
    [ -n "$only_pending" ] && continue
    echo "scancel of running job $id" >> '@D@/violations'
  fi
  grep -v "^$id " '@D@/jobs' > '@D@/jobs.new'; mv '@D@/jobs.new' '@D@/jobs'
done
true"#;
    let fill = |body: &str| {
        body.replace("@D@", &d.display().to_string())
            .replace("@UID@", &uid.to_string())
    };
    script(&d.join("sbatch"), &fill(sbatch));
    script(&d.join("squeue"), &fill(squeue));
    script(&d.join("scancel"), &fill(scancel));
}

/// One step of a run.
#[derive(Debug, Clone)]
enum Step {
    /// A workflow run of `jobs` jobs is queued; each `queued` webhook is delivered
    /// `copies` times (0: lost, left to the reconcile pass).
    Queue {
        jobs: usize,
        copies: usize,
    },
    /// A run is cancelled; its `completed` webhooks are delivered at once, and the
    /// run's withheld `queued` ones after them (out of order) when `stale_queued`.
    Cancel {
        pick: usize,
        stale_queued: bool,
    },
    /// A pending Slurm job starts, a running one ends, a pending one vanishes.
    SlurmStart(usize),
    SlurmEnd(usize),
    SlurmVanish(usize),
    ScalePass,
    FullPass,
    /// A pass dropped after `ms` milliseconds: the process died there.
    CrashDuring {
        full: bool,
        ms: u64,
    },
    /// sbatch returns nothing: the process died after Slurm took the job.
    CrashAfterSbatch,
}

fn step_strategy() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1usize..4, 0usize..3).prop_map(|(jobs, copies)| Step::Queue { jobs, copies }),
        1 => (any::<usize>(), any::<bool>())
            .prop_map(|(pick, stale_queued)| Step::Cancel { pick, stale_queued }),
        2 => any::<usize>().prop_map(Step::SlurmStart),
        2 => any::<usize>().prop_map(Step::SlurmEnd),
        1 => any::<usize>().prop_map(Step::SlurmVanish),
        3 => Just(Step::ScalePass),
        2 => Just(Step::FullPass),
        1 => (any::<bool>(), 0u64..60).prop_map(|(full, ms)| Step::CrashDuring { full, ms }),
        1 => Just(Step::CrashAfterSbatch),
    ]
}

/// The world of one run: simulator, fake Slurm directory, database, stages.
struct World {
    sim: Sim,
    dir: tempfile::TempDir,
    config: gha_dispatcher::config::Config,
    controller: Controller,
    runs: Vec<(u64, Vec<u64>)>,
    deliveries: u64,
}

impl World {
    async fn new() -> World {
        let sim = support::sim().await;
        let dir = tempfile::tempdir().expect("a temporary directory");
        fake_slurm_as_nobody(dir.path());
        let config = support::ConfigBuilder::new(dir.path())
            .widgets_on_fake_slurm(&sim)
            .pool("cpu", &["linux"], MAX_RUNNERS)
            .build();
        let controller = stages(&config);
        World {
            sim,
            dir,
            config,
            controller,
            runs: Vec::new(),
            deliveries: 0,
        }
    }

    /// The process died: everything in memory is gone; the database stays.
    fn restart(&mut self) {
        self.controller = stages(&self.config);
    }

    fn file(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// `(id, state)` of every job Slurm holds.
    fn slurm_jobs(&self) -> Vec<(String, String)> {
        self.file("jobs")
            .lines()
            .filter_map(|line| {
                let mut fields = line.split(' ');
                let id = fields.next()?.to_string();
                Some((id, fields.nth(1)?.to_string()))
            })
            .collect()
    }

    /// Moves the `pick`-th job in `from` to `to` (None: it leaves the queue).
    fn move_slurm_job(&self, pick: usize, from: &str, to: Option<&str>) {
        let jobs = self.file("jobs");
        let candidates: Vec<&str> = jobs.lines().filter(|l| l.ends_with(from)).collect();
        if candidates.is_empty() {
            return;
        }
        let chosen = candidates[pick % candidates.len()];
        let kept: Vec<String> = jobs
            .lines()
            .filter_map(|line| match (line == chosen, to) {
                (false, _) => Some(line.to_string()),
                (true, Some(state)) => Some(format!(
                    "{} {state}",
                    line.trim_end_matches(from).trim_end()
                )),
                (true, None) => None,
            })
            .collect();
        let text = kept.iter().map(|l| format!("{l}\n")).collect::<String>();
        // The fake Slurm's scripts hold the lock only while they run; the test's steps never
        // overlap a pass, so writing here needs none.
        std::fs::write(self.dir.path().join("jobs"), text).expect("writing the Slurm queue");
    }

    async fn deliver(&mut self, job_id: u64, run_id: u64, status: JobStatus, id: Option<String>) {
        let update = job_update("acme/widgets", job_id, run_id, status);
        self.deliver_update(update, id).await;
    }

    async fn deliver_update(&mut self, update: JobUpdate, id: Option<String>) {
        self.deliveries += 1;
        let delivery = Delivery {
            delivery_id: id.unwrap_or_else(|| format!("d-{}", self.deliveries)),
            event: "workflow_job".into(),
            action: Some(update.status.as_str().to_string()),
            update: Some(update),
            body_sha256: None,
        };
        let db = Db::open(&self.config.db_path).expect("the database");
        db.record_delivery(delivery)
            .await
            .expect("recording a delivery");
    }
}

/// A `workflow_job` webhook's content (no runner named).
fn job_update(repo: &str, job_id: u64, run_id: u64, status: JobStatus) -> JobUpdate {
    JobUpdate {
        job_id,
        run_id,
        repo: repo.into(),
        labels: vec!["self-hosted".into(), "linux".into()],
        status,
        runner_name: None,
        workflow: None,
        created_at: None,
        started_at: None,
    }
}

/// The fake Slurm in `dir`, whose jobs run as `nobody`.
fn fake_slurm_as_nobody(dir: &Path) {
    let uid = nix::unistd::User::from_name("nobody")
        .ok()
        .flatten()
        .expect("user nobody")
        .uid
        .as_raw();
    fake_slurm(dir, uid);
}

fn stages(config: &gha_dispatcher::config::Config) -> Controller {
    stages_and_metrics(config).0
}

fn stages_and_metrics(config: &gha_dispatcher::config::Config) -> (Controller, Arc<Metrics>) {
    let db = Db::open(&config.db_path).expect("the database");
    let credentials = Credentials::Token(support::TOKEN.into());
    gha_dispatcher::app::stages_only(config.clone(), db, credentials).expect("the stages")
}

impl World {
    async fn run(&mut self, step: &Step) {
        match step {
            Step::Queue { jobs, copies } => self.queue(*jobs, *copies).await,
            Step::Cancel { pick, stale_queued } => self.cancel(*pick, *stale_queued).await,
            Step::SlurmStart(pick) => self.move_slurm_job(*pick, "PENDING", Some("RUNNING")),
            Step::SlurmEnd(pick) => self.move_slurm_job(*pick, "RUNNING", None),
            Step::SlurmVanish(pick) => self.move_slurm_job(*pick, "PENDING", None),
            Step::ScalePass => self.controller.scale_pass().await,
            Step::FullPass => self.controller.full_pass().await,
            Step::CrashDuring { full, ms } => {
                let limit = Duration::from_millis(*ms);
                let pass = async {
                    if *full {
                        self.controller.full_pass().await
                    } else {
                        self.controller.scale_pass().await
                    }
                };
                let _ = tokio::time::timeout(limit, pass).await;
                self.restart();
            }
            Step::CrashAfterSbatch => {
                std::fs::write(self.dir.path().join("crash-after-sbatch"), "")
                    .expect("arming the crash");
                let pass = self.controller.full_pass();
                let _ = tokio::time::timeout(Duration::from_secs(3), pass).await;
                // Disarmed whether or not a submission came (then the world stays calm).
                let _ = std::fs::remove_file(self.dir.path().join("crash-after-sbatch"));
                self.restart();
            }
        }
    }

    async fn queue(&mut self, jobs: usize, copies: usize) {
        let spec = WorkflowSpec {
            repo: "acme/widgets".into(),
            name: format!("run-{}", self.runs.len()),
            jobs: (0..jobs)
                .map(|i| JobSpec::new(format!("job-{i}"), &["self-hosted", "linux"]))
                .collect(),
            delay_ms: 0,
        };
        let created = self.sim.enqueue_workflow(spec).expect("enqueueing a run");
        for &job in &created.job_ids {
            let id = format!("queued-{job}");
            for _ in 0..copies {
                self.deliver(job, created.run_id, JobStatus::Queued, Some(id.clone()))
                    .await;
            }
        }
        self.runs.push((created.run_id, created.job_ids));
    }

    async fn cancel(&mut self, pick: usize, stale_queued: bool) {
        if self.runs.is_empty() {
            return;
        }
        let (run_id, jobs) = self.runs.remove(pick % self.runs.len());
        self.sim.cancel_run(run_id).expect("cancelling a run");
        for &job in &jobs {
            self.deliver(job, run_id, JobStatus::Completed, None).await;
        }
        if stale_queued {
            for &job in &jobs {
                self.deliver(job, run_id, JobStatus::Queued, None).await;
            }
        }
    }

    /// Jobs GitHub still has queued for our pool.
    fn queued_on_github(&self) -> usize {
        self.sim
            .jobs()
            .iter()
            .filter(|job| job.status == "queued")
            .count()
    }

    fn count_in_slurm(&self, state: &str) -> usize {
        self.slurm_jobs().iter().filter(|(_, s)| s == state).count()
    }

    /// The rules every step keeps.
    fn check_step(&self, step: &Step) -> Result<(), TestCaseError> {
        let violations = self.file("violations");
        prop_assert!(violations.is_empty(), "after {step:?}: {violations}");
        let live = self.count_in_slurm("PENDING") + self.count_in_slurm("RUNNING");
        prop_assert!(
            live <= MAX_RUNNERS as usize,
            "after {step:?}: {live} Slurm jobs, max_runners {MAX_RUNNERS}"
        );
        Ok(())
    }

    /// Calm full passes (no more events): the demand is met and nothing pending is surplus.
    async fn check_settled(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..3 {
            self.controller.full_pass().await;
        }
        let queued = self.queued_on_github();
        let (pending, running) = (
            self.count_in_slurm("PENDING"),
            self.count_in_slurm("RUNNING"),
        );
        prop_assert!(
            pending + running >= queued.min(MAX_RUNNERS as usize),
            "{queued} queued on GitHub but {pending} pending and {running} running runner jobs"
        );
        prop_assert!(
            pending <= queued.saturating_sub(running),
            "{pending} pending runner jobs are surplus: {queued} queued, {running} running"
        );
        let violations = self.file("violations");
        prop_assert!(violations.is_empty(), "{violations}");
        Ok(())
    }
}

proptest! {
    // Each case starts a simulator and runs real passes: few cases, each a long sequence.
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_events_and_crashes_keep_the_rules_and_meet_the_demand(
        steps in proptest::collection::vec(step_strategy(), 5..40),
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mut world = World::new().await;
            // The first pass after a start is a full one (crash recovery), as in the loop.
            world.controller.full_pass().await;
            for step in &steps {
                world.run(step).await;
                world.check_step(step)?;
            }
            world.check_settled().await
        })?;
    }
}

/// A runner's node is lost mid-job (its Slurm job ends `NODE_FAIL`): the runner is finished
/// and counted, and, the job still being queued on GitHub, a new runner is submitted.
#[tokio::test(flavor = "multi_thread")]
async fn a_runner_job_lost_with_its_node_is_counted_and_replaced() {
    let mut world = World::new().await;
    let (controller, metrics) = stages_and_metrics(&world.config);
    world.controller = controller;
    world.queue(1, 1).await;
    world.controller.full_pass().await;
    assert_eq!(world.count_in_slurm("PENDING"), 1, "{}", world.file("jobs"));
    world.move_slurm_job(0, "PENDING", Some("RUNNING"));
    world.controller.full_pass().await;
    world.move_slurm_job(0, "RUNNING", Some("NODE_FAIL"));
    world.controller.full_pass().await;

    assert_eq!(metrics.runner_jobs_node_failed.get(), 1);
    assert_eq!(
        (
            world.count_in_slurm("NODE_FAIL"),
            world.count_in_slurm("PENDING")
        ),
        (1, 1),
        "the lost runner's job and its replacement: {}",
        world.file("jobs")
    );
    assert_eq!(world.file("names").lines().count(), 2);
    // Seen again in later passes, the lost job is not counted again.
    world.controller.full_pass().await;
    assert_eq!(metrics.runner_jobs_node_failed.get(), 1);
}

/// A steady share of failing GitHub calls fails some call in every pass. The dispatcher must
/// still come to trust its database (every repository listed once, in any pass) and scale:
/// the soak found one that waited for a pass without any error and never submitted a runner.
#[tokio::test(flavor = "multi_thread")]
async fn failing_calls_in_every_pass_do_not_keep_the_dispatcher_from_scaling() {
    let sim = support::sim().await;
    sim.add_repo("acme", "gadgets");
    let dir = tempfile::tempdir().expect("a temporary directory");
    fake_slurm_as_nobody(dir.path());
    let config = support::ConfigBuilder::new(dir.path())
        .widgets_on_fake_slurm(&sim)
        .set(
            "github",
            "targets",
            r#"[{ org = "acme", repositories = ["acme/widgets", "acme/gadgets"] }]"#,
        )
        .pool("cpu", &["linux"], MAX_RUNNERS)
        .build();
    let controller = stages(&config);
    sim.enqueue_workflow(WorkflowSpec {
        repo: "acme/gadgets".into(),
        name: "ci".into(),
        jobs: vec![JobSpec::new("build", &["self-hosted", "linux"])],
        delay_ms: 0,
    })
    .expect("enqueueing a run");
    // Each pass, one repository's listing fails: widgets in odd passes, gadgets in even ones.
    for pass in 0..4 {
        let failing = if pass % 2 == 0 { "widgets" } else { "gadgets" };
        sim.set_faults(github_sim::Faults {
            server_errors: 20,
            only_path_contains: Some(format!("/repos/acme/{failing}/")),
            ..Default::default()
        });
        controller.full_pass().await;
    }
    let names = std::fs::read_to_string(dir.path().join("names")).unwrap_or_default();
    assert_eq!(
        names.lines().count(),
        1,
        "one runner submitted for the queued job; sbatch calls: {names:?}"
    );
}

/// A `completed` webhook that never arrived (GitHub does not redeliver): the job, running in
/// the database, is absent from the next listing, refreshed one by one, and recorded completed.
#[tokio::test(flavor = "multi_thread")]
async fn a_missed_completion_is_found_by_the_refresh() {
    let mut world = World::new().await;
    world.queue(1, 1).await;
    world.controller.full_pass().await;
    let (run_id, jobs) = world.runs[0].clone();
    // Its `in_progress` webhook arrived; then GitHub ended it and the `completed` one was lost.
    world
        .deliver(jobs[0], run_id, JobStatus::InProgress, None)
        .await;
    world.sim.cancel_run(run_id).expect("cancelling the run");
    world.controller.full_pass().await;
    let db = Db::open(&world.config.db_path).expect("the database");
    let job_id = jobs[0];
    let row = db
        .call(move |c| gha_dispatcher::store::job(c, job_id))
        .await
        .expect("reading the job");
    assert_eq!(row.map(|r| r.status), Some(JobStatus::Completed));
}

/// A job of a repository no pass lists (an organization's webhook covers more repositories
/// than `targets` polls) lost its `completed` webhook: nothing is asked while its runner
/// lives; once the runner is over, the job is refreshed and recorded completed.
#[tokio::test(flavor = "multi_thread")]
async fn a_missed_completion_in_an_unlisted_repository_is_found_once_its_runner_ended() {
    let mut world = World::new().await;
    world.sim.add_repo("acme", "gadgets");
    let created = world
        .sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/gadgets".into(),
            name: "ci".into(),
            jobs: vec![JobSpec::new("build", &["self-hosted", "linux"])],
            delay_ms: 0,
        })
        .expect("enqueueing a run");
    let (job_id, run_id) = (created.job_ids[0], created.run_id);
    let queued = job_update("acme/gadgets", job_id, run_id, JobStatus::Queued);
    world.deliver_update(queued, None).await;
    world.controller.full_pass().await;
    let runner = world.file("names").trim().to_string();
    assert!(!runner.is_empty(), "a runner submitted for the job");
    world.move_slurm_job(0, "PENDING", Some("RUNNING"));
    let started = JobUpdate {
        runner_name: Some(runner),
        ..job_update("acme/gadgets", job_id, run_id, JobStatus::InProgress)
    };
    world.deliver_update(started, None).await;
    // GitHub ends it; the `completed` webhook is lost.
    world.sim.cancel_run(run_id).expect("cancelling the run");
    let status = |world: &World| {
        let db = Db::open(&world.config.db_path).expect("the database");
        async move {
            db.call(move |c| gha_dispatcher::store::job(c, job_id))
                .await
                .expect("reading the job")
                .map(|row| row.status)
        }
    };
    world.controller.full_pass().await;
    assert_eq!(
        status(&world).await,
        Some(JobStatus::InProgress),
        "its runner still runs"
    );

    world.move_slurm_job(0, "RUNNING", None);
    world.controller.full_pass().await;
    world.controller.full_pass().await;
    assert_eq!(status(&world).await, Some(JobStatus::Completed));
}

/// A surplus runner's cancellation did not reach Slurm (scancel failed while slurmctld was
/// away; a crash between recording the intent and the call does the same): the next pass
/// sends it again, or the pending job would hold a slot of `max_runners` until it started.
#[tokio::test(flavor = "multi_thread")]
async fn a_cancellation_that_did_not_reach_slurm_is_sent_again() {
    let mut world = World::new().await;
    world.queue(2, 1).await;
    world.controller.full_pass().await;
    assert_eq!(world.count_in_slurm("PENDING"), 2, "{}", world.file("jobs"));
    std::fs::write(world.dir.path().join("scancel-fails"), "").expect("failing scancel");
    world.cancel(0, false).await;
    world.controller.scale_pass().await;
    assert_eq!(
        world.count_in_slurm("PENDING"),
        2,
        "scancel failed, so both jobs still pend: {}",
        world.file("jobs")
    );
    std::fs::remove_file(world.dir.path().join("scancel-fails")).expect("slurmctld back");
    world.controller.full_pass().await;
    assert_eq!(
        world.count_in_slurm("PENDING"),
        0,
        "the surplus runners' cancellation, sent again: {}",
        world.file("jobs")
    );
}

/// sbatch failed after Slurm took the job (a socket timeout: slurmctld accepted it, the
/// answer was lost). The retry finds the job by the runner's name and adopts it: a second
/// sbatch would start two jobs for one runner and one credential.
#[tokio::test(flavor = "multi_thread")]
async fn an_sbatch_that_failed_after_slurm_took_the_job_is_not_sent_again() {
    let mut world = World::new().await;
    world.queue(1, 1).await;
    std::fs::write(world.dir.path().join("fail-after-sbatch"), "").expect("arming the failure");
    world.controller.full_pass().await;
    assert_eq!(world.count_in_slurm("PENDING"), 1, "{}", world.file("jobs"));

    // Passes until the back-off (at least a second) lets the retry run.
    let db = Db::open(&world.config.db_path).expect("the database");
    let (controller, db) = (&world.controller, &db);
    let rows = wait_until_async("the retry", Duration::from_secs(30), || async move {
        controller.scale_pass().await;
        let rows = db
            .call(|c| gha_dispatcher::store::live_runners(c))
            .await
            .expect("reading the runners");
        let retried = rows.iter().all(|r| r.state != RunnerState::Submitting);
        retried.then_some(rows)
    })
    .await
    .expect("the held submission retried");
    assert_eq!(world.file("violations"), "");
    assert_eq!(world.file("names").lines().count(), 1);
    let adopted: Vec<_> = rows.iter().map(|r| (r.state, r.slurm_job_id)).collect();
    assert_eq!(
        adopted,
        [(RunnerState::Submitted, Some(100))],
        "the runner owns the job Slurm took"
    );
}
