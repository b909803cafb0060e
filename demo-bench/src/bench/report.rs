//! The benchmark report: every metric next to its goal from the issue (also when it falls
//! short, or was not measured), the machine it ran on, and the raw measurements, written as
//! `report.json` and `report.md`.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result};
use serde::Serialize;

/// One line of the report's table.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Issue 7's numbering: "1", "2", ... "6", with a letter for sub-items.
    pub id: String,
    pub name: String,
    pub goal: String,
    pub measured: String,
    /// `None` when not measured or there is no numeric goal.
    pub meets_goal: Option<bool>,
    /// What exactly was measured, and how.
    pub how: String,
}

/// Where the numbers came from.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub os: String,
    pub kernel: String,
    pub cpu: String,
    pub cpus: usize,
    pub memory_gib: f64,
    pub slurm: String,
    pub rustc: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub command: String,
    pub duration_secs: f64,
    pub machine: Machine,
    pub metrics: Vec<Metric>,
    /// The runner scale set listener beside the webhook intake (issue 13), same run.
    pub listener: Vec<Metric>,
    /// Problems met while measuring (a phase that failed is reported, not hidden).
    pub problems: Vec<String>,
    /// Raw measurements per phase.
    pub details: serde_json::Value,
    /// Sections of report.md after the tables, each Markdown with its own heading.
    #[serde(skip)]
    pub sections: Vec<String>,
}

fn first_line_of(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_owned()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

impl Machine {
    /// This machine; `slurm_conf` lets `sinfo -V` find the cluster's config.
    pub fn describe(slurm_conf: &Path) -> Machine {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let os_release = fs::read_to_string("/etc/os-release").unwrap_or_default();
        let field = |text: &str, key: &str| -> Option<String> {
            text.lines()
                .find(|l| l.starts_with(key))
                .and_then(|l| l.split_once(['=', ':']))
                .map(|(_, v)| v.trim().trim_matches('"').to_owned())
        };
        Machine {
            hostname: first_line_of("hostname", &[]),
            os: field(&os_release, "PRETTY_NAME").unwrap_or_else(|| "unknown".into()),
            kernel: fs::read_to_string("/proc/sys/kernel/osrelease")
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "unknown".into()),
            cpu: field(&cpuinfo, "model name").unwrap_or_else(|| "unknown".into()),
            cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
            memory_gib: field(&meminfo, "MemTotal")
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
                .map_or(0.0, |kib| (kib / 1024.0 / 1024.0 * 10.0).round() / 10.0),
            slurm: Command::new("sinfo")
                .arg("-V")
                .env("SLURM_CONF", slurm_conf)
                .output()
                .ok()
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                .filter(|s| !s.is_empty())
                .unwrap_or_else(|| "unknown Slurm".into()),
            rustc: first_line_of("rustc", &["-V"]),
        }
    }
}

/// Unix time now as `YYYY-MM-DDTHH:MM:SSZ`.
pub fn utc_now() -> String {
    first_line_of("date", &["-u", "+%Y-%m-%dT%H:%M:%SZ"])
}

