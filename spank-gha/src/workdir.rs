//! The per-job work dir `<workdir_base>/gha-<jobid>`: created by root, mode 0700, owned by the
//! job's user, refusing (never following) anything already at that path. Everything inside it
//! (`tmp/`, `run/`, the 0600 `jitconfig` file) is made while the dir still belongs to root, so
//! the user cannot race the setup; the dir is handed over last. Removal does not follow links.

use std::ffi::CString;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

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

fn cstr(name: &str) -> CString {
    // Names here are fixed ASCII or digits: never contain NUL.
    CString::new(name).unwrap_or_default()
}

fn last_error(what: &'static str, path: &Path) -> WorkdirError {
    WorkdirError::Io {
        what,
        path: path.to_path_buf(),
        source: std::io::Error::last_os_error(),
    }
}

fn open_dir_nofollow(
    dir: Option<&OwnedFd>,
    path: &CString,
    shown: &Path,
) -> Result<OwnedFd, WorkdirError> {
    let at = dir.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd());
    // SAFETY: valid dirfd (or AT_FDCWD) and NUL-terminated path.
    let fd = unsafe {
        libc::openat(
            at,
            path.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(last_error("open", shown));
    }
    // SAFETY: fresh fd owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
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
    let base_c = CString::new(base.as_os_str().as_bytes()).map_err(|_| WorkdirError::Io {
        what: "use",
        path: base.into(),
        source: std::io::ErrorKind::InvalidInput.into(),
    })?;
    // The base is the admin's (/tmp by default): it may be a symlink the admin made, so it is
    // opened normally; only the per-job entry is guarded.
    // SAFETY: NUL-terminated path.
    let base_fd = unsafe {
        libc::open(
            base_c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if base_fd < 0 {
        return Err(last_error("open the work dir base", base));
    }
    // SAFETY: fresh fd owned by us.
    let base_fd = unsafe { OwnedFd::from_raw_fd(base_fd) };
    let name = cstr(&format!("gha-{job_id}"));
    // mkdir never follows a final symlink: anything already there gives EEXIST.
    // SAFETY: valid dirfd and NUL-terminated name.
    if unsafe { libc::mkdirat(base_fd.as_raw_fd(), name.as_ptr(), 0o700) } != 0 {
        let err = std::io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EEXIST) {
            return Err(WorkdirError::AlreadyExists { path: dir.root });
        }
        return Err(WorkdirError::Io {
            what: "create",
            path: dir.root,
            source: err,
        });
    }
    let root_fd = open_dir_nofollow(Some(&base_fd), &name, &dir.root)?;
    // Only root can have replaced it in a sticky base, but check it is the dir we just made.
    // SAFETY: zeroed stat is a valid out-parameter.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: valid fd and out-parameter.
    if unsafe { libc::fstat(root_fd.as_raw_fd(), &mut st) } != 0 {
        return Err(last_error("inspect", &dir.root));
    }
    // SAFETY: geteuid has no failure mode.
    if st.st_uid != unsafe { libc::geteuid() } || st.st_mode & 0o077 != 0 {
        return Err(WorkdirError::AlreadyExists { path: dir.root });
    }
    let mut handed_over = Vec::new();
    for (sub, path) in [("tmp", &dir.tmp), ("run", &dir.run)] {
        let sub_c = cstr(sub);
        // SAFETY: valid dirfd and NUL-terminated name.
        if unsafe { libc::mkdirat(root_fd.as_raw_fd(), sub_c.as_ptr(), 0o700) } != 0 {
            return Err(last_error("create", path));
        }
        handed_over.push((
            open_dir_nofollow(Some(&root_fd), &sub_c, path)?,
            path.clone(),
        ));
    }
    let file_c = cstr("jitconfig");
    // SAFETY: valid dirfd, NUL-terminated name; O_EXCL|O_NOFOLLOW make a new regular file.
    let file_fd = unsafe {
        libc::openat(
            root_fd.as_raw_fd(),
            file_c.as_ptr(),
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
            0o600 as libc::c_uint,
        )
    };
    if file_fd < 0 {
        return Err(last_error("create", &dir.jitconfig));
    }
    // SAFETY: fresh fd owned by us.
    let file_fd = unsafe { OwnedFd::from_raw_fd(file_fd) };
    let mut file = std::fs::File::from(file_fd);
    file.write_all(jitconfig)
        .map_err(|source| WorkdirError::Io {
            what: "write",
            path: dir.jitconfig.clone(),
            source,
        })?;
    handed_over.push((OwnedFd::from(file), dir.jitconfig.clone()));
    for (fd, path) in &handed_over {
        // SAFETY: valid fds.
        if unsafe { libc::fchown(fd.as_raw_fd(), uid, gid) } != 0 {
            return Err(last_error("hand over", path));
        }
    }
    // The umask may have removed bits but never adds any; set the mode exactly, then hand over.
    // SAFETY: valid fd.
    if unsafe { libc::fchmod(root_fd.as_raw_fd(), 0o700) } != 0
        || unsafe { libc::fchown(root_fd.as_raw_fd(), uid, gid) } != 0
    {
        return Err(last_error("hand over", &dir.root));
    }
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
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
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
        let (uid, gid) = unsafe { (libc::geteuid(), libc::getegid()) };
        let err = create(&base, 7, uid, gid, b"x").unwrap_err();
        assert!(matches!(err, WorkdirError::AlreadyExists { .. }), "{err}");
        assert!(!target.join("jitconfig").exists());
        assert!(remove(&base, 7).unwrap());
        assert!(target.join("keep").exists());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
