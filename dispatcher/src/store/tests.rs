//! The store's tests: deliveries, jobs, runners and migrations against a real SQLite.

use rusqlite::Connection;

use super::migrations::MIGRATIONS;
use super::*;
use crate::model::{now_secs, JobStatus, JobUpdate, RunnerState, SlurmState};

fn update(job_id: u64, status: &str, runner: Option<&str>) -> JobUpdate {
    JobUpdate {
        job_id,
        run_id: 7,
        repo: "acme/widgets".into(),
        labels: vec!["self-hosted".into(), "linux".into()],
        status: JobStatus::parse(status).unwrap(),
        runner_name: runner.map(str::to_string),
        workflow: None,
        created_at: None,
        started_at: None,
    }
}

#[test]
fn prune_keeps_the_redelivery_window() {
    let db = Db::open_in_memory().unwrap();
    db.with(|c| {
        record_delivery(
            c,
            "old",
            "workflow_job",
            None,
            Some(&update(1, "completed", None)),
        )?;
        insert_minting_runner(c, "r", "cpu", "org:a", None)?;
        set_runner_state(c, "r", RunnerState::Finished, None)?;
        let now = now_secs();
        assert_eq!(prune(c, now + 3 * 86_400)?, 0);
        assert_eq!(prune(c, now + 8 * 86_400)?, 3);
        // A pruned delivery id is no longer a duplicate, but nothing older than the
        // window can be redelivered.
        assert!(job(c, 1)?.is_none());
        Ok(())
    })
    .unwrap();
}

#[test]
fn duplicate_delivery_changes_nothing() {
    let db = Db::open_in_memory().unwrap();
    db.with(|c| {
        let (first, _) = record_delivery(
            c,
            "g1",
            "workflow_job",
            Some("queued"),
            Some(&update(1, "queued", None)),
        )?;
        assert_eq!(first, DeliveryOutcome::New);
        let (again, _) = record_delivery(
            c,
            "g1",
            "workflow_job",
            Some("completed"),
            Some(&update(1, "completed", None)),
        )?;
        assert_eq!(again, DeliveryOutcome::Duplicate);
        assert_eq!(job(c, 1)?.unwrap().status, JobStatus::Queued);
        Ok(())
    })
    .unwrap();
}

