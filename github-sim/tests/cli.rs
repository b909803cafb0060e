//! The `github-sim` binary: `serve` with a scenario file, SIGTERM, and `install-runner`.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use test_support::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_github-sim");

#[test]
fn install_runner_lays_out_the_real_structure() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(BIN)
        .arg("install-runner")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for f in ["run.sh", "bin/Runner.Listener"] {
        let m = std::fs::metadata(dir.path().join(f)).unwrap();
        assert!(m.permissions().mode() & 0o111 != 0, "{f} not executable");
    }
    let out = Command::new(dir.path().join("run.sh"))
        .args(["--jitconfig", "@@@"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Base-64"));
    // Installing again over an existing layout works (upgrade in place).
    let out = Command::new(BIN)
        .arg("install-runner")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
}

#[test]
fn serve_applies_a_scenario_and_stops_on_sigterm() {
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/scenarios/demo-70.json");
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--scenario", scenario])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("github-sim listening on ")
        .unwrap_or_else(|| panic!("{line}"))
        .to_string();
    let http = reqwest::blocking::Client::new();
    let state: Value = http
        .get(format!("{url}/_sim/state"))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(state["jobs"].as_array().unwrap().len(), 70);
    let r = http
        .get(format!("{url}/orgs/acme/installation"))
        .bearer_auth(github_sim::test_keys::app_jwt(4242))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGTERM).unwrap();
    let st = wait_until("serve to stop on SIGTERM", Duration::from_secs(10), || {
        child.try_wait().unwrap()
    })
    .unwrap();
    assert!(st.success(), "{st}");
}

#[test]
fn serve_refuses_a_bad_scenario_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("bad.json");
    std::fs::write(&f, r#"{"orgs": ["acme"], "nonsense": 1}"#).unwrap();
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--scenario"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.json") && err.contains("nonsense"),
        "{err}"
    );
}
