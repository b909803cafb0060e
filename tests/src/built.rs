//! The workspace's binaries, built in the calling test's profile: tests that run the
//! dispatcher as a separate process (as an admin would) run the code under test, not a stale
//! binary.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{ensure, Context, Result};

/// `gha-dispatcher`, built (if needed) into the profile directory of the running test binary.
pub fn dispatcher() -> Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("the workspace root")?;
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--quiet",
            "-p",
            "gha-dispatcher",
            "--bin",
            "gha-dispatcher",
        ])
        .current_dir(root)
        .status()
        .context("running cargo build")?;
    ensure!(status.success(), "building gha-dispatcher failed");
    // Test binaries live in <profile>/deps/.
    let exe = std::env::current_exe().context("the test binary")?;
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .context("the profile directory")?
        .join("gha-dispatcher");
    ensure!(bin.is_file(), "{} missing after the build", bin.display());
    Ok(bin)
}
