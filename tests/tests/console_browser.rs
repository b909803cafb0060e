//! The web console in a real headless Chromium (Debian's `chromium`, driven by playwright-core
//! from console/tests/browser.mjs) against the `gha-dispatcher` binary, the GitHub simulator
//! over HTTPS and the shared Slurm cluster: log in (a wrong token refused), a pool filling up,
//! a job moving through its states live, the timeline, a malformed mapping refused inline with
//! nothing changed, a mapping edit taking effect on the next job's Unix user (checked here in
//! what the job itself wrote), keyboard, phone width, the error banner, and a Unix user's
//! one-use read-only link from `gha-dispatcher console-link` (MUNGE). Screenshots go to
//! target/console-screenshots (printed).

mod dispatcher_support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dispatcher_support::{
    base_config, cluster, free_port, healthy, munge_socket, secrets_dir, start_sim, Daemon, SECRET,
};
use e2e::dispatcher_config::Pool;
use github_sim::model::WebhookTarget;
use test_support::wait_until_async;

const PREFIX: &str = "e2e-console";
const ADMIN_TOKEN: &str = "console-e2e-admin-token";
const MAPPED_USER: &str = "gha-ci-2";
const CHROMIUM: &str = "/usr/bin/chromium";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// console/dist and console/node_modules, which `ci/test` builds (`build_console`).
fn console_dir() -> PathBuf {
    let console = repo_root().join("console");
    for needed in [
        "dist/index.html",
        "node_modules/playwright-core/package.json",
    ] {
        assert!(
            console.join(needed).is_file(),
            "{} is missing: run `npm ci && npm run build` in console/ (ci/test does)",
            console.join(needed).display()
        );
    }
    assert!(
        Path::new(CHROMIUM).is_file(),
        "{CHROMIUM} is missing: apt-get install chromium (ci/test does)"
    );
    console
}

/// `gha-dispatcher console-link` run as `user`: the link it prints.
fn console_link(user: &str, url: &str) -> String {
    let out = Command::new("runuser")
        .args(["-u", user, "--"])
        .arg(dispatcher_support::dispatcher_binary())
        .args(["console-link", "--url", url, "--munge-socket"])
        .arg(munge_socket())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The stack: simulator (acme/widgets, acme/gadgets), the dispatcher binary with the console,
/// a pool of 2 runners; no repository mapped (jobs run as the service user).
fn write_config(dir: &Path, sim_url: &str, port: u16) -> PathBuf {
    std::fs::write(dir.join("admin-token"), ADMIN_TOKEN).unwrap();
    let mut config = base_config(dir, sim_url, PREFIX);
    config.server.listen = format!("127.0.0.1:{port}");
    config.server.admin_token_file = Some(dir.join("admin-token"));
    config.server.console_dir = Some(repo_root().join("console/dist"));
    config.scaling = dispatcher_support::scaling(2, Some(120));
    config.pools = vec![Pool::new("cpu", &["linux", "x64"], 2).time_limit("10:00")];
    let path = dir.join("config.toml");
    std::fs::write(&path, config.to_toml().unwrap()).unwrap();
    path
}

/// Runs the browser script; on failure, the assertion carries what it saw and what the rest
/// of the stack was doing (the dispatcher's log, our Slurm jobs, the simulator's jobs).
async fn run_browser(env: &[(&str, String)], log: &Path, sim: &github_sim::Sim) -> String {
    let out = tokio::process::Command::new("node")
        .arg("tests/browser.mjs")
        .current_dir(console_dir())
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        let logged = std::fs::read_to_string(log).unwrap_or_default();
        let tail: Vec<&str> = logged.lines().rev().take(40).collect();
        let tail: Vec<&str> = tail.into_iter().rev().collect();
        panic!(
            "the browser test failed:\n{}\n{stdout}\nSlurm jobs: {:?}\nsimulator jobs: {:?}\nwebhook deliveries: {:?}\ndispatcher log (last lines):\n{}",
            String::from_utf8_lossy(&out.stderr),
            dispatcher_support::slurm_jobs(PREFIX),
            sim.jobs().iter().map(|j| (j.id, j.status.clone(), j.runner_name.clone())).collect::<Vec<_>>(),
            sim.deliveries().iter().map(|d| (d.job_id, d.action.clone(), d.outcome.clone(), d.status.clone())).collect::<Vec<_>>(),
            tail.join("\n")
        );
    }
    stdout
}

#[tokio::test(flavor = "multi_thread")]
async fn the_console_in_a_real_browser() {
    let cluster = cluster();
    let sim = start_sim().await;
    sim.add_repo("acme", "gadgets");
    let dir = secrets_dir();
    let port = free_port();
    // The browser's origin: localhost is a secure context, so the Secure cookie works over HTTP.
    let url = format!("http://localhost:{port}");
    let log = dir.path().join("dispatcher.log");
    let _daemon = Daemon::spawn(&write_config(dir.path(), &sim.url(), port), &log);
    healthy(&url).await;
    sim.set_webhook(WebhookTarget {
        url: format!("{url}/webhook"),
        secret: SECRET.into(),
    });
    let markers = dispatcher_support::markers_dir("gha-console-markers");
    let marker = markers.path().join("whoami");
    let shots = repo_root().join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let link = console_link(MAPPED_USER, &url);
    assert!(link.starts_with(&format!("{url}/console/link/")), "{link}");

    let env = [
        ("CONSOLE_URL", format!("{url}/console/")),
        ("ADMIN_TOKEN", ADMIN_TOKEN.to_string()),
        ("SIM_URL", sim.url()),
        (
            "NODE_EXTRA_CA_CERTS",
            dir.path().join("github-ca.pem").display().to_string(),
        ),
        ("SCREENSHOT_DIR", shots.display().to_string()),
        ("MARKER", marker.display().to_string()),
        ("MAPPED_USER", MAPPED_USER.to_string()),
        ("SERVICE_USER", cluster.test_user().to_string()),
        ("VIEWER_LINK", link.clone()),
        ("CHROMIUM", CHROMIUM.to_string()),
    ];
    let report = run_browser(&env, &log, &sim).await;
    println!("{report}\nscreenshots: {}", shots.display());

    let ran_as = std::fs::read_to_string(&marker).unwrap_or_default();
    assert_eq!(ran_as.trim(), MAPPED_USER, "the mapped job's Unix user");
    let again = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let reused = again.get(&link).send().await.unwrap();
    assert_eq!(reused.status().as_u16(), 403, "a login link opened twice");
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        !logged.contains(ADMIN_TOKEN),
        "the admin token reached the log"
    );
    wait_until_async(
        "the console test's Slurm jobs to end",
        Duration::from_secs(120),
        || async {
            dispatcher_support::slurm_jobs(PREFIX).iter().all(|j| {
                !matches!(
                    j.state.as_str(),
                    "PENDING" | "RUNNING" | "CONFIGURING" | "COMPLETING"
                )
            })
        },
    )
    .await
    .unwrap();
}
