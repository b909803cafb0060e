//! The end of a soak: waits for the system to be quiet, stops the dispatcher, gathers what
//! every invariant needs (the simulator's jobs and counters, Slurm's ended jobs, the logs and
//! the samples) and builds the table and the JSON report (`soak::invariants` holds the rules).

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{ensure, Context, Result};
use demo_bench::bench::timeline::slurmd_log;
use demo_bench::demo::leftovers::Leftovers;
use demo_bench::demo::stopping::Stop;
use demo_bench::soak::invariants::{self, Causes, EndedSlurmJob, Row, Tickets};
use demo_bench::soak::plan::Plan;
use demo_bench::soak::secrets::Secrets;
use demo_bench::soak::watch::is_runner_process;
use e2e::Cluster;
use github_sim::model::JobView;
use serde_json::json;

use crate::live::{unredeemed_metric, Ending, Soak};
use crate::Args;

/// The soak's verdict.
pub struct Report {
    pub text: String,
    pub json: serde_json::Value,
    pub ok: bool,
}

/// The names of `jobs` whose node redeemed their ticket: the plugin logs it in slurmd's log
/// once the sealed config is in hand. (A config GitHub issued may never reach the node, when
/// the dispatcher is killed between the mint and its answer.)
fn redeemed_on_the_node(cluster: &Cluster, jobs: &[EndedSlurmJob]) -> Result<BTreeSet<String>> {
    let path = cluster.dir().join("log/slurmd.log");
    let log =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let marks = slurmd_log::parse(&log);
    Ok(jobs
        .iter()
        .filter(|job| marks.get(&job.id).is_some_and(|m| m.redeemed.is_some()))
        .map(|job| job.name.clone())
        .collect())
}

/// What became of every runner job's ticket: ran a GitHub job, redeemed on its node, issued
/// by GitHub.
fn tickets(soak: &Soak, jobs: &[JobView], slurm_jobs: &[EndedSlurmJob]) -> Result<Tickets> {
    Ok(Tickets {
        ran: jobs.iter().filter_map(|j| j.runner_name.clone()).collect(),
        redeemed_on_node: redeemed_on_the_node(soak.cluster, slurm_jobs)?,
        issued: soak
            .world
            .sim
            .issued_jit_configs()
            .into_iter()
            .map(|c| c.runner_name)
            .collect(),
    })
}

/// Every job of the run Slurm still knows (`MinJobAge` keeps ended ones an hour), any state.
fn ended_slurm_jobs(cluster: &Cluster, prefix: &str) -> Result<(Vec<EndedSlurmJob>, Vec<String>)> {
    let output = cluster
        .command("squeue")
        .args(["--noheader", "--states=all", "--user", cluster.test_user()])
        .arg("--format=%i|%T|%j|%k")
        .output()
        .context("running squeue")?;
    ensure!(output.status.success(), "squeue --states=all failed");
    let mut jobs = Vec::new();
    let mut comments = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut fields = line.splitn(4, '|');
        let (Some(id), Some(state), Some(name)) = (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let comment = fields.next().unwrap_or_default().to_owned();
        if !name.contains(prefix) {
            continue;
        }
        let Ok(id) = id.trim().parse() else { continue };
        jobs.push(EndedSlurmJob {
            id,
            name: name.trim().to_owned(),
            state: state.trim().to_owned(),
        });
        comments.push(comment);
    }
    Ok((jobs, comments))
}

/// The secrets the run handed out: every JIT config, its runner token, every harvested ticket.
fn secrets_of(soak: &Soak) -> Secrets {
    let mut secrets = Secrets::default();
    for issued in soak.world.sim.issued_jit_configs() {
        secrets.add(&issued.encoded_jit_config, "jit config");
        secrets.add(&issued.runner_secret, "runner token");
    }
    for ticket in &soak.samples.tickets {
        secrets.add(ticket, "ticket");
    }
    secrets
}

/// Searches every log, job output, Slurm record, comment and sampled environment.
fn search_secrets(soak: &Soak, comments: &[String]) -> Row {
    let secrets = secrets_of(soak);
    let cluster = soak.cluster;
    let mut files: Vec<PathBuf> = soak.dispatcher_log_paths();
    let dirs = [cluster.dir().join("log"), cluster.jobs_dir()];
    for dir in dirs {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log") || name.starts_with(&soak.guard.prefix) {
                files.push(entry.path());
            }
        }
    }
    files.push(cluster.dir().join("munge/log/munged.log"));
    let mut found = Vec::new();
    for file in &files {
        secrets.search_file(file, &mut found);
    }
    for record in &soak.samples.slurm_records {
        found.extend(
            secrets
                .found_in(record.as_bytes())
                .iter()
                .map(|k| format!("scontrol show job: {k}")),
        );
    }
    for comment in comments {
        found.extend(
            secrets
                .found_in(comment.as_bytes())
                .iter()
                .map(|k| format!("job comment: {k}")),
        );
    }
    let mut runner_env_hits = 0;
    let mut other_envs = 0;
    for (cmdline, environ) in &soak.samples.environments {
        let hits = secrets.found_in(environ);
        if is_runner_process(cmdline) {
            runner_env_hits += hits.len();
            continue;
        }
        other_envs += 1;
        let program = cmdline.split(' ').next().unwrap_or_default();
        found.extend(
            hits.iter()
                .map(|k| format!("environment of {program}: {k}")),
        );
    }
    let places = files.len() + soak.samples.slurm_records.len() + comments.len() + other_envs;
    invariants::no_secrets(
        places,
        &found,
        format!(
            "{} secrets looked for in {} files, {} scontrol samples, {} comments, {} job-process environments (the runner's own process, started with its config by design: {} samples, {runner_env_hits} hits)",
            secrets.count,
            files.len(),
            soak.samples.slurm_records.len(),
            comments.len(),
            other_envs,
            soak.samples.environments.len() - other_envs,
        ),
    )
}

