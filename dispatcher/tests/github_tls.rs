//! The GitHub client speaks TLS and trusts only what it should: a server whose certificate it
//! does not trust is refused before any request (so no App JWT, installation token or personal
//! token reaches it), `github.ca_file` adds a private CA, and `check-config` refuses a plain
//! `http://` API URL that is not loopback.

mod support;

use std::process::Command;
use std::sync::{Arc, Mutex};

use axum::http::HeaderMap;
use axum::Router;
use gha_dispatcher::clients::github::{Credentials, GithubClient, GithubError};
use gha_dispatcher::model::Scope;
use gha_dispatcher::telemetry::Metrics;
use github_sim::{test_keys, TestCa};
use support::{line_of, ConfigBuilder, TOKEN};

const BIN: &str = env!("CARGO_BIN_EXE_gha-dispatcher");

/// An HTTPS server that answers 404 to everything and keeps every request it decrypted:
/// `(path, Authorization header)`.
struct Recorder {
    url: String,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    _handle: axum_server::Handle<std::net::SocketAddr>,
}

async fn recorder(identity: github_sim::ServerIdentity) -> Recorder {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = Router::new().fallback(move |uri: axum::http::Uri, headers: HeaderMap| {
        let log = log.clone();
        async move {
            let auth = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_string();
            log.lock().unwrap().push((uri.path().to_string(), auth));
            axum::http::StatusCode::NOT_FOUND
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("https://{}", listener.local_addr().unwrap());
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move { github_sim::tls::serve_https(listener, app, &identity, h).await });
    Recorder {
        url,
        seen,
        _handle: handle,
    }
}

fn app_credentials() -> Credentials {
    Credentials::app_from_pem(4242, test_keys::APP_PRIVATE_KEY_PEM.as_bytes(), Some(7)).unwrap()
}

fn org() -> Scope {
    Scope::Org("acme".into())
}

fn assert_refused(result: Result<Vec<gha_dispatcher::clients::github::GhRunner>, GithubError>) {
    let message = match result {
        Err(e @ GithubError::Transport { .. }) => e.to_string(),
        other => panic!("expected a refused TLS connection, got {other:?}"),
    };
    assert!(message.contains("certificate"), "{message}");
    assert!(message.contains("github.ca_file"), "{message}");
    assert!(!message.contains(TOKEN), "{message}");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_server_gets_no_credential() {
    let (server_ca, other_ca) = (TestCa::new().unwrap(), TestCa::new().unwrap());
    let server = recorder(server_ca.issue(&github_sim::tls::LOOPBACK_NAMES).unwrap()).await;
    let metrics = || Arc::new(Metrics::new());

    // The system's CAs only, then a private CA that did not sign the server's certificate:
    // with an App (the JWT would go first, to mint an installation token) and with a token.
    for ca in [None, Some(other_ca.cert_pem().as_bytes())] {
        let app = GithubClient::with_ca(&server.url, app_credentials(), metrics(), ca).unwrap();
        assert_refused(app.list_runners(&org()).await);
        let pat = Credentials::Token(TOKEN.into());
        let pat = GithubClient::with_ca(&server.url, pat, metrics(), ca).unwrap();
        assert_refused(pat.list_runners(&org()).await);
    }
    assert!(
        server.seen.lock().unwrap().is_empty(),
        "an untrusted server was sent requests: {:?}",
        server.seen.lock().unwrap()
    );

    // Trusting the CA that signed it, the same server does get the calls (and the credential):
    // the recorder records, and the refusals above were about trust.
    let trusted = Some(server_ca.cert_pem().as_bytes());
    let pat = Credentials::Token(TOKEN.into());
    let pat = GithubClient::with_ca(&server.url, pat, metrics(), trusted).unwrap();
    let err = pat.list_runners(&org()).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err}");
    let seen = server.seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].1, format!("Bearer {TOKEN}"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_private_ca_in_ca_file_reaches_the_simulator_over_https() {
    let ca = TestCa::new().unwrap();
    let sim = support::tls_sim(&ca, None).await;
    assert!(sim.url().starts_with("https://"), "{}", sim.url());
    let pat = Credentials::Token(TOKEN.into());
    let client = GithubClient::with_ca(
        &sim.url(),
        pat,
        Arc::new(Metrics::new()),
        Some(ca.cert_pem().as_bytes()),
    )
    .unwrap();
    assert_eq!(client.list_runners(&org()).await.unwrap(), vec![]);
}

#[test]
fn check_config_refuses_plain_http_off_loopback_and_a_bad_ca_file() {
    let dir = tempfile::tempdir().unwrap();
    let check = |text: &str| {
        let path = dir.path().join("check.toml");
        std::fs::write(&path, text).unwrap();
        Command::new(BIN)
            .args(["check-config", "--config"])
            .arg(&path)
            .output()
            .unwrap()
    };
    std::fs::write(dir.path().join("not-a-ca.pem"), "hello").unwrap();
    let text = ConfigBuilder::new(dir.path())
        .set("github", "api_url", "\"http://github.example.com/api/v3\"")
        .set_path("github", "ca_file", "not-a-ca.pem")
        .text();
    ConfigBuilder::new(dir.path()).write();
    let out = check(&text);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let api_line = line_of(&text, "github.example.com");
    assert!(
        stderr.contains(&format!(
            "line {api_line}: github.api_url: must be https://"
        )),
        "{stderr}"
    );
    let ca_line = line_of(&text, "not-a-ca.pem");
    assert!(
        stderr.contains(&format!("line {ca_line}: github.ca_file:"))
            && stderr.contains("holds no PEM certificate"),
        "{stderr}"
    );

    // Loopback may be plain HTTP (a local test server); any other host must be https://.
    for (url, ok) in [
        ("http://127.0.0.1:8080", true),
        ("http://[::1]:8080/api/v3", true),
        ("http://localhost", true),
        ("https://ghes.example.com/api/v3", true),
        ("http://127.0.0.1.example.com", false),
        ("http://user@10.0.0.1:80", false),
        ("ftp://github.example.com", false),
    ] {
        let text = ConfigBuilder::new(dir.path())
            .set("github", "api_url", &format!("{url:?}"))
            .text();
        let out = check(&text);
        assert_eq!(
            out.status.success(),
            ok,
            "{url}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
