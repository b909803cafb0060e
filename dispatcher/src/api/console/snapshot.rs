//! What the console shows, as one JSON document: pools (with why each waiting job waits),
//! runners, the last hour's jobs with their times, and the repository mapping. Built from the
//! database and the shared status, then cut down to a viewer's own repositories.

use std::collections::HashMap;

use serde::Serialize;

use super::sessions::Role;
use super::ConsoleState;
use crate::config::{Config, UnmappedPolicy};
use crate::model::{now_millis, JobStatus, RepoUser, RunnerPhase, RunnerRow};
use crate::scale::pools;
use crate::store::{self, DbError, JobTimes};
use crate::telemetry::SharedStatus;

/// The timeline's window.
pub const WINDOW_MS: i64 = 60 * 60 * 1000;
/// Most jobs and finished runners one snapshot lists.
const MAX_JOBS: usize = 300;
const MAX_RECENT_RUNNERS: usize = 100;

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Snapshot {
    /// "admin" or "viewer".
    pub role: &'static str,
    pub user: Option<String>,
    pub pools: Vec<PoolView>,
    pub runners: Vec<RunnerView>,
    pub jobs: Vec<JobView>,
    pub mapping: Vec<MappingView>,
    /// Problems that hold every pool back (GitHub rate limit, sbatch failing).
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PoolView {
    pub name: String,
    pub labels: Vec<String>,
    pub max_runners: u32,
    pub pending: usize,
    pub starting: usize,
    pub idle: usize,
    pub busy: usize,
    pub waiting: Vec<WaitingJob>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct WaitingJob {
    pub job_id: u64,
    pub repo: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RunnerView {
    pub name: String,
    pub pool: String,
    pub slurm_job_id: Option<u64>,
    pub node: Option<String>,
    pub user: Option<String>,
    pub state: String,
    /// When it entered that state, epoch seconds.
    pub since: i64,
    pub job_id: Option<u64>,
    pub job_url: Option<String>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct JobView {
    pub job_id: u64,
    pub repo: String,
    pub status: String,
    pub runner: Option<String>,
    pub queued_ms: Option<i64>,
    pub submitted_ms: Option<i64>,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
    pub url: String,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct MappingView {
    pub user: String,
    pub repositories: Vec<crate::api::repositories::MappedRepository>,
}

/// The web page of a job: github.com for api.github.com, `<host>/...` for GHES's `/api/v3`.
pub fn job_url(api_url: &str, repo: &str, run_id: u64, job_id: u64) -> String {
    let base = api_url.trim_end_matches('/');
    let web = if let Some(rest) = base.strip_prefix("https://api.github.com") {
        format!("https://github.com{rest}")
    } else {
        base.trim_end_matches("/api/v3").to_string()
    };
    format!("{web}/{repo}/actions/runs/{run_id}/job/{job_id}")
}

fn phase_name(phase: RunnerPhase) -> &'static str {
    match phase {
        RunnerPhase::InFlight => "submitting",
        RunnerPhase::SlurmPending => "pending",
        RunnerPhase::Starting => "starting",
        RunnerPhase::Idle => "idle",
        RunnerPhase::Busy => "busy",
        RunnerPhase::Cancelling => "cancelling",
    }
}

fn runner_view(r: &RunnerRow, runs: &HashMap<u64, (String, u64)>, config: &Config) -> RunnerView {
    let state = if r.state.is_final() {
        r.state.as_str()
    } else {
        phase_name(r.phase())
    };
    let since = [r.finished_at, r.slurm_started_at, r.submitted_at]
        .into_iter()
        .flatten()
        .next()
        .unwrap_or(r.created_at);
    let job_url = r.assigned_job_id.and_then(|id| {
        let (repo, run_id) = runs.get(&id)?;
        Some(job_url(&config.github.api_url, repo, *run_id, id))
    });
    RunnerView {
        name: r.name.clone(),
        pool: r.pool.clone(),
        slurm_job_id: r.slurm_job_id,
        node: None,
        user: Some(
            r.run_as
                .clone()
                .unwrap_or_else(|| config.slurm.user.clone().unwrap_or_default()),
        )
        .filter(|u| !u.is_empty()),
        state: state.to_string(),
        since,
        job_id: r.assigned_job_id,
        job_url,
    }
}

/// Everyone's view; [`for_role`] cuts it down.
pub async fn build(app: &ConsoleState) -> Result<Snapshot, DbError> {
    let since = now_millis() - WINDOW_MS;
    let (live, recent, jobs, queued, mapping) = app
        .db
        .call(move |c| {
            Ok((
                store::live_runners(c)?,
                store::recent_runners(c, MAX_RECENT_RUNNERS)?,
                store::jobs_since(c, since, MAX_JOBS)?,
                store::jobs_with_status(c, JobStatus::Queued)?,
                store::repo_users(c)?,
            ))
        })
        .await?;
    let shared = app.shared.lock().map(|s| s.clone()).unwrap_or_default();
    let config = &app.config;
    let runs: HashMap<u64, (String, u64)> = jobs
        .iter()
        .map(|j| (j.job.job_id, (j.job.repo.clone(), j.job.run_id)))
        .collect();
    let mut runners: Vec<RunnerView> = live
        .iter()
        .chain(recent.iter().filter(|r| r.state.is_final()))
        .map(|r| runner_view(r, &runs, config))
        .collect();
    runners.dedup_by(|a, b| a.name == b.name);
    let by_name: HashMap<&str, &RunnerRow> = live
        .iter()
        .chain(recent.iter())
        .map(|r| (r.name.as_str(), r))
        .collect();
    let job_views = jobs.iter().map(|j| job_view(j, &by_name, config)).collect();
    Ok(Snapshot {
        role: "admin",
        user: None,
        pools: pool_views(config, &live, &queued, &shared, &mapping),
        runners,
        jobs: job_views,
        mapping: mapping_views(mapping),
        problems: problems(&shared),
    })
}

fn job_view(j: &JobTimes, runners: &HashMap<&str, &RunnerRow>, config: &Config) -> JobView {
    let runner = j.job.runner_name.as_deref().and_then(|n| runners.get(n));
    let finished = matches!(j.job.status, JobStatus::Completed).then_some(j.updated_ms);
    JobView {
        job_id: j.job.job_id,
        repo: j.job.repo.clone(),
        status: j.job.status.as_str().to_string(),
        runner: j.job.runner_name.clone(),
        queued_ms: j.job.queued_ms,
        submitted_ms: runner.and_then(|r| r.submitted_at).map(|s| s * 1000),
        started_ms: j.started_ms,
        finished_ms: finished,
        url: job_url(
            &config.github.api_url,
            &j.job.repo,
            j.job.run_id,
            j.job.job_id,
        ),
    }
}

fn problems(shared: &SharedStatus) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(secs) = shared.github_blocked_for_secs {
        out.push(format!("GitHub rate limited: calls resume in {secs} s"));
    }
    if let Some(secs) = shared.sbatch_retry_in_secs {
        let why = shared
            .last_sbatch_error
            .as_deref()
            .unwrap_or("unknown error");
        out.push(format!("sbatch failing (retry in {secs} s): {why}"));
    }
    out
}

/// Is `repo` covered by the mapping (its own key or its owner's)?
fn is_mapped(repo: &str, mapping: &[RepoUser]) -> bool {
    let owner = repo.split('/').next().unwrap_or(repo);
    mapping
        .iter()
        .any(|m| m.repo_key.eq_ignore_ascii_case(repo) || m.repo_key.eq_ignore_ascii_case(owner))
}

/// Why a queued job of `pool` has no runner yet.
fn wait_reason(
    repo: &str,
    pool_full: bool,
    shared: &SharedStatus,
    config: &Config,
    mapping: &[RepoUser],
) -> String {
    if let Some(refused) = shared.refused_jobs.iter().find(|r| r.repo == repo) {
        return format!("refused: {}", refused.reason);
    }
    if config.slurm.unmapped == UnmappedPolicy::Refuse && !is_mapped(repo, mapping) {
        return "unmapped repository".into();
    }
    if shared.github_blocked_for_secs.is_some() {
        return "GitHub rate limited".into();
    }
    if shared.sbatch_retry_in_secs.is_some() {
        return "sbatch failing".into();
    }
    if pool_full {
        return "pool full".into();
    }
    "a runner is on its way".into()
}

fn pool_views(
    config: &Config,
    live: &[RunnerRow],
    queued: &[crate::model::JobRow],
    shared: &SharedStatus,
    mapping: &[RepoUser],
) -> Vec<PoolView> {
    config
        .pools
        .iter()
        .map(|p| {
            let mine: Vec<&RunnerRow> = live.iter().filter(|r| r.pool == p.name).collect();
            let count = |phases: &[RunnerPhase]| {
                mine.iter().filter(|r| phases.contains(&r.phase())).count()
            };
            let full = mine.len() >= p.max_runners as usize;
            let waiting = queued
                .iter()
                .filter(|j| j.runner_name.is_none())
                .filter(|j| config.github.scope_for_repo(&j.repo).is_some())
                .filter(|j| {
                    pools::select(&config.pools, &j.labels).map(|q| &q.name) == Some(&p.name)
                })
                .map(|j| WaitingJob {
                    job_id: j.job_id,
                    repo: j.repo.clone(),
                    reason: wait_reason(&j.repo, full, shared, config, mapping),
                })
                .collect();
            PoolView {
                name: p.name.clone(),
                labels: p.labels.clone(),
                max_runners: p.max_runners,
                pending: count(&[RunnerPhase::InFlight, RunnerPhase::SlurmPending]),
                starting: count(&[RunnerPhase::Starting]),
                idle: count(&[RunnerPhase::Idle]),
                busy: count(&[RunnerPhase::Busy, RunnerPhase::Cancelling]),
                waiting,
            }
        })
        .collect()
}

fn mapping_views(rows: Vec<RepoUser>) -> Vec<MappingView> {
    let mut by_user: std::collections::BTreeMap<String, MappingView> = Default::default();
    for row in rows {
        by_user
            .entry(row.unix_user.clone())
            .or_insert_with(|| MappingView {
                user: row.unix_user.clone(),
                repositories: Vec::new(),
            })
            .repositories
            .push(crate::api::repositories::MappedRepository {
                repository: row.repo_key,
                account: row.account,
            });
    }
    by_user.into_values().collect()
}

/// What `role` may see: everything for the admin; for a viewer, only the jobs of the
/// repositories mapped to them, their runners and their own mapping.
pub fn for_role(mut snapshot: Snapshot, role: &Role) -> Snapshot {
    let Role::Viewer(user) = role else {
        return snapshot;
    };
    let keys: Vec<RepoUser> = snapshot
        .mapping
        .iter()
        .filter(|m| &m.user == user)
        .flat_map(|m| m.repositories.iter())
        .map(|r| RepoUser {
            repo_key: r.repository.clone(),
            unix_user: user.clone(),
            account: None,
        })
        .collect();
    snapshot.role = "viewer";
    snapshot.user = Some(user.clone());
    snapshot.mapping.retain(|m| &m.user == user);
    snapshot.jobs.retain(|j| is_mapped(&j.repo, &keys));
    snapshot.runners.retain(|r| r.user.as_ref() == Some(user));
    for pool in &mut snapshot.pools {
        pool.waiting.retain(|w| is_mapped(&w.repo, &keys));
    }
    snapshot
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::repositories::MappedRepository;

    fn job(job_id: u64, repo: &str) -> JobView {
        JobView {
            job_id,
            repo: repo.into(),
            status: "queued".into(),
            runner: None,
            queued_ms: Some(1),
            submitted_ms: None,
            started_ms: None,
            finished_ms: None,
            url: job_url("https://api.github.com", repo, 1, job_id),
        }
    }

    fn runner(name: &str, user: &str) -> RunnerView {
        RunnerView {
            name: name.into(),
            pool: "cpu".into(),
            slurm_job_id: Some(1),
            node: None,
            user: Some(user.into()),
            state: "busy".into(),
            since: 0,
            job_id: None,
            job_url: None,
        }
    }

    fn mapped(user: &str, repository: &str) -> MappingView {
        MappingView {
            user: user.into(),
            repositories: vec![MappedRepository {
                repository: repository.into(),
                account: None,
            }],
        }
    }

    #[test]
    fn a_viewer_sees_only_their_own_repositories_runners_and_mapping() {
        let everything = Snapshot {
            role: "admin",
            user: None,
            pools: vec![PoolView {
                name: "cpu".into(),
                labels: vec![],
                max_runners: 2,
                pending: 0,
                starting: 0,
                idle: 0,
                busy: 2,
                waiting: vec![WaitingJob {
                    job_id: 3,
                    repo: "other/secret".into(),
                    reason: "pool full".into(),
                }],
            }],
            runners: vec![runner("a", "alice"), runner("b", "bob")],
            jobs: vec![
                job(1, "acme/widgets"),
                job(2, "ACME/Tools"),
                job(3, "other/secret"),
            ],
            mapping: vec![mapped("alice", "acme"), mapped("bob", "other/secret")],
            problems: vec![],
        };
        let admin = for_role(everything.clone(), &Role::Admin);
        assert_eq!(admin, everything);
        let alice = for_role(everything, &Role::Viewer("alice".into()));
        assert_eq!(
            (alice.role, alice.user.as_deref()),
            ("viewer", Some("alice"))
        );
        let jobs: Vec<u64> = alice.jobs.iter().map(|j| j.job_id).collect();
        assert_eq!(
            jobs,
            [1, 2],
            "an organization key covers its repositories, no more"
        );
        assert_eq!(alice.runners.len(), 1);
        assert_eq!(alice.runners[0].name, "a");
        assert_eq!(alice.mapping, vec![mapped("alice", "acme")]);
        assert!(
            alice.pools[0].waiting.is_empty(),
            "another user's waiting job shown"
        );
    }

    #[test]
    fn job_links_point_at_the_web_host() {
        assert_eq!(
            job_url("https://api.github.com", "acme/w", 7, 9),
            "https://github.com/acme/w/actions/runs/7/job/9"
        );
        assert_eq!(
            job_url("https://ghes.example/api/v3/", "acme/w", 7, 9),
            "https://ghes.example/acme/w/actions/runs/7/job/9"
        );
    }
}
