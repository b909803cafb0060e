//! The REST endpoints an autoscaler uses: JIT configs, runners, queued and running jobs,
//! and the two that open the Actions service to a scale set listener.

use reqwest::Method;
use serde_json::{json, Value};

use super::{
    decode_err, urlencode, DeleteOutcome, GhRunner, GithubClient, GithubError, MintError,
    MintedRunner, MAX_JOB_PAGES, MAX_RUN_PAGES, PER_PAGE,
};
use crate::model::{parse_timestamp, JobStatus, JobUpdate, Scope};

impl GithubClient {
    fn runners_endpoint(scope: &Scope, suffix: &str) -> String {
        match scope {
            Scope::Org(_) => format!("/orgs/{{org}}/actions/runners{suffix}"),
            Scope::Repo { .. } => format!("/repos/{{owner}}/{{repo}}/actions/runners{suffix}"),
        }
    }

    pub async fn generate_jitconfig(
        &self,
        scope: &Scope,
        name: &str,
        labels: &[String],
        runner_group_id: u64,
    ) -> Result<MintedRunner, MintError> {
        let endpoint = format!(
            "POST {}",
            Self::runners_endpoint(scope, "/generate-jitconfig")
        );
        let path = format!("{}/actions/runners/generate-jitconfig", scope.api_prefix());
        let body = json!({ "name": name, "runner_group_id": runner_group_id, "labels": labels, "work_folder": "_work" });
        match self
            .call(Method::POST, &endpoint, scope, &path, Some(&body), false)
            .await
        {
            Ok(answer) => {
                let runner_id = answer.body["runner"]["id"].as_u64();
                let config = answer.body["encoded_jit_config"].as_str();
                match (runner_id, config) {
                    (Some(runner_id), Some(config)) => Ok(MintedRunner {
                        runner_id,
                        encoded_jit_config: config.to_string(),
                    }),
                    _ => Err(MintError::Other(
                        decode_err(&endpoint, "missing runner.id or encoded_jit_config").into(),
                    )),
                }
            }
            Err(GithubError::Status { status: 409, .. }) => Err(MintError::NameTaken),
            Err(e) => Err(MintError::Other(e.into())),
        }
    }

    /// The Actions service's URL and an admin token for `scope`, as the runner scale set
    /// protocol bootstraps: a registration token for the scope, then `POST
    /// /actions/runner-registration` with it (`RemoteAuth`) and the scope's web URL.
    pub async fn actions_admin_connection(
        &self,
        scope: &Scope,
        config_url: &str,
    ) -> Result<(String, String), GithubError> {
        let endpoint = format!(
            "POST {}",
            Self::runners_endpoint(scope, "/registration-token")
        );
        let path = format!("{}/actions/runners/registration-token", scope.api_prefix());
        let answer = self
            .call(Method::POST, &endpoint, scope, &path, None, false)
            .await?;
        let registration = answer.body["token"]
            .as_str()
            .ok_or_else(|| decode_err(&endpoint, "no token"))?
            .to_string();
        let endpoint = "POST /actions/runner-registration";
        let body = json!({ "url": config_url, "runner_event": "register" });
        let answer = self
            .send(
                Method::POST,
                endpoint,
                "/actions/runner-registration",
                &format!("RemoteAuth {registration}"),
                Some(&body),
                false,
            )
            .await?;
        match (answer.body["url"].as_str(), answer.body["token"].as_str()) {
            (Some(url), Some(token)) if !url.is_empty() && !token.is_empty() => {
                Ok((url.to_string(), token.to_string()))
            }
            _ => Err(decode_err(endpoint, "missing url or token")),
        }
    }

    /// Every runner registered in `scope` (all pages).
    pub async fn list_runners(&self, scope: &Scope) -> Result<Vec<GhRunner>, GithubError> {
        let endpoint = format!("GET {}", Self::runners_endpoint(scope, ""));
        let mut all = Vec::new();
        for page in 1..=100 {
            let path = format!(
                "{}/actions/runners?per_page=100&page={page}",
                scope.api_prefix()
            );
            let answer = self
                .call(Method::GET, &endpoint, scope, &path, None, true)
                .await?;
            let runners: Vec<GhRunner> = serde_json::from_value(answer.body["runners"].clone())
                .map_err(|e| decode_err(&endpoint, &e.to_string()))?;
            let total = answer.body["total_count"].as_u64().unwrap_or(0) as usize;
            let count = runners.len();
            all.extend(runners);
            if count < 100 || all.len() >= total {
                break;
            }
        }
        Ok(all)
    }

