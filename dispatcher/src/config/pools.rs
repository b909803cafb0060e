//! The `[[pools]]` entries: which labels a pool serves, the Slurm resources of its
//! runners, and how many it keeps warm (`min_idle`, `warm_hours`).

use std::collections::HashSet;

use super::issues::{valid_name, Issues};
use super::raw::RawPool;
use super::warm::{slurm_time_limit_secs, WarmHours};

/// The job script's flag that lifts its idle stop (see gha-runner-job): a warm pool's
/// runners are meant to wait idle, and the dispatcher retires them instead.
pub const WARM_FLAG: &str = "--warm";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    pub name: String,
    /// Lower-cased labels, `self-hosted` included.
    pub labels: Vec<String>,
    pub priority: i64,
    pub max_runners: u32,
    pub image: Option<String>,
    pub partition: Option<String>,
    pub cpus: Option<u32>,
    pub memory: Option<String>,
    pub gres: Option<String>,
    pub time_limit: Option<String>,
    pub account: Option<String>,
    pub qos: Option<String>,
    pub extra_args: Vec<String>,
    /// Arguments after the job script (e.g. `--idle-timeout 60`); [`WARM_FLAG`] added for a
    /// warm pool.
    pub job_script_args: Vec<String>,
    /// Idle runners kept online per target (registration scope), within `max_runners`.
    pub min_idle: u32,
    /// When `min_idle` applies; `None`: always.
    pub warm_hours: Option<WarmHours>,
    /// `time_limit` in seconds; required (and finite) for a warm pool, whose idle runners
    /// are rotated before it.
    pub time_limit_secs: Option<u64>,
}

impl PoolConfig {
    /// A pool for tests: `labels` (plus `self-hosted`), nothing else set.
    #[cfg(test)]
    pub(crate) fn example(name: &str, labels: &[&str], priority: i64) -> PoolConfig {
        let mut labels: Vec<String> = labels.iter().map(|l| l.to_lowercase()).collect();
        labels.push("self-hosted".into());
        PoolConfig {
            name: name.into(),
            labels,
            priority,
            max_runners: 1,
            image: None,
            partition: None,
            cpus: None,
            memory: None,
            gres: None,
            time_limit: None,
            account: None,
            qos: None,
            extra_args: vec![],
            job_script_args: vec![],
            min_idle: 0,
            warm_hours: None,
            time_limit_secs: None,
        }
    }

    /// Its runners wait idle without a stop of their own: the dispatcher retires surplus
    /// idle runners and rotates them before their time limit.
    pub fn is_warm(&self) -> bool {
        self.min_idle > 0
    }

    /// The idle runners wanted per target at `unix_secs` (0 outside `warm_hours`).
    pub fn warm_target(&self, unix_secs: i64) -> usize {
        match &self.warm_hours {
            Some(hours) if !hours.contains(unix_secs) => 0,
            _ => self.min_idle as usize,
        }
    }
}

/// Validates every `[[pools]]` entry; labels are lower-cased, `self-hosted` added.
pub(super) fn validate(raw: &[RawPool], issues: &mut Issues<'_>) -> Vec<PoolConfig> {
    let mut pools = Vec::new();
    let mut names = HashSet::new();
    if raw.is_empty() {
        issues.at("pools", 0..0, "at least one [[pools]] entry is required");
    }
    for (i, p) in raw.iter().enumerate() {
        let key = format!("pools[{i}]");
        let name = p.name.get_ref().clone();
        if !valid_name(&name) || name.len() > 20 {
            issues.at(
                format!("{key}.name"),
                p.name.span(),
                "1 to 20 characters of letters, digits, '-', '_', '.'",
            );
        } else if !names.insert(name.to_ascii_lowercase()) {
            issues.at(
                format!("{key}.name"),
                p.name.span(),
                format!("pool {name:?} is defined twice"),
            );
        }
        if p.labels.get_ref().iter().any(|l| l.trim().is_empty()) {
            issues.at(
                format!("{key}.labels"),
                p.labels.span(),
                "labels must not be empty strings",
            );
        }
        if *p.max_runners.get_ref() == 0 {
            issues.at(
                format!("{key}.max_runners"),
                p.max_runners.span(),
                "must be at least 1",
            );
        }
        let mut job_script_args = p.job_script_args.clone();
        let (min_idle, warm_hours, time_limit_secs) = validate_warm(p, &key, issues);
        if min_idle > 0 {
            job_script_args.push(WARM_FLAG.to_string());
        }
        let mut labels: Vec<String> = p
            .labels
            .get_ref()
            .iter()
            .map(|l| l.trim().to_lowercase())
            .collect();
        labels.push("self-hosted".into());
        labels.sort();
        labels.dedup();
        pools.push(PoolConfig {
            name,
            labels,
            priority: p.priority,
            max_runners: *p.max_runners.get_ref(),
            image: p.image.clone(),
            partition: p.partition.clone(),
            cpus: p.cpus,
            memory: p.memory.clone(),
            gres: p.gres.clone(),
            time_limit: p.time_limit.clone(),
            account: p.account.clone(),
            qos: p.qos.clone(),
            extra_args: p.extra_args.clone(),
            job_script_args,
            min_idle,
            warm_hours,
            time_limit_secs,
        });
    }

    pools
}

