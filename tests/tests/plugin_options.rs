//! spank-gha plugin, end to end through sbatch as the test user: the options (issue point 1),
//! the strict configuration (2), secret hygiene (4) and the build for the running Slurm (11).

mod plugin_support;

use std::process::Command;

use e2e::Cluster;
use plugin_support::*;

#[test]
fn options_are_listed_in_sbatch_help() {
    let cluster = Cluster::shared();
    let output = cluster
        .command_as(cluster.test_user(), "sbatch")
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{help}");
    assert!(help.contains("--gha-runner=jitconfig"), "{help}");
    assert!(help.contains("--gha-image=image"), "{help}");
    assert!(help.contains("--gha-docker"), "{help}");
}

#[test]
fn malformed_runner_values_are_refused_by_sbatch_without_echoing_them() {
    let cluster = Cluster::shared();
    let oversized = "QUFB".repeat(16 * 1024 + 1); // valid base64, 64 KiB + 4 bytes
    let cases: Vec<(String, &str)> = vec![
        (String::new(), "empty"),
        ("not*base64!SECRETVALUE".into(), "neither a base64"),
        (oversized.clone(), "more than the 65536 allowed"),
        ("c2VjcmV0\u{1}SECRETVALUE".into(), "control characters"),
        ("ticket:bad;SECRETVALUE".into(), "ticket reference"),
    ];
    for (value, reason) in cases {
        let option = format!("--gha-runner={value}");
        let output = cluster
            .try_sbatch_as(cluster.test_user(), &[&option, "--wrap", "true"])
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "accepted ({reason}): {stderr}");
        assert!(
            output.stdout.is_empty(),
            "a job was submitted: {:?}",
            output.stdout
        );
        assert!(stderr.contains("spank-gha: --gha-runner"), "{stderr}");
        assert!(stderr.contains(reason), "{reason}: {stderr}");
        assert!(!stderr.contains("SECRETVALUE"), "value echoed: {stderr}");
        assert!(!stderr.contains("QUFBQUFB"), "value echoed: {stderr}");
    }
    cluster.assert_node_healthy().unwrap();
}

#[test]
fn malformed_image_names_are_refused_by_sbatch() {
    let cluster = Cluster::shared();
    let jit = jit_config("image-name");
    for image in ["../../etc", "/etc", "a//b"] {
        let output = cluster
            .try_sbatch_as(
                cluster.test_user(),
                &[
                    &format!("--gha-runner={jit}"),
                    &format!("--gha-image={image}"),
                    "--wrap",
                    "true",
                ],
            )
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{image}: {stderr}");
        assert!(stderr.contains("--gha-image"), "{stderr}");
        assert!(!stderr.contains(&jit), "{stderr}");
    }
}

#[test]
fn a_ticket_job_with_no_dispatcher_answering_fails_at_once_and_leaves_nothing() {
    let cluster = Cluster::shared();
    // Holding the dispatcher slot without listening on it: no dispatcher answers.
    let _slot = e2e::DispatcherSlot::acquire(cluster).unwrap();
    let ticket = format!("ticket:t-{}.abc", std::process::id());
    let (job, info, output) = run_job(
        cluster,
        &[
            &format!("--gha-runner={ticket}"),
            "--wrap",
            "echo the-job-script-ran",
        ],
    );
    assert_eq!(info.state(), "FAILED", "{output}");
    assert!(
        output.contains("spank-gha: error: cannot reach the dispatcher at http://127.0.0.1:"),
        "{output}"
    );
    assert!(!output.contains("the-job-script-ran"), "{output}");
    assert!(!output.contains(&ticket[7..]), "{output}");
    assert_nothing_left(cluster, job.id);
}

#[test]
fn jit_config_never_reaches_the_jobs_environment_or_the_logs() {
    let cluster = Cluster::shared();
    let jit = jit_config("hygiene");
    let script = format!(
        "env > $TMPDIR/batch-env; srun env > $TMPDIR/step-env; \
         if grep -qF '{jit}' $TMPDIR/batch-env $TMPDIR/step-env; then echo LEAK-VALUE; fi; \
         if grep -q SPANK_OPTION $TMPDIR/batch-env $TMPDIR/step-env; then echo LEAK-VARIABLE; fi; \
         echo file-matches=$(test \"$(cat $GHA_JITCONFIG_FILE)\" = '{jit}' && echo yes); echo done"
    );
    for export in ["--export=ALL", "--export=NONE"] {
        let (job, info, output) = run_job(
            cluster,
            &[export, &format!("--gha-runner={jit}"), "--wrap", &script],
        );
        assert_eq!(info.state(), "COMPLETED", "{export}: {output}");
        assert!(output.contains("done\n"), "{export}: {output}");
        assert!(output.contains("file-matches=yes"), "{export}: {output}");
        assert!(!output.contains("LEAK"), "{export}: {output}");
        let record = cluster.job_record(job.id).unwrap();
        assert!(!record.contains(&jit), "JIT config in scontrol show job");
        assert_nothing_left(cluster, job.id);
    }
    // The value must not appear in the script's own text either, so look for its payload only
    // in the daemons' logs.
    let logs = read_logs(cluster);
    assert!(!logs.contains(&jit), "JIT config in the Slurm logs");
}

