//! What a site's monitoring reads, checked against the daemon itself: `gha-dispatcher serve`
//! (the binary, as the unit runs it, with `GHA_DISPATCHER_LOG_FORMAT=json`) writes one JSON
//! object per log line and never a secret; every metric the Grafana dashboard
//! (`deploy/grafana/gha-dispatcher.json`) or an alert rule (`deploy/prometheus/`) queries is one
//! its `/metrics` exports; and `promtool check rules` accepts the rules.

mod support;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use test_support::wait_until;

const BIN: &str = env!("CARGO_BIN_EXE_gha-dispatcher");
const SECRET: &str = "observability-webhook-secret";

/// Series Prometheus makes itself (not the daemon's) that a rule may use.
const PROMETHEUS_OWN: [&str; 1] = ["up"];

fn repo_file(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// The daemon; killed when dropped.
struct Daemon(std::process::Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn json_logs_and_every_queried_metric_is_exported() {
    let dir = tempfile::tempdir().unwrap();
    let config = support::ConfigBuilder::new(dir.path())
        .webhook_secret(SECRET)
        .pool("cpu", &["linux"], 3)
        .write();
    let mut child = Command::new(BIN)
        .args(["serve", "--config"])
        .arg(&config)
        .env("GHA_DISPATCHER_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let _daemon = Daemon(child);
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    let addr = wait_until(
        "the daemon to log where it listens",
        Duration::from_secs(30),
        || {
            seen.extend(lines.try_iter());
            seen.iter().find_map(|line| listening_addr(line))
        },
    )
    .unwrap();

    let metrics = http_get(&format!("http://{addr}/metrics"));
    // A rejected delivery logs a warning, which must not carry the secret either.
    post_unsigned_webhook(&addr);
    seen.extend(lines.recv_timeout(Duration::from_secs(10)));
    seen.extend(lines.try_iter());
    assert_json_log(&seen);

    let exported = exported_names(&metrics);
    assert!(
        exported.contains("gha_dispatcher_pool_max_runners"),
        "{metrics}"
    );
    let mut queried = BTreeSet::new();
    for expr in dashboard_exprs().iter().chain(rule_exprs().iter()) {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "no metric found in {expr:?}");
        queried.extend(names);
    }
    let missing: Vec<&String> = queried
        .iter()
        .filter(|n| !exported.contains(*n) && !PROMETHEUS_OWN.contains(&n.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "queried but not exported: {missing:?}\n{metrics}"
    );
    assert!(queried.len() >= 15, "only {queried:?}");
}

#[test]
fn promtool_accepts_the_alert_rules() {
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(repo_file("deploy/prometheus/gha-dispatcher.rules.yml"))
        .output()
        .expect("promtool must be installed (Debian package prometheus; ci/test installs it)");
    let said =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("SUCCESS: 7 rules found"), "{said}");
}

/// `local_addr` of the "gha-dispatcher listening" line, if this is it.
fn listening_addr(line: &str) -> Option<String> {
    let value: serde_json::Value = serde_json::from_str(line).ok()?;
    (value["fields"]["message"] == "gha-dispatcher listening")
        .then(|| value["fields"]["local_addr"].as_str().map(str::to_string))?
}

/// Every line is a JSON object with time, level, target and message; no secret anywhere.
fn assert_json_log(lines: &[String]) {
    assert!(lines.len() >= 2, "{lines:?}");
    for line in lines {
        let value: serde_json::Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not a JSON log line ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(value[key].is_string(), "no {key} in {line}");
        }
        assert!(
            value["fields"]["message"].is_string(),
            "no message in {line}"
        );
        assert!(
            !line.contains(SECRET),
            "the webhook secret reached the log: {line}"
        );
    }
    assert!(
        lines.iter().any(|l| l.contains("\"level\":\"WARN\"")),
        "the rejected delivery logged no warning: {lines:?}"
    );
}

fn http_get(url: &str) -> String {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async { reqwest::get(url).await.unwrap().text().await.unwrap() })
}

