//! The soak's end checks, each a row of the table `ci/soak` prints (and writes as JSON): what
//! was checked, how many, how many violated it, and a few examples. Exit status 1 when any row
//! has a violation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use serde::Serialize;

use github_sim::model::JobView;

/// One invariant's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub invariant: String,
    pub checked: usize,
    pub violations: usize,
    /// Up to five examples of violations, or what the count is made of.
    pub detail: String,
}

impl Row {
    pub fn new(invariant: &str, checked: usize, bad: &[String], detail: String) -> Row {
        let examples: Vec<&str> = bad.iter().take(5).map(String::as_str).collect();
        let detail = if bad.is_empty() {
            detail
        } else {
            format!("{detail}; e.g. {}", examples.join(", "))
        };
        Row {
            invariant: invariant.to_owned(),
            checked,
            violations: bad.len(),
            detail,
        }
    }
}

/// Why a GitHub job may fail: a fault the soak injected on purpose.
pub type Causes = BTreeMap<u64, &'static str>;

/// Every GitHub job completed.
pub fn all_final(jobs: &[JobView]) -> Row {
    let bad: Vec<String> = jobs
        .iter()
        .filter(|j| j.status != "completed")
        .map(|j| format!("{} {}", j.id, j.status))
        .collect();
    Row::new(
        "every GitHub job reached a final state",
        jobs.len(),
        &bad,
        String::new(),
    )
}

/// Each job succeeded, or failed for a cause the soak injected (its runner cancelled or its
/// node lost while it ran; GitHub then fails it as a runner that lost communication).
pub fn outcomes(jobs: &[JobView], causes: &Causes) -> Row {
    let mut by_cause: BTreeMap<&str, usize> = BTreeMap::new();
    let mut bad = Vec::new();
    for job in jobs.iter().filter(|j| j.status == "completed") {
        match (job.conclusion.as_deref(), causes.get(&job.id)) {
            (Some("success"), _) => *by_cause.entry("succeeded").or_default() += 1,
            (Some("failure"), Some(cause)) => *by_cause.entry(cause).or_default() += 1,
            (other, _) => bad.push(format!("{} {}", job.id, other.unwrap_or("none"))),
        }
    }
    let detail = by_cause
        .iter()
        .map(|(k, v)| format!("{v} {k}"))
        .collect::<Vec<_>>()
        .join(", ");
    Row::new(
        "each succeeded or failed for an injected cause",
        jobs.len(),
        &bad,
        detail,
    )
}

/// No GitHub job was assigned to a runner more than once.
pub fn ran_at_most_once(jobs: &[JobView], runs: &BTreeMap<u64, github_sim::model::JobRun>) -> Row {
    let bad: Vec<String> = jobs
        .iter()
        .filter_map(|j| {
            let n = runs.get(&j.id).map_or(0, |r| r.assignments);
            (n > 1).then(|| format!("{} ran {n} times", j.id))
        })
        .collect();
    Row::new("no GitHub job ran twice", jobs.len(), &bad, String::new())
}

/// A Slurm job of the run as `squeue --states=all` lists it at the end.
#[derive(Debug, Clone)]
pub struct EndedSlurmJob {
    pub id: u32,
    pub name: String,
    pub state: String,
}

/// What became of the runner jobs' tickets, by runner name.
#[derive(Debug, Default)]
pub struct Tickets {
    /// Runners that ran a GitHub job.
    pub ran: BTreeSet<String>,
    /// Runners whose node redeemed the ticket (the plugin had the config in hand).
    pub redeemed_on_node: BTreeSet<String>,
    /// Runners GitHub issued a JIT config for.
    pub issued: BTreeSet<String>,
}