impl Report {
    /// Writes `report.json` and `report.md` into `dir`; returns their paths.
    pub fn write(&self, dir: &Path) -> Result<(PathBuf, PathBuf)> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let json = dir.join("report.json");
        fs::write(
            &json,
            serde_json::to_string_pretty(self).context("serialising the report")?,
        )
        .with_context(|| format!("writing {}", json.display()))?;
        let md = dir.join("report.md");
        fs::write(&md, self.markdown()).with_context(|| format!("writing {}", md.display()))?;
        Ok((json, md))
    }

    pub fn markdown(&self) -> String {
        let m = &self.machine;
        let mut out = String::new();
        let _ = writeln!(out, "# spank-gha benchmark report\n");
        let _ = writeln!(
            out,
            "Generated {} by `{}` in {:.0} s on `{}`: {}, kernel {}, {} × {}, {} GiB RAM, {}, {}.\n",
            self.generated_at,
            self.command,
            self.duration_secs,
            m.hostname,
            m.os,
            m.kernel,
            m.cpus,
            m.cpu,
            m.memory_gib,
            m.slurm,
            m.rustc
        );
        table(&mut out, &self.metrics);
        if !self.listener.is_empty() {
            let _ = writeln!(
                out,
                "\n## The scale set listener beside webhooks (issue 13)\n\n\
                 The same dispatcher has a webhook target (`acme`) and a listener target \
                 (`labs`); the kill -9 check runs on a stack of its own.\n"
            );
            table(&mut out, &self.listener);
        }
        for section in &self.sections {
            let _ = writeln!(out, "\n{}", section.trim_end());
        }
        let _ = writeln!(out, "\n## How each number is measured\n");
        for metric in self.metrics.iter().chain(&self.listener) {
            let _ = writeln!(out, "- **{} {}**: {}", metric.id, metric.name, metric.how);
        }
        if !self.problems.is_empty() {
            let _ = writeln!(out, "\n## Problems during this run\n");
            for problem in &self.problems {
                let _ = writeln!(out, "- {problem}");
            }
        }
        let _ = writeln!(
            out,
            "\nRaw numbers: `report.json` next to this file. Rerun: `ci/bench` (see `ci/bench --help`)."
        );
        out
    }
}

/// `metrics` as a Markdown table.
fn table(out: &mut String, metrics: &[Metric]) {
    let _ = writeln!(out, "| # | metric | goal | measured | meets goal |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for metric in metrics {
        let verdict = match metric.meets_goal {
            Some(true) => "yes",
            Some(false) => "**no**",
            None => "–",
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} |",
            metric.id, metric.name, metric.goal, metric.measured, verdict
        );
    }
}

/// Milliseconds with one decimal.
pub fn ms(secs: f64) -> String {
    format!("{:.1} ms", secs * 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_shows_every_metric_and_verdict() {
        let report = Report {
            generated_at: "2026-01-01T00:00:00Z".into(),
            command: "ci/bench".into(),
            duration_secs: 12.0,
            // Not Machine::describe(): sinfo without a reachable cluster waits on DNS lookups.
            machine: Machine {
                hostname: "host".into(),
                os: "Debian".into(),
                kernel: "6".into(),
                cpu: "cpu".into(),
                cpus: 2,
                memory_gib: 1.0,
                slurm: "slurm 22.05".into(),
                rustc: "rustc".into(),
            },
            metrics: vec![
                Metric {
                    id: "1".into(),
                    name: "webhook → sbatch p99".into(),
                    goal: "< 50 ms".into(),
                    measured: ms(0.0421),
                    meets_goal: Some(true),
                    how: "relay to wrapper".into(),
                },
                Metric {
                    id: "5".into(),
                    name: "RSS".into(),
                    goal: "< 50 MB".into(),
                    measured: "not measured".into(),
                    meets_goal: None,
                    how: "n/a".into(),
                },
            ],
            listener: vec![Metric {
                id: "L1".into(),
                name: "queued → sbatch".into(),
                goal: "–".into(),
                measured: ms(0.5),
                meets_goal: None,
                how: "relay".into(),
            }],
            problems: vec!["phase 5 failed: x".into()],
            details: serde_json::json!({}),
            sections: vec!["## Extra\n\ntext".into()],
        };
        let md = report.markdown();
        assert!(md.contains("| 1 | webhook → sbatch p99 | < 50 ms | 42.1 ms | yes |"));
        assert!(md.contains("| 5 | RSS | < 50 MB | not measured | – |"));
        assert!(md.contains("phase 5 failed"));
        assert!(md.contains("\n## Extra\n\ntext\n"));
        assert!(md.contains("## The scale set listener beside webhooks"));
        assert!(md.contains("| L1 | queued → sbatch | – | 500.0 ms | – |"));
        let dir = tempfile::tempdir().unwrap();
        let (json, _) = report.write(dir.path()).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&fs::read_to_string(json).unwrap()).unwrap();
        assert_eq!(back["metrics"][0]["meets_goal"], true);
    }
}
