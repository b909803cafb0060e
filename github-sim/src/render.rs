//! JSON shapes of GitHub objects (users, orgs, repositories, runs, jobs, runners, installations,
//! webhook payloads) as the published schemas describe them.

use serde_json::{json, Map, Value};

use crate::state::{Installation, Job, Run, Runner, World};

fn html_base(w: &World) -> String {
    format!("{}/_html", w.base_url)
}

fn node_id(kind: &str, id: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("0{kind}:{id}"))
}

/// `simple-user` for an account (org or user) login.
pub fn simple_user(w: &World, login: &str, id: u64, kind: &str) -> Value {
    let api = &w.base_url;
    let html = html_base(w);
    json!({
        "login": login, "id": id, "node_id": node_id("User", id),
        "avatar_url": format!("{html}/avatars/{login}"), "gravatar_id": "",
        "url": format!("{api}/users/{login}"), "html_url": format!("{html}/{login}"),
        "followers_url": format!("{api}/users/{login}/followers"),
        "following_url": format!("{api}/users/{login}/following{{/other_user}}"),
        "gists_url": format!("{api}/users/{login}/gists{{/gist_id}}"),
        "starred_url": format!("{api}/users/{login}/starred{{/owner}}{{/repo}}"),
        "subscriptions_url": format!("{api}/users/{login}/subscriptions"),
        "organizations_url": format!("{api}/users/{login}/orgs"),
        "repos_url": format!("{api}/users/{login}/repos"),
        "events_url": format!("{api}/users/{login}/events{{/privacy}}"),
        "received_events_url": format!("{api}/users/{login}/received_events"),
        "type": kind, "site_admin": false, "user_view_type": "public"
    })
}

fn owner_user(w: &World, login: &str) -> Value {
    let id = w.orgs.get(&crate::state::key(login)).map_or(1, |o| o.id);
    simple_user(w, login, id, "Organization")
}

/// The `sender` of simulated events: GitHub's own Actions bot-like user.
pub fn sender(w: &World) -> Value {
    simple_user(w, "octocat", 583231, "User")
}

pub fn organization(w: &World, login: &str) -> Value {
    let api = &w.base_url;
    let id = w.orgs.get(&crate::state::key(login)).map_or(1, |o| o.id);
    json!({
        "login": login, "id": id, "node_id": node_id("Organization", id),
        "url": format!("{api}/orgs/{login}"), "repos_url": format!("{api}/orgs/{login}/repos"),
        "events_url": format!("{api}/orgs/{login}/events"), "hooks_url": format!("{api}/orgs/{login}/hooks"),
        "issues_url": format!("{api}/orgs/{login}/issues"),
        "members_url": format!("{api}/orgs/{login}/members{{/member}}"),
        "public_members_url": format!("{api}/orgs/{login}/public_members{{/member}}"),
        "avatar_url": format!("{}/avatars/{login}", html_base(w)), "description": null
    })
}

