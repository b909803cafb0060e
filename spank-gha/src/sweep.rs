//! The sweep of stale work dirs, run when slurmd starts ([`crate::slurmd`]). A work dir is
//! removed by the job's epilog; when the node was lost (slurmd and the job's slurmstepd killed,
//! the machine rebooted) the epilog never ran, and the dir, with whatever the runner left in
//! it, would stay for good. So every recorded dir whose job has no slurmstepd on this node is
//! taken aside at once (a rename) and deleted by a detached, time-bounded `rm` that slurmd
//! never waits for. A job that is still running keeps its slurmstepd through a restart of
//! slurmd, and so its dir: that process is how a live job is told from one that is over. When
//! `/proc` cannot be read, nothing is removed.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helper::run_bounded;
use crate::workdir;

/// How long the detached removal of the stale dirs may run before it is killed.
const SWEEP_REMOVE_LIMIT_SECS: u32 = 120;
/// Bound on starting the detached removal (a shell that backgrounds `rm` and exits).
const SWEEP_START_LIMIT: Duration = Duration::from_secs(5);

/// What a sweep did, for slurmd's log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Swept {
    /// Dirs taken aside, their removal started.
    pub removed: usize,
    /// One line per dir that could not be taken aside (or the removal not started).
    pub errors: Vec<String>,
    /// `/proc` could not be listed: nothing was touched.
    pub proc_unreadable: bool,
}

/// Takes aside the work dirs of jobs without a slurmstepd here and starts their removal.
pub fn sweep_stale_work_dirs(base: &Path) -> Swept {
    let mut swept = Swept::default();
    let recorded = workdir::recorded_job_ids(base);
    if recorded.is_empty() {
        return swept;
    }
    let Some(live) = jobs_with_a_slurmstepd() else {
        swept.proc_unreadable = true;
        return swept;
    };
    let stale = set_aside_stale(base, &recorded, &live, &mut swept.errors);
    if stale.is_empty() {
        return swept;
    }
    match remove_detached(&stale) {
        Ok(()) => swept.removed = stale.len(),
        Err(error) => swept
            .errors
            .push(format!("starting the removal of stale work dirs: {error}")),
    }
    swept
}

/// Renames aside the dirs of `recorded` jobs not in `live`; returns the renamed paths.
fn set_aside_stale(
    base: &Path,
    recorded: &[u32],
    live: &[u32],
    errors: &mut Vec<String>,
) -> Vec<PathBuf> {
    let mut stale = Vec::new();
    for &job_id in recorded.iter().filter(|id| !live.contains(id)) {
        match workdir::set_aside(base, job_id) {
            Ok(Some(path)) => stale.push(path),
            Ok(None) => {}
            Err(error) => errors.push(format!("job {job_id}: {error}")),
        }
    }
    stale
}

/// `rm -rf --one-file-system` of `paths`, in the background of a shell that exits at once, so
/// slurmd's start never waits on a huge tree; `timeout` bounds it.
fn remove_detached(paths: &[PathBuf]) -> Result<(), String> {
    let script = format!(
        "timeout -s KILL {SWEEP_REMOVE_LIMIT_SECS} rm -rf --one-file-system -- \"$@\" \
         </dev/null >/dev/null 2>&1 &"
    );
    let output = run_bounded(
        Command::new("/bin/sh")
            .args(["-c", &script, "sh"])
            .args(paths),
        &[("PATH", "/usr/bin:/bin"), ("LC_ALL", "C")],
        None,
        SWEEP_START_LIMIT,
    )
    .map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!("the shell exited with {}", output.status))
    }
}

/// The job ids that have a slurmstepd on this node (a root process titled
/// `slurmstepd: [<id>.<step>]`), or `None` when `/proc` cannot be listed.
pub fn jobs_with_a_slurmstepd() -> Option<Vec<u32>> {
    let entries = std::fs::read_dir("/proc").ok()?;
    let mut ids: Vec<u32> = entries
        .flatten()
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        })
        // Only root's processes: slurmstepd runs as root, and a user could title a process
        // of their own `slurmstepd: [<id>...` to keep a lost job's dir from being swept.
        .filter(|entry| entry.metadata().is_ok_and(|m| m.uid() == 0))
        .filter_map(|entry| std::fs::read(entry.path().join("cmdline")).ok())
        .filter_map(|cmdline| slurmstepd_job(&cmdline))
        .collect();
    ids.sort_unstable();
    ids.dedup();
    Some(ids)
}

