//! The per-job work dir `<workdir_base>/spank-gha/gha-<jobid>`. The parent `spank-gha/` is
//! root's (0711: nobody else can create, rename or list entries in it), so no user can
//! pre-create a job's dir (in a world-writable base, `mkdir /tmp/gha-{N..N+5000}` used to make
//! every later runner job fail) and the epilog never meets a tree it did not make. A parent
//! that is not root's (someone made it first) is renamed aside and replaced. The job's dir is
//! created by root, mode 0700, owned by the job's user; everything inside it (`tmp/`, `run/`,
//! the 0600 `jitconfig` file) is made while it still belongs to root, so the user cannot race
//! the setup; the dir is handed over last. Its owner, device and inode are recorded in a
//! root-only file beside it (`gha-<jobid>.made`), and [`remove`] deletes only that very
//! directory, with `rm` bounded in time (a huge or deep tree cannot hold the epilog).

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::{fchown, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helper::run_bounded;
use crate::sys;

/// The root-owned directory under `workdir_base` that holds the jobs' dirs.
pub const PARENT: &str = "spank-gha";

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
        base.join(PARENT).join(format!("gha-{job_id}"))
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
    let parent = open_parent(base, true)?;
    let name = Path::new(dir.root.file_name().unwrap_or_default());
    // Only root writes in the parent; a dir already there is a leftover of an earlier job with
    // this id (a cluster whose job ids started over): refuse it rather than reuse it.
    match sys::mkdir_at(&parent, name, 0o700) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(WorkdirError::AlreadyExists { path: dir.root })
        }
        Err(e) => return Err(failed("create", &dir.root)(e)),
    }
    let base_dir = parent;
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
    record(&base_dir, job_id, &Made::of(&meta, uid)).map_err(failed("record", &dir.root))?;
    Ok(dir)
}

/// What [`create`] made: the dir's owner, device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    pub uid: u32,
    pub dev: u64,
    pub ino: u64,
}

impl Made {
    fn of(meta: &std::fs::Metadata, uid: u32) -> Made {
        Made {
            uid,
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    fn parse(text: &str) -> Option<Made> {
        let mut words = text.split_whitespace().map(str::parse::<u64>);
        let (uid, dev, ino) = (
            words.next()?.ok()?,
            words.next()?.ok()?,
            words.next()?.ok()?,
        );
        Some(Made {
            uid: u32::try_from(uid).ok()?,
            dev,
            ino,
        })
    }
}

fn record_name(job_id: u32) -> PathBuf {
    PathBuf::from(format!("gha-{job_id}.made"))
}

fn record(parent: &File, job_id: u32, made: &Made) -> std::io::Result<()> {
    let name = record_name(job_id);
    // A record left by an earlier job with this id describes a dir that is gone.
    match std::fs::remove_file(fd_path(parent, &name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut file = sys::create_new_file_at(parent, &name, 0o600)?;
    writeln!(file, "{} {} {}", made.uid, made.dev, made.ino)
}

/// `name` inside the open directory `dir`, as a path through `/proc/self/fd` (for the
/// standard library's calls that take paths).
fn fd_path(dir: &File, name: &Path) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd())).join(name)
}

/// Opens `<base>/spank-gha`, root's and writable by root alone. With `make`, creates it (0711)
/// when missing, and renames aside an entry by that name that is not such a directory
/// (someone else made it first); without, such an entry is an error.
fn open_parent(base: &Path, make: bool) -> Result<File, WorkdirError> {
    let path = base.join(PARENT);
    // The base is the admin's (/tmp by default): it may be a symlink the admin made, so it is
    // opened normally; only the entries below it are guarded.
    let base_dir =
        sys::open_dir(None, base, true).map_err(failed("open the work dir base", base))?;
    let name = Path::new(PARENT);
    for _ in 0..2 {
        if make {
            match sys::mkdir_at(&base_dir, name, 0o711) {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                    return Err(failed("create", &path)(e))
                }
                _ => {}
            }
        }
        if let Ok(dir) = sys::open_dir(Some(&base_dir), name, false) {
            let meta = dir.metadata().map_err(failed("inspect", &path))?;
            if meta.uid() == sys::geteuid() && meta.mode() & 0o022 == 0 {
                if make && meta.mode() & 0o7777 != 0o711 {
                    dir.set_permissions(Permissions::from_mode(0o711))
                        .map_err(failed("set the mode of", &path))?;
                }
                return Ok(dir);
            }
        }
        if !make {
            return Err(WorkdirError::AlreadyExists { path });
        }
        // Not root's private dir (a file, a link, someone's dir): root may rename it even in a
        // sticky base; it keeps its contents for the admin to look at.
        let aside = PathBuf::from(format!(
            ".{PARENT}.not-root-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default()
        ));
        sys::rename_at(&base_dir, name, &aside).map_err(failed("rename aside", &path))?;
    }
    Err(WorkdirError::AlreadyExists { path })
}

