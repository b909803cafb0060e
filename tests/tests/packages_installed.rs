//! The packages as an admin installs them (issue 14): `ci/package`'s debs go in with `dpkg -i`;
//! the test cluster restarts with the plugin Slurm finds in its own PluginDir (plugstack.conf
//! names `spank_gha.so`, as the package's snippet does) and the installed gha-redeem; the
//! installed `gha-dispatcher init` creates the GitHub App (simulator) and writes
//! /etc/gha-dispatcher; the unit's ExecStartPre and ExecStart run as systemd would run them
//! (`e2e::systemd_unit`; PID 1 here is not systemd); a GitHub job runs to success; then
//! `dpkg --purge` leaves nothing behind but the system user, which Debian policy keeps.
//!
//! Packages: `$GHA_PACKAGE_DIR` (ci/test builds them with ci/package first), else this test
//! runs ci/package. It restarts the shared cluster, so it holds the dispatcher slot, and it
//! restores the usual cluster (the just-built plugin) when it ends, pass or fail.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use e2e::sim_world::{write_test_ca, SimWorld, ORG};
use e2e::systemd_unit::ServiceUnit;
use e2e::{Cluster, DispatcherSlot};
use github_sim::model::{JobSpec, WorkflowSpec};
use github_sim::InstallationSpec;
use test_support::{wait_until, wait_until_async};

const PACKAGES: [&str; 2] = ["gha-dispatcher", "spank-gha"];
const ETC: &str = "/etc/gha-dispatcher";
const PLUGIN: &str = "/usr/lib/x86_64-linux-gnu/slurm-wlm/spank_gha.so";
const REDEEM: &str = "/usr/libexec/spank-gha/gha-redeem";
const WAIT: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn run(command: &mut Command) -> String {
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{said}",
        out.status
    );
    said
}

/// The directory holding the debs: `$GHA_PACKAGE_DIR`, else what ci/package builds now.
fn package_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("GHA_PACKAGE_DIR") {
        return PathBuf::from(dir);
    }
    let out = Command::new(repo_root().join("ci/package"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ci/package:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

fn debs(dir: &Path) -> Vec<PathBuf> {
    let debs: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "deb"))
        .collect();
    assert_eq!(debs.len(), 2, "{debs:?}");
    debs
}

fn installed(package: &str) -> bool {
    let out = Command::new("dpkg-query")
        .args(["-W", "-f=${Status}", package])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).contains("install ok installed")
}

/// Restarts the shared cluster: with `plugin` set, from the installed plugin and helper.
fn restart_cluster(plugin: Option<(&str, &str)>) {
    run(&mut Command::new(repo_root().join("ci/slurm-down")));
    let mut up = Command::new(repo_root().join("ci/slurm-up"));
    if let Some((so, helper)) = plugin {
        up.env("GHA_PLUGIN_SO", so).env("GHA_REDEEM_HELPER", helper);
    }
    run(&mut up);
}

/// Puts the machine back as the other tests expect it, however this test ends.
struct Restore {
    daemon: Option<Child>,
}

