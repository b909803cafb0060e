//! The shipped systemd unit (`systemd/gha-dispatcher.service`) as systemd itself reads it:
//! `systemd-analyze verify` finds no error or warning, and `systemd-analyze security` rates its
//! exposure at most [`MAX_EXPOSURE`] (it was 8.0 "EXPOSED" before the hardening). PID 1 here is
//! not systemd, so both run offline on a copy whose ExecStart names the binary just built.
//! `systemd-analyze` missing is a failure, not a skip (ci/test installs the `systemd` package).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The exposure level the unit must not exceed (0 = locked down, 10 = fully exposed).
const MAX_EXPOSURE: f64 = 2.0;

fn unit_text() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/gha-dispatcher.service");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes `text` as `gha-dispatcher.service` with ExecStart pointing at the built binary.
fn installed_copy(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("gha-dispatcher.service");
    let text = text.replace(
        "/usr/bin/gha-dispatcher",
        env!("CARGO_BIN_EXE_gha-dispatcher"),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn analyze(args: &[&str], unit: &Path) -> Output {
    Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze must be installed (Debian package systemd; ci/test installs it)")
}

fn verify(text: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    let out = analyze(&["verify"], &installed_copy(dir.path(), text));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

fn exposure(text: &str) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let out = analyze(
        &["security", "--offline=true"],
        &installed_copy(dir.path(), text),
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| panic!("no exposure level in:\n{stdout}"));
    let number = line
        .split(':')
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("cannot read the level from {line:?}"));
    number.parse().unwrap()
}

#[test]
fn the_unit_verifies_cleanly() {
    let (ok, said) = verify(&unit_text());
    assert!(ok, "systemd-analyze verify complained:\n{said}");
}

#[test]
fn verify_catches_a_misspelt_directive() {
    // The check above can fail: a typo in a hardening directive is reported.
    let broken = unit_text().replace("ProtectSystem=strict", "ProtectSystm=strict");
    let (ok, said) = verify(&broken);
    assert!(!ok, "a misspelt directive went unnoticed");
    assert!(said.contains("ProtectSystm"), "{said}");
}

#[test]
fn the_unit_is_hardened() {
    let text = unit_text();
    let level = exposure(&text);
    assert!(
        level <= MAX_EXPOSURE,
        "exposure {level} is over {MAX_EXPOSURE}"
    );
    // Without its hardening block the same unit rates far worse: the measure discriminates.
    let start = text.find("CapabilityBoundingSet=").unwrap();
    let end = text.find("[Install]").unwrap();
    let bare = format!("{}{}", &text[..start], &text[end..]);
    assert!(
        exposure(&bare) > 5.0,
        "the unhardened unit rated {}",
        exposure(&bare)
    );
}

#[test]
fn the_unit_keeps_no_capability() {
    let text = unit_text();
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&"CapabilityBoundingSet="), "{text}");
    assert!(lines.contains(&"AmbientCapabilities="), "{text}");
    assert!(lines.contains(&"NoNewPrivileges=yes"), "{text}");
}
