//! The per-job work dir `<workdir_base>/gha-<jobid>`: created by root, mode 0700, owned by the
//! job's user, refusing (never following) anything already at that path. Everything inside it
//! (`tmp/`, `run/`, the 0600 `jitconfig` file) is made while the dir still belongs to root, so
//! the user cannot race the setup; the dir is handed over last. Removal does not follow links.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::{fchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::sys;

/// The paths of one job's work dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobDir {
    pub root: PathBuf,
    /// `TMPDIR`
    pub tmp: PathBuf,
    /// `XDG_RUNTIME_DIR` (rootless dockerd puts its socket here)
    pub run: PathBuf,
    /// `GHA_JITCONFIG_FILE`
    pub jitconfig: PathBuf,
}

impl JobDir {
    pub fn path_for(base: &Path, job_id: u32) -> PathBuf {
        base.join(format!("gha-{job_id}"))
    }

    fn new(root: PathBuf) -> JobDir {
        JobDir {
            tmp: root.join("tmp"),
            run: root.join("run"),
            jitconfig: root.join("jitconfig"),
            root,
        }
    }
}

/// Why the work dir could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WorkdirError {
    #[error("{} already exists (a file, link or directory left there); refusing to use it", path.display())]
    AlreadyExists { path: PathBuf },
    #[error("cannot {what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Maps an I/O error on `path` to a [`WorkdirError`] saying what failed.
fn failed(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> WorkdirError {
    let path = path.to_path_buf();
    move |source| WorkdirError::Io { what, path, source }
}

/// Creates the work dir for `job_id` under `base`, owned by `uid:gid`, with `jitconfig` written
/// to a 0600 file inside it. Must run as root.
pub fn create(
    base: &Path,
    job_id: u32,
    uid: u32,
    gid: u32,
    jitconfig: &[u8],
) -> Result<JobDir, WorkdirError> {
    let dir = JobDir::new(JobDir::path_for(base, job_id));
    // The base is the admin's (/tmp by default): it may be a symlink the admin made, so it is
    // opened normally; only the per-job entry is guarded.
    let base_dir =
        sys::open_dir(None, base, true).map_err(failed("open the work dir base", base))?;
    let name = Path::new(dir.root.file_name().unwrap_or_default());
    // mkdir never follows a final symlink: anything already there gives EEXIST.
    match sys::mkdir_at(&base_dir, name, 0o700) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(WorkdirError::AlreadyExists { path: dir.root })
        }
        Err(e) => return Err(failed("create", &dir.root)(e)),
    }
    let root = sys::open_dir(Some(&base_dir), name, false).map_err(failed("open", &dir.root))?;
    // Only root can have replaced it in a sticky base, but check it is the dir we just made.
    let meta = root.metadata().map_err(failed("inspect", &dir.root))?;
    if meta.uid() != sys::geteuid() || meta.mode() & 0o077 != 0 {
        return Err(WorkdirError::AlreadyExists { path: dir.root });
    }
    let mut handed_over: Vec<(File, &Path)> = Vec::new();
    for (sub, path) in [("tmp", &dir.tmp), ("run", &dir.run)] {
        sys::mkdir_at(&root, Path::new(sub), 0o700).map_err(failed("create", path))?;
        let sub =
            sys::open_dir(Some(&root), Path::new(sub), false).map_err(failed("open", path))?;
        handed_over.push((sub, path.as_path()));
    }
    let mut file = sys::create_new_file_at(&root, Path::new("jitconfig"), 0o600)
        .map_err(failed("create", &dir.jitconfig))?;
    file.write_all(jitconfig)
        .map_err(failed("write", &dir.jitconfig))?;
    handed_over.push((file, dir.jitconfig.as_path()));
    for (file, path) in &handed_over {
        fchown(file, Some(uid), Some(gid)).map_err(failed("hand over", path))?;
    }
    // The umask may have removed bits but never adds any; set the mode exactly, then hand over.
    root.set_permissions(Permissions::from_mode(0o700))
        .and_then(|()| fchown(&root, Some(uid), Some(gid)))
        .map_err(failed("hand over", &dir.root))?;
    Ok(dir)
}

/// Removes the work dir of `job_id` and everything in it, never following symlinks (the
/// standard library's removal works relative to directory fds with `O_NOFOLLOW`). Returns
/// whether anything was there.
pub fn remove(base: &Path, job_id: u32) -> std::io::Result<bool> {
    let path = JobDir::path_for(base, job_id);
    match std::fs::symlink_metadata(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
        Ok(meta) if meta.is_dir() => std::fs::remove_dir_all(&path).map(|()| true),
        // A file or symlink planted at our path: remove the entry itself, not its target.
        Ok(_) => std::fs::remove_file(&path).map(|()| true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn base(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spank-gha-wd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn creates_owned_private_dirs_and_removes_them() {
        let base = base("create");
        let (uid, gid) = (sys::geteuid(), sys::getegid());
        let dir = create(&base, 42, uid, gid, b"c2VjcmV0").unwrap();
        let meta = std::fs::metadata(&dir.root).unwrap();
        assert_eq!(meta.permissions().mode() & 0o7777, 0o700);
        assert_eq!(meta.uid(), uid);
        let file = std::fs::metadata(&dir.jitconfig).unwrap();
        assert_eq!(file.permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::read(&dir.jitconfig).unwrap(), b"c2VjcmV0");
        assert!(dir.tmp.is_dir() && dir.run.is_dir());
        assert!(matches!(
            create(&base, 42, uid, gid, b"x"),
            Err(WorkdirError::AlreadyExists { .. })
        ));
        assert!(remove(&base, 42).unwrap());
        assert!(!dir.root.exists());
        assert!(!remove(&base, 42).unwrap());
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn refuses_a_planted_symlink_and_removes_only_the_link() {
        let base = base("symlink");
        let target = base.join("target");
        std::fs::create_dir(&target).unwrap();
        std::fs::write(target.join("keep"), b"keep").unwrap();
        symlink(&target, base.join("gha-7")).unwrap();
        let (uid, gid) = (sys::geteuid(), sys::getegid());
        let err = create(&base, 7, uid, gid, b"x").unwrap_err();
        assert!(matches!(err, WorkdirError::AlreadyExists { .. }), "{err}");
        assert!(!target.join("jitconfig").exists());
        assert!(remove(&base, 7).unwrap());
        assert!(target.join("keep").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