impl Drop for Restore {
    fn drop(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
        let installed: Vec<&str> = PACKAGES.into_iter().filter(|p| installed(p)).collect();
        if !installed.is_empty() {
            let _ = Command::new("dpkg").arg("--purge").args(installed).status();
        }
        let _ = Command::new(repo_root().join("ci/slurm-down")).status();
        let _ = Command::new(repo_root().join("ci/slurm-up")).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installed_packages_run_a_github_job_and_purge_leaves_nothing() {
    let packages = package_dir();
    let cluster = Cluster::shared();
    let slot = DispatcherSlot::acquire(cluster).unwrap();
    let mut restore = Restore { daemon: None };
    for package in PACKAGES.into_iter().filter(|p| installed(p)) {
        run(Command::new("dpkg").args(["--purge", package]));
    }
    let installing = std::time::Instant::now();
    run(Command::new("dpkg").arg("-i").args(debs(&packages)));
    assert_slurm_dependency();
    let files = package_files();
    restart_cluster(Some(("spank_gha.so", REDEEM)));

    let world = SimWorld::start(&["widgets"]).await.unwrap();
    let ca_dir = tempfile::tempdir().unwrap();
    let ca = write_test_ca(ca_dir.path()).unwrap();
    let app_id = init_app(&world, &ca, &slot);
    world
        .sim
        .add_installation(InstallationSpec {
            app_id,
            account: ORG.into(),
            permissions: None,
        })
        .unwrap();
    adapt_config_to_the_test_cluster(cluster);

    let unit = ServiceUnit::read(&unit_path(&files)).unwrap();
    assert_eq!(unit.user, None, "the unit runs the daemon as root");
    let slurm_conf = cluster.conf().display().to_string();
    let overrides = [("SLURM_CONF", slurm_conf.as_str())];
    for pre in &unit.exec_start_pre {
        run(&mut unit.command(pre, &overrides));
    }
    let log = ca_dir.path().join("dispatcher.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let daemon = unit
        .command(&unit.exec_start, &overrides)
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    restore.daemon = Some(daemon);
    wait_until("the installed daemon to listen", WAIT, || {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        text.contains("gha-dispatcher listening").then_some(())
    })
    .unwrap();

    if let Err(why) = run_a_job_to_success(&world).await {
        let log = std::fs::read_to_string(&log).unwrap_or_default();
        panic!(
            "{why}\nthe dispatcher's log:\n{log}\n{}",
            job_outputs(cluster)
        );
    }
    eprintln!(
        "dpkg -i to a GitHub job run by the first runner: {:.1} s",
        installing.elapsed().as_secs_f64()
    );
    stop_daemon(&mut restore);
    purge_and_check_leftovers(&files);
    // `restore` now brings back the usual cluster for the tests after this one.
}

/// The node package depends on exactly the Slurm release the plugin was built for.
fn assert_slurm_dependency() {
    let header = std::fs::read_to_string("/usr/include/slurm/slurm_version.h").unwrap();
    let number = header
        .lines()
        .find_map(|l| l.strip_prefix("#define SLURM_VERSION_NUMBER 0x"))
        .and_then(|v| u32::from_str_radix(v.trim(), 16).ok())
        .expect("SLURM_VERSION_NUMBER in slurm_version.h");
    let (major, minor) = ((number >> 16) & 0xff, (number >> 8) & 0xff);
    let depends = run(Command::new("dpkg-query").args(["-W", "-f=${Depends}", "spank-gha"]));
    let expected = format!(
        "slurm-wlm-basic-plugins (>= {major}.{minor:02}), slurm-wlm-basic-plugins (<< {major}.{:02}~)",
        minor + 1
    );
    assert!(depends.contains(&expected), "Depends: {depends}");
}

/// Every path the two packages installed.
fn package_files() -> Vec<PathBuf> {
    let listed = run(Command::new("dpkg").arg("-L").args(PACKAGES));
    let files: Vec<PathBuf> = listed.lines().map(PathBuf::from).collect();
    for expected in [
        PLUGIN,
        REDEEM,
        "/usr/bin/gha-dispatcher",
        "/etc/gha-dispatcher/config.toml",
    ] {
        assert!(
            files.contains(&PathBuf::from(expected)),
            "{expected} not installed"
        );
    }
    files
}

fn unit_path(files: &[PathBuf]) -> PathBuf {
    files
        .iter()
        .find(|p| p.ends_with("gha-dispatcher.service"))
        .expect("the package installs gha-dispatcher.service")
        .clone()
}

/// The admin guide's steps: `init` prints the manifest, the admin creates the App (the
/// simulator's browser step), `init --code` writes the key, webhook secret and config.
fn init_app(world: &SimWorld, ca: &Path, slot: &DispatcherSlot) -> u64 {
    let listen = slot.addr().to_string();
    let webhook = format!("http://{listen}/webhook");
    let flags = |extra: &[&str]| {
        let mut command = Command::new("/usr/bin/gha-dispatcher");
        command
            .args([
                "init",
                "--org",
                ORG,
                "--repository",
                "acme/widgets",
                "--runner-user",
                "gha-ci",
            ])
            .args([
                "--webhook-url",
                &webhook,
                "--listen",
                &listen,
                "--api-url",
                &world.sim.url(),
            ])
            .arg("--ca-file")
            .arg(ca)
            .args(extra)
            .stdin(std::process::Stdio::null());
        command
    };
    run(&mut flags(&[]));
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{ETC}/app-manifest.json")).unwrap())
            .unwrap();
    let code = world.sim.submit_app_manifest(ORG, manifest).unwrap();
    let said = run(&mut flags(&["--code", &code, "--force"]));
    let config: toml::Table = std::fs::read_to_string(format!("{ETC}/config.toml"))
        .unwrap()
        .parse()
        .unwrap();
    let app_id = config["github"]["app_id"].as_integer().unwrap() as u64;
    assert!(said.contains(&format!("(id {app_id})")), "{said}");
    app_id
}

/// What differs between a site and the test cluster: munged's socket, where job output goes,
/// short timers.
fn adapt_config_to_the_test_cluster(cluster: &Cluster) {
    let path = format!("{ETC}/config.toml");
    let mut config: toml::Table = std::fs::read_to_string(&path).unwrap().parse().unwrap();
    let table = |config: &mut toml::Table, name: &str| -> toml::Table {
        config
            .get(name)
            .and_then(|v| v.as_table())
            .cloned()
            .unwrap_or_default()
    };
    let mut server = table(&mut config, "server");
    server.insert(
        "munge_socket".into(),
        cluster.munge_socket().display().to_string().into(),
    );
    let mut slurm = table(&mut config, "slurm");
    let jobs = cluster.jobs_dir().display().to_string();
    slurm.insert("output".into(), format!("{jobs}/%x-%j.out").into());
    slurm.insert("chdir".into(), jobs.into());
    let mut scaling = toml::Table::new();
    scaling.insert("reconcile_interval_secs".into(), 2.into());
    config.insert("server".into(), server.into());
    config.insert("slurm".into(), slurm.into());
    config.insert("scaling".into(), scaling.into());
    std::fs::write(&path, toml::to_string(&config).unwrap()).unwrap();
}

/// The runner jobs' output files, for a failure message.
fn job_outputs(cluster: &Cluster) -> String {
    let mut text = String::new();
    for entry in std::fs::read_dir(cluster.jobs_dir())
        .into_iter()
        .flatten()
        .flatten()
    {
        let body = std::fs::read_to_string(entry.path()).unwrap_or_default();
        text.push_str(&format!("== {}\n{body}\n", entry.path().display()));
    }
    text
}

async fn run_a_job_to_success(world: &SimWorld) -> Result<(), String> {
    let run = world
        .sim
        .enqueue_workflow(WorkflowSpec {
            repo: "acme/widgets".into(),
            name: "installed".into(),
            jobs: vec![JobSpec::new("build", &["self-hosted", "linux", "x64"])],
            delay_ms: 0,
        })
        .unwrap();
    let job_id = run.job_ids[0];
    let ended = wait_until_async("the GitHub job to end", WAIT, || async {
        let job = world
            .sim
            .job(job_id)
            .ok_or_else(|| "no such job".to_string())?;
        match job.status.as_str() {
            "completed" => Ok(Some(job.conclusion)),
            status => Err(format!("job {job_id} is {status}")),
        }
    })
    .await
    .map_err(|e| e.to_string())?;
    match ended.as_deref() {
        Some("success") => Ok(()),
        other => Err(format!("GitHub job {job_id} ended {other:?}")),
    }
}

fn stop_daemon(restore: &mut Restore) {
    let mut daemon = restore.daemon.take().expect("the daemon runs");
    let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = daemon.wait().unwrap();
    assert!(status.success(), "the daemon stopped with {status}");
}

/// Purge; then no installed file, no config or state directory is left. Directories other
/// packages own stay (they are Slurm's, Debian's), and so does the system user.
fn purge_and_check_leftovers(files: &[PathBuf]) {
    run(Command::new("dpkg").arg("--purge").args(PACKAGES));
    for package in PACKAGES {
        assert!(!installed(package), "{package} still installed");
    }
    let shared_dir = |p: &Path| {
        p == Path::new("/.")
            || p.is_dir()
                && Command::new("dpkg")
                    .arg("-S")
                    .arg(p)
                    .output()
                    .is_ok_and(|o| o.status.success())
    };
    let left: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.exists() && !shared_dir(p))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    for dir in [
        ETC,
        "/var/lib/gha-dispatcher",
        "/usr/libexec/spank-gha",
        "/usr/share/gha-dispatcher",
        "/usr/share/doc/gha-dispatcher",
        "/usr/share/doc/spank-gha",
    ] {
        assert!(!Path::new(dir).exists(), "{dir} left behind");
    }
}
