//! Follows every job of a run through GitHub's states by polling the simulator, and keeps
//! when each was first seen queued, taken by a runner, and completed. The simulator's own
//! timestamps have GitHub's one-second resolution; polling every 100 ms gives a finer (and
//! stated) precision for queue-to-runner-start.

use std::collections::BTreeMap;
use std::time::Instant;

use github_sim::JobView;

/// What is known of one job.
#[derive(Debug, Clone)]
pub struct JobTrack {
    /// The job's labels without `self-hosted`, joined with commas: its label set.
    pub label_set: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub queued_at: Option<Instant>,
    pub started_at: Option<Instant>,
    pub completed_at: Option<Instant>,
}

/// Counts of jobs by state, for one label set or all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    /// Waiting for jobs they need.
    pub waiting: usize,
    /// Queued on GitHub, no runner yet.
    pub queued: usize,
    pub in_progress: usize,
    pub succeeded: usize,
    pub failed: usize,
    pub cancelled: usize,
    /// Not run because a job they need failed.
    pub skipped: usize,
}

impl Tally {
    pub fn done(&self) -> usize {
        self.succeeded + self.failed + self.cancelled + self.skipped
    }

    pub fn total(&self) -> usize {
        self.waiting + self.queued + self.in_progress + self.done()
    }

    fn add(&mut self, job: &JobTrack) {
        match job.status.as_str() {
            "queued" => self.queued += 1,
            "in_progress" => self.in_progress += 1,
            "completed" => match job.conclusion.as_deref() {
                Some("success") => self.succeeded += 1,
                Some("cancelled") => self.cancelled += 1,
                Some("skipped") => self.skipped += 1,
                _ => self.failed += 1,
            },
            // pending, waiting, requested
            _ => self.waiting += 1,
        }
    }
}

#[derive(Debug, Default)]
pub struct Tracker {
    jobs: BTreeMap<u64, JobTrack>,
}

/// The label set of a job: its labels without `self-hosted`, lower-cased, in order.
pub fn label_set(labels: &[String]) -> String {
    labels
        .iter()
        .filter(|l| !l.eq_ignore_ascii_case("self-hosted"))
        .map(|l| l.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join(",")
}

impl Tracker {
    /// Jobs just enqueued without `needs` are queued at `at` (the simulator queues them at once).
    pub fn enqueued(&mut self, job_ids: impl IntoIterator<Item = u64>, at: Instant) {
        for id in job_ids {
            self.jobs.entry(id).or_insert_with(|| JobTrack {
                label_set: String::new(),
                status: "queued".into(),
                conclusion: None,
                queued_at: Some(at),
                started_at: None,
                completed_at: None,
            });
        }
    }

    /// Records what a poll of the simulator saw at `now`.
    pub fn observe(&mut self, views: &[JobView], now: Instant) {
        for view in views {
            let track = self.jobs.entry(view.id).or_insert_with(|| JobTrack {
                label_set: String::new(),
                status: view.status.clone(),
                conclusion: None,
                queued_at: None,
                started_at: None,
                completed_at: None,
            });
            track.label_set = label_set(&view.labels);
            track.status = view.status.clone();
            track.conclusion = view.conclusion.clone();
            let ran = view.runner_name.is_some() || view.started_at.is_some();
            match view.status.as_str() {
                "queued" => {
                    track.queued_at.get_or_insert(now);
                }
                "in_progress" => {
                    track.queued_at.get_or_insert(now);
                    track.started_at.get_or_insert(now);
                }
                "completed" => {
                    track.queued_at.get_or_insert(now);
                    if ran {
                        track.started_at.get_or_insert(now);
                    }
                    track.completed_at.get_or_insert(now);
                }
                _ => {}
            }
        }
    }

    /// Seconds from queued to taken by a runner, for every job a runner took.
    pub fn queue_to_start_secs(&self) -> Vec<f64> {
        self.jobs
            .values()
            .filter_map(|j| Some(j.started_at?.duration_since(j.queued_at?).as_secs_f64()))
            .collect()
    }

    /// Counts per label set, and over all jobs.
    pub fn tally(&self) -> (BTreeMap<String, Tally>, Tally) {
        let mut per_set: BTreeMap<String, Tally> = BTreeMap::new();
        let mut total = Tally::default();
        for job in self.jobs.values() {
            per_set.entry(job.label_set.clone()).or_default().add(job);
            total.add(job);
        }
        (per_set, total)
    }

    pub fn jobs(&self) -> &BTreeMap<u64, JobTrack> {
        &self.jobs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn view(id: u64, status: &str, conclusion: Option<&str>, runner: bool) -> JobView {
        JobView {
            id,
            run_id: 1,
            name: format!("j{id}"),
            repo: "acme/widgets".into(),
            status: status.into(),
            conclusion: conclusion.map(str::to_owned),
            labels: vec!["self-hosted".into(), "Linux".into()],
            runner_id: runner.then_some(5),
            runner_name: runner.then(|| "r".to_owned()),
            created_at: String::new(),
            started_at: None,
            completed_at: None,
            annotation: None,
        }
    }

    #[test]
    fn measures_queue_to_start_and_tallies_conclusions() {
        let t0 = Instant::now();
        let mut tracker = Tracker::default();
        tracker.enqueued([1, 2], t0);
        tracker.observe(
            &[
                view(1, "queued", None, false),
                view(3, "pending", None, false),
            ],
            t0,
        );
        let t1 = t0 + Duration::from_millis(300);
        tracker.observe(
            &[
                view(1, "in_progress", None, true),
                view(2, "completed", Some("cancelled"), false),
                view(3, "queued", None, false),
            ],
            t1,
        );
        let t2 = t1 + Duration::from_millis(200);
        tracker.observe(&[view(3, "completed", Some("success"), true)], t2);
        let mut waits = tracker.queue_to_start_secs();
        waits.sort_by(f64::total_cmp);
        assert_eq!(waits.len(), 2, "the cancelled job never started");
        assert!((waits[0] - 0.2).abs() < 1e-9 && (waits[1] - 0.3).abs() < 1e-9);
        let (per_set, total) = tracker.tally();
        assert_eq!(total.succeeded, 1);
        assert_eq!(total.cancelled, 1);
        assert_eq!(total.in_progress, 1);
        assert_eq!(per_set["linux"].total(), 3);
    }
}
