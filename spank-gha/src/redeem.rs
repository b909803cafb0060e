//! Late binding: trading a `--gha-runner=ticket:<opaque>` for the runner's JIT config when the
//! job starts. Runs the `gha-redeem` helper (as root, bounded by `redeem_timeout`, the ticket in
//! its environment only) and judges its answer: the config it prints, or the one line on its
//! stderr that tells the job's user why there is none. The network and MUNGE work live in the
//! helper, so the plugin never blocks on them without a bound.

use std::process::Command;
use std::time::Duration;

use redeem_contract::{helper_flag, HelperExit, TICKET_ENV};

use crate::args::{self, RunnerValueKind};
use crate::config::Config;
use crate::helper::{run_bounded, HelperOutput};

/// Longest helper message shown to the user.
pub const MAX_MESSAGE: usize = 300;

/// The helper's own time limit: a little under the plugin's, so that it can still say what
/// timed out before the plugin kills it.
pub fn helper_timeout(limit: Duration) -> u64 {
    let secs = limit.as_secs();
    secs.saturating_sub((secs / 4).min(5)).max(1)
}

/// The flags both of the helper's modes take (redemption, end notice): the dispatcher, the
/// job, MUNGE, the helper's own bound in seconds.
pub fn common_args(url: &str, job_id: u32, config: &Config, timeout_secs: u64) -> Vec<String> {
    vec![
        helper_flag::URL.into(),
        url.into(),
        helper_flag::JOB_ID.into(),
        job_id.to_string(),
        helper_flag::MUNGE_SOCKET.into(),
        config.munge_socket.to_string_lossy().into_owned(),
        helper_flag::TIMEOUT.into(),
        timeout_secs.to_string(),
    ]
}

/// The helper's argv (after the program). Never holds the ticket: /proc/PID/cmdline is
/// world-readable.
pub fn helper_args(url: &str, job_id: u32, config: &Config) -> Vec<String> {
    let mut args = common_args(url, job_id, config, helper_timeout(config.redeem_timeout));
    args.extend([
        helper_flag::DISPATCHER_UID.into(),
        config.dispatcher_uid.to_string(),
    ]);
    args
}

/// Redeems `ticket` (the part after `ticket:`) for job `job_id`. Returns the JIT config, or
/// the message for the job's user.
pub fn redeem(config: &Config, ticket: &str, job_id: u32) -> Result<String, String> {
    let Some(url) = config.dispatcher_url.as_deref() else {
        return Err(
            "--gha-runner=ticket:...: this cluster has no dispatcher to redeem tickets \
                    at (plugstack.conf sets no dispatcher_url); submit with a JIT config instead"
                .into(),
        );
    };
    let output = run_bounded(
        Command::new(&config.redeem_helper).args(helper_args(url, job_id, config)),
        &[
            (TICKET_ENV, ticket),
            ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        ],
        None,
        config.redeem_timeout,
    )
    .map_err(|e| format!("cannot redeem the runner ticket: {e}"))?;
    judge(&output)
}

/// The config in a helper's answer, or why there is none: anything but
/// [`HelperExit::Redeemed`] (a refusal, a failure, a status outside the contract, a signal) is
/// explained by the first line of its stderr.
pub fn judge(output: &HelperOutput) -> Result<String, String> {
    let exit = output.status.code().and_then(HelperExit::from_code);
    if exit != Some(HelperExit::Redeemed) {
        return Err(first_line(&output.stderr).unwrap_or_else(|| {
            format!(
                "cannot redeem the runner ticket: the redeem helper failed ({}) without saying why",
                output.status
            )
        }));
    }
    let config = std::str::from_utf8(&output.stdout)
        .ok()
        .map(str::trim)
        .filter(|c| args::validate_runner_value(c) == Ok(RunnerValueKind::JitConfig));
    match config {
        Some(config) => Ok(config.to_owned()),
        None => Err(
            "cannot redeem the runner ticket: the redeem helper's answer is not a runner JIT config"
                .into(),
        ),
    }
}