/// Every Slurm job ran a GitHub job, or its node redeemed the ticket and it got none (idle,
/// cancelled or lost before a job came), or it never got a config; those must equal the
/// dispatchers' `tickets_unredeemed` counters summed over their processes. One kind is
/// undecidable and bounds the count instead of adding to it: a config GitHub issued that never
/// reached the node (the dispatcher killed between the mint and its answer, the job gone
/// while it waited). The dispatcher counts such a job when it died before recording the
/// registration, and cannot tell the rest from a runner that idled.
pub fn slurm_jobs_accounted(
    slurm_jobs: &[EndedSlurmJob],
    tickets: &Tickets,
    unredeemed_counted: u64,
) -> Row {
    let (mut ran, mut idle, mut undelivered, mut unredeemed) = (0, 0, 0, 0);
    let mut bad = Vec::new();
    for job in slurm_jobs {
        if tickets.ran.contains(&job.name) {
            ran += 1;
        } else if tickets.redeemed_on_node.contains(&job.name) {
            idle += 1;
        } else if tickets.issued.contains(&job.name) {
            undelivered += 1;
        } else {
            unredeemed += 1;
        }
        if !matches!(
            job.state.as_str(),
            "COMPLETED" | "CANCELLED" | "FAILED" | "NODE_FAIL" | "TIMEOUT" | "OUT_OF_MEMORY"
        ) {
            bad.push(format!("{} still {}", job.id, job.state));
        }
    }
    let counted = usize::try_from(unredeemed_counted).unwrap_or(usize::MAX);
    if counted < unredeemed || counted > unredeemed + undelivered {
        bad.push(format!(
            "{unredeemed} ended without a config ({undelivered} more whose config never reached the node), the dispatchers counted {unredeemed_counted}"
        ));
    }
    Row::new(
        "every Slurm job ran a GitHub job or was counted",
        slurm_jobs.len(),
        &bad,
        format!(
            "{ran} ran a GitHub job, {idle} redeemed and got none, {unredeemed} unredeemed, {undelivered} issued a config that never reached the node (counted {unredeemed_counted})"
        ),
    )
}

/// Where each secret was found (place, how many secrets).
pub fn no_secrets(places_checked: usize, found: &[String], detail: String) -> Row {
    Row::new(
        "no JIT config, ticket or token in logs, Slurm records, environments",
        places_checked,
        found,
        detail,
    )
}

/// The table, one line per row, and the verdict.
pub fn table(rows: &[Row]) -> String {
    let mut out = String::new();
    let width = rows.iter().map(|r| r.invariant.len()).max().unwrap_or(10);
    let _ = writeln!(
        out,
        "  {:<width$}  {:>8}  {:>10}  detail",
        "invariant", "checked", "violations"
    );
    for row in rows {
        let _ = writeln!(
            out,
            "  {:<width$}  {:>8}  {:>10}  {}",
            row.invariant, row.checked, row.violations, row.detail
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: u64, status: &str, conclusion: Option<&str>) -> JobView {
        JobView {
            id,
            run_id: 1,
            name: format!("job-{id}"),
            repo: "acme/svc01".into(),
            status: status.into(),
            conclusion: conclusion.map(str::to_owned),
            labels: vec![],
            runner_id: None,
            runner_name: None,
            created_at: String::new(),
            started_at: None,
            completed_at: None,
            annotation: None,
        }
    }

    #[test]
    fn a_failure_counts_only_with_an_injected_cause() {
        let jobs = vec![
            job(1, "completed", Some("success")),
            job(2, "completed", Some("failure")),
            job(3, "completed", Some("failure")),
            job(4, "queued", None),
        ];
        let causes: Causes = [(2, "node lost")].into_iter().collect();
        let row = outcomes(&jobs, &causes);
        assert_eq!(row.violations, 1);
        assert!(row.detail.contains("1 node lost"), "{}", row.detail);
        assert_eq!(all_final(&jobs).violations, 1);
    }

    #[test]
    fn unredeemed_slurm_jobs_must_match_the_counter() {
        let jobs = vec![
            EndedSlurmJob {
                id: 1,
                name: "a".into(),
                state: "COMPLETED".into(),
            },
            EndedSlurmJob {
                id: 2,
                name: "b".into(),
                state: "COMPLETED".into(),
            },
            EndedSlurmJob {
                id: 3,
                name: "c".into(),
                state: "CANCELLED".into(),
            },
        ];
        let tickets = Tickets {
            ran: ["a".to_string()].into(),
            redeemed_on_node: ["a".to_string(), "b".to_string()].into(),
            issued: ["a".to_string(), "b".to_string()].into(),
        };
        let violations =
            |tickets: &Tickets, counted| slurm_jobs_accounted(&jobs, tickets, counted).violations;
        assert_eq!(violations(&tickets, 1), 0);
        assert_eq!(violations(&tickets, 0), 1);
        assert_eq!(violations(&tickets, 2), 1);
        // b's config was issued but never reached its node: counted or not, both are right.
        let undelivered = Tickets {
            redeemed_on_node: ["a".to_string()].into(),
            ..tickets
        };
        assert_eq!(violations(&undelivered, 1), 0);
        assert_eq!(violations(&undelivered, 2), 0);
        assert_eq!(violations(&undelivered, 3), 1);
        assert_eq!(violations(&undelivered, 0), 1);
    }
}
