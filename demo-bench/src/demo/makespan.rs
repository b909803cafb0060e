//! A workflow run's makespan beside its critical path, as WATcloud's CI runtime tool reports
//! them: the makespan is first job queued → last job completed; the critical path is the
//! fastest the run could have been with unlimited runners and no waiting, the longest chain of
//! `needs` weighted by each job's own run time (runner took it → it completed). Their ratio is
//! what queueing and runner start-up cost the run. Times from the simulator's millisecond
//! timeline.

use std::collections::BTreeMap;

use github_sim::{TimelineEvent, TimelineKind, WorkflowSpec};

/// One queued run: its jobs' ids, names and `needs`.
#[derive(Debug, Clone)]
pub struct PlannedRun {
    pub label: String,
    pub jobs: Vec<PlannedJob>,
}

#[derive(Debug, Clone)]
pub struct PlannedJob {
    pub id: u64,
    pub name: String,
    pub needs: Vec<String>,
}

impl PlannedRun {
    /// `job_ids` in the order of `spec.jobs` (as `enqueue_workflow` answers them).
    pub fn new(spec: &WorkflowSpec, job_ids: &[u64]) -> PlannedRun {
        PlannedRun {
            label: format!("{} ({})", spec.name, spec.repo),
            jobs: spec
                .jobs
                .iter()
                .zip(job_ids)
                .map(|(job, &id)| PlannedJob {
                    id,
                    name: job.name.clone(),
                    needs: job.needs.clone(),
                })
                .collect(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Makespan {
    pub label: String,
    pub makespan_secs: f64,
    pub critical_path_secs: f64,
}

impl Makespan {
    /// Makespan over critical path (1.0: as fast as the workflow allows).
    pub fn ratio(&self) -> f64 {
        self.makespan_secs / self.critical_path_secs.max(1e-3)
    }
}

/// The run's makespan and critical path; `None` unless every job ran to completion.
pub fn makespan(run: &PlannedRun, timeline: &[TimelineEvent]) -> Option<Makespan> {
    let at = |id: u64, kind: TimelineKind| {
        timeline
            .iter()
            .find(|e| e.what == kind && e.job_id == Some(id))
            .map(|e| e.at_ms as f64 / 1000.0)
    };
    let mut first_queued = f64::INFINITY;
    let mut last_done = f64::NEG_INFINITY;
    let mut run_secs = BTreeMap::new();
    for job in &run.jobs {
        let queued = at(job.id, TimelineKind::JobQueued)?;
        let assigned = at(job.id, TimelineKind::JobAssigned)?;
        let done = at(job.id, TimelineKind::JobCompleted)?;
        first_queued = first_queued.min(queued);
        last_done = last_done.max(done);
        run_secs.insert(job.name.as_str(), done - assigned);
    }
    Some(Makespan {
        label: run.label.clone(),
        makespan_secs: last_done - first_queued,
        critical_path_secs: critical_path(run, &run_secs),
    })
}

/// One line per run for the demo's summary.
pub fn summary_lines(planned: &[PlannedRun], timeline: &[TimelineEvent]) -> Vec<String> {
    planned
        .iter()
        .map(|run| match makespan(run, timeline) {
            Some(m) => format!(
                "{}: {:.1} s against a critical path of {:.1} s ({:.2}×; unlimited runners, \
                 no waiting: the longest chain of `needs` at each job's own run time)",
                m.label,
                m.makespan_secs,
                m.critical_path_secs,
                m.ratio()
            ),
            None => format!("{}: not every job ran to completion", run.label),
        })
        .collect()
}

/// The longest chain of `needs`, each job weighing its run time.
pub fn critical_path(run: &PlannedRun, run_secs: &BTreeMap<&str, f64>) -> f64 {
    let needs: BTreeMap<&str, &[String]> = run
        .jobs
        .iter()
        .map(|j| (j.name.as_str(), j.needs.as_slice()))
        .collect();
    let mut finish: BTreeMap<&str, f64> = BTreeMap::new();
    run.jobs
        .iter()
        .map(|j| earliest_finish(j.name.as_str(), &needs, run_secs, &mut finish, 0))
        .fold(0.0, f64::max)
}

/// When `name` could finish at the earliest (memoized); `depth` stops a cycle (the
/// simulator refuses those, this only keeps a bad input from recursing forever).
fn earliest_finish<'a>(
    name: &'a str,
    needs: &BTreeMap<&'a str, &'a [String]>,
    run_secs: &BTreeMap<&str, f64>,
    finish: &mut BTreeMap<&'a str, f64>,
    depth: usize,
) -> f64 {
    if let Some(&done) = finish.get(name) {
        return done;
    }
    let start = if depth > needs.len() {
        0.0
    } else {
        needs
            .get(name)
            .map(|list| {
                list.iter()
                    .map(|n| earliest_finish(n.as_str(), needs, run_secs, finish, depth + 1))
                    .fold(0.0, f64::max)
            })
            .unwrap_or(0.0)
    };
    let done = start + run_secs.get(name).copied().unwrap_or(0.0);
    finish.insert(name, done);
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planned(jobs: &[(u64, &str, &[&str])]) -> PlannedRun {
        PlannedRun {
            label: "ci".into(),
            jobs: jobs
                .iter()
                .map(|(id, name, needs)| PlannedJob {
                    id: *id,
                    name: name.to_string(),
                    needs: needs.iter().map(|n| n.to_string()).collect(),
                })
                .collect(),
        }
    }

    fn event(ms: i64, what: TimelineKind, job: u64) -> TimelineEvent {
        TimelineEvent {
            at_ms: ms,
            what,
            job_id: Some(job),
            runner: None,
        }
    }

    #[test]
    fn critical_path_follows_the_longest_chain_of_needs() {
        // build (2) → test (3) → report (1) is 6; lint (4) alone is shorter.
        let run = planned(&[
            (1, "build", &[]),
            (2, "test", &["build"]),
            (3, "lint", &[]),
            (4, "report", &["test", "lint"]),
        ]);
        let secs = BTreeMap::from([
            ("build", 2.0),
            ("test", 3.0),
            ("lint", 4.0),
            ("report", 1.0),
        ]);
        assert_eq!(critical_path(&run, &secs), 6.0);
    }

    #[test]
    fn makespan_is_first_queued_to_last_done_and_needs_every_job_done() {
        let run = planned(&[(1, "a", &[]), (2, "b", &["a"])]);
        let mut timeline = vec![
            event(0, TimelineKind::JobQueued, 1),
            event(1_000, TimelineKind::JobAssigned, 1),
            event(2_000, TimelineKind::JobCompleted, 1),
            event(2_000, TimelineKind::JobQueued, 2),
            event(4_000, TimelineKind::JobAssigned, 2),
        ];
        assert_eq!(makespan(&run, &timeline), None);
        timeline.push(event(5_000, TimelineKind::JobCompleted, 2));
        let m = makespan(&run, &timeline).unwrap();
        assert_eq!((m.makespan_secs, m.critical_path_secs), (5.0, 2.0));
        assert_eq!(m.ratio(), 2.5);
    }
}