fn leftovers_row(left: &Leftovers, sessions_active: u64) -> Row {
    let mut bad: Vec<String> = Vec::new();
    bad.extend(left.slurm_jobs.iter().map(|j| format!("slurm job {j}")));
    bad.extend(
        left.runner_registrations
            .iter()
            .map(|r| format!("runner {r}")),
    );
    bad.extend(
        left.work_dirs
            .iter()
            .map(|d| format!("work dir {}", d.display())),
    );
    bad.extend(left.processes.iter().map(|p| format!("process {p}")));
    if sessions_active > 0 {
        bad.push(format!("{sessions_active} scale set sessions"));
    }
    Row::new(
        "nothing left (registrations, Slurm jobs, work dirs, sessions, job-user processes)",
        5,
        &bad,
        String::new(),
    )
}

fn memory_row(soak: &Soak, limit_mib: f64) -> Row {
    let mut bad = Vec::new();
    let mut detail = Vec::new();
    for (pid, m) in &soak.samples.memory {
        detail.push(format!(
            "pid {pid}: {:.0}→{:.0} MiB, peak {:.0}",
            m.first_mib, m.last_mib, m.peak_mib
        ));
        if m.peak_mib > limit_mib {
            bad.push(format!("pid {pid} peaked at {:.0} MiB", m.peak_mib));
        }
    }
    Row::new(
        &format!("dispatcher memory bounded (peak under {limit_mib:.0} MiB per process)"),
        soak.samples.memory.len(),
        &bad,
        detail.join("; "),
    )
}

fn faults_row(soak: &Soak, plan: &Plan, injected_by_sim: &BTreeMap<String, u64>) -> Row {
    let mut detail: Vec<String> = soak
        .injected
        .iter()
        .map(|(name, n)| format!("{n}× {name}"))
        .collect();
    detail.extend(
        injected_by_sim
            .iter()
            .map(|(kind, n)| format!("{n}× {kind}")),
    );
    let scheduled = plan.schedule().len();
    Row::new(
        "every scheduled fault was injected",
        scheduled,
        &soak.not_injected,
        detail.join(", "),
    )
}

/// Waits for the quiet, stops the dispatcher, and judges every invariant.
pub fn check(
    soak: &mut Soak,
    plan: &Plan,
    ending: Ending,
    args: &Args,
    workload_secs: f64,
    stop: &Stop,
) -> Result<Report> {
    println!("workload {ending:?} after {workload_secs:.0} s; waiting for the runners to end and clean up");
    let left = Leftovers::wait_until_none(
        soak.cluster,
        &soak.world.sim,
        &soak.guard.prefix,
        &soak.guard.seen,
        Duration::from_secs(args.cleanup_secs),
        &|| stop.requested(),
    )?;
    // Its count of unredeemed tickets is final once it has seen every runner's job end (a
    // surplus runner cancelled while pending is noticed at its next pass).
    test_support::wait_until(
        "the dispatcher to see every runner's Slurm job over",
        Duration::from_secs(120),
        || live_runners_gauge(&soak.dispatcher) == Some(0),
    )
    .context("the dispatcher still counts live runners after the cluster is quiet")?;
    soak.unredeemed_counted += unredeemed_metric(&soak.dispatcher);
    soak.dispatcher.stop().context("stopping the dispatcher")?;
    let counters = soak.world.sim.counters();
    let jobs = soak.world.sim.jobs();
    let (slurm_jobs, comments) = ended_slurm_jobs(soak.cluster, &soak.guard.prefix)?;
    let tickets = tickets(soak, &jobs, &slurm_jobs)?;
    let causes: Causes = jobs
        .iter()
        .filter_map(|j| Some((j.id, *soak.causes_by_runner.get(j.runner_name.as_ref()?)?)))
        .collect();
    let rows = vec![
        invariants::all_final(&jobs),
        invariants::outcomes(&jobs, &causes),
        invariants::ran_at_most_once(&jobs, &counters.job_runs),
        invariants::slurm_jobs_accounted(&slurm_jobs, &tickets, soak.unredeemed_counted),
        leftovers_row(&left, counters.scaleset.sessions_active),
        search_secrets(soak, &comments),
        memory_row(soak, 256.0),
        faults_row(soak, plan, &counters.faults_injected),
        Row::new(
            "the dispatcher never exited by itself",
            soak.samples.memory.len(),
            &vec!["exited".to_string(); soak.unexpected_exits],
            String::new(),
        ),
    ];
    let ok = rows.iter().all(|r| r.violations == 0);
    let mut text = format!(
        "Invariants (seed {}, {} jobs, workload {:.0} s, ended {ending:?})\n",
        plan.seed, plan.jobs, workload_secs
    );
    text.push_str(&invariants::table(&rows));
    let json = json!({
        "plan": plan,
        "ending": format!("{ending:?}"),
        "workload_secs": workload_secs,
        "rows": rows,
        "faults_injected": {
            "events": soak.injected,
            "simulator": counters.faults_injected,
            "not_injected": soak.not_injected,
        },
        "memory": soak.samples.memory,
        "ok": ok,
    });
    Ok(Report { text, json, ok })
}

/// The dispatcher's runners in any phase (`gha_dispatcher_runners`), `None` when unreadable.
fn live_runners_gauge(dispatcher: &demo_bench::demo::stack::Dispatcher) -> Option<u64> {
    let text = dispatcher.metrics().ok()?;
    Some(
        text.lines()
            .filter(|l| l.starts_with("gha_dispatcher_runners{"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .map(|v| v as u64)
            .sum(),
    )
}
