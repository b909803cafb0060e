//! The web console's access rules over HTTP, each by performing the attack: no cookie, a
//! made-up or logged-out session, a wrong admin token, a login or an edit from another origin,
//! an edit without the CSRF token; the assets and the one event stream for a real session.
//! (Login links from MUNGE credentials and a viewer's limits need munged and the cluster:
//! tests/tests/console_browser.rs.)

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, SET_COOKIE};
use reqwest::StatusCode;
use serde_json::{json, Value};

mod support;

use support::ADMIN_TOKEN;

struct Console {
    url: String,
    /// The `Host` the server sees, which a same-origin `Origin` names.
    origin: String,
    http: reqwest::Client,
}

/// A logged-in admin: the cookie header and the CSRF token.
struct Admin {
    cookie: String,
    csrf: String,
}

impl Console {
    async fn start(dir: &std::path::Path) -> (gha_dispatcher::app::Running, Console) {
        let assets = dir.join("console");
        std::fs::create_dir_all(&assets).unwrap();
        std::fs::write(
            assets.join("index.html"),
            "<!doctype html><div id=root></div>",
        )
        .unwrap();
        std::fs::write(dir.join("admin-token"), format!("{ADMIN_TOKEN}\n")).unwrap();
        let config = support::ConfigBuilder::new(dir)
            .set_path("server", "console_dir", "console")
            .build();
        let running = support::start(config).await;
        let origin = format!("http://{}", running.local_addr);
        let console = Console {
            url: format!("{origin}/console"),
            origin,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .unwrap(),
        };
        (running, console)
    }

    async fn login(&self, token: &str, origin: &str) -> reqwest::Response {
        self.http
            .post(format!("{}/api/login", self.url))
            .header("origin", origin)
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap()
    }

