//! Per-repository Unix identity, end to end: `acme/widgets` is mapped to `gha-ci-2`, so its
//! runner's Slurm job (real sbatch `--uid`, real plugin) runs as gha-ci-2; `acme/gadgets` is
//! unmapped and runs as the service user gha-ci, or is refused (and shown) under
//! `slurm.unmapped = "refuse"`. Reads of `/repositories/{user}` with real MUNGE credentials
//! from the cluster's munged, through the API and the `gha-dispatcher repositories` CLI.

mod dispatcher_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dispatcher_support::{
    base_config, cluster, munge_credential, munge_socket, secrets_dir, start_sim, SECRET,
};
use e2e::dispatcher_config::Pool;
use e2e::DispatcherSlot;
use gha_dispatcher::app::Running;
use gha_dispatcher::config::Config;
use github_sim::model::{JobSpec, WebhookTarget, WorkflowSpec};
use github_sim::Sim;
use test_support::wait_until_async;

const MAPPED_USER: &str = "gha-ci-2";
const ADMIN_TOKEN: &str = "users-e2e-admin-token";

struct Harness {
    sim: Sim,
    dispatcher: Option<Running>,
    /// Runners redeem tickets at the cluster's dispatcher address.
    _slot: DispatcherSlot,
    _dir: tempfile::TempDir,
    prefix: String,
    url: String,
}

impl Harness {
    async fn start(prefix: &str, unmapped: &str) -> Harness {
        let sim = start_sim().await;
        sim.add_repo("acme", "gadgets");
        let dir = secrets_dir();
        std::fs::write(dir.path().join("admin-token"), ADMIN_TOKEN).unwrap();
        let mut config = base_config(dir.path(), &sim.url(), prefix).with_tickets(cluster());
        config.server.admin_token_file = Some(dir.path().join("admin-token"));
        config.slurm.unmapped = Some(unmapped.into());
        config.slurm.user_map = [("acme/widgets".to_string(), MAPPED_USER.to_string())].into();
        config.scaling = dispatcher_support::scaling(2, Some(60));
        config.pools = vec![Pool::new("cpu", &["linux", "x64"], 4).time_limit("10:00")];
        let text = config.to_toml().unwrap();
        let config = Config::parse(&text).unwrap();
        assert_eq!(config.slurm.user_map.len(), 1, "{text}");
        let secrets = config.load_secrets().unwrap();
        let slot = DispatcherSlot::acquire(cluster()).unwrap();
        let listener = slot.listen().await.unwrap();
        let running = gha_dispatcher::app::start(config, secrets, Some(listener))
            .await
            .unwrap();
        let url = format!("http://{}", running.local_addr);
        sim.set_webhook(WebhookTarget {
            url: format!("{url}/webhook"),
            secret: SECRET.into(),
        });
        Harness {
            sim,
            dispatcher: Some(running),
            _slot: slot,
            _dir: dir,
            prefix: prefix.into(),
            url,
        }
    }

    /// One job in `repo` writing `id -un`, HOME and USER to a file; returns (job id, file).
    fn enqueue_whoami(&self, repo: &str, markers: &Path) -> (u64, PathBuf) {
        let marker = markers.join(repo.replace('/', "_"));
        let run = self
            .sim
            .enqueue_workflow(WorkflowSpec {
                repo: repo.into(),
                name: "ci".into(),
                jobs: vec![JobSpec {
                    command: Some(format!(
                        "echo \"$(id -un) HOME=$HOME USER=$USER LOGNAME=$LOGNAME\" > {}",
                        marker.display()
                    )),
                    ..JobSpec::new("whoami", &["self-hosted", "Linux"])
                }],
                delay_ms: 0,
            })
            .unwrap();
        (run.job_ids[0], marker)
    }

