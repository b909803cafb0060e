//! `gha-dispatcher init` end to end against the GitHub simulator (HTTPS, its own CA): the first
//! run prints the App manifest and writes the page that creates the App; the "admin" creates it
//! (the simulator's stand-in for the browser step); the second run converts the code into the
//! App's key and webhook secret, written 0600 with the config; `check-config` passes on what it
//! wrote; the code works once; and the minted App's key authenticates at the simulator.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use github_sim::{Sim, SimConfig, TestCa};

const BIN: &str = env!("CARGO_BIN_EXE_gha-dispatcher");
const WEBHOOK_URL: &str = "https://ci.example.org/webhook";

fn init(dir: &Path, api_url: &str, ca: &Path, extra: &[&str]) -> Output {
    Command::new(BIN)
        .arg("init")
        .arg("--dir")
        .arg(dir)
        .args(["--org", "acme", "--repository", "acme/widgets"])
        .args(["--webhook-url", WEBHOOK_URL, "--runner-user", "gha-runner"])
        .args(["--api-url", api_url, "--ca-file"])
        .arg(ca)
        .args(extra)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap()
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

async fn tls_sim(ca: &TestCa) -> Sim {
    let identity = ca.issue(&github_sim::tls::LOOPBACK_NAMES).unwrap();
    let sim = Sim::start(SimConfig {
        tls: Some(identity),
        ..SimConfig::default()
    })
    .await
    .unwrap();
    sim.add_repo("acme", "widgets");
    sim
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_creates_the_app_from_its_manifest_and_check_config_passes() {
    let ca = TestCa::new().unwrap();
    let sim = tls_sim(&ca).await;
    let work = tempfile::tempdir().unwrap();
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, ca.cert_pem()).unwrap();
    let dir = work.path().join("etc");

    // Step 1: the manifest, and the page that posts it to GitHub.
    let out = init(&dir, &sim.url(), &ca_file, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("app-manifest.json")).unwrap())
            .unwrap();
    assert_eq!(
        manifest["default_events"],
        serde_json::json!(["workflow_job"])
    );
    assert_eq!(manifest["hook_attributes"]["url"], WEBHOOK_URL);
    assert_eq!(
        manifest["default_permissions"],
        serde_json::json!({"actions": "read", "organization_self_hosted_runners": "write", "metadata": "read"})
    );
    let page = std::fs::read_to_string(dir.join("create-app.html")).unwrap();
    assert!(
        page.contains("/organizations/acme/settings/apps/new?state="),
        "{page}"
    );
    assert!(
        !dir.join("config.toml").exists(),
        "no config before the App exists"
    );

    // The browser step, then step 2: the code becomes the App's key and webhook secret.
    let code = sim.submit_app_manifest("acme", manifest).unwrap();
    let out = init(&dir, &sim.url(), &ca_file, &["--code", &code]);
    assert!(out.status.success(), "{}", text(&out));
    for file in [
        "app-private-key.pem",
        "webhook-secret",
        "admin-token",
        "config.toml",
    ] {
        assert_eq!(mode(&dir.join(file)), 0o600, "{file}");
    }
    let pem = std::fs::read_to_string(dir.join("app-private-key.pem")).unwrap();
    let secret = std::fs::read_to_string(dir.join("webhook-secret")).unwrap();
    for needle in [pem.lines().nth(1).unwrap(), secret.trim(), &code] {
        assert!(!text(&out).contains(needle), "init printed a secret");
    }

    let config = dir.join("config.toml");
    let check = Command::new(BIN)
        .args(["check-config", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}\n{}",
        text(&check),
        std::fs::read_to_string(&config).unwrap()
    );
    assert!(text(&check).contains("OK (1 pools)"), "{}", text(&check));

    // A code works once.
    let again = init(&dir, &sim.url(), &ca_file, &["--code", &code, "--force"]);
    assert!(!again.status.success());
    assert!(text(&again).contains("404"), "{}", text(&again));

    assert_app_key_works(&sim, &config, &pem, ca.cert_pem()).await;
}

/// The App the simulator minted accepts JWTs signed with the key `init` wrote.
async fn assert_app_key_works(sim: &Sim, config: &Path, pem: &str, ca_pem: &str) {
    let cfg: toml::Table = std::fs::read_to_string(config).unwrap().parse().unwrap();
    let app_id = cfg["github"]["app_id"].as_integer().unwrap() as u64;
    sim.add_installation(github_sim::InstallationSpec {
        app_id,
        account: "acme".into(),
        permissions: None,
    })
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({"iat": now - 60, "exp": now + 300, "iss": app_id.to_string()});
    let jwt = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap(),
    )
    .unwrap();
    let status = sim_client(ca_pem)
        .get(format!("{}/orgs/acme/installation", sim.url()))
        .bearer_auth(jwt)
        .header("User-Agent", "init-test")
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status.as_u16(), 200);
}

fn sim_client(ca_pem: &str) -> reqwest::Client {
    let certs = reqwest::Certificate::from_pem_bundle(ca_pem.as_bytes()).unwrap();
    reqwest::Client::builder()
        .tls_certs_merge(certs)
        .build()
        .unwrap()
}