    async fn admin(&self) -> Admin {
        let response = self.login(ADMIN_TOKEN, &self.origin).await;
        assert_eq!(response.status(), StatusCode::OK);
        let set = response.headers()[SET_COOKIE].to_str().unwrap().to_string();
        for attribute in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/console"] {
            assert!(set.contains(attribute), "{set}");
        }
        let body: Value = response.json().await.unwrap();
        assert!(
            !body.to_string().contains(ADMIN_TOKEN),
            "the token came back"
        );
        let cookie = set.split(';').next().unwrap().to_string();
        assert!(
            !body.to_string().contains(&cookie[12..]),
            "the session id is readable"
        );
        Admin {
            cookie,
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
        }
    }

    async fn post_mapping(
        &self,
        user: &str,
        headers: HeaderMap,
        body: Value,
    ) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/api/repositories/{user}", self.url))
            .headers(headers)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    fn headers(&self, pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.insert(*name, HeaderValue::from_str(value).unwrap());
        }
        h
    }

    async fn get(&self, path: &str, cookie: Option<&str>) -> reqwest::Response {
        let mut request = self.http.get(format!("{}{path}", self.url));
        if let Some(cookie) = cookie {
            request = request.header("cookie", cookie);
        }
        request.send().await.unwrap()
    }

    /// `nobody`'s list as the REST API (admin token) reads it.
    async fn nobody_list(&self) -> Value {
        self.http
            .get(format!("{}/repositories/nobody", self.origin))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn without_a_session_nothing_opens_and_a_wrong_token_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (running, console) = Console::start(dir.path()).await;
    let page = console.get("/", None).await;
    assert_eq!(page.status(), StatusCode::OK);
    let csp = page.headers()["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    assert!(page.text().await.unwrap().contains("id=root"));
    let deep = console.get("/some/view", None).await;
    assert!(
        deep.text().await.unwrap().contains("id=root"),
        "no SPA fallback"
    );
    for path in ["/api/session", "/api/events"] {
        let no_cookie = console.get(path, None).await;
        assert_eq!(no_cookie.status(), StatusCode::UNAUTHORIZED, "{path}");
        let made_up = console.get(path, Some("gha_console=00ff")).await;
        assert_eq!(made_up.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    let wrong = console.login("not-the-token", &console.origin).await;
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    assert!(wrong.headers().get(SET_COOKIE).is_none());
    let cross_site = console.login(ADMIN_TOKEN, "https://evil.example").await;
    assert_eq!(cross_site.status(), StatusCode::FORBIDDEN, "login CSRF");
    assert!(cross_site.headers().get(SET_COOKIE).is_none());
    let (status, _) = console
        .post_mapping(
            "nobody",
            console.headers(&[("origin", &console.origin)]),
            json!(["acme/x"]),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(console.nobody_list().await, json!([]));
    running.shutdown().await;
}

#[tokio::test]
async fn an_edit_needs_this_origin_and_the_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let (running, console) = Console::start(dir.path()).await;
    let admin = console.admin().await;
    let cookie = admin.cookie.as_str();
    let origin = console.origin.as_str();
    let csrf = admin.csrf.as_str();
    let attacks = [
        (
            "no CSRF token",
            vec![("cookie", cookie), ("origin", origin)],
        ),
        (
            "wrong CSRF token",
            vec![
                ("cookie", cookie),
                ("origin", origin),
                ("x-csrf-token", "00"),
            ],
        ),
        (
            "another origin",
            vec![
                ("cookie", cookie),
                ("origin", "https://evil.example"),
                ("x-csrf-token", csrf),
            ],
        ),
        (
            "no Origin",
            vec![("cookie", cookie), ("x-csrf-token", csrf)],
        ),
        (
            "cross-site fetch",
            vec![
                ("cookie", cookie),
                ("origin", origin),
                ("x-csrf-token", csrf),
                ("sec-fetch-site", "cross-site"),
            ],
        ),
    ];
    for (what, headers) in attacks {
        let (status, body) = console
            .post_mapping("nobody", console.headers(&headers), json!(["acme/stolen"]))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{what}: {body}");
    }
    assert_eq!(
        console.nobody_list().await,
        json!([]),
        "an attack changed the mapping"
    );
    let good = console.headers(&[
        ("cookie", cookie),
        ("origin", origin),
        ("x-csrf-token", csrf),
    ]);
    let (status, body) = console
        .post_mapping("nobody", good.clone(), json!(["not a/valid name"]))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        body["error"].as_str().unwrap().contains("not a/valid name"),
        "{body}"
    );
    assert_eq!(console.nobody_list().await, json!([]));
    let (status, body) = console
        .post_mapping("nobody", good.clone(), json!(["acme/widgets"]))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        console.nobody_list().await,
        json!([{ "repository": "acme/widgets" }])
    );

    let logout = console
        .http
        .post(format!("{}/api/logout", console.url))
        .headers(good.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    let (status, _) = console.post_mapping("nobody", good, json!([])).await;
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a logged-out session still edits"
    );
    assert_eq!(
        console.get("/api/session", Some(cookie)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    running.shutdown().await;
}

#[tokio::test]
async fn a_session_gets_one_stream_of_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let (running, console) = Console::start(dir.path()).await;
    let admin = console.admin().await;
    let mut stream = console.get("/api/events", Some(&admin.cookie)).await;
    assert_eq!(stream.status(), StatusCode::OK);
    assert_eq!(stream.headers()["content-type"], "text/event-stream");
    let mut text = String::new();
    while !text.contains("\n\n") {
        let chunk = stream.chunk().await.unwrap().expect("the stream ended");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = text
        .lines()
        .find_map(|l| l.strip_prefix("data: "))
        .unwrap_or_else(|| panic!("no data line in {text:?}"));
    assert!(text.starts_with("event: snapshot"), "{text}");
    let snapshot: Value = serde_json::from_str(data).unwrap();
    assert_eq!(snapshot["role"], "admin");
    assert_eq!(snapshot["pools"][0]["name"], "cpu");
    assert_eq!(snapshot["pools"][0]["max_runners"], 1);
    assert!(!data.contains(ADMIN_TOKEN) && !data.contains("webhook-secret"));
    // Stopping the daemon ends the stream cleanly (not cut off when the shutdown's drain runs
    // out).
    let stopped = tokio::spawn(running.shutdown());
    loop {
        match stream.chunk().await {
            Ok(Some(_)) => continue,
            Ok(None) => break,
            Err(e) => panic!("the stream was cut off instead of ended: {e}"),
        }
    }
    stopped.await.unwrap();
}