    async fn wait_succeeded(&self, job_id: u64) {
        let sim = &self.sim;
        let what = format!("job {job_id} to complete");
        wait_until_async(&what, Duration::from_secs(120), || async {
            let job = sim.job(job_id).unwrap();
            if job.status == "completed" {
                Ok(true)
            } else {
                Err(job.status)
            }
        })
        .await
        .unwrap();
        let job = self.sim.job(job_id).unwrap();
        assert_eq!(job.conclusion.as_deref(), Some("success"), "{job:?}");
        assert!(
            job.runner_name
                .as_deref()
                .unwrap_or("")
                .starts_with(&self.prefix),
            "{job:?}"
        );
    }

    async fn get_json(&self, path: &str) -> serde_json::Value {
        dispatcher_support::get_json(&format!("{}{path}", self.url)).await
    }

    async fn metrics(&self) -> String {
        dispatcher_support::get_text(&format!("{}/metrics", self.url)).await
    }

    async fn repositories(&self, user: &str, auth: &str) -> (u16, serde_json::Value) {
        let resp = reqwest::Client::new()
            .get(format!("{}/repositories/{user}", self.url))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    }

    fn our_slurm_jobs(&self) -> Vec<String> {
        let out = cluster()
            .command("squeue")
            .args(["--noheader", "--all", "--format=%i|%j|%u"])
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| l.contains(&format!("|{}-", self.prefix)))
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        for line in self.our_slurm_jobs() {
            if let Some(id) = line.trim().split('|').next() {
                let _ = cluster().command("scancel").arg(id).status();
            }
        }
        drop(self.dispatcher.take());
    }
}

fn identity_line(user: &str) -> String {
    let home = nix::unistd::User::from_name(user).unwrap().unwrap().dir;
    format!("{user} HOME={} USER={user} LOGNAME={user}", home.display())
}

/// A fresh MUNGE credential (no payload) made by `user` (root when `None`).
fn credential_of(user: Option<&str>) -> String {
    munge_credential(user, &munge_socket(), "")
}