/// A value the plugin must refuse for `key`. A key added to the plugin without a case here
/// fails the test (its refusal of the fallback is asserted like the others').
fn bad_value(key: &str) -> &'static str {
    match key {
        "docker" => "sometimes",
        "container_runtime" => "singularity",
        "dispatcher_url" => "ftp://user:hunter2@host",
        "default_image" => "../etc",
        "stop_grace" => "soon",
        timeout if timeout.ends_with("_timeout") => "soon",
        // The paths (workdir_base, runner_root, image_root, redeem_helper, munge_socket).
        _ => "relative/hunter2",
    }
}

#[test]
fn an_unknown_or_bad_plugstack_key_stops_the_plugin_naming_the_key() {
    let cluster = Cluster::shared();
    let so = plugin_so(cluster);
    let cases = std::iter::once(("workdir_bsae=/tmp".to_owned(), "workdir_bsae")).chain(
        spank_gha::config::KEYS
            .iter()
            .map(|key| (format!("{key}={}", bad_value(key)), *key)),
    );
    for (args, key) in cases {
        let conf = client_conf_with_plugstack(
            cluster,
            key,
            &format!("required {} {args}\n", so.display()),
        )
        .unwrap();
        let output = Command::new("runuser")
            .args(["-u", cluster.test_user(), "--", "sbatch", "--wrap", "true"])
            .env("SLURM_CONF", &conf)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{args}: {stderr}");
        assert!(stderr.contains(&format!("'{key}'")), "{args}: {stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
    }
}

#[test]
fn the_example_configuration_documents_and_sets_every_key() {
    let cluster = Cluster::shared();
    let example =
        std::fs::read_to_string(cluster.repo_root().join("plugstack.conf.example")).unwrap();
    for key in spank_gha::config::KEYS {
        assert!(
            example.contains(&format!("# {key}=")),
            "{key} is not documented in plugstack.conf.example"
        );
    }
    // Its plugin line, pointed at the built plugin, loads in sbatch.
    let line = example
        .lines()
        .find(|l| l.starts_with("required "))
        .expect("an active plugin line");
    let args: Vec<&str> = line.split_whitespace().skip(2).collect();
    let conf = client_conf_with_plugstack(
        cluster,
        "example",
        &format!(
            "required {} {}\n",
            plugin_so(cluster).display(),
            args.join(" ")
        ),
    )
    .unwrap();
    let output = Command::new("runuser")
        .args(["-u", cluster.test_user(), "--", "sbatch", "--help"])
        .env("SLURM_CONF", &conf)
        .output()
        .unwrap();
    assert!(
        output.status.success() && String::from_utf8_lossy(&output.stdout).contains("--gha-runner"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn plugin_is_built_for_the_running_slurm_and_exports_only_plugin_symbols() {
    let cluster = Cluster::shared();
    let nm = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(plugin_so(cluster))
        .output()
        .unwrap();
    let symbols: Vec<String> = String::from_utf8_lossy(&nm.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_owned))
        .collect();
    for needed in [
        "plugin_name",
        "plugin_type",
        "plugin_version",
        "slurm_spank_init",
    ] {
        assert!(
            symbols.iter().any(|s| s == needed),
            "{needed} missing: {symbols:?}"
        );
    }
    for symbol in &symbols {
        assert!(
            symbol.starts_with("plugin_") || symbol.starts_with("slurm_spank_"),
            "unexpected export {symbol}"
        );
    }
    // slurmd loaded it (a version mismatch is refused) and it reports the headers' version,
    // which is the version of the Slurm running here.
    let version = Command::new("slurmd").arg("-V").output().unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    let mut parts = version
        .split_whitespace()
        .nth(1)
        .unwrap_or_default()
        .split('.');
    let (major, minor) = (parts.next().unwrap(), parts.next().unwrap());
    let logs = read_logs(cluster);
    assert!(
        logs.contains(&format!("spank-gha: loaded for Slurm {major}.{minor}:")),
        "no load line for Slurm {major}.{minor} in slurmd.log"
    );
}

#[test]
fn srun_refuses_malformed_runner_values_too() {
    let cluster = Cluster::shared();
    let output = cluster
        .command_as(cluster.test_user(), "srun")
        .args(["--gha-runner=not*base64!SECRETVALUE", "true"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("spank-gha: --gha-runner"), "{stderr}");
    assert!(!stderr.contains("SECRETVALUE"), "{stderr}");
    cluster.assert_node_healthy().unwrap();
}
