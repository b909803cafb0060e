//! `GET/POST /repositories/{username}` over HTTP with the admin token: who may write, every
//! kind of bad input answered 4xx with nothing changed, and seeding from `slurm.user_map`.
//! (Reads with MUNGE credentials need munged: tests/tests/dispatcher_users.rs.)

use std::time::Duration;

use gha_dispatcher::config::Config;
use gha_dispatcher::store::{self, Db};
use reqwest::StatusCode;
use serde_json::{json, Value};

mod support;

const ADMIN_TOKEN: &str = "admin-token-for-tests";

/// `daemon` and `nobody` exist in every passwd database.
fn config(dir: &std::path::Path) -> Config {
    std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    support::ConfigBuilder::new(dir)
        .set_path("server", "admin_token_file", "admin-token")
        // `daemon` (uid 1) is a system account: allowed here only by lowering the minimum.
        .set("slurm", "min_uid", "1")
        .set(
            "slurm",
            "user_map",
            r#"{ "acme/seeded" = "daemon", "acme/moved" = { user = "daemon", account = "proj" }, "acme/ghost" = "no-such-user-xyz" }"#,
        )
        .pool("gpu", &["gpu-only-label"], 1)
        .build()
}

struct Api {
    url: String,
    http: reqwest::Client,
}

impl Api {
    async fn get(&self, user: &str, auth: Option<&str>) -> (StatusCode, Value) {
        let mut req = self.http.get(format!("{}/repositories/{user}", self.url));
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn post(&self, user: &str, auth: Option<&str>, body: String) -> (StatusCode, Value) {
        let mut req = self
            .http
            .post(format!("{}/repositories/{user}", self.url))
            .header("Content-Type", "application/json")
            .body(body);
        if let Some(auth) = auth {
            req = req.header("Authorization", auth);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn all(&self) -> Value {
        let admin = format!("Bearer {ADMIN_TOKEN}");
        json!({
            "daemon": self.get("daemon", Some(&admin)).await.1,
            "nobody": self.get("nobody", Some(&admin)).await.1,
        })
    }
}

async fn start(dir: &std::path::Path) -> (gha_dispatcher::app::Running, Api) {
    let running = support::start(config(dir)).await;
    let api = Api {
        url: format!("http://{}", running.local_addr),
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(20))
            .build()
            .unwrap(),
    };
    (running, api)
}

fn error_of(body: &Value) -> &str {
    body["error"].as_str().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_writes_and_bad_input_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (running, api) = start(dir.path()).await;
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let admin = Some(admin.as_str());

    // Seeded from the config.
    let (status, body) = api.get("daemon", admin).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!([{"repository": "acme/moved", "account": "proj"}, {"repository": "acme/seeded"}])
    );

    // An entry naming an unknown user is not seeded.
    let rows = Db::open(&dir.path().join("state.db"))
        .unwrap()
        .call(|c| store::repo_users(c))
        .await
        .unwrap();
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows.iter().all(|r| r.repo_key != "acme/ghost"));

