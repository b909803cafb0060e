//! Late-binding tickets end to end, on the real cluster with the real plugin, munged and
//! `gha-dispatcher serve`: the dispatcher submits `--gha-runner=ticket:<opaque>`, and root on
//! the node redeems it with a MUNGE credential when the Slurm job starts.
//!
//! - a full run leaves the JIT config nowhere but the runner (not in `scontrol show job`, a
//!   workflow step's environment, slurmctld's state directory, any log, the dispatcher's
//!   database), and the ticket Slurm keeps is spent;
//! - a ticket copied out of slurmctld's state directory is refused when the credential is not
//!   root's, comes from another host, names another job, or is replayed, while the node's own
//!   redemption (held back meanwhile by a relay on the dispatcher's address) succeeds;
//! - with no dispatcher answering, the job ends at once with a clear line, the node stays up,
//!   and the demand is provisioned again; a redemption whose demand is gone is refused and
//!   nothing new is submitted.
//!
//! Every test holds the cluster's dispatcher slot (the port plugstack.conf names).

mod dispatcher_support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dispatcher_support::{
    base_config, cluster, munge_credential, munge_socket, other_host_munged, redeem,
    redemption_payload, refusal_code, runner_option_from_state_dir, secrets_dir, slurm_jobs,
    start_sim, Daemon, RedeemGate, SlurmJob, SECRET,
};
use e2e::dispatcher_config::Pool;
use e2e::DispatcherSlot;
use github_sim::model::{JobSpec, WebhookTarget, WorkflowSpec};
use github_sim::{RunCreated, Sim};
use test_support::wait_until_async;

fn pool() -> Pool {
    Pool::new("cpu", &["linux"], 2).time_limit("10:00")
}
const WAIT: Duration = Duration::from_secs(120);

/// The simulator and `gha-dispatcher serve` in ticket mode, listening on `listen`.
struct Harness {
    sim: Sim,
    _daemon: Daemon,
    dir: tempfile::TempDir,
    url: String,
    /// Unique per test run: the cluster keeps earlier runs' jobs (MinJobAge).
    prefix: String,
}

impl Harness {
    async fn start(name: &str, listen: SocketAddr) -> Harness {
        cluster();
        let prefix = format!("{name}{:04x}", std::process::id() & 0xffff);
        let prefix = prefix.as_str();
        let sim = start_sim().await;
        let dir = secrets_dir();
        let mut config = base_config(dir.path(), &sim.url(), prefix).with_tickets(cluster());
        config.server.listen = listen.to_string();
        config.scaling = dispatcher_support::scaling(2, Some(60));
        config.pools = vec![pool()];
        let text = config.to_toml().unwrap();
        let config = dir.path().join("dispatcher.toml");
        std::fs::write(&config, text).unwrap();
        let daemon = Daemon::spawn(&config, &dir.path().join("dispatcher.log"));
        let url = format!("http://{listen}");
        let client = reqwest::Client::new();
        wait_until_async("the dispatcher to answer", WAIT, || {
            let log =
                std::fs::read_to_string(dir.path().join("dispatcher.log")).unwrap_or_default();
            std::future::ready(if log.contains("gha-dispatcher listening") {
                Ok(true)
            } else {
                Err(log)
            })
        })
        .await
        .unwrap();
        assert!(client
            .get(format!("{url}/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .is_success());
        sim.set_webhook(WebhookTarget {
            url: format!("{url}/webhook"),
            secret: SECRET.into(),
        });
        Harness {
            sim,
            _daemon: daemon,
            dir,
            url,
            prefix: prefix.to_string(),
        }
    }

    fn enqueue(&self, name: &str, command: Option<String>) -> RunCreated {
        self.sim
            .enqueue_workflow(WorkflowSpec {
                repo: "acme/widgets".into(),
                name: "tickets".into(),
                jobs: vec![JobSpec {
                    command,
                    ..JobSpec::new(name, &["self-hosted", "linux"])
                }],
                delay_ms: 0,
            })
            .unwrap()
    }

    async fn wait_job_succeeded(&self, job_id: u64) {
        let sim = &self.sim;
        let what = format!("GitHub job {job_id} to succeed");
        wait_until_async(&what, WAIT, || async {
            let Some(job) = sim.job(job_id) else {
                return Err("no such job".to_string());
            };
            match (job.status.as_str(), job.conclusion.as_deref()) {
                ("completed", Some("success")) => Ok(true),
                ("completed", other) => panic!("job {job_id} ended {other:?}"),
                (status, _) => Err(status.to_string()),
            }
        })
        .await
        .unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("dispatcher.log")).unwrap()
    }

    async fn metric(&self, line_start: &str) -> f64 {
        let text = dispatcher_support::get_text(&format!("{}/metrics", self.url)).await;
        text.lines()
            .find_map(|l| l.strip_prefix(line_start))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// A Slurm job of ours in one of `states` (the newest), waiting for it.
    async fn slurm_job_in(&self, states: &[&str]) -> SlurmJob {
        self.slurm_job_where(&format!("a Slurm job in {states:?}"), |j| {
            states.contains(&j.state.as_str())
        })
        .await
    }

    /// The newest Slurm job of ours that satisfies `wanted`, waiting for it.
    async fn slurm_job_where(&self, what: &str, wanted: impl Fn(&SlurmJob) -> bool) -> SlurmJob {
        wait_until_async(what, WAIT, || async {
            slurm_jobs(&self.prefix)
                .into_iter()
                .filter(|j| wanted(j))
                .max_by_key(|j| j.id)
        })
        .await
        .unwrap()
    }

    fn job_output(&self, job: &SlurmJob) -> String {
        let path = cluster()
            .jobs_dir()
            .join(format!("{}-{}.out", job.name, job.id));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }
}

/// Every file under `dir` (following no links) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &str) -> Vec<PathBuf> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                stack.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                hits.push(path);
            }
        }
    }
    hits
}