/// What [`remove`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removal {
    /// No dir and no record: nothing was made for this job.
    Nothing,
    /// The dir the plugin made was deleted.
    Removed,
    /// Something is at the job's path that is not the dir the plugin made for `uid`; left as is.
    NotOurs,
}

/// Removes the work dir of `job_id`, but only the very directory [`create`] made for `uid`
/// (same owner, device and inode as recorded), with `rm -rf --one-file-system` run as root and
/// killed after `limit`. An error (the bound passed, rm failed) leaves the rest in place.
pub fn remove(
    base: &Path,
    job_id: u32,
    uid: u32,
    limit: Duration,
) -> Result<Removal, WorkdirError> {
    let path = JobDir::path_for(base, job_id);
    let parent = match open_parent(base, false) {
        Ok(parent) => parent,
        Err(WorkdirError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
            return Ok(Removal::Nothing)
        }
        Err(e) => return Err(e),
    };
    let record_path = fd_path(&parent, &record_name(job_id));
    let made = match std::fs::read_to_string(&record_path) {
        Ok(text) => Made::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed("read the record of", &path)(e)),
    };
    let name = Path::new(path.file_name().unwrap_or_default());
    let found = match std::fs::symlink_metadata(fd_path(&parent, name)) {
        Ok(meta) => Some(meta),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(failed("inspect", &path)(e)),
    };
    let removal = match (found, made) {
        (None, None) => return Ok(Removal::Nothing),
        (None, Some(_)) => Removal::Removed,
        (Some(meta), Some(made))
            if meta.is_dir() && Made::of(&meta, meta.uid()) == made && made.uid == uid =>
        {
            // Only root renames in the parent, so this name stays that dir while rm runs.
            delete_tree(&path, limit)?;
            Removal::Removed
        }
        (Some(_), _) => Removal::NotOurs,
    };
    if removal == Removal::Removed {
        let _ = std::fs::remove_file(&record_path);
    }
    Ok(removal)
}

/// The job ids that have a work dir or a record in `<base>/spank-gha/` (empty when there is no
/// such parent, or it is not root's).
pub fn recorded_job_ids(base: &Path) -> Vec<u32> {
    let Ok(parent) = open_parent(base, false) else {
        return Vec::new();
    };
    let Ok(entries) = std::fs::read_dir(fd_path(&parent, Path::new(""))) else {
        return Vec::new();
    };
    let mut ids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| job_id_of(&entry.file_name().to_string_lossy()))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// `gha-<id>` or `gha-<id>.made` → `<id>`.