#[tokio::test(flavor = "multi_thread")]
async fn mapped_repository_runs_as_its_user_and_unmapped_as_the_service_user() {
    let h = Harness::start("e2e-users", "service-user").await;
    let markers = dispatcher_support::markers_dir("e2e-users");
    let (widgets_job, widgets_marker) = h.enqueue_whoami("acme/widgets", markers.path());
    let (gadgets_job, gadgets_marker) = h.enqueue_whoami("acme/gadgets", markers.path());
    h.wait_succeeded(widgets_job).await;
    h.wait_succeeded(gadgets_job).await;

    assert_eq!(
        std::fs::read_to_string(&widgets_marker).unwrap().trim(),
        identity_line(MAPPED_USER)
    );
    let service_user = cluster().test_user();
    assert_eq!(
        std::fs::read_to_string(&gadgets_marker).unwrap().trim(),
        identity_line(service_user)
    );

    // The Slurm records agree, and each runner was registered on its own repository (an
    // organization runner could have taken the other user's job).
    let status = h.get_json("/status").await;
    let runners = status["runners"].as_array().unwrap().clone();
    assert_eq!(runners.len(), 2, "{status}");
    for r in &runners {
        let record = cluster()
            .job_record(r["slurm_job_id"].as_u64().unwrap() as u32)
            .unwrap();
        let (scope, user) = if r["job_id"].as_u64() == Some(widgets_job) {
            ("repo:acme/widgets", MAPPED_USER)
        } else {
            ("repo:acme/gadgets", service_user)
        };
        assert_eq!(r["scope"], scope, "{r}");
        assert!(record.contains(&format!("UserId={user}(")), "{record}");
    }
    assert_eq!(h.sim.counters().jit_configs_issued, 2);

    // MUNGE reads: the right user reads their list; another user's credential, root's,
    // a replayed one and garbage are refused.
    let mine = credential_of(Some(MAPPED_USER));
    let (code, body) = h.repositories(MAPPED_USER, &format!("MUNGE {mine}")).await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(body, serde_json::json!([{"repository": "acme/widgets"}]));
    let (code, body) = h.repositories(MAPPED_USER, &format!("MUNGE {mine}")).await;
    assert_eq!(code, 403, "a replayed credential was accepted: {body}");
    let (code, body) = h
        .repositories(
            service_user,
            &format!("MUNGE {}", credential_of(Some(MAPPED_USER))),
        )
        .await;
    assert_eq!(code, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains(MAPPED_USER),
        "{body}"
    );
    let (code, _) = h
        .repositories(MAPPED_USER, &format!("MUNGE {}", credential_of(None)))
        .await;
    assert_eq!(code, 403, "root's credential is not gha-ci-2's");
    for garbage in ["MUNGE:AwQFAAAgarbagegarbage:", "MUNGE garbage", "MUNGE "] {
        let auth = if garbage.starts_with("MUNGE:") {
            format!("MUNGE {garbage}")
        } else {
            garbage.to_string()
        };
        let (code, body) = h.repositories(MAPPED_USER, &auth).await;
        assert_eq!(code, 403, "{garbage}: {body}");
    }
    // A user without any mapping reads an empty list; writes with MUNGE are refused.
    let (code, body) = h
        .repositories(
            service_user,
            &format!("MUNGE {}", credential_of(Some(service_user))),
        )
        .await;
    assert_eq!((code, body), (200, serde_json::json!([])));
    let resp = reqwest::Client::new()
        .post(format!("{}/repositories/{MAPPED_USER}", h.url))
        .header(
            "Authorization",
            format!("MUNGE {}", credential_of(Some(MAPPED_USER))),
        )
        .body("[]")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);

    // The CLI, as gha-ci-2 would run it on a login node.
    let bin = dispatcher_support::dispatcher_binary();
    let out = Command::new("runuser")
        .args(["-u", MAPPED_USER, "--"])
        .arg(&bin)
        .args(["repositories", "--url", &h.url, "--munge-socket"])
        .arg(munge_socket())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "acme/widgets");
    // Asking for someone else's list fails with the server's reason.
    let out = Command::new("runuser")
        .args(["-u", MAPPED_USER, "--"])
        .arg(&bin)
        .args(["repositories", "--url", &h.url, "--munge-socket"])
        .arg(munge_socket())
        .arg(service_user)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unmapped_repository_is_refused_visibly_under_refuse() {
    let h = Harness::start("e2e-refuse", "refuse").await;
    let markers = dispatcher_support::markers_dir("e2e-refuse");
    let (gadgets_job, _) = h.enqueue_whoami("acme/gadgets", markers.path());
    let (widgets_job, widgets_marker) = h.enqueue_whoami("acme/widgets", markers.path());
    h.wait_succeeded(widgets_job).await;
    assert_eq!(
        std::fs::read_to_string(&widgets_marker).unwrap().trim(),
        identity_line(MAPPED_USER)
    );

    let status = wait_until_async(
        "a refused job in /status",
        Duration::from_secs(30),
        || async {
            let status = h.get_json("/status").await;
            if status["refused_jobs"]
                .as_array()
                .is_some_and(|l| !l.is_empty())
            {
                Ok(Some(status))
            } else {
                Err(status.to_string())
            }
        },
    )
    .await
    .unwrap();
    assert_eq!(
        status["refused_jobs"],
        serde_json::json!([{"job_id": gadgets_job, "repo": "acme/gadgets", "reason": "unmapped"}])
    );
    let metrics = h.metrics().await;
    assert!(
        metrics.contains("gha_dispatcher_jobs_refused_total{reason=\"unmapped\"} 1"),
        "{metrics}"
    );
    // Refused, not dropped: still queued on GitHub, and no runner was ever made for it.
    assert_eq!(h.sim.job(gadgets_job).unwrap().status, "queued");
    assert_eq!(h.sim.counters().jit_configs_issued, 1);
    // The CLI's table shows it too.
    let table = gha_dispatcher::api::status::render_table(&serde_json::from_value(status).unwrap());
    assert!(
        table.contains(&format!(
            "refused job {gadgets_job} of acme/gadgets: unmapped"
        )),
        "{table}"
    );
}