/// Repository URLs shared by `minimal-repository` and the webhook repository.
fn repo_fields(w: &World, owner: &str, name: &str, id: u64) -> Map<String, Value> {
    let api = format!("{}/repos/{owner}/{name}", w.base_url);
    let html = format!("{}/{owner}/{name}", html_base(w));
    let v = json!({
        "id": id, "node_id": node_id("Repository", id), "name": name,
        "full_name": format!("{owner}/{name}"), "owner": owner_user(w, owner), "private": true,
        "html_url": html, "description": null, "fork": false, "url": api,
        "archive_url": format!("{api}/{{archive_format}}{{/ref}}"),
        "assignees_url": format!("{api}/assignees{{/user}}"),
        "blobs_url": format!("{api}/git/blobs{{/sha}}"),
        "branches_url": format!("{api}/branches{{/branch}}"),
        "collaborators_url": format!("{api}/collaborators{{/collaborator}}"),
        "comments_url": format!("{api}/comments{{/number}}"),
        "commits_url": format!("{api}/commits{{/sha}}"),
        "compare_url": format!("{api}/compare/{{base}}...{{head}}"),
        "contents_url": format!("{api}/contents/{{+path}}"),
        "contributors_url": format!("{api}/contributors"),
        "deployments_url": format!("{api}/deployments"),
        "downloads_url": format!("{api}/downloads"), "events_url": format!("{api}/events"),
        "forks_url": format!("{api}/forks"),
        "git_commits_url": format!("{api}/git/commits{{/sha}}"),
        "git_refs_url": format!("{api}/git/refs{{/sha}}"),
        "git_tags_url": format!("{api}/git/tags{{/sha}}"),
        "hooks_url": format!("{api}/hooks"),
        "issue_comment_url": format!("{api}/issues/comments{{/number}}"),
        "issue_events_url": format!("{api}/issues/events{{/number}}"),
        "issues_url": format!("{api}/issues{{/number}}"),
        "keys_url": format!("{api}/keys{{/key_id}}"),
        "labels_url": format!("{api}/labels{{/name}}"),
        "languages_url": format!("{api}/languages"), "merges_url": format!("{api}/merges"),
        "milestones_url": format!("{api}/milestones{{/number}}"),
        "notifications_url": format!("{api}/notifications{{?since,all,participating}}"),
        "pulls_url": format!("{api}/pulls{{/number}}"),
        "releases_url": format!("{api}/releases{{/id}}"),
        "stargazers_url": format!("{api}/stargazers"),
        "statuses_url": format!("{api}/statuses/{{sha}}"),
        "subscribers_url": format!("{api}/subscribers"),
        "subscription_url": format!("{api}/subscription"), "tags_url": format!("{api}/tags"),
        "teams_url": format!("{api}/teams"), "trees_url": format!("{api}/git/trees{{/sha}}"),
    });
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

pub fn minimal_repository(w: &World, repo_key: &str) -> Value {
    let Some(r) = w.repos.get(repo_key) else {
        return Value::Null;
    };
    Value::Object(repo_fields(w, &r.owner, &r.name, r.id))
}

/// `repository-webhooks`: the full repository object of webhook payloads.
pub fn webhook_repository(w: &World, repo_key: &str) -> Value {
    let Some(r) = w.repos.get(repo_key) else {
        return Value::Null;
    };
    let mut m = repo_fields(w, &r.owner, &r.name, r.id);
    let html = format!("{}/{}/{}", html_base(w), r.owner, r.name);
    let extra = json!({
        "clone_url": format!("{html}.git"), "default_branch": "main", "forks": 0, "forks_count": 0,
        "git_url": format!("git://sim/{}/{}.git", r.owner, r.name), "has_downloads": true,
        "has_issues": true, "has_projects": false, "has_wiki": false, "has_pages": false,
        "has_discussions": false, "homepage": null, "language": "Rust", "archived": false,
        "disabled": false, "mirror_url": null, "open_issues": 0, "open_issues_count": 0,
        "license": null, "pushed_at": "2024-01-01T00:00:00Z", "size": 1,
        "ssh_url": format!("git@sim:{}/{}.git", r.owner, r.name), "stargazers_count": 0,
        "svn_url": html, "watchers": 0, "watchers_count": 0, "visibility": "private",
        "is_template": false, "topics": [], "web_commit_signoff_required": false,
        "allow_forking": false,
        "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
    });
    if let Value::Object(e) = extra {
        m.extend(e);
    }
    Value::Object(m)
}

/// REST `job`.
pub fn job(w: &World, j: &Job) -> Value {
    let (owner, name) = w
        .repos
        .get(&j.repo_key)
        .map(|r| (r.owner.clone(), r.name.clone()))
        .unwrap_or_default();
    let api = format!("{}/repos/{owner}/{name}", w.base_url);
    let run = w.runs.get(&j.run_id);
    let (group_id, group_name) = if j.runner_id.is_some() {
        (json!(1), json!("Default"))
    } else {
        (Value::Null, Value::Null)
    };
    json!({
        "id": j.id, "run_id": j.run_id, "run_url": format!("{api}/actions/runs/{}", j.run_id),
        "run_attempt": 1, "node_id": node_id("CheckRun", j.id),
        "head_sha": run.map(|r| r.head_sha.clone()).unwrap_or_default(),
        "url": format!("{api}/actions/jobs/{}", j.id),
        "html_url": format!("{}/{owner}/{name}/actions/runs/{}/job/{}", html_base(w), j.run_id, j.id),
        "status": j.status.as_str(), "conclusion": j.conclusion,
        "created_at": j.created_at, "started_at": j.started_at.clone().unwrap_or_else(|| j.created_at.clone()),
        "completed_at": j.completed_at, "name": j.name,
        "steps": steps(j),
        "check_run_url": format!("{api}/check-runs/{}", j.id), "labels": j.labels,
        "runner_id": j.runner_id, "runner_name": j.runner_name,
        "runner_group_id": group_id, "runner_group_name": group_name,
        "workflow_name": run.map(|r| r.name.clone()), "head_branch": "main",
    })
}

fn steps(j: &Job) -> Value {
    use crate::state::JobStatus;
    match j.status {
        JobStatus::Pending | JobStatus::Waiting | JobStatus::Queued => json!([]),
        JobStatus::InProgress => json!([{
            "name": "Run step", "status": "in_progress", "conclusion": null, "number": 1,
            "started_at": j.started_at, "completed_at": null
        }]),
        JobStatus::Completed => json!([{
            "name": "Run step", "status": "completed", "conclusion": j.conclusion, "number": 1,
            "started_at": j.started_at.clone().or_else(|| j.completed_at.clone()),
            "completed_at": j.completed_at
        }]),
    }
}

/// The `workflow_job` webhook payload for `action`.
pub fn workflow_job_webhook(w: &World, j: &Job, action: &str) -> Value {
    let mut job_obj = job(w, j);
    if matches!(
        j.status,
        crate::state::JobStatus::Queued | crate::state::JobStatus::Waiting
    ) {
        // The webhook schema has no `pending`, and queued jobs have no steps yet.
        job_obj["steps"] = json!([]);
    }
    let mut payload = json!({
        "action": action,
        "workflow_job": job_obj,
        "repository": webhook_repository(w, &j.repo_key),
        "sender": sender(w),
    });
    if let Some(repo) = w.repos.get(&j.repo_key) {
        if w.orgs.contains_key(&crate::state::key(&repo.owner)) {
            payload["organization"] = organization(w, &repo.owner);
        }
        if let Some(inst) = w.any_installation_on(&repo.owner) {
            payload["installation"] =
                json!({"id": inst.id, "node_id": node_id("Installation", inst.id)});
        }
    }
    payload
}

/// REST `workflow-run`.
pub fn workflow_run(w: &World, r: &Run) -> Value {
    let (owner, name) = w
        .repos
        .get(&r.repo_key)
        .map(|x| (x.owner.clone(), x.name.clone()))
        .unwrap_or_default();
    let api = format!("{}/repos/{owner}/{name}", w.base_url);
    let (status, conclusion) = w.run_status(r);
    let repo = minimal_repository(w, &r.repo_key);
    json!({
        "id": r.id, "name": r.name, "node_id": node_id("WorkflowRun", r.id), "head_branch": "main",
        "head_sha": r.head_sha, "path": ".github/workflows/ci.yml", "display_title": r.name,
        "run_number": r.run_number, "run_attempt": 1, "event": "push", "status": status,
        "conclusion": conclusion, "workflow_id": 1,
        "url": format!("{api}/actions/runs/{}", r.id),
        "html_url": format!("{}/{owner}/{name}/actions/runs/{}", html_base(w), r.id),
        "pull_requests": [], "created_at": r.created_at, "updated_at": r.updated_at,
        "run_started_at": r.created_at,
        "jobs_url": format!("{api}/actions/runs/{}/jobs", r.id),
        "logs_url": format!("{api}/actions/runs/{}/logs", r.id),
        "check_suite_url": format!("{api}/check-suites/{}", r.id),
        "artifacts_url": format!("{api}/actions/runs/{}/artifacts", r.id),
        "cancel_url": format!("{api}/actions/runs/{}/cancel", r.id),
        "rerun_url": format!("{api}/actions/runs/{}/rerun", r.id),
        "workflow_url": format!("{api}/actions/workflows/1"),
        "head_commit": {
            "id": r.head_sha, "tree_id": r.head_sha, "message": r.name,
            "timestamp": r.created_at,
            "author": {"name": "Octo Cat", "email": "octocat@example.com"},
            "committer": {"name": "Octo Cat", "email": "octocat@example.com"}
        },
        "repository": repo.clone(), "head_repository": repo,
    })
}

/// REST `runner`.
pub fn runner(w: &World, r: &Runner) -> Value {
    let view = w.runner_view(r);
    let labels: Vec<Value> = r
        .labels
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let read_only = ["self-hosted", "linux", "x64", "arm64", "macos", "windows"]
                .iter()
                .any(|b| b.eq_ignore_ascii_case(l));
            json!({"id": i as u64 + 1, "name": l, "type": if read_only { "read-only" } else { "custom" }})
        })
        .collect();
    json!({
        "id": r.id, "name": r.name, "os": "Linux", "status": view.status, "busy": view.busy,
        "ephemeral": r.ephemeral, "runner_group_id": 1, "labels": labels,
    })
}