fn job_id_of(name: &str) -> Option<u32> {
    let name = name.strip_suffix(".made").unwrap_or(name);
    let id = name.strip_prefix("gha-")?;
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

/// Takes the work dir of a job that is over out of the way at once: if it is the very dir
/// [`create`] made (as its record says), it is renamed to `.gha-<id>.stale` (a name no job
/// uses; only root renames in the parent) and its record removed; a record without a dir is
/// removed. Returns the renamed dir, for a slow removal that nothing waits on.
pub fn set_aside(base: &Path, job_id: u32) -> Result<Option<PathBuf>, WorkdirError> {
    let path = JobDir::path_for(base, job_id);
    let parent = open_parent(base, false)?;
    let record_path = fd_path(&parent, &record_name(job_id));
    let made = match std::fs::read_to_string(&record_path) {
        Ok(text) => Made::parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(failed("read the record of", &path)(e)),
    };
    let name = PathBuf::from(format!("gha-{job_id}"));
    let ours = match (std::fs::symlink_metadata(fd_path(&parent, &name)), made) {
        (Err(e), _) if e.kind() == std::io::ErrorKind::NotFound => false,
        (Ok(meta), Some(made)) if meta.is_dir() && Made::of(&meta, meta.uid()) == made => true,
        // Not the dir the plugin made: left for the admin, as the epilog leaves it.
        _ => return Ok(None),
    };
    let aside = PathBuf::from(format!(".gha-{job_id}.stale"));
    if ours {
        sys::rename_at(&parent, &name, &aside).map_err(failed("rename aside", &path))?;
    }
    std::fs::remove_file(&record_path).map_err(failed("remove the record of", &path))?;
    Ok(ours.then(|| base.join(PARENT).join(aside)))
}

/// `rm -rf --one-file-system <path>` as root, killed after `limit`. GNU rm walks any depth
/// with directory fds and never follows symlinks.
fn delete_tree(path: &Path, limit: Duration) -> Result<(), WorkdirError> {
    let what = "remove";
    let output = run_bounded(
        Command::new("rm")
            .args(["-rf", "--one-file-system", "--"])
            .arg(path),
        &[("PATH", "/usr/bin:/bin"), ("LC_ALL", "C")],
        None,
        limit,
    )
    .map_err(|e| failed(what, path)(std::io::Error::other(e.to_string())))?;
    if !output.status.success() {
        let reason = String::from_utf8_lossy(&output.stderr);
        let reason = reason.lines().next().unwrap_or("rm failed").to_owned();
        return Err(failed(what, path)(std::io::Error::other(reason)));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};
    use std::time::Duration;

    fn base(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("spank-gha-wd-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    const LIMIT: Duration = Duration::from_secs(10);

    #[test]
    fn creates_owned_private_dirs_and_removes_them() {
        let base = base("create");
        let (uid, gid) = (sys::geteuid(), sys::getegid());
        let dir = create(&base, 42, uid, gid, b"c2VjcmV0").unwrap();
        assert_eq!(dir.root, base.join("spank-gha/gha-42"));
        let parent = std::fs::metadata(base.join("spank-gha")).unwrap();
        assert_eq!(parent.permissions().mode() & 0o7777, 0o711);
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
        assert_eq!(remove(&base, 42, uid, LIMIT).unwrap(), Removal::Removed);
        assert!(!dir.root.exists());
        assert_eq!(remove(&base, 42, uid, LIMIT).unwrap(), Removal::Nothing);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn removes_only_the_dir_it_made() {
        let base = base("swap");
        let (uid, gid) = (sys::geteuid(), sys::getegid());
        let dir = create(&base, 8, uid, gid, b"x").unwrap();
        // Another dir in its place (same owner): not the one recorded.
        std::fs::rename(&dir.root, base.join("moved")).unwrap();
        std::fs::create_dir(&dir.root).unwrap();
        assert_eq!(remove(&base, 8, uid, LIMIT).unwrap(), Removal::NotOurs);
        assert!(dir.root.exists());
        // The recorded dir, but the epilog names another owner.
        std::fs::remove_dir(&dir.root).unwrap();
        std::fs::rename(base.join("moved"), &dir.root).unwrap();
        assert_eq!(remove(&base, 8, uid + 1, LIMIT).unwrap(), Removal::NotOurs);
        assert_eq!(remove(&base, 8, uid, LIMIT).unwrap(), Removal::Removed);
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn renames_aside_a_parent_someone_else_made() {
        let base = base("parent");
        let target = base.join("target");
        std::fs::create_dir(&target).unwrap();
        symlink(&target, base.join("spank-gha")).unwrap();
        let (uid, gid) = (sys::geteuid(), sys::getegid());
        let dir = create(&base, 7, uid, gid, b"x").unwrap();
        assert!(std::fs::symlink_metadata(base.join("spank-gha"))
            .unwrap()
            .is_dir());
        assert!(!target.join("gha-7").exists());
        assert!(dir.root.is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