#[test]
fn reordered_deliveries_never_move_status_back() {
    let db = Db::open_in_memory().unwrap();
    db.with(|c| {
        insert_minting_runner(c, "r1", "cpu", "org:acme", None)?;
        record_delivery(
            c,
            "g2",
            "workflow_job",
            Some("in_progress"),
            Some(&update(1, "in_progress", Some("r1"))),
        )?;
        record_delivery(
            c,
            "g1",
            "workflow_job",
            Some("queued"),
            Some(&update(1, "queued", None)),
        )?;
        assert_eq!(job(c, 1)?.unwrap().status, JobStatus::InProgress);
        assert!(jobs_with_status(c, JobStatus::Queued)?.is_empty());
        let r = runner(c, "r1")?.unwrap();
        assert!(r.busy);
        assert_eq!(r.assigned_job_id, Some(1));
        record_delivery(
            c,
            "g3",
            "workflow_job",
            Some("completed"),
            Some(&update(1, "completed", Some("r1"))),
        )?;
        assert_eq!(job(c, 1)?.unwrap().status, JobStatus::Completed);
        // r1 never had its sbatch recorded: crash recovery decides, not the webhook.
        assert_eq!(runner(c, "r1")?.unwrap().state, RunnerState::Minting);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_completed_job_finishes_its_submitted_runner() {
    let db = Db::open_in_memory().unwrap();
    db.with(|c| {
        insert_minting_runner(c, "r1", "cpu", "org:acme", Some(1))?;
        set_runner_registered(c, "r1", 5)?;
        set_runner_submitted(c, "r1", 77)?;
        let (_, t) = record_delivery(
            c,
            "a",
            "workflow_job",
            Some("in_progress"),
            Some(&update(1, "in_progress", Some("r1"))),
        )?;
        assert!(!t.runner_finished);
        let r = runner(c, "r1")?.unwrap();
        assert!(r.busy && r.state == RunnerState::Submitted);
        let (_, t) = record_delivery(
            c,
            "b",
            "workflow_job",
            Some("completed"),
            Some(&update(1, "completed", Some("r1"))),
        )?;
        assert!(t.runner_finished);
        let r = runner(c, "r1")?.unwrap();
        assert_eq!(r.state, RunnerState::Finished);
        assert_eq!(r.assigned_job_id, Some(1));
        assert!(r.finished_at.is_some());
        assert!(live_runners(c)?.is_empty(), "its slot is free");
        Ok(())
    })
    .unwrap();
}

#[test]
fn queue_to_start_is_measured_once() {
    let db = Db::open_in_memory().unwrap();
    db.with(|c| {
        record_delivery(
            c,
            "a",
            "workflow_job",
            None,
            Some(&update(5, "queued", None)),
        )?;
        let (_, t) = record_delivery(
            c,
            "b",
            "workflow_job",
            None,
            Some(&update(5, "in_progress", Some("x"))),
        )?;
        assert!(t.queue_to_start_secs.is_some());
        let (_, t) = record_delivery(
            c,
            "c",
            "workflow_job",
            None,
            Some(&update(5, "completed", Some("x"))),
        )?;
        assert_eq!(t.queue_to_start_secs, None);
        Ok(())
    })
    .unwrap();
}

#[test]
fn runner_lifecycle_and_persistence() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/state.db");
    {
        let db = Db::open(&path).unwrap();
        db.with(|c| {
            insert_minting_runner(c, "r1", "cpu", "org:acme", Some(3))?;
            set_runner_registered(c, "r1", 99)?;
            Ok(())
        })
        .unwrap();
    }
    let db = Db::open(&path).unwrap();
    db.with(|c| {
        let live = live_runners(c)?;
        assert_eq!(live.len(), 1);
        assert_eq!(live[0].state, RunnerState::Submitting);
        assert_eq!(live[0].github_runner_id, Some(99));
        set_runner_submitted(c, "r1", 1234)?;
        set_runner_slurm_state(c, "r1", SlurmState::Running)?;
        let r = runner(c, "r1")?.unwrap();
        assert_eq!(
            (r.slurm_job_id, r.state),
            (Some(1234), RunnerState::Submitted)
        );
        assert!(r.slurm_started_at.is_some());
        set_runner_state(c, "r1", RunnerState::Finished, None)?;
        assert!(live_runners(c)?.is_empty());
        assert_eq!(final_runners_with_registration(c)?.len(), 1);
        // A runner name is unique: a second intent with the same name fails.
        assert!(insert_minting_runner(c, "r1", "cpu", "org:acme", None).is_err());
        Ok(())
    })
    .unwrap();
}

#[test]
fn migrates_a_version_2_database_keeping_its_runners() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        let mut conn = Connection::open(&path).unwrap();
        for (i, sql) in MIGRATIONS[..2].iter().enumerate() {
            let tx = conn.transaction().unwrap();
            tx.execute_batch(sql).unwrap();
            tx.pragma_update(None, "user_version", (i + 1) as i64)
                .unwrap();
            tx.commit().unwrap();
        }
        insert_minting_runner(&conn, "old", "cpu", "org:a", Some(1)).unwrap();
        set_runner_registered(&conn, "old", 5).unwrap();
    }
    let db = Db::open(&path).unwrap();
    db.with(|c| {
        let version: i64 = c.pragma_query_value(None, "user_version", |r| r.get(0))?;
        assert_eq!(version, super::migrations::MIGRATIONS.len() as i64);
        let old = runner(c, "old")?.unwrap();
        assert_eq!(
            (
                old.github_runner_id,
                old.ticket_hash,
                old.ticket_redeemed_at
            ),
            (Some(5), None, None)
        );
        assert!(!runner(c, "old")?.unwrap().never_registered());
        insert_ticket_runner(c, "t", "cpu", "org:a", Some(2), "ab12", 1000)?;
        let t = runner_by_ticket_hash(c, "ab12")?.unwrap();
        assert_eq!(t.name, "t");
        assert_eq!(t.state, RunnerState::Submitting);
        assert_eq!(t.ticket_expires_at, Some(1000));
        assert!(t.never_registered());
        assert!(runner_by_ticket_hash(c, "cd34")?.is_none());
        Ok(())
    })
    .unwrap();
    drop(db);
    // Opening again runs no migration twice.
    let db = Db::open(&path).unwrap();
    db.with(|c| {
        assert_eq!(live_runners(c)?.len(), 2);
        Ok(())
    })
    .unwrap();
}