/// REST `installation`.
pub fn installation(w: &World, i: &Installation) -> Value {
    let slug = w
        .apps
        .get(&i.app_id)
        .map(|a| a.slug.clone())
        .unwrap_or_default();
    let account_id = w
        .orgs
        .get(&crate::state::key(&i.account))
        .map_or(1, |o| o.id);
    json!({
        "id": i.id, "account": simple_user(w, &i.account, account_id, "Organization"),
        "repository_selection": "all",
        "access_tokens_url": format!("{}/app/installations/{}/access_tokens", w.base_url, i.id),
        "repositories_url": format!("{}/installation/repositories", w.base_url),
        "html_url": format!("{}/organizations/{}/settings/installations/{}", html_base(w), i.account, i.id),
        "app_id": i.app_id, "app_slug": slug, "target_id": account_id, "target_type": "Organization",
        "permissions": i.permissions, "events": ["workflow_job"],
        "created_at": i.created_at, "updated_at": i.created_at, "single_file_name": null,
        "has_multiple_single_files": false, "single_file_paths": [],
        "suspended_by": null, "suspended_at": null,
    })
}

pub fn runner_group_default(w: &World, org: &str) -> Value {
    json!({
        "id": 1, "name": "Default", "visibility": "all", "default": true,
        "runners_url": format!("{}/orgs/{org}/actions/runner-groups/1/runners", w.base_url),
        "inherited": false, "allows_public_repositories": false,
        "restricted_to_workflows": false, "selected_workflows": [],
        "workflow_restrictions_read_only": false,
    })
}
