//! The command line: `check-config` reports every problem with key and line and never a
//! secret; `status` prints tables from a running dispatcher.

use std::process::Command;

mod support;

use support::{line_of, ConfigBuilder};

const BIN: &str = env!("CARGO_BIN_EXE_gha-dispatcher");

/// A config with secrets that must never be shown, and Slurm commands that do not exist.
fn config(dir: &std::path::Path) -> ConfigBuilder {
    ConfigBuilder::new(dir)
        .webhook_secret("hush-webhook-value")
        .token("ghp_very_secret_token")
        .pool("cpu", &["linux"], 3)
}

#[test]
fn check_config_accepts_a_good_file_and_lists_every_problem_of_a_bad_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = config(dir.path()).write();
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

    let bad_text = config(dir.path())
        .set("server", "listen", "\"everywhere\"")
        .set("github", "targets", "[{ repo = \"no-slash\" }]")
        .pool("cpu", &["linux"], 0)
        .text();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, &bad_text).unwrap();
    let out = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for expected in [
        format!("line {}: server.listen:", line_of(&bad_text, "everywhere")),
        format!(
            "line {}: github.targets[0].repo:",
            line_of(&bad_text, "no-slash")
        ),
        format!(
            "line {}: pools[0].max_runners:",
            line_of(&bad_text, "max_runners = 0")
        ),
    ] {
        assert!(
            stderr.contains(&expected),
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
    let running = support::start(config(dir.path()).build()).await;
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