#[test]
fn a_ticket_is_redeemed_once() {
    let db = Db::open_in_memory().unwrap();
    db.with(|c| {
        insert_ticket_runner(c, "t", "cpu", "org:a", None, "h1", 1000)?;
        set_runner_submitted(c, "t", 42)?;
        assert!(mark_ticket_redeemed(c, "t", 10)?);
        assert!(!mark_ticket_redeemed(c, "t", 11)?);
        set_runner_id(c, "t", 77)?;
        let t = runner(c, "t")?.unwrap();
        assert_eq!(t.ticket_redeemed_at, Some(10));
        assert_eq!(
            (t.state, t.github_runner_id),
            (RunnerState::Submitted, Some(77))
        );
        assert!(!t.never_registered());
        // An inline runner has no ticket to redeem.
        insert_minting_runner(c, "i", "cpu", "org:a", None)?;
        assert!(!mark_ticket_redeemed(c, "i", 10)?);
        // Ticket hashes are unique.
        assert!(insert_ticket_runner(c, "t2", "cpu", "org:a", None, "h1", 1000).is_err());
        Ok(())
    })
    .unwrap();
}

#[test]
fn an_unknown_state_in_the_database_is_an_error_naming_the_runner() {
    let db = Db::open_in_memory().unwrap();
    let err = db
        .with(|c| {
            insert_minting_runner(c, "r-odd", "cpu", "org:a", None)?;
            c.execute(
                "UPDATE runners SET state = 'zombie' WHERE name = 'r-odd'",
                [],
            )?;
            live_runners(c)
        })
        .unwrap_err()
        .to_string();
    assert!(err.contains("r-odd") && err.contains("zombie"), "{err}");
    let err = db
        .with(|c| {
            c.execute(
                "UPDATE runners SET state = 'submitted', slurm_state = 'TELEPORTING' WHERE name = 'r-odd'",
                [],
            )?;
            runner(c, "r-odd")
        })
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("r-odd") && err.contains("TELEPORTING"),
        "{err}"
    );
}

#[test]
fn a_final_runners_job_is_watched_until_seen_over() {
    let db = Db::open_in_memory().unwrap();
    db.with(|c| {
        insert_ticket_runner(c, "t", "cpu", "org:a", None, "h1", 1000)?;
        set_runner_submitted(c, "t", 42)?;
        set_runner_slurm_state(c, "t", SlurmState::Running)?;
        let watched = |c: &mut Connection, since| final_runners_in_slurm(c, since).map(|r| r.len());
        // Live: followed as a live runner, not here.
        assert_eq!(watched(c, 0)?, 0);
        assert_eq!(
            runner_by_slurm_job(c, 42)?.map(|r| r.name),
            Some("t".into())
        );
        assert_eq!(runner_by_slurm_job(c, 43)?, None);
        // Finished by a `completed` event while its job still runs: watched, for a while.
        set_runner_state(c, "t", RunnerState::Finished, None)?;
        assert_eq!(watched(c, 0)?, 1);
        assert_eq!(watched(c, now_secs() + 10)?, 0);
        // Seen over: no longer.
        set_runner_slurm_state(c, "t", SlurmState::Completed)?;
        assert_eq!(watched(c, 0)?, 0);
        Ok(())
    })
    .unwrap();
}

/// A claimed ticket that got no config is counted unredeemed by exactly one party: the
/// redemption's refusal or the runner's end (a node's notice, hygiene), whichever is recorded
/// first; two parties ending one runner see it live only once.
#[test]
fn an_unredeemed_ticket_is_counted_by_one_party() {
    let refused = format!(
        "{}generate-jitconfig failed",
        crate::model::REDEMPTION_ERROR_PREFIX
    );
    let claimed = |c: &mut Connection, name: &str, hash: &str, job: u64| {
        insert_ticket_runner(c, name, "cpu", "org:a", None, hash, 1000)?;
        set_runner_submitted(c, name, job)?;
        mark_ticket_redeemed(c, name, 10).map(|_| ())
    };
    let db = Db::open_in_memory().unwrap();
    db.with(|c| {
        // Refusal first: it counts; the end then sees a refusal on record and does not.
        claimed(c, "a", "h1", 41)?;
        assert!(record_redemption_failure(c, "a", &refused)?);
        let before = swap_runner_state(c, "a", RunnerState::Finished, None)?.unwrap();
        assert!(!before.got_no_config());
        // End first: it counts (nothing refused on record); the late refusal does not.
        claimed(c, "b", "h2", 42)?;
        let before = swap_runner_state(c, "b", RunnerState::Finished, None)?.unwrap();
        assert!(!before.state.is_final() && before.got_no_config());
        assert!(!record_redemption_failure(c, "b", &refused)?);
        // Hygiene's boot deadline and the end notice of the job it cancelled.
        claimed(c, "c", "h3", 43)?;
        let why = Some("did not come online within the boot deadline");
        let first = swap_runner_state(c, "c", RunnerState::Abandoned, why)?.unwrap();
        let second = swap_runner_state(c, "c", RunnerState::Finished, None)?.unwrap();
        assert!(!first.state.is_final() && second.state.is_final());
        Ok(())
    })
    .unwrap();
}