/// The first non-empty line of `stderr`, control characters removed, at most [`MAX_MESSAGE`]
/// characters.
pub fn first_line(stderr: &[u8]) -> Option<String> {
    String::from_utf8_lossy(stderr).lines().find_map(|line| {
        let mut clean: String = line.chars().filter(|c| !c.is_control()).collect();
        if let Some((cut, _)) = clean.char_indices().nth(MAX_MESSAGE) {
            clean.truncate(cut);
        }
        let clean = clean.trim();
        (!clean.is_empty()).then(|| clean.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::process::ExitStatus;

    const JIT: &str = "eyIucnVubmVyIjoiZXlKaFoyVnVkRWxrSWpveE1uMD0ifQ==";

    fn output(code: i32, stdout: &str, stderr: &str) -> HelperOutput {
        HelperOutput {
            status: ExitStatus::from_raw(code << 8),
            stdout: stdout.into(),
            stderr: stderr.into(),
        }
    }

    #[test]
    fn accepts_a_jit_config() {
        assert_eq!(judge(&output(0, &format!("{JIT}\n"), "")), Ok(JIT.into()));
    }

    #[test]
    fn refuses_anything_but_a_jit_config() {
        for stdout in ["", "\n", "ticket:abc", "not base64!", "a b"] {
            let err = judge(&output(0, stdout, "")).unwrap_err();
            assert!(err.contains("not a runner JIT config"), "{stdout:?}: {err}");
        }
    }

    #[test]
    fn failure_shows_the_helpers_first_line() {
        let err = judge(&output(
            2,
            JIT,
            "\n  ticket refused by the dispatcher (HTTP 410 not_needed): gone\nmore\n",
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "ticket refused by the dispatcher (HTTP 410 not_needed): gone"
        );
        let err = judge(&output(3, "", "")).unwrap_err();
        assert!(err.contains("without saying why"), "{err}");
        assert!(err.contains('3'), "{err}");
        // A status outside the contract, or a signal, is a failure too.
        let err = judge(&output(1, JIT, "bad\n")).unwrap_err();
        assert_eq!(err, "bad");
        let killed = HelperOutput {
            status: ExitStatus::from_raw(9),
            stdout: JIT.into(),
            stderr: Vec::new(),
        };
        assert!(judge(&killed).unwrap_err().contains("without saying why"));
    }

    #[test]
    fn sanitises_the_line() {
        assert_eq!(
            first_line(b"\x1b[31mred\x07 alert\r\n").as_deref(),
            Some("[31mred alert")
        );
        let long = "é".repeat(1000);
        let line = first_line(long.as_bytes()).unwrap();
        assert_eq!(line.chars().count(), MAX_MESSAGE);
        assert_eq!(first_line(b"\n \t\n"), None);
        assert_eq!(
            first_line(b"\xff\xfeok").as_deref(),
            Some("\u{fffd}\u{fffd}ok")
        );
    }

    #[test]
    fn helper_argv_never_holds_the_ticket() {
        let config = Config::parse(&[
            "dispatcher_url=http://127.0.0.1:6820",
            "munge_socket=/m/socket",
            "redeem_timeout=20",
        ])
        .unwrap();
        assert_eq!(
            helper_args("http://127.0.0.1:6820", 7, &config),
            [
                "--url",
                "http://127.0.0.1:6820",
                "--job-id",
                "7",
                "--munge-socket",
                "/m/socket",
                "--timeout",
                "15",
                "--dispatcher-uid",
                "0"
            ]
        );
    }

    #[test]
    fn helper_stops_before_the_plugin_does() {
        for (limit, want) in [(1, 1), (2, 2), (4, 3), (20, 15), (30, 25), (300, 295)] {
            assert_eq!(helper_timeout(Duration::from_secs(limit)), want, "{limit}");
        }
    }

    #[test]
    fn tickets_need_a_dispatcher() {
        let err = redeem(&Config::default(), "abc", 1).unwrap_err();
        assert!(err.contains("dispatcher_url"), "{err}");
    }

    #[test]
    fn runs_the_helper_with_the_ticket_in_its_environment_only() {
        let dir = std::env::temp_dir().join(format!("spank-gha-redeem-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let script = dir.join("fake-redeem");
        // Prints a config built from the environment and argv, so both can be checked.
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\ncase \"$*\" in *\"$GHA_TICKET\"*) echo 'ticket on argv' >&2; exit 3;; esac\n\
                 [ \"$PATH\" = /usr/sbin:/usr/bin:/sbin:/bin ] || exit 4\n\
                 [ \"$GHA_TICKET\" = s3cr3t ] || {{ echo 'no ticket' >&2; exit 2; }}\necho {JIT}\n"
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let config = Config::parse(&[
            "dispatcher_url=http://127.0.0.1:1".to_owned(),
            format!("redeem_helper={}", script.display()),
        ])
        .unwrap();
        assert_eq!(redeem(&config, "s3cr3t", 9), Ok(JIT.into()));
        assert_eq!(redeem(&config, "other", 9), Err("no ticket".into()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