fn post_unsigned_webhook(addr: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let status = runtime.block_on(async {
        reqwest::Client::new()
            .post(format!("http://{addr}/webhook"))
            .header("X-GitHub-Event", "workflow_job")
            .header("X-GitHub-Delivery", "d-1")
            .header("X-Hub-Signature-256", "sha256=00")
            .body("{}")
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status.as_u16(), 401);
}

/// Series names `/metrics` has or will have: a counter `c` is `c_total`, a histogram `h` has
/// `h_bucket`, `h_sum` and `h_count` (OpenMetrics), whether or not it has samples yet.
fn exported_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        if let (Some("#"), Some("TYPE"), Some(name), Some(kind)) =
            (words.next(), words.next(), words.next(), words.next())
        {
            match kind {
                "counter" => names.insert(format!("{name}_total")),
                "histogram" => {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        names.insert(format!("{name}{suffix}"));
                    }
                    true
                }
                _ => names.insert(name.to_string()),
            };
        }
    }
    names
}

fn dashboard_exprs() -> Vec<String> {
    let path = repo_file("deploy/grafana/gha-dispatcher.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8);
    let exprs: Vec<String> = panels
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    let variable = dashboard["templating"]["list"][1]["definition"]
        .as_str()
        .unwrap();
    let inner = variable
        .trim_start_matches("label_values(")
        .split(',')
        .next()
        .unwrap();
    exprs.into_iter().chain([inner.to_string()]).collect()
}

/// The `expr:` of every rule (a folded `>` scalar spans the indented lines below it).
fn rule_exprs() -> Vec<String> {
    let text =
        std::fs::read_to_string(repo_file("deploy/prometheus/gha-dispatcher.rules.yml")).unwrap();
    let mut exprs = Vec::new();
    let mut lines = text.lines().peekable();
    while let Some(line) = lines.next() {
        let Some(rest) = line.trim_start().strip_prefix("expr:") else {
            continue;
        };
        let indent = line.len() - line.trim_start().len();
        let mut expr = rest.trim().trim_start_matches('>').to_string();
        while let Some(next) = lines.peek() {
            if next.len() - next.trim_start().len() <= indent || next.trim().is_empty() {
                break;
            }
            expr.push(' ');
            expr.push_str(next.trim());
            lines.next();
        }
        exprs.push(expr);
    }
    assert_eq!(exprs.len(), 7);
    exprs
}

/// PromQL keywords and aggregation operators, which look like names.
const KEYWORDS: [&str; 22] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "group",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
];

/// The metric names an expression selects: identifiers outside `{...}` label matchers, `[...]`
/// ranges and strings that are not a function call, a keyword, or the label list after
/// `by`/`without`/`on`/`ignoring`.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let (mut i, mut depth_brace, mut depth_bracket) = (0, 0, 0);
    while i < chars.len() {
        let c = chars[i];
        match c {
            '{' => depth_brace += 1,
            '}' => depth_brace -= 1,
            '[' => depth_bracket += 1,
            ']' => depth_bracket -= 1,
            '"' => i = skip_string(&chars, i),
            c if (c.is_ascii_alphabetic() || c == '_')
                && depth_brace == 0
                && depth_bracket == 0 =>
            {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i]))
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let after = chars[i..].iter().find(|c| !c.is_whitespace());
                let is_call = after == Some(&'(');
                if is_call && ["by", "without", "on", "ignoring"].contains(&word.as_str()) {
                    i = skip_parens(&chars, i);
                } else if !is_call && !KEYWORDS.contains(&word.as_str()) {
                    names.insert(word);
                }
                continue;
            }
            _ => {}
        }
        i += 1;
    }
    names
}

fn skip_string(chars: &[char], open: usize) -> usize {
    let mut i = open + 1;
    while i < chars.len() && chars[i] != '"' {
        i += if chars[i] == '\\' { 2 } else { 1 };
    }
    i
}

fn skip_parens(chars: &[char], from: usize) -> usize {
    let open = from + chars[from..].iter().position(|c| *c == '(').unwrap_or(0);
    open + chars[open..]
        .iter()
        .position(|c| *c == ')')
        .unwrap_or(chars.len() - open)
}

#[test]
fn metric_names_skip_functions_keywords_labels_and_ranges() {
    let names = metric_names(
        "histogram_quantile(0.95, sum by (le) (rate(a_bucket{x=~\"b|c\"}[$__rate_interval]))) \
         >= on (pool) b_total and c",
    );
    assert_eq!(names, ["a_bucket", "b_total", "c"].map(String::from).into());
}
