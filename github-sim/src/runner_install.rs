//! Installs the fake runner with the real runner's layout: `<dir>/run.sh` and
//! `<dir>/bin/Runner.Listener`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// The shipped `run.sh` wrapper.
pub const RUN_SH: &str = include_str!("../runner/run.sh");

/// The `fake-runner` binary next to the running executable (cargo puts both in one directory;
/// test executables live one level down in `deps/`).
pub fn default_listener() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    [dir.join("fake-runner"), dir.join("../fake-runner")]
        .into_iter()
        .find(|p| p.is_file())
}

pub fn install(dir: &Path, listener: &Path) -> Result<()> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).with_context(|| format!("creating {}", bin.display()))?;
    let run_sh = dir.join("run.sh");
    std::fs::write(&run_sh, RUN_SH).with_context(|| format!("writing {}", run_sh.display()))?;
    std::fs::set_permissions(&run_sh, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", run_sh.display()))?;
    let target = bin.join("Runner.Listener");
    // Copy to a temporary name and rename, so a running listener is never overwritten in place.
    let tmp = bin.join(".Runner.Listener.tmp");
    std::fs::copy(listener, &tmp)
        .with_context(|| format!("copying {} to {}", listener.display(), tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod {}", tmp.display()))?;
    std::fs::rename(&tmp, &target).with_context(|| format!("installing {}", target.display()))?;
    Ok(())
}
