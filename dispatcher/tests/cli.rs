//! The command line: `check-config` reports every problem with key and line and never a
//! secret; `status` prints tables from a running dispatcher.

use std::process::Command;

use gha_dispatcher::config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_gha-dispatcher");

fn config_text(dir: &std::path::Path) -> String {
    format!(
        r#"[server]
listen = "127.0.0.1:0"
webhook_secret_file = "{d}/secret"

[state]
db_path = "{d}/state.db"

[github]
token_file = "{d}/token"
targets = [{{ org = "acme" }}]

[slurm]
job_script = "/usr/libexec/spank-gha/gha-runner-job"
sbatch = "/nonexistent/sbatch"
squeue = "/nonexistent/squeue"
scancel = "/nonexistent/scancel"

[scaling]
reconcile_interval_secs = 3600

[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 3
"#,
        d = dir.display()
    )
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "hush-webhook-value").unwrap();
    std::fs::write(dir.path().join("token"), "ghp_very_secret_token").unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, config_text(dir.path())).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad_text = config_text(dir.path())
        .replace("max_runners = 3", "max_runners = 0")
        .replace("listen = \"127.0.0.1:0\"", "listen = \"everywhere\"")
        .replace(
            "targets = [{ org = \"acme\" }]",
            "targets = [{ repo = \"no-slash\" }]",
        );
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, bad_text).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        "line 2: server.listen:",
        "line 10: github.targets[0].repo:",
        "line 24: pools[0].max_runners:",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in\n{stderr}"
        );
    }

    // A secret file that cannot be read is named by key and path, its neighbours' content never shown.
    std::fs::remove_file(dir.path().join("token")).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("github.token_file"), "{stderr}");
    assert!(!stderr.contains("hush-webhook-value"), "{stderr}");

    let out = Command::new(BIN)
        .args(["check-config", "--config", "/nonexistent/config.toml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read config file"));
}

#[tokio::test(flavor = "multi_thread")]
async fn status_prints_pools_and_runners() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("secret"), "s").unwrap();
    std::fs::write(dir.path().join("token"), "ghp_x").unwrap();
    let config = Config::parse(
        &config_text(dir.path())
            .replace("token_file", "api_url = \"http://127.0.0.1:9\"\ntoken_file"),
    )
    .unwrap();
    let secrets = config.load_secrets().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let running = gha_dispatcher::app::start(config, secrets, Some(listener))
        .await
        .unwrap();
    let url = format!("http://{}", running.local_addr);
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["status", "--url", &url])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("POOL") && stdout.contains("RUNNER"),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("cpu ") && l.contains("linux,self-hosted")),
        "{stdout}"
    );
    running.shutdown().await;
}
