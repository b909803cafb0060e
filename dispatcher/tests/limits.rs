//! Exhaustion from the network, against the real daemon: requests that hold an endpoint's
//! every slot make the next one answered 503 at once (not queued), and clients that send
//! their headers or body a byte at a time are disconnected.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gha_dispatcher::api::serve::HEADER_TIMEOUT;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

mod support;

/// A connection that sends `head` and then a byte of `drip` every second until the
/// dispatcher closes it; how long that took.
async fn dribble(addr: SocketAddr, head: String, drip: &'static [u8]) -> Duration {
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(head.as_bytes()).await.unwrap();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = s.read(&mut buf) => match read {
                Ok(0) | Err(_) => return started.elapsed(),
                Ok(_) => {}
            },
            () = tokio::time::sleep(Duration::from_secs(1)) => {
                if s.write_all(drip).await.is_err() {
                    return started.elapsed();
                }
            }
        }
    }
}

fn slow_body(path: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n[",
        support::ADMIN_TOKEN
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn full_endpoints_answer_busy_at_once_and_slow_clients_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let running = support::start(support::ConfigBuilder::new(dir.path()).build()).await;
    let addr = running.local_addr;
    let url = format!("http://{addr}");

    // The attack: more slow uploads to /repositories than it serves at once.
    let holders: Vec<_> = (0..12)
        .map(|_| tokio::spawn(dribble(addr, slow_body("/repositories/nobody"), b" ")))
        .collect();
    let slow_headers = tokio::spawn(dribble(
        addr,
        "GET /healthz HTTP/1.1\r\n".into(),
        b"X-Slow: 1\r\n",
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let started = Instant::now();
        let resp = http
            .get(format!("{url}/repositories/nobody"))
            .bearer_auth(support::ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        if resp.status() == 503 {
            assert!(started.elapsed() < Duration::from_secs(2), "{started:?}");
            let body: serde_json::Value = resp.json().await.unwrap();
            assert_eq!(body["error"], "busy", "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "never refused as busy while 12 slow uploads held /repositories"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Other endpoints are not held up by it.
    let health = http.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status(), 200);

    // Headers a line a second: dropped at the header deadline.
    let lasted = slow_headers.await.unwrap();
    assert!(
        lasted >= HEADER_TIMEOUT && lasted < HEADER_TIMEOUT + Duration::from_secs(5),
        "slow headers lasted {lasted:?}"
    );
    // Bodies a byte a second: answered and dropped at the request deadline.
    for holder in holders {
        let lasted = holder.await.unwrap();
        assert!(
            lasted < Duration::from_secs(40),
            "a slow body lasted {lasted:?}"
        );
    }
    // And the endpoint serves again.
    let resp = http
        .get(format!("{url}/repositories/nobody"))
        .bearer_auth(support::ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    running.shutdown().await;
}
