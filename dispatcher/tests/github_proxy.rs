//! The dispatcher reaches GitHub through the proxy that `HTTPS_PROXY` names (most HPC sites
//! proxy outbound traffic), unless `NO_PROXY` covers GitHub's host. The real `gha-dispatcher
//! serve` runs against the simulator over HTTPS behind a small CONNECT proxy written here.

mod support;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use github_sim::TestCa;
use support::{api_calls, ConfigBuilder};
use test_support::wait_until_async;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BIN: &str = env!("CARGO_BIN_EXE_gha-dispatcher");

/// A CONNECT proxy on a loopback port; the targets it was asked for, in order.
async fn connect_proxy() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let targets = Arc::new(Mutex::new(Vec::new()));
    let log = targets.clone();
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(tunnel(client, log.clone()));
        }
    });
    (url, targets)
}

async fn tunnel(mut client: TcpStream, log: Arc<Mutex<Vec<String>>>) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if client.read(&mut byte).await.unwrap_or(0) == 0 {
            return;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    let mut words = head.split_whitespace();
    let (Some("CONNECT"), Some(target)) = (words.next(), words.next()) else {
        let _ = client
            .write_all(b"HTTP/1.1 405 Method Not Allowed\r\n\r\n")
            .await;
        return;
    };
    log.lock().unwrap().push(target.to_string());
    let Ok(mut upstream) = TcpStream::connect(target).await else {
        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
        return;
    };
    if client
        .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
        .await
        .is_ok()
    {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// `gha-dispatcher serve` with `env`, its proxy variables otherwise cleared.
fn serve(config: &std::path::Path, env: &[(&str, &str)]) -> Child {
    let mut cmd = Command::new(BIN);
    cmd.args(["serve", "--config"]).arg(config);
    for var in [
        "HTTPS_PROXY",
        "https_proxy",
        "HTTP_PROXY",
        "http_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd.spawn().unwrap()
}

fn stop(mut child: Child) {
    let _ = child.kill();
    let _ = child.wait();
}

#[tokio::test(flavor = "multi_thread")]
async fn github_calls_go_through_https_proxy_unless_no_proxy_covers_the_host() {
    let ca = TestCa::new().unwrap();
    let sim = support::tls_sim(&ca, None).await;
    let sim_host_port = sim.addr().to_string();
    let (proxy, targets) = connect_proxy().await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.cert_pem()).unwrap();
    let config = ConfigBuilder::new(dir.path())
        .set("github", "api_url", &format!("{:?}", sim.url()))
        .set_path("github", "ca_file", "ca.pem")
        .set(
            "github",
            "targets",
            "[{ org = \"acme\", repositories = [\"acme/widgets\"] }]",
        )
        .token(support::TOKEN)
        .write();

    // Behind the proxy: the dispatcher's calls to GitHub are tunnelled to the simulator.
    let dispatcher = serve(&config, &[("HTTPS_PROXY", &proxy)]);
    let tunnelled = wait_until_async(
        "a CONNECT to the simulator",
        Duration::from_secs(30),
        || {
            let targets = targets.clone();
            let sim_host_port = sim_host_port.clone();
            let sim = &sim;
            async move { targets.lock().unwrap().contains(&sim_host_port) && api_calls(sim) > 0 }
        },
    )
    .await;
    let calls_behind_proxy = api_calls(&sim);
    stop(dispatcher);
    tunnelled.unwrap();
    assert!(calls_behind_proxy > 0, "the simulator saw no call");

    // NO_PROXY names GitHub's host: straight to it, the proxy sees nothing more.
    let connects = targets.lock().unwrap().len();
    let before = api_calls(&sim);
    let dispatcher = serve(
        &config,
        &[
            ("HTTPS_PROXY", &proxy),
            ("NO_PROXY", "example.com,127.0.0.1"),
        ],
    );
    let direct = wait_until_async("calls without the proxy", Duration::from_secs(30), || {
        let sim = &sim;
        async move { api_calls(sim) > before }
    })
    .await;
    stop(dispatcher);
    direct.unwrap();
    assert_eq!(
        targets.lock().unwrap().len(),
        connects,
        "{:?}",
        targets.lock().unwrap()
    );
}