fn assert_node_clean(job: &SlurmJob) {
    cluster().assert_node_healthy().unwrap();
    let workdir = PathBuf::from(format!("/tmp/spank-gha/gha-{}", job.id));
    assert!(!workdir.exists(), "{} left behind", workdir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_run_leaves_the_jit_config_nowhere_but_the_runner() {
    let cluster = cluster();
    let slot = DispatcherSlot::acquire(cluster).unwrap();
    // The daemon binds the slot itself, once the previous holder's listener is gone.
    drop(slot.listen().await.unwrap());
    let h = Harness::start("e2e-tkleak", slot.addr()).await;
    let markers = tempfile::tempdir_in(cluster.jobs_dir()).unwrap();
    std::fs::set_permissions(
        markers.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let env_file = markers.path().join("step-env");
    let run = h.enqueue("leak", Some(format!("env > {}", env_file.display())));
    h.wait_job_succeeded(run.job_ids[0]).await;

    let issued = h.sim.issued_jit_configs();
    assert_eq!(issued.len(), 1, "one JIT config for one job");
    let jit = &issued[0];
    let job = h.slurm_job_in(&["COMPLETED"]).await;
    assert_eq!(job.name, jit.runner_name);
    let option = runner_option_from_state_dir(job.id);
    let ticket = option.strip_prefix("ticket:").unwrap_or_else(|| {
        panic!(
            "the dispatcher submitted an inline config: {}",
            option.len()
        )
    });
    let secrets = [
        ("the JIT config", jit.encoded_jit_config.as_str()),
        ("the runner's secret", jit.runner_secret.as_str()),
        ("the ticket", ticket),
    ];

    // Where a workflow step, a Slurm user or an admin reading logs could look.
    let record = cluster
        .command("scontrol")
        .args(["show", "job", "-d", &job.id.to_string()])
        .output()
        .unwrap();
    let record = String::from_utf8_lossy(&record.stdout).into_owned();
    assert!(record.contains(&job.name), "{record}");
    let step_env = std::fs::read_to_string(&env_file).unwrap();
    assert!(step_env.contains("GITHUB_ACTIONS=true"), "{step_env}");
    assert!(
        !step_env.contains("_SLURM_SPANK_OPTION") && !step_env.contains("ACTIONS_RUNNER_INPUT"),
        "{step_env}"
    );
    let places = [
        ("scontrol show job", record),
        ("the workflow step's environment", step_env),
        ("the dispatcher's log", h.log()),
        ("the job's output", h.job_output(&job)),
    ];
    for (what, secret) in secrets {
        for (place, text) in &places {
            assert!(!text.contains(secret), "{what} is in {place}");
        }
        for dir in [cluster.dir().join("log"), cluster.dir().join("munge/log")] {
            let hits = files_containing(&dir, secret);
            assert!(hits.is_empty(), "{what} is in {hits:?}");
        }
        // The dispatcher keeps a hash of the ticket, never the ticket or the config.
        let hits = files_containing(h.dir.path(), secret);
        let hits: Vec<_> = hits
            .into_iter()
            .filter(|p| !p.ends_with("dispatcher.toml"))
            .collect();
        assert!(hits.is_empty(), "{what} is in {hits:?}");
    }
    for (what, secret) in &secrets[..2] {
        let hits = files_containing(&cluster.dir().join("state"), secret);
        assert!(hits.is_empty(), "{what} is in slurmctld's state: {hits:?}");
    }
    // The ticket does sit in slurmctld's state (that is how it reaches the node: the job's
    // environment and submit line), which also shows the scan finds what is there; it is spent.
    assert!(
        !files_containing(&cluster.dir().join("state"), ticket).is_empty(),
        "the ticket should be in slurmctld's state directory"
    );
    let copied = munge_credential(None, &munge_socket(), &redemption_payload(ticket, job.id));
    let (status, body) = redeem(&h.url, &copied).await;
    assert_eq!(
        (status, refusal_code(&body).as_str()),
        (409, "ticket_used"),
        "{body}"
    );
    assert_eq!(
        h.metric("gha_dispatcher_ticket_redemptions_total{result=\"ok\"}")
            .await,
        1.0
    );
    assert_node_clean(&job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copied_forged_and_replayed_tickets_are_refused() {
    let cluster = cluster();
    let slot = DispatcherSlot::acquire(cluster).unwrap();
    let mut gate = RedeemGate::start(slot.listen().await.unwrap());
    let h = Harness::start("e2e-tkforge", free_local_addr()).await;
    let run = h.enqueue("forge", None);

    // The node's own redemption is held at the gate while its job runs.
    let held = gate.next(WAIT).await;
    let job = h.slurm_job_in(&["RUNNING"]).await;
    let option = runner_option_from_state_dir(job.id);
    let ticket = option.strip_prefix("ticket:").unwrap();
    let payload = redemption_payload(ticket, job.id);
    let other_host = other_host_munged();
    let forged = [
        (
            "made by the job's user",
            munge_credential(Some(cluster.test_user()), &munge_socket(), &payload),
            (403, "not_root"),
        ),
        (
            "naming another job",
            munge_credential(
                None,
                &munge_socket(),
                &redemption_payload(ticket, job.id + 1000),
            ),
            (403, "wrong_job"),
        ),
        (
            "from another host",
            munge_credential(None, &other_host.socket(), &payload),
            (403, "wrong_host"),
        ),
        (
            "not a credential",
            format!("MUNGE:{ticket}:"),
            (403, "bad_credential"),
        ),
    ];
    for (what, credential, (status, code)) in forged {
        let (got, body) = redeem(&h.url, &credential).await;
        assert_eq!(
            (got, refusal_code(&body).as_str()),
            (status, code),
            "{what}: {body}"
        );
    }

    // None of that spent the ticket: the node's own credential still redeems it.
    let node_credential = held.credential.clone();
    let (status, body) = held.forward(&h.url).await;
    assert_eq!(status, 200, "{body}");
    h.wait_job_succeeded(run.job_ids[0]).await;

    let (status, body) = redeem(&h.url, &node_credential).await;
    assert_eq!(
        (status, refusal_code(&body).as_str()),
        (403, "bad_credential"),
        "a replayed credential: {body}"
    );
    let fresh = munge_credential(None, &munge_socket(), &payload);
    let (status, body) = redeem(&h.url, &fresh).await;
    assert_eq!(
        (status, refusal_code(&body).as_str()),
        (409, "ticket_used"),
        "a fresh credential for a spent ticket: {body}"
    );
    for (result, count) in [
        ("ok", 1.0),
        ("not_root", 1.0),
        ("wrong_job", 1.0),
        ("wrong_host", 1.0),
        ("bad_credential", 2.0),
        ("ticket_used", 1.0),
    ] {
        let line = format!("gha_dispatcher_ticket_redemptions_total{{result=\"{result}\"}}");
        assert_eq!(h.metric(&line).await, count, "{line}");
    }
    let job = h.slurm_job_in(&["COMPLETED"]).await;
    assert_node_clean(&job);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_redemptions_end_the_job_at_once_and_only_wanted_demand_is_provisioned_again() {
    let cluster = cluster();
    let slot = DispatcherSlot::acquire(cluster).unwrap();
    // Nothing listens on the dispatcher's address yet: the node cannot redeem.
    let h = Harness::start("e2e-tkfail", free_local_addr()).await;
    let run = h.enqueue("retry", None);
    let failed = h.slurm_job_in(&["FAILED"]).await;
    let output = h.job_output(&failed);
    assert!(
        output.contains("spank-gha: error: cannot reach the dispatcher at http://127.0.0.1:"),
        "{output}"
    );
    assert_node_clean(&failed);

    // The dispatcher counts it and provisions again; this time the node gets through.
    let mut gate = RedeemGate::start(slot.listen().await.unwrap());
    let held = gate.next(WAIT).await;
    let (status, body) = held.forward(&h.url).await;
    assert_eq!(status, 200, "{body}");
    h.wait_job_succeeded(run.job_ids[0]).await;
    assert_eq!(
        h.metric("gha_dispatcher_tickets_unredeemed_total").await,
        1.0,
        "{}",
        h.log()
    );

    // Demand gone while the job starts: the redemption is refused, nothing new is submitted.
    let cancelled = h.enqueue("gone", None);
    let held = gate.next(WAIT).await;
    h.sim.cancel_run(cancelled.run_id).unwrap();
    let sim = &h.sim;
    wait_until_async("the cancellation to be delivered", WAIT, || {
        std::future::ready::<Result<bool, String>>({
            Ok(sim.deliveries().iter().any(|d| {
                d.job_id == Some(cancelled.job_ids[0])
                    && d.action.as_deref() == Some("completed")
                    && d.outcome == "delivered"
            }))
        })
    })
    .await
    .unwrap();
    let (status, body) = held.forward(&h.url).await;
    assert_eq!(
        (status, refusal_code(&body).as_str()),
        (410, "not_needed"),
        "{body}"
    );
    let refused = h
        .slurm_job_where("the refused job to fail", |j| {
            j.state == "FAILED" && j.id != failed.id
        })
        .await;
    let output = h.job_output(&refused);
    assert!(
        output.contains("spank-gha: error: ticket refused by the dispatcher (HTTP 410 not_needed)"),
        "{output}"
    );
    assert_node_clean(&refused);
    // A full pass that began after the refusal has ended: still no new runner job.
    let refused_at = now_secs();
    let status_url = format!("{}/status", h.url);
    wait_until_async("a full pass after the refusal", WAIT, || async {
        let status = dispatcher_support::get_json(&status_url).await;
        status["last_full_reconcile_at"].as_i64().unwrap_or(0) >= refused_at + 3
    })
    .await
    .unwrap();
    assert_eq!(
        slurm_jobs(&h.prefix).len(),
        3,
        "{:?}",
        slurm_jobs(&h.prefix)
    );
}

fn now_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn free_local_addr() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Open `n` connections to `addr` that send the start of a `path` request and then one
/// byte every `every`: headers never finished (`slow_headers`) or a body never finished.
/// Each task ends when the dispatcher closes the connection; its elapsed time is returned.
fn slow_clients(
    addr: SocketAddr,
    path: &'static str,
    n: usize,
    slow_headers: bool,
) -> Vec<tokio::task::JoinHandle<Duration>> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    (0..n)
        .map(|_| {
            tokio::spawn(async move {
                let started = std::time::Instant::now();
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    return started.elapsed();
                };
                let head = if slow_headers {
                    format!("POST {path} HTTP/1.1\r\nHost: x\r\n")
                } else {
                    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
                };
                if s.write_all(head.as_bytes()).await.is_err() {
                    return started.elapsed();
                }
                let mut buf = [0u8; 512];
                loop {
                    let byte: &[u8] = if slow_headers { b"X-A: b\r\n" } else { b"x" };
                    tokio::select! {
                        read = s.read(&mut buf) => match read {
                            Ok(0) | Err(_) => return started.elapsed(),
                            Ok(_) => {}
                        },
                        () = tokio::time::sleep(Duration::from_secs(2)) => {
                            if s.write_all(byte).await.is_err() {
                                return started.elapsed();
                            }
                        }
                    }
                }
            })
        })
        .collect()
}

/// Garbage from the network while a real runner job redeems its ticket: bursts of
/// concurrent requests on `/tickets/redeem` (credential-shaped garbage, each an `unmunge`),
/// `/repositories` (MUNGE garbage) and `/webhook` (bad signatures), and connections that
/// send their headers or bodies a byte at a time. The limits answer 503 at once when full,
/// slow connections are closed, and the GitHub job still succeeds. Meanwhile a cluster user
/// submits jobs named like runners, some with `|` in the name (squeue's old separator):
/// the dispatcher's view of Slurm stays readable, and those jobs are neither adopted nor
/// cancelled nor counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn floods_and_spoofed_jobs_do_not_stop_a_real_runner() {
    let cluster = cluster();
    let slot = DispatcherSlot::acquire(cluster).unwrap();
    drop(slot.listen().await.unwrap());
    let h = Harness::start("e2e-flood", slot.addr()).await;
    let addr = slot.addr();

    // Spoofed jobs, held so they stay pending: a runner's name, and names that would shift
    // squeue's `|`-separated fields (one into a state this Slurm does not know).
    let spoof_names = [
        format!("{}-cpu-spoofed", h.prefix),
        format!("{}-cpu-x|TELEPORTING|y", h.prefix),
        format!("{}-cpu-z|RUNNING|", h.prefix),
    ];
    let spoofed: Vec<u32> = spoof_names
        .iter()
        .map(|name| {
            cluster
                .sbatch(&[
                    "--hold",
                    &format!("--job-name={name}"),
                    "--wrap",
                    "sleep 600",
                ])
                .unwrap()
                .id
        })
        .collect();

    let slow: Vec<_> = [
        ("/tickets/redeem", false),
        ("/repositories/nobody", false),
        ("/webhook", false),
        ("/webhook", true),
    ]
    .into_iter()
    .flat_map(|(path, headers)| slow_clients(addr, path, 12, headers))
    .collect();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let shed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let flood = {
        let (stop, shed, url) = (stop.clone(), shed.clone(), h.url.clone());
        tokio::spawn(async move {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap();
            let garbage = format!("MUNGE:{}:", "A".repeat(600));
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut burst = Vec::new();
                for i in 0..150 {
                    let request = match i % 3 {
                        0 => client
                            .post(format!("{url}/tickets/redeem"))
                            .body(garbage.clone()),
                        1 => client
                            .get(format!("{url}/repositories/nobody"))
                            .header("Authorization", format!("MUNGE {garbage}")),
                        _ => client
                            .post(format!("{url}/webhook"))
                            .header("X-GitHub-Event", "workflow_job")
                            .header("X-GitHub-Delivery", format!("flood-{i}"))
                            .header("X-Hub-Signature-256", "sha256=00")
                            .body(vec![b'{'; 64 * 1024]),
                    };
                    burst.push(tokio::spawn(async move {
                        let started = std::time::Instant::now();
                        let status = request.send().await.map(|r| r.status().as_u16());
                        (status, started.elapsed())
                    }));
                }
                for answer in burst {
                    if let Ok((Ok(503), elapsed)) = answer.await {
                        assert!(elapsed < Duration::from_secs(5), "503 after {elapsed:?}");
                        shed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };

    let run = h.enqueue("flooded", None);
    h.wait_job_succeeded(run.job_ids[0]).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    flood.await.unwrap();
    assert!(
        shed.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "no request was ever refused as busy: the limits never engaged"
    );
    // Every slow connection was closed by the dispatcher (headers or body too slow).
    for client in slow {
        let lasted = tokio::time::timeout(Duration::from_secs(90), client)
            .await
            .expect("a slow connection still open after 90 s")
            .unwrap();
        assert!(lasted < Duration::from_secs(60), "{lasted:?}");
    }

    // The spoofed jobs: still pending (not cancelled), never a runner's, and the queue
    // stayed readable through a full pass after they were submitted.
    let submitted_at = now_secs();
    let status_url = format!("{}/status", h.url);
    wait_until_async("a full pass after the spoofed jobs", WAIT, || async {
        let status = dispatcher_support::get_json(&status_url).await;
        status["last_full_reconcile_at"].as_i64().unwrap_or(0) > submitted_at
    })
    .await
    .unwrap();
    let status = dispatcher_support::get_json(&status_url).await;
    assert!(status["last_slurm_error"].is_null(), "{status}");
    let runners = status["runners"].as_array().cloned().unwrap_or_default();
    for job in &spoofed {
        assert!(
            !runners.iter().any(|r| r["slurm_job_id"] == *job),
            "spoofed job {job} taken for a runner: {status}"
        );
        let info = cluster.job_info(*job).unwrap();
        assert_eq!(info.state(), "PENDING", "spoofed job {job}");
        cluster.scancel(*job).unwrap();
    }
    assert!(!h.log().contains("cancelling orphaned"), "{}", h.log());
}
