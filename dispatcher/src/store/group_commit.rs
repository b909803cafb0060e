//! Group commit for webhook intake (private to the store: callers see [`Db::record_delivery`]). Every delivery is durable (WAL, `synchronous=FULL`) before
//! its 202, but a burst shares transactions: the first caller to find no writer running
//! becomes it, and on a blocking thread takes everything queued so far, records it in one
//! transaction (each delivery in its own savepoint, so a failing row fails only its own
//! request), answers each caller, and repeats until the queue is empty. One fsync per batch
//! instead of one per webhook, which is what bounds the response time of a burst.

use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use super::deliveries::{record_delivery_in, Delivery, DeliveryOutcome};
use super::jobs::JobTransition;
use super::{Db, DbError};

type Outcome = Result<(DeliveryOutcome, JobTransition), DbError>;

struct Waiting {
    delivery: Delivery,
    answer: oneshot::Sender<Outcome>,
}

#[derive(Default)]
struct State {
    waiting: Vec<Waiting>,
    writer_running: bool,
}

/// The deliveries waiting for the next shared transaction.
#[derive(Clone, Default)]
pub struct DeliveryQueue {
    state: Arc<Mutex<State>>,
}

fn lock(state: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl DeliveryQueue {
    /// Records `delivery` (deduplicated by its id) and returns once it is committed.
    pub async fn record(&self, db: &Db, delivery: Delivery) -> Outcome {
        let (answer, answered) = oneshot::channel();
        let become_writer = {
            let mut state = lock(&self.state);
            state.waiting.push(Waiting { delivery, answer });
            !std::mem::replace(&mut state.writer_running, true)
        };
        if become_writer {
            let (db, queue) = (db.clone(), self.clone());
            // Not awaited: the writer answers through the channels, including this caller's.
            drop(tokio::task::spawn_blocking(move || {
                queue.write_until_empty(&db)
            }));
        }
        answered
            .await
            .map_err(|_| DbError::Join("the delivery writer stopped".into()))?
    }

    fn write_until_empty(&self, db: &Db) {
        // Should the writer ever panic, the next caller must be able to become the writer
        // (callers of the lost batch get an error through their dropped channels).
        struct ReleaseOnPanic<'a>(&'a Mutex<State>);
        impl Drop for ReleaseOnPanic<'_> {
            fn drop(&mut self) {
                if std::thread::panicking() {
                    lock(self.0).writer_running = false;
                }
            }
        }
        let _release = ReleaseOnPanic(&self.state);
        loop {
            let batch = {
                let mut state = lock(&self.state);
                if state.waiting.is_empty() {
                    state.writer_running = false;
                    return;
                }
                std::mem::take(&mut state.waiting)
            };
            let deliveries: Vec<&Delivery> = batch.iter().map(|w| &w.delivery).collect();
            match db.with(|c| record_batch(c, &deliveries)) {
                Ok(outcomes) => {
                    for (waiting, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = waiting.answer.send(outcome.map_err(DbError::from));
                    }
                }
                Err(e) => {
                    // The shared commit failed: nothing of this batch was recorded.
                    let message = e.to_string();
                    for waiting in batch {
                        let _ = waiting
                            .answer
                            .send(Err(DbError::Join(format!("commit failed: {message}"))));
                    }
                }
            }
        }
    }
}

/// Records `deliveries` in one transaction, each in its own savepoint. The outer error is the
/// transaction's (nothing recorded); an inner one is that delivery's alone.
fn record_batch(
    conn: &mut rusqlite::Connection,
    deliveries: &[&Delivery],
) -> rusqlite::Result<Vec<rusqlite::Result<(DeliveryOutcome, JobTransition)>>> {
    let mut tx = conn.transaction()?;
    let mut outcomes = Vec::with_capacity(deliveries.len());
    for d in deliveries {
        let savepoint = tx.savepoint()?;
        let outcome = record_delivery_in(
            &savepoint,
            &d.delivery_id,
            &d.event,
            d.action.as_deref(),
            d.update.as_ref(),
            d.body_sha256.as_deref(),
        );
        if outcome.is_ok() {
            savepoint.commit()?;
        } // else dropped: rolled back to before this delivery
        outcomes.push(outcome);
    }
    tx.commit()?;
    Ok(outcomes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{JobStatus, JobUpdate};

    fn delivery(id: &str, job: u64, action: &str) -> Delivery {
        Delivery {
            delivery_id: id.into(),
            event: "workflow_job".into(),
            action: Some(action.into()),
            update: Some(JobUpdate {
                job_id: job,
                run_id: 1,
                repo: "acme/widgets".into(),
                labels: vec!["self-hosted".into()],
                status: JobStatus::parse(action).unwrap(),
                runner_name: None,
                workflow: None,
                created_at: None,
                started_at: None,
            }),
            body_sha256: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_burst_is_recorded_once_each_and_duplicates_are_told_apart() {
        let db = Db::open_in_memory().unwrap();
        let queue = DeliveryQueue::default();
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..200u64 {
            let (db, queue) = (db.clone(), queue.clone());
            // Deliveries 0..100 twice each: one of each pair is a duplicate.
            let d = delivery(&format!("guid-{}", i % 100), 1000 + i % 100, "queued");
            tasks.spawn(async move { queue.record(&db, d).await });
        }
        let (mut new, mut duplicate) = (0, 0);
        while let Some(result) = tasks.join_next().await {
            match result.unwrap().unwrap().0 {
                DeliveryOutcome::New => new += 1,
                DeliveryOutcome::Duplicate => duplicate += 1,
            }
        }
        assert_eq!((new, duplicate), (100, 100));
        let queued = db
            .with(|c| super::super::jobs_with_status(c, JobStatus::Queued))
            .unwrap();
        assert_eq!(queued.len(), 100);
    }

    #[test]
    fn a_failing_delivery_fails_alone() {
        let db = Db::open_in_memory().unwrap();
        db.with(|c| {
            // Any insert of this job id now fails, inside its own savepoint only.
            c.execute_batch(
                "CREATE TRIGGER refuse BEFORE INSERT ON jobs WHEN NEW.job_id = 7 \
                 BEGIN SELECT RAISE(ABORT, 'refused'); END;",
            )
        })
        .unwrap();
        let (good, bad) = (delivery("a", 6, "queued"), delivery("b", 7, "queued"));
        let outcomes = db.with(|c| record_batch(c, &[&good, &bad])).unwrap();
        assert!(outcomes[0].is_ok());
        assert!(outcomes[1].is_err());
        let delivered: i64 = db
            .with(|c| c.query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0)))
            .unwrap();
        // The failed delivery's id is not kept either: GitHub's redelivery can still succeed.
        assert_eq!(delivered, 1);
    }
}
