//! Losing the node in the middle of a job. A runner runs a long GitHub job; then the node
//! dies: slurmd, the job's slurmstepd and every process of the job are SIGKILLed and Slurm is
//! told the node is down, so the job ends `NODE_FAIL`. The node comes back. Then:
//! - the simulator fails the GitHub job as GitHub does when a runner stops talking to it
//!   (after its `runner_offline_after`, lowered here);
//! - the dispatcher counts the lost runner job (`runner_jobs_node_failed_total`), provisions
//!   again for the job still queued, and removes the dead runner's registration;
//! - the lost Slurm job is not requeued (it would start again with a used credential).
//!
//! slurmd and the node state are restored however the test ends ([`NodeBack`]).

mod dispatcher_support;

use std::path::Path;
use std::time::Duration;

use dispatcher_support::{cluster, config_with, scaling, secrets_dir, slurm_jobs, Daemon, SECRET};
use e2e::dispatcher_config::Pool;
use e2e::sim_world::SimWorld;
use e2e::Cluster;
use github_sim::model::{JobSpec, WebhookTarget, WorkflowSpec};
use github_sim::{Sim, SimConfig};
use test_support::{wait_until, wait_until_async};

const PREFIX: &str = "e2e-nodeloss";

fn node_name(cluster: &Cluster) -> String {
    let out = cluster
        .command("sinfo")
        .args(["-h", "-o", "%N"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn scontrol_node_state(cluster: &Cluster, node: &str, state: &str) -> std::process::Output {
    cluster
        .command("scontrol")
        .args([
            "update",
            &format!("nodename={node}"),
            &format!("state={state}"),
        ])
        .args((state == "down").then_some("reason=e2e-node-loss"))
        .output()
        .unwrap()
}

fn slurmd_pid(cluster: &Cluster) -> Option<i32> {
    let pid: i32 = std::fs::read_to_string(cluster.dir().join("run/slurmd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()?;
    let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).ok()?;
    // A slurmd killed here stays a zombie when PID 1 does not reap (no init in a container):
    // its comm still reads "slurmd", but it is dead.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let state = stat.rsplit_once(") ")?.1.chars().next()?;
    (comm.trim() == "slurmd" && state != 'Z').then_some(pid)
}

fn kill9(pid: i32) {
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Brings the node back when dropped, whatever happened: slurmd started again if it is not
/// running, the node resumed, and waited for until it is usable. The lost job's work dir (its
/// epilog never ran) is swept by the plugin when slurmd starts; if the test failed before, it
/// is removed on drop: later tests count work dirs.
struct NodeBack<'a> {
    cluster: &'a Cluster,
    node: String,
    lost_job: u64,
}

impl NodeBack<'_> {
    fn work_dir(&self) -> std::path::PathBuf {
        Path::new("/tmp")
            .join(spank_gha::workdir::PARENT)
            .join(format!("gha-{}", self.lost_job))
    }

    fn restore(&self) -> Result<(), String> {
        if slurmd_pid(self.cluster).is_none() {
            let conf = self.cluster.conf().to_path_buf();
            let started = self.cluster.command("slurmd").arg("-f").arg(&conf).status();
            if !started.is_ok_and(|s| s.success()) {
                return Err("slurmd did not start again".into());
            }
        }
        let state = self.cluster.node_state().unwrap_or_default();
        if state.starts_with("down") || state.starts_with("drain") {
            scontrol_node_state(self.cluster, &self.node, "resume");
        }
        wait_until(
            "the node to be usable again",
            Duration::from_secs(90),
            || {
                self.cluster
                    .assert_node_healthy()
                    .map(|()| true)
                    .map_err(|e| format!("{e:#}"))
            },
        )
        .map_err(|e| e.to_string())
    }
}

impl Drop for NodeBack<'_> {
    fn drop(&mut self) {
        if let Err(error) = self.restore() {
            eprintln!("restoring the node after the node-loss test: {error}");
        }
        let dir = self.work_dir();
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(dir.with_extension("made"));
    }
}

/// The node dies with `job_id` on it: slurmd, the job's slurmstepd and the job user's
/// processes are SIGKILLed (nothing of the job survives, as on a lost machine), then
/// slurmctld is told the node is down.
fn lose_the_node(cluster: &Cluster, node: &str, job_id: u64) {
    if let Some(pid) = slurmd_pid(cluster) {
        kill9(pid);
    }
    let step_tag = format!("[{job_id}.");
    for process in e2e::procfs::processes() {
        if process.cmdline.starts_with("slurmstepd") && process.cmdline.contains(&step_tag) {
            kill9(process.pid as i32);
        }
    }
    for (pid, _) in cluster
        .processes_of(cluster.test_user())
        .unwrap_or_default()
    {
        kill9(pid as i32);
    }
    let out = scontrol_node_state(cluster, node, "down");
    assert!(
        out.status.success(),
        "scontrol update state=down: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn metrics(url: &str) -> String {
    reqwest::get(format!("{url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

fn job_status(sim: &Sim, id: u64) -> (String, Option<String>) {
    let job = sim
        .jobs()
        .into_iter()
        .find(|j| j.id == id)
        .expect("the job");
    (job.status, job.conclusion)
}

fn enqueue(sim: &Sim, name: &str, command: &str) -> u64 {
    let run = sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: name.into(),
            jobs: vec![JobSpec {
                command: Some(command.into()),
                ..JobSpec::new(name, &["self-hosted", "linux"])
            }],
            delay_ms: 0,
        })
        .unwrap();
    run.job_ids[0]
}

async fn start_dispatcher(dir: &Path, sim: &Sim) -> (Daemon, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let mut config = config_with(
        dir,
        &sim.url(),
        PREFIX,
        scaling(2, Some(120)),
        vec![Pool::new("cpu", &["linux"], 1).time_limit("10:00")],
    );
    config.server.listen = format!("127.0.0.1:{port}");
    let path = dir.join("config.toml");
    std::fs::write(&path, config.to_toml().unwrap()).unwrap();
    let daemon = Daemon::spawn(&path, &dir.join("dispatcher.log"));
    let healthz = format!("{url}/healthz");
    wait_until_async(
        "the dispatcher to answer",
        Duration::from_secs(30),
        || async {
            reqwest::get(&healthz)
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await
    .unwrap();
    sim.set_webhook(WebhookTarget {
        url: format!("{url}/webhook"),
        secret: SECRET.into(),
    });
    (daemon, url)
}

/// Waits until `check` on the simulator is `Ok(true)`.
async fn wait_sim(what: &str, secs: u64, check: impl Fn() -> Result<bool, String>) {
    wait_until_async(what, Duration::from_secs(secs), || {
        std::future::ready(check())
    })
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lost_node_fails_the_github_job_and_the_dispatcher_counts_and_replaces_the_runner() {
    let cluster = cluster();
    cluster.assert_node_healthy().unwrap();
    let node = node_name(cluster);
    // GitHub fails a job some minutes after its runner went silent; 8 s here.
    let world = SimWorld::start_with(
        &["widgets"],
        SimConfig {
            runner_offline_after: Duration::from_secs(8),
            ..SimConfig::default()
        },
    )
    .await
    .unwrap();
    let sim = &world.sim;
    let dir = secrets_dir();
    let (_daemon, url) = start_dispatcher(dir.path(), sim).await;

    let lost = enqueue(sim, "long", "sleep 600");
    wait_sim("the long job to run", 180, || {
        Ok(job_status(sim, lost).0 == "in_progress")
    })
    .await;
    let running: Vec<_> = slurm_jobs(PREFIX)
        .into_iter()
        .filter(|j| j.state == "RUNNING")
        .collect();
    assert_eq!(running.len(), 1, "{running:?}");
    let lost_slurm_job = running[0].id;
    // Queued while the pool (max_runners 1) is full: only a runner freed by the loss takes it.
    let waiting = enqueue(sim, "after", "true");

    let back = NodeBack {
        cluster,
        node: node.clone(),
        lost_job: lost_slurm_job,
    };
    lose_the_node(cluster, &node, lost_slurm_job);
    wait_until(
        "the runner job to end NODE_FAIL",
        Duration::from_secs(60),
        || {
            let job = slurm_jobs(PREFIX)
                .into_iter()
                .find(|j| j.id == lost_slurm_job);
            match job {
                Some(j) if j.state == "NODE_FAIL" => Ok(true),
                other => Err(format!("{other:?}")),
            }
        },
    )
    .unwrap();
    assert!(back.work_dir().is_dir(), "the lost job had no work dir");
    back.restore().unwrap();
    // The epilog never ran; the restarted slurmd's plugin sweeps the dir of the job it lost.
    wait_until(
        "the lost job's work dir to be swept",
        Duration::from_secs(60),
        || !back.work_dir().exists(),
    )
    .unwrap();

    wait_sim("GitHub to fail the lost job", 120, || {
        let status = job_status(sim, lost);
        Ok(status == ("completed".into(), Some("failure".into())))
    })
    .await;
    let failed = sim
        .jobs()
        .into_iter()
        .find(|j| j.id == lost)
        .expect("the lost job");
    let runner = failed.runner_name.clone().unwrap_or_default();
    assert!(
        failed
            .annotation
            .as_deref()
            .is_some_and(|a| a.starts_with(&format!(
                "The self-hosted runner: {runner} lost communication with the server."
            ))),
        "{failed:?}"
    );
    let replaced = wait_until_async(
        "the waiting job to succeed on a new runner",
        Duration::from_secs(240),
        || {
            let status = job_status(sim, waiting);
            std::future::ready(Ok::<bool, String>(
                status == ("completed".into(), Some("success".into())),
            ))
        },
    )
    .await;
    if let Err(e) = replaced {
        let log = std::fs::read_to_string(dir.path().join("dispatcher.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "{e:?}\nslurm: {:?}\ndispatcher log, last lines first:\n{}",
            slurm_jobs(PREFIX),
            tail.join("\n")
        );
    }
    let metrics_text = metrics(&url).await;
    assert!(
        metrics_text.contains("gha_dispatcher_runner_jobs_node_failed_total 1"),
        "{metrics_text}"
    );
    // Not requeued: the lost job never ran again.
    let again = slurm_jobs(PREFIX)
        .into_iter()
        .find(|j| j.id == lost_slurm_job);
    assert_eq!(again.map(|j| j.state), Some("NODE_FAIL".to_string()));
    wait_sim("no registration of ours left", 120, || {
        let left: Vec<String> = sim
            .runners()
            .into_iter()
            .map(|r| r.name)
            .filter(|n| n.starts_with(PREFIX))
            .collect();
        if left.is_empty() {
            Ok(true)
        } else {
            Err(format!("{left:?}"))
        }
    })
    .await;
    drop(back);
    cluster.assert_node_healthy().unwrap();
}