/// The job id in a slurmstepd's command line (`slurmstepd: [1234.batch]`).
fn slurmstepd_job(cmdline: &[u8]) -> Option<u32> {
    let text = String::from_utf8_lossy(cmdline);
    let rest = text.strip_prefix("slurmstepd")?;
    let start = rest.find('[')? + 1;
    let id: String = rest[start..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    id.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sys;
    use std::process::{Child, Stdio};

    #[test]
    fn reads_the_job_of_a_slurmstepd_title() {
        assert_eq!(slurmstepd_job(b"slurmstepd: [1234.batch]\0"), Some(1234));
        assert_eq!(slurmstepd_job(b"slurmstepd: [77.extern]"), Some(77));
        assert_eq!(slurmstepd_job(b"slurmstepd: [5.0]"), Some(5));
        assert_eq!(slurmstepd_job(b"sleep\x0030"), None);
        assert_eq!(slurmstepd_job(b"slurmstepd-wrapper"), None);
    }

    /// A process titled as the slurmstepd of `job_id` (what a running job has on its node).
    fn fake_slurmstepd(job_id: u32) -> Child {
        Command::new("bash")
            .args([
                "-c",
                &format!("exec -a 'slurmstepd: [{job_id}.batch]' sleep 60"),
            ])
            .stdin(Stdio::null())
            .spawn()
            .expect("bash")
    }

    #[test]
    fn a_users_process_titled_slurmstepd_does_not_keep_a_lost_jobs_dir() {
        use std::os::unix::process::CommandExt;
        let job = 3_999_003;
        let title = format!("slurmstepd: [{job}.batch]");
        let mut forged = Command::new("bash")
            .args(["-c", &format!("exec -a '{title}' sleep 60")])
            .uid(65534)
            .gid(65534)
            .stdin(Stdio::null())
            .spawn()
            .expect("bash as nobody (the tests run as root)");
        let pid = forged.id();
        test_support::wait_until("the forged title", Duration::from_secs(10), || {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).starts_with(&title))
        })
        .unwrap();
        let live = jobs_with_a_slurmstepd().expect("/proc readable");
        forged.kill().unwrap();
        let _ = forged.wait();
        assert!(
            !live.contains(&job),
            "a user's process passed for a slurmstepd"
        );
    }

    #[test]
    fn sweeps_the_dirs_of_jobs_that_are_over_and_keeps_those_of_running_jobs() {
        let base = std::env::temp_dir().join(format!("spank-gha-sweep-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let (uid, gid) = (sys::geteuid(), sys::getegid());
        // Job ids no real job on this machine has.
        let (running, lost) = (3_999_001, 3_999_002);
        let running_dir = workdir::create(&base, running, uid, gid, b"c2VjcmV0").unwrap();
        let lost_dir = workdir::create(&base, lost, uid, gid, b"c2VjcmV0").unwrap();
        std::fs::write(lost_dir.tmp.join("left-by-the-runner"), b"x").unwrap();
        let mut stepd = fake_slurmstepd(running);
        test_support::wait_until(
            "the fake slurmstepd to be seen",
            Duration::from_secs(10),
            || jobs_with_a_slurmstepd().is_some_and(|ids| ids.contains(&running)),
        )
        .unwrap();

        sweep_stale_work_dirs(&base);

        // Taken aside at once; the detached rm removes it soon after.
        assert!(!lost_dir.root.exists());
        assert!(!base.join("spank-gha/gha-3999002.made").exists());
        let aside = base.join("spank-gha/.gha-3999002.stale");
        test_support::wait_until(
            "the stale dir to be removed",
            Duration::from_secs(30),
            || !aside.exists(),
        )
        .unwrap();
        assert!(
            running_dir.jitconfig.is_file(),
            "a running job's dir was touched"
        );
        assert!(base.join("spank-gha/gha-3999001.made").is_file());
        assert_eq!(workdir::recorded_job_ids(&base), vec![running]);

        // Its job over (no slurmstepd), the next slurmd start takes it too.
        stepd.kill().unwrap();
        stepd.wait().unwrap();
        sweep_stale_work_dirs(&base);
        assert!(!running_dir.root.exists());
        assert!(workdir::recorded_job_ids(&base).is_empty());
        test_support::wait_until(
            "the second dir to be removed",
            Duration::from_secs(30),
            || !base.join("spank-gha/.gha-3999001.stale").exists(),
        )
        .unwrap();
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn leaves_a_dir_the_plugin_did_not_make() {
        let base = std::env::temp_dir().join(format!("spank-gha-sweep-x-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let (uid, gid) = (sys::geteuid(), sys::getegid());
        let job = 3_999_003;
        let dir = workdir::create(&base, job, uid, gid, b"x").unwrap();
        // Swapped for another dir after the record was written: not the one the plugin made
        // (made while the first still exists, so it cannot get its inode).
        let other = base.join("spank-gha/other");
        std::fs::create_dir(&other).unwrap();
        std::fs::remove_dir_all(&dir.root).unwrap();
        std::fs::rename(&other, &dir.root).unwrap();
        sweep_stale_work_dirs(&base);
        assert!(dir.root.is_dir());
        std::fs::remove_dir_all(&base).unwrap();
    }
}
