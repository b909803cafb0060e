//! MUNGE for the tests: credentials made with the cluster's munged (as root or as a user), and
//! a second munged in the same MUNGE domain whose credentials come "from another host".

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};
use test_support::wait_until;

use crate::Cluster;

/// A MUNGE credential carrying `payload`, made by `user` (root when `None`) through `socket`.
pub fn munge_credential(user: Option<&str>, socket: &Path, payload: &str) -> Result<String> {
    let credential = test_support::munge::run("munge", user, socket, &[], payload.as_bytes())?;
    Ok(credential.trim().to_owned())
}

/// A second munged in the cluster's MUNGE domain (same key) that stamps its credentials with
/// another origin address: credentials "from another host". Stopped when dropped.
pub struct OtherHostMunged {
    child: Child,
    dir: tempfile::TempDir,
}

impl OtherHostMunged {
    pub const ORIGIN: &'static str = "127.0.0.2";

    pub fn start(cluster: &Cluster) -> Result<OtherHostMunged> {
        let dir = tempfile::Builder::new()
            .prefix("munge-other-host")
            .tempdir_in("/tmp")
            .context("creating the second munged's directory")?;
        prepare_dir(cluster, dir.path())?;
        let d = dir.path().display();
        let munge = munge_user()?;
        let child = Command::new("munged")
            .args([
                "--foreground".to_string(),
                format!("--socket={d}/run/socket"),
                format!("--key-file={d}/munge.key"),
                format!("--pid-file={d}/run/munged.pid"),
                format!("--log-file={d}/log/munged.log"),
                format!("--seed-file={d}/lib/munged.seed"),
                format!("--origin={}", Self::ORIGIN),
            ])
            .uid(munge.uid.as_raw())
            .gid(munge.gid.as_raw())
            .stdin(Stdio::null())
            // It logs to its --log-file as well; keep the test output readable.
            .stderr(Stdio::null())
            .spawn()
            .context("starting the second munged")?;
        let munged = OtherHostMunged { child, dir };
        let socket = munged.socket();
        wait_until(
            "the second munged's socket",
            Duration::from_secs(10),
            || socket.exists(),
        )?;
        Ok(munged)
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("run/socket")
    }
}

fn munge_user() -> Result<nix::unistd::User> {
    nix::unistd::User::from_name("munge")
        .context("looking up user munge")?
        .context("no user munge (Debian's munge package creates it)")
}

/// The cluster's key and the directories munged insists on: everything its own, nothing
/// writable by others, key 0600.
fn prepare_dir(cluster: &Cluster, dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let munge = munge_user()?;
    let key = dir.join("munge.key");
    std::fs::copy(cluster.dir().join("munge/munge.key"), &key).context("copying munge.key")?;
    for sub in ["run", "log", "lib"] {
        std::fs::create_dir(dir.join(sub)).with_context(|| format!("creating {sub}/"))?;
    }
    for (path, mode) in [
        (dir.to_path_buf(), 0o755),
        (dir.join("run"), 0o755),
        (dir.join("log"), 0o700),
        (dir.join("lib"), 0o700),
        (key, 0o600),
    ] {
        nix::unistd::chown(&path, Some(munge.uid), Some(munge.gid))
            .with_context(|| format!("chown {}", path.display()))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("chmod {}", path.display()))?;
    }
    Ok(())
}

impl Drop for OtherHostMunged {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
