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
    // The admin token comes from the config's `server.admin_token_file`. The site's proxy
    // (here a port where nothing listens) is for GitHub: the admin command still reaches the
    // local dispatcher directly.
    let config_file = dir.path().join("config.toml");
    let out = tokio::task::spawn_blocking(move || {
        Command::new(BIN)
            .args(["status", "--url", &url, "--config"])
            .arg(&config_file)
            .env("HTTP_PROXY", "http://127.0.0.1:9")
            .env("HTTPS_PROXY", "http://127.0.0.1:9")
            .env("http_proxy", "http://127.0.0.1:9")
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

/// Runner jobs as root or a system account: `check-config` refuses the service user and
/// every mapped user below `slurm.min_uid`, naming the key and its line; and a missing
/// service user (jobs would run as the dispatcher's own user, root).
#[test]
fn check_config_refuses_root_and_system_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("users.toml");
        std::fs::write(&path, text).unwrap();
        let out = Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    let text = config(dir.path())
        .set("slurm", "user", "\"root\"")
        .set("slurm", "user_map", r#"{ "acme/tools" = "daemon" }"#)
        .text();
    let (code, stderr) = check(&text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("line {}: slurm.user:", line_of(&text, "\"root\"")))
            && stderr.contains("uid 0"),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "line {}: slurm.user_map.\"acme/tools\":",
            line_of(&text, "acme/tools")
        )) && stderr.contains("system account"),
        "{stderr}"
    );
    // A lower minimum allows the system account, never root.
    let text = config(dir.path())
        .set("slurm", "user", "\"root\"")
        .set("slurm", "min_uid", "1")
        .set("slurm", "user_map", r#"{ "acme/tools" = "daemon" }"#)
        .text();
    let (code, stderr) = check(&text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("slurm.user:") && !stderr.contains("acme/tools"),
        "{stderr}"
    );
    // No service user at all.
    let text = config(dir.path()).text().replace("user = \"nobody\"\n", "");
    let (code, stderr) = check(&text);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("slurm.user:") && stderr.contains("root"),
        "{stderr}"
    );
}