    pub async fn find_runner(
        &self,
        scope: &Scope,
        name: &str,
    ) -> Result<Option<GhRunner>, GithubError> {
        let endpoint = format!("GET {}", Self::runners_endpoint(scope, ""));
        let path = format!(
            "{}/actions/runners?name={}",
            scope.api_prefix(),
            urlencode(name)
        );
        let answer = self
            .call(Method::GET, &endpoint, scope, &path, None, false)
            .await?;
        let runners: Vec<GhRunner> = serde_json::from_value(answer.body["runners"].clone())
            .map_err(|e| decode_err(&endpoint, &e.to_string()))?;
        Ok(runners.into_iter().find(|r| r.name == name))
    }

    pub async fn delete_runner(
        &self,
        scope: &Scope,
        runner_id: u64,
    ) -> Result<DeleteOutcome, GithubError> {
        let endpoint = format!("DELETE {}", Self::runners_endpoint(scope, "/{runner_id}"));
        let path = format!("{}/actions/runners/{runner_id}", scope.api_prefix());
        match self
            .call(Method::DELETE, &endpoint, scope, &path, None, false)
            .await
        {
            Ok(_) => Ok(DeleteOutcome::Deleted),
            Err(GithubError::Status { status: 404, .. }) => Ok(DeleteOutcome::AlreadyGone),
            Err(GithubError::Status { status: 422, .. }) => Ok(DeleteOutcome::Busy),
            Err(e) => Err(e),
        }
    }

    /// Jobs of queued and in-progress runs of `repo`, every page (conditional requests: an
    /// unchanged page costs nothing).
    pub async fn active_jobs(
        &self,
        scope: &Scope,
        repo: &str,
    ) -> Result<Vec<JobUpdate>, GithubError> {
        let mut jobs = Vec::new();
        for status in ["queued", "in_progress"] {
            let runs = self
                .paged(
                    "GET /repos/{owner}/{repo}/actions/runs",
                    scope,
                    &format!("/repos/{repo}/actions/runs?status={status}"),
                    "workflow_runs",
                    MAX_RUN_PAGES,
                )
                .await?;
            for run in runs {
                let Some(run_id) = run["id"].as_u64() else {
                    continue;
                };
                let run_jobs = self
                    .paged(
                        "GET /repos/{owner}/{repo}/actions/runs/{run_id}/jobs",
                        scope,
                        &format!("/repos/{repo}/actions/runs/{run_id}/jobs?filter=latest"),
                        "jobs",
                        MAX_JOB_PAGES,
                    )
                    .await?;
                jobs.extend(run_jobs.iter().filter_map(|job| job_update(repo, job)));
            }
        }
        Ok(jobs)
    }

    /// Every item of a paged list (`per_page=100`), up to `max_pages` pages.
    async fn paged(
        &self,
        endpoint: &str,
        scope: &Scope,
        path: &str,
        items_key: &str,
        max_pages: u32,
    ) -> Result<Vec<Value>, GithubError> {
        let mut all = Vec::new();
        for page in 1..=max_pages {
            let paged_path = format!("{path}&per_page={PER_PAGE}&page={page}");
            let answer = self
                .call(Method::GET, endpoint, scope, &paged_path, None, true)
                .await?;
            let items = answer.body[items_key]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let total = answer.body["total_count"].as_u64().unwrap_or(0) as usize;
            let count = items.len();
            all.extend(items);
            if count < PER_PAGE || all.len() >= total {
                break;
            }
        }
        Ok(all)
    }

    pub async fn job(
        &self,
        scope: &Scope,
        repo: &str,
        job_id: u64,
    ) -> Result<Option<JobUpdate>, GithubError> {
        let endpoint = "GET /repos/{owner}/{repo}/actions/jobs/{job_id}";
        let path = format!("/repos/{repo}/actions/jobs/{job_id}");
        match self
            .call(Method::GET, endpoint, scope, &path, None, true)
            .await
        {
            Ok(answer) => Ok(job_update(repo, &answer.body)),
            Err(GithubError::Status { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn job_update(repo: &str, job: &Value) -> Option<JobUpdate> {
    Some(JobUpdate {
        job_id: job["id"].as_u64()?,
        run_id: job["run_id"].as_u64()?,
        repo: repo.to_string(),
        labels: job["labels"]
            .as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default(),
        // A status outside GitHub's contract: skipped (the next poll sees it again).
        status: JobStatus::parse(job["status"].as_str()?).ok()?,
        runner_name: job["runner_name"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string),
        workflow: job["workflow_name"].as_str().map(str::to_string),
        created_at: job["created_at"].as_str().and_then(parse_timestamp),
        started_at: job["started_at"].as_str().and_then(parse_timestamp),
    })
}
