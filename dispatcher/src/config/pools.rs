//! The `[[pools]]` entries: which labels a pool serves and the Slurm resources of its
//! runners.

use std::collections::HashSet;

use super::issues::{valid_name, Issues};
use super::raw::RawPool;

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
    /// Arguments after the job script (e.g. `--idle-timeout 60`).
    pub job_script_args: Vec<String>,
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
            job_script_args: p.job_script_args.clone(),
        });
    }

    pools
}