    // Writes need the admin token.
    let list = r#"["acme/widgets", {"repository": "other", "account": "hpc-1"}]"#.to_string();
    let (status, _) = api.post("nobody", None, list.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = api
        .post("nobody", Some("Bearer wrong-token"), list.clone())
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, _) = api
        .post(
            "nobody",
            Some(&format!("Bearer {ADMIN_TOKEN}x")),
            list.clone(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = api
        .post("nobody", Some("Basic Zm9vOmJhcg=="), list.clone())
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // Reads too: nothing without a credential.
    assert_eq!(api.get("daemon", None).await.0, StatusCode::UNAUTHORIZED);
    assert_eq!(
        api.get("daemon", Some("Bearer nope")).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        api.all().await,
        json!({"daemon": [{"repository": "acme/moved", "account": "proj"}, {"repository": "acme/seeded"}],
               "nobody": []})
    );

    let (status, body) = api.post("nobody", admin, list).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        body,
        json!([{"repository": "acme/widgets"}, {"repository": "other", "account": "hpc-1"}])
    );
    let good = api.all().await;

    // Every kind of bad input: 4xx, a message naming the problem, nothing changed.
    let too_many: Vec<String> = (0..1001).map(|i| format!("acme/r{i}")).collect();
    let huge = json!([{"repository": "acme/x", "account": "a".repeat(300 * 1024)}]).to_string();
    let cases: Vec<(&str, String, StatusCode, &str)> = vec![
        (
            "no-such-user-xyz",
            r#"["acme/a"]"#.into(),
            StatusCode::NOT_FOUND,
            "no-such-user-xyz",
        ),
        (
            "nobody",
            r#"["acme/ok", "acme/bad name"]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "acme/bad name",
        ),
        (
            "nobody",
            r#"["-acme/x"]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "-acme/x",
        ),
        (
            "nobody",
            format!(r#"["acme/{}"]"#, "r".repeat(101)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "repository name",
        ),
        (
            "nobody",
            format!(r#"["{}"]"#, "o".repeat(40)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "owner",
        ),
        (
            "nobody",
            r#"["a/b/c"]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "a/b/c",
        ),
        (
            "nobody",
            r#"["acme/dup", "ACME/Dup"]"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "listed twice",
        ),
        (
            "nobody",
            r#"{"acme/x": 1}"#.into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "JSON list",
        ),
        (
            "nobody",
            "not json".into(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "JSON list",
        ),
        (
            "nobody",
            serde_json::to_string(&too_many).unwrap(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "at most 1000",
        ),
        ("nobody", huge, StatusCode::PAYLOAD_TOO_LARGE, ""),
        // Mapped to another user (case-insensitively): 409 naming it and its user.
        (
            "nobody",
            r#"["acme/new", "ACME/Seeded"]"#.into(),
            StatusCode::CONFLICT,
            "ACME/Seeded is mapped to daemon",
        ),
        (
            "daemon",
            r#"["acme/widgets"]"#.into(),
            StatusCode::CONFLICT,
            "acme/widgets is mapped to nobody",
        ),
    ];
    for (user, body, want, says) in cases {
        let (status, answer) = api.post(user, admin, body.clone()).await;
        assert_eq!(
            status,
            want,
            "{user} {}: {answer}",
            &body[..body.len().min(80)]
        );
        if !says.is_empty() {
            assert!(
                error_of(&answer).contains(says),
                "{user}: expected {says:?} in {answer}"
            );
        }
        assert_eq!(
            api.all().await,
            good,
            "{user} {body:.80} changed the mapping"
        );
    }
    // Unknown users are 404 for reads too.
    assert_eq!(
        api.get("no-such-user-xyz", admin).await.0,
        StatusCode::NOT_FOUND
    );

    // Moving a key between users: release it, then claim it. An empty list clears.
    let (status, _) = api.post("daemon", admin, r#"["acme/seeded"]"#.into()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = api
        .post("nobody", admin, r#"["acme/moved", "acme/widgets"]"#.into())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, _) = api.post("daemon", admin, "[]".into()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(api.get("daemon", admin).await.1, json!([]));
    running.shutdown().await;

    // Restart on the same database: keys already there keep their API value; config
    // entries whose key is gone from the table are added again (the config is the seed).
    let (running, api) = start(dir.path()).await;
    assert_eq!(
        api.all().await,
        json!({"daemon": [{"repository": "acme/seeded"}],
               "nobody": [{"repository": "acme/moved"}, {"repository": "acme/widgets"}]})
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn without_an_admin_token_file_the_mapping_is_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.admin_token_file = None;
    assert!(cfg.load_secrets().unwrap().admin_token.is_none());
    let running = support::start(cfg).await;
    let api = Api {
        url: format!("http://{}", running.local_addr),
        http: reqwest::Client::new(),
    };
    let (status, body) = api
        .post(
            "nobody",
            Some(&format!("Bearer {ADMIN_TOKEN}")),
            "[]".into(),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(error_of(&body).contains("admin_token_file"), "{body}");
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_munged_is_503_not_a_refusal() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = config(dir.path());
    cfg.munge_socket = Some("/nonexistent/munge.socket".into());
    let running = support::start(cfg).await;
    let api = Api {
        url: format!("http://{}", running.local_addr),
        http: reqwest::Client::new(),
    };
    // Shaped like a credential: with munged unreachable nothing is known about the caller.
    let (status, body) = api.get("root", Some("MUNGE MUNGE:AAAA:")).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    // Not shaped like one: refused without asking munged.
    let (status, _) = api.get("root", Some("MUNGE garbage")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    running.shutdown().await;
}

/// The attack: map repositories to root or a system account through the API, so their
/// jobs run as it. Refused with a JSON error whatever the credential, and nothing changes.
#[tokio::test(flavor = "multi_thread")]
async fn root_and_system_accounts_cannot_be_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let running = support::start(support::ConfigBuilder::new(dir.path()).build()).await;
    let api = Api {
        url: format!("http://{}", running.local_addr),
        http: reqwest::Client::new(),
    };
    let admin = format!("Bearer {}", support::ADMIN_TOKEN);
    for (user, why) in [("root", "root"), ("daemon", "system account")] {
        let (status, body) = api
            .post(user, Some(&admin), r#"["acme/widgets"]"#.into())
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{user}: {body}");
        assert!(error_of(&body).contains(why), "{user}: {body}");
        let (status, body) = api.get(user, Some(&admin)).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{user}: {body}");
    }
    // A regular account is accepted.
    let (status, body) = api
        .post("nobody", Some(&admin), r#"["acme/widgets"]"#.into())
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    running.shutdown().await;
}
