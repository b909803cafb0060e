//! Node-side security: forged redemption answers (a user who took the dispatcher's port
//! answers with its own config, or root's answer for another job or ticket), runner jobs of
//! root and of system accounts. The attacker's listener runs as the second test user.

mod plugin_support;

use std::net::TcpStream;
use std::process::{Child, Command};
use std::time::Duration;

use e2e::{Cluster, DispatcherSlot};
use plugin_support::*;
use test_support::wait_until;

/// A one-shot impostor of the dispatcher: decodes the node's request (any user can open an
/// unrestricted credential), and answers with a credential for root around a payload bound to
/// the job and ticket it learnt (`job_offset` and `ticket_suffix` change the binding).
const IMPOSTOR: &str = r#"
import hashlib, http.server, json, subprocess, sys, time
sock, config, job_offset, ticket_suffix = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
class H(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        req = json.loads(subprocess.run(["unmunge", "--socket=" + sock, "--metadata=/dev/null"],
                                        input=body, capture_output=True, check=True).stdout)
        payload = json.dumps({"job_id": req["job_id"] + job_offset,
            "ticket_sha256": hashlib.sha256((req["ticket"] + ticket_suffix).encode()).hexdigest(),
            "jit_config": config})
        cred = subprocess.run(["munge", "--socket=" + sock, "--restrict-uid=0"],
                              input=payload.encode(), capture_output=True, check=True).stdout
        self.send_response(200)
        self.send_header("Content-Length", str(len(cred)))
        self.end_headers()
        self.wfile.write(cred)
        done.append(1)
    def log_message(self, *a): pass
done = []
server = http.server.HTTPServer(("127.0.0.1", int(sys.argv[5])), H)
server.timeout = 1
end = time.time() + 120
while not done and time.time() < end:
    server.handle_request()
"#;

fn start_impostor(
    cluster: &Cluster,
    user: &str,
    port: u16,
    config: &str,
    job_offset: i64,
    ticket_suffix: &str,
) -> Child {
    let child = Command::new("runuser")
        .args(["-u", user, "--", "python3", "-c", IMPOSTOR])
        .arg(cluster.munge_socket())
        .args([
            config,
            &job_offset.to_string(),
            ticket_suffix,
            &port.to_string(),
        ])
        .spawn()
        .unwrap();
    wait_until("the impostor to listen", Duration::from_secs(30), || {
        anyhow::Ok(TcpStream::connect(("127.0.0.1", port)).ok().map(|_| ()))
    })
    .unwrap();
    child
}

fn ticket_job(cluster: &Cluster) -> (e2e::Submitted, e2e::JobInfo, String) {
    let ticket = format!("forge-{}-{}", std::process::id(), "A".repeat(20));
    run_job(
        cluster,
        &[
            &format!("--gha-runner=ticket:{ticket}"),
            &job_script(cluster),
            "--runner-root",
            &stand_in_root(cluster),
        ],
    )
}

#[test]
fn forged_and_misbound_redemption_answers_are_refused() {
    let cluster = Cluster::shared();
    let slot = DispatcherSlot::acquire(cluster).unwrap();
    let port = slot.addr().port();
    let cases = [
        (
            "gha-ci-2",
            0,
            "",
            "refusing the dispatcher's answer: it was made by uid",
        ),
        ("root", 1000, "", "sealed for another job or ticket"),
        ("root", 0, "-other", "sealed for another job or ticket"),
    ];
    for (user, job_offset, suffix, expected) in cases {
        let config = jit_config("impostor");
        let mut impostor = start_impostor(cluster, user, port, &config, job_offset, suffix);
        let (job, info, output) = ticket_job(cluster);
        // It exits once it has answered the node.
        let _ = impostor.wait();
        assert_eq!(info.state(), "FAILED", "{user}: {output}");
        let errors: Vec<_> = output
            .lines()
            .filter(|l| l.contains("spank-gha: error:"))
            .collect();
        assert_eq!(errors.len(), 1, "{user}: one clear line: {output}");
        assert!(errors[0].contains(expected), "{user}: {output}");
        assert!(!output.contains("starting the runner"), "{output}");
        assert!(!output.contains(&sha256_hex(&config)), "{output}");
        assert!(!output.contains(&config), "{output}");
        assert_nothing_left(cluster, job.id);
    }
}

#[test]
fn root_and_system_accounts_cannot_run_runners() {
    let cluster = Cluster::shared();
    for (user, expected) in [
        ("root", "jobs of root cannot run"),
        ("daemon", "is a system account (below min_uid"),
    ] {
        let jit = jit_config("privileged");
        let job = cluster
            .sbatch_as(
                user,
                &[&format!("--gha-runner={jit}"), "--wrap", "echo RAN"],
            )
            .unwrap();
        let info = cluster.wait_for_end(job.id, JOB_TIMEOUT).unwrap();
        let output = cluster.output(&job);
        assert_eq!(info.state(), "FAILED", "{user}: {output}");
        assert!(!output.contains("RAN"), "{output}");
        assert!(output.contains(expected), "{user}: {output}");
        assert!(!output.contains(&jit), "{output}");
        assert!(!exists(&workdir(job.id)));
        cluster.assert_node_healthy().unwrap();
    }
}