/// `min_idle`, `warm_hours` and the time limit a warm pool needs: `min_idle` within
/// `max_runners`, hours only with `min_idle`, a finite `time_limit` to rotate before, and no
/// `--idle-timeout` (a warm runner must not stop itself while wanted).
fn validate_warm(
    p: &RawPool,
    key: &str,
    issues: &mut Issues<'_>,
) -> (u32, Option<WarmHours>, Option<u64>) {
    let min_idle = p.min_idle.as_ref().map_or(0, |m| *m.get_ref());
    let span = p.min_idle.as_ref().map_or(0..0, |m| m.span());
    let limit = p.time_limit.as_deref().and_then(slurm_time_limit_secs);
    let hours = p.warm_hours.as_ref().and_then(|h| {
        let parsed = WarmHours::parse(h.get_ref());
        if let Err(e) = &parsed {
            issues.at(format!("{key}.warm_hours"), h.span(), e.clone());
        } else if min_idle == 0 {
            issues.at(
                format!("{key}.warm_hours"),
                h.span(),
                "needs min_idle above 0",
            );
        }
        parsed.ok()
    });
    if min_idle == 0 {
        return (0, None, limit);
    }
    let at = format!("{key}.min_idle");
    if min_idle > *p.max_runners.get_ref() {
        issues.at(&at, span.clone(), "must not exceed max_runners");
    }
    if limit.is_none() {
        issues.at(
            &at,
            span.clone(),
            "a warm pool needs a finite time_limit (Slurm --time, e.g. \"4:00:00\"): its idle runners are rotated before it",
        );
    }
    if p.job_script_args.iter().any(|a| a == "--idle-timeout") {
        issues.at(
            &at,
            span,
            "a warm pool's runners wait idle: remove --idle-timeout from job_script_args",
        );
    }
    (min_idle, hours, limit)
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, ConfigError};

    fn parse(pool_keys: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!(
            r#"
[server]
listen = "127.0.0.1:0"
webhook_secret_file = "/x"
[github]
token_file = "/x"
targets = [{{ org = "acme" }}]
[slurm]
job_script = "/x"
user = "svc"
[[pools]]
name = "cpu"
labels = ["linux"]
max_runners = 4
{pool_keys}
"#
        ))
    }

    fn problems(pool_keys: &str) -> String {
        match parse(pool_keys) {
            Ok(_) => String::new(),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn a_warm_pool_gets_the_flag_its_limit_and_hours() {
        let config =
            parse("min_idle = 2\ntime_limit = \"1:00:00\"\nwarm_hours = \"Mon-Fri 08:00-20:00\"")
                .unwrap();
        let pool = &config.pools[0];
        assert!(pool.is_warm());
        assert_eq!(pool.job_script_args, vec![super::WARM_FLAG.to_string()]);
        assert_eq!(pool.time_limit_secs, Some(3600));
        // 2024-01-06 12:00 UTC was a Saturday; 2024-01-08 12:00 a Monday.
        assert_eq!(pool.warm_target(1_704_542_400), 0);
        assert_eq!(pool.warm_target(1_704_715_200), 2);
        let cold = parse("").unwrap();
        assert!(!cold.pools[0].is_warm());
        assert!(cold.pools[0].job_script_args.is_empty());
    }

    #[test]
    fn warm_settings_are_checked_with_clear_errors() {
        let cases = [
            (
                "min_idle = 5\ntime_limit = \"60\"",
                "must not exceed max_runners",
            ),
            ("min_idle = 1", "needs a finite time_limit"),
            (
                "min_idle = 1\ntime_limit = \"UNLIMITED\"",
                "needs a finite time_limit",
            ),
            (
                "min_idle = 1\ntime_limit = \"60\"\njob_script_args = [\"--idle-timeout\", \"5\"]",
                "remove --idle-timeout",
            ),
            (
                "warm_hours = \"Mon-Fri 08:00-20:00\"",
                "needs min_idle above 0",
            ),
            (
                "min_idle = 1\ntime_limit = \"60\"\nwarm_hours = \"weekdays\"",
                "pools[0].warm_hours",
            ),
        ];
        for (keys, expected) in cases {
            let found = problems(keys);
            assert!(found.contains(expected), "{keys:?}: {found}");
        }
    }
}
