//! The demo's workload, shaped like a busy repository's day: a 50-job CI run with a build
//! matrix, tests that need builds, integration tests on bigger runners and one Docker step; a
//! second repository's 14-job run, in another organization whose jobs come through a scale set
//! listener ([`LISTENED_ORG`]); and a 6-job preview run superseded (cancelled) right after it
//! was queued. 70 jobs over three label sets and both intakes.

use github_sim::{JobSpec, WorkflowSpec};

use crate::demo::stack::ORG;
use e2e::dispatcher_config::Pool;

/// The organization the dispatcher hears of through runner scale sets (no webhook).
pub const LISTENED_ORG: &str = "labs";

/// Labels of the three label sets (besides `self-hosted`).
pub const CPU: &[&str] = &["self-hosted", "linux", "x64"];
pub const LARGE: &[&str] = &["self-hosted", "linux", "x64", "large"];
pub const DOCKER: &[&str] = &["self-hosted", "linux", "docker"];

/// One workflow run of the demo and what should become of it.
pub struct DemoRun {
    pub spec: WorkflowSpec,
    /// Cancelled as soon as the dispatcher has been told about its jobs (a superseded push).
    pub cancel_when_queued: bool,
}

/// The step of the Docker job: builds a busybox image from Debian's busybox-static with
/// `docker import` (no registry is reachable) and runs it on the job's rootless dockerd.
pub const DOCKER_STEP: &str = r#"set -e
test -n "$DOCKER_HOST" || { echo "no DOCKER_HOST: the job has no Docker daemon" >&2; exit 1; }
root=$(mktemp -d)
mkdir -p "$root/bin"
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
tar -C "$root" -c . | docker import - demo-busybox:local >/dev/null
docker run --rm demo-busybox:local /bin/busybox echo "hello from a rootless container"
"#;

fn job(name: String, runs_on: &[&str], duration_ms: u64, needs: Vec<String>) -> JobSpec {
    let mut spec = JobSpec::new(name, runs_on);
    spec.command = Some("test \"$GITHUB_ACTIONS\" = true".into());
    spec.duration_ms = duration_ms;
    spec.needs = needs;
    spec
}

/// The pools of the demo's dispatcher config. `docker_args` are the sbatch arguments that
/// give a job a rootless dockerd on this cluster (`--gha-docker` when the plugin runs with
/// `docker=on-request`, nothing when it runs with `docker=rootless`).
pub fn pools(docker_args: Vec<String>) -> Vec<Pool> {
    let mut large = Pool::new("large", &["linux", "x64", "large"], 3);
    large.cpus = Some(2);
    let mut docker = Pool::new("docker", &["linux", "docker"], 1);
    docker.extra_args = docker_args;
    // Plain jobs also fit the large pool: the cpu pool must win them.
    let mut cpu = Pool::new("cpu", &["linux", "x64"], 8);
    cpu.priority = 10;
    vec![cpu, large, docker]
}

/// The demo's 70 jobs, as three runs.
pub fn runs() -> Vec<DemoRun> {
    let mut ci = vec![
        job("lint".into(), CPU, 500, vec![]),
        job("typecheck".into(), CPU, 700, vec![]),
        job("docs-build".into(), CPU, 600, vec![]),
    ];
    let builds: Vec<String> = (1..=8).map(|i| format!("build-{i}")).collect();
    for name in &builds {
        ci.push(job(name.clone(), CPU, 1500, vec![]));
    }
    let mut tests = Vec::new();
    for i in 1..=30 {
        let name = format!("test-{i}");
        let build = builds[(i - 1) % builds.len()].clone();
        ci.push(job(
            name.clone(),
            CPU,
            600 + (i as u64 % 5) * 250,
            vec![build],
        ));
        tests.push(name);
    }
    for i in 1..=6 {
        let name = format!("integration-{i}");
        ci.push(job(name.clone(), LARGE, 2000, vec!["lint".into()]));
        tests.push(name);
    }
    let mut docker = job("docker-smoke".into(), DOCKER, 0, vec!["lint".into()]);
    docker.command = Some(DOCKER_STEP.into());
    ci.push(docker);
    ci.push(job("package".into(), CPU, 500, builds.clone()));
    ci.push(job("report".into(), CPU, 300, tests));

    let mut gadgets: Vec<JobSpec> = (1..=10)
        .map(|i| job(format!("unit-{i}"), CPU, 1000, vec![]))
        .collect();
    for i in 1..=4 {
        gadgets.push(job(format!("e2e-{i}"), LARGE, 1500, vec!["unit-1".into()]));
    }

    let preview = (1..=6)
        .map(|i| job(format!("preview-{i}"), CPU, 20_000, vec![]))
        .collect();

    vec![
        DemoRun {
            spec: WorkflowSpec {
                repo: format!("{ORG}/widgets"),
                name: "ci".into(),
                jobs: ci,
                delay_ms: 0,
            },
            cancel_when_queued: false,
        },
        DemoRun {
            spec: WorkflowSpec {
                repo: format!("{LISTENED_ORG}/gadgets"),
                name: "ci".into(),
                jobs: gadgets,
                delay_ms: 0,
            },
            cancel_when_queued: false,
        },
        DemoRun {
            spec: WorkflowSpec {
                repo: format!("{ORG}/widgets"),
                name: "docs-preview".into(),
                jobs: preview,
                delay_ms: 0,
            },
            cancel_when_queued: true,
        },
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seventy_jobs_every_one_served_by_a_pool_and_needs_resolve() {
        let runs = runs();
        let pools = pools(vec![]);
        let total: usize = runs.iter().map(|r| r.spec.jobs.len()).sum();
        assert_eq!(total, 70);
        assert_eq!(runs.iter().filter(|r| r.cancel_when_queued).count(), 1);
        for run in &runs {
            let names: Vec<&str> = run.spec.jobs.iter().map(|j| j.name.as_str()).collect();
            for job in &run.spec.jobs {
                assert!(pools.iter().any(|p| p.serves(&job.runs_on)), "{}", job.name);
                for need in &job.needs {
                    assert!(names.contains(&need.as_str()), "{} needs {need}", job.name);
                }
            }
        }
    }
}
