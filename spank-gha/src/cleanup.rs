//! The epilog's teardown, run as root after Slurm has ended the job's steps: kill every process
//! that still belongs to the job (its user's processes carrying the job's `SLURM_JOB_ID` or
//! working inside its work dir, and everything in the user namespaces those processes created,
//! which is where a rootless dockerd's containers live), then remove the work dir.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// One process found in `/proc`.
#[derive(Debug, Clone)]
struct Proc {
    pid: i32,
    uid: u32,
    user_ns: Option<u64>,
}

fn list_processes() -> Vec<Proc> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let meta = std::fs::metadata(entry.path()).ok()?;
            let user_ns = std::fs::metadata(entry.path().join("ns/user"))
                .ok()
                .map(|m| m.ino());
            Some(Proc {
                pid,
                uid: meta.uid(),
                user_ns,
            })
        })
        .collect()
}

/// Does process `pid` belong to job `job_id`: its environment names the job, or it works
/// inside the job's work dir?
fn belongs_to_job(pid: i32, job_marker: &[u8], workdir: &Path) -> bool {
    let proc_dir = Path::new("/proc").join(pid.to_string());
    if let Ok(environ) = std::fs::read(proc_dir.join("environ")) {
        if environ.split(|b| *b == 0).any(|var| var == job_marker) {
            return true;
        }
    }
    std::fs::read_link(proc_dir.join("cwd")).is_ok_and(|cwd| cwd.starts_with(workdir))
}

/// `ioctl(NS_GET_OWNER_UID)` (linux/nsfs.h: `_IO(0xb7, 0x4)`).
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// The uid that created the user namespace `pid` lives in, if it can be read.
fn user_ns_owner(pid: i32) -> Option<u32> {
    let path = std::ffi::CString::new(format!("/proc/{pid}/ns/user")).ok()?;
    // SAFETY: NUL-terminated path; the fd is closed below.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    let mut owner: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t.
    let rc = unsafe { libc::ioctl(fd, NS_GET_OWNER_UID as _, &mut owner) };
    // SAFETY: our own fd.
    unsafe { libc::close(fd) };
    (rc == 0).then_some(owner)
}

/// The processes of job `job_id` (user `uid`) that are still alive, as pids.
///
/// A user namespace is swept only if it differs from this (root) process's own namespace and
/// was created by the job's user: that is a rootless dockerd's, and never the host's (whose
/// identity cannot always be read from pid 1, e.g. under a VM's init).
pub fn job_processes(job_id: u32, uid: u32, workdir: &Path) -> Vec<i32> {
    let marker = format!("SLURM_JOB_ID={job_id}").into_bytes();
    let own_pid = std::process::id() as i32;
    let all = list_processes();
    let Some(own_ns) = std::fs::metadata("/proc/self/ns/user")
        .ok()
        .map(|m| m.ino())
    else {
        return all
            .iter()
            .filter(|p| p.uid == uid && uid != 0 && p.pid != own_pid && p.pid != 1)
            .filter(|p| belongs_to_job(p.pid, &marker, workdir))
            .map(|p| p.pid)
            .collect();
    };
    let mut pids: HashSet<i32> = HashSet::new();
    let mut namespaces: HashSet<u64> = HashSet::new();
    for p in all
        .iter()
        .filter(|p| p.uid == uid && p.uid != 0 && p.pid != own_pid && p.pid != 1)
    {
        if belongs_to_job(p.pid, &marker, workdir) {
            pids.insert(p.pid);
            if let Some(ns) = p.user_ns.filter(|ns| *ns != own_ns) {
                if user_ns_owner(p.pid) == Some(uid) {
                    namespaces.insert(ns);
                }
            }
        }
    }
    // Containers of a rootless dockerd run as subordinate ids inside its user namespace.
    for p in &all {
        if p.pid != own_pid && p.pid != 1 && p.user_ns.is_some_and(|ns| namespaces.contains(&ns)) {
            pids.insert(p.pid);
        }
    }
    let mut pids: Vec<i32> = pids.into_iter().collect();
    pids.sort_unstable();
    pids
}

/// What the teardown found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KillReport {
    pub killed: usize,
    pub survivors: Vec<i32>,
}

/// SIGKILLs the job's processes until none are left (processes may fork while being killed) or
/// `limit` passes.
pub fn kill_job_processes(job_id: u32, uid: u32, workdir: &Path, limit: Duration) -> KillReport {
    let deadline = Instant::now() + limit;
    let mut killed = HashSet::new();
    loop {
        let pids = job_processes(job_id, uid, workdir);
        if pids.is_empty() {
            return KillReport {
                killed: killed.len(),
                survivors: Vec::new(),
            };
        }
        if Instant::now() >= deadline {
            return KillReport {
                killed: killed.len(),
                survivors: pids,
            };
        }
        for pid in &pids {
            // SAFETY: sending a signal; a pid that vanished meanwhile just gives ESRCH.
            unsafe { libc::kill(*pid, libc::SIGKILL) };
            killed.insert(*pid);
        }
        // A killed process stays in /proc until its parent reaps it; give that a moment.
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::Command;

    const NOBODY: u32 = 65534;

    /// Only meaningful as root (the epilog's identity): the marked process of another user is
    /// found and killed, and nothing else is selected (in particular nothing in the host's user
    /// namespace, which once swept the whole machine when pid 1's namespace was unreadable).
    #[test]
    fn selects_and_kills_exactly_the_jobs_processes() {
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "run the plugin's unit tests as root (the epilog's identity)"
        );
        let job_id = 900_000 + std::process::id() % 90_000;
        let mut marked = Command::new("sleep")
            .arg("60")
            .env("SLURM_JOB_ID", job_id.to_string())
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .unwrap();
        let mut unmarked = Command::new("sleep")
            .arg("60")
            .env("SLURM_JOB_ID", (job_id + 1).to_string())
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .unwrap();
        let nowhere = Path::new("/nonexistent/gha-test");
        let found = job_processes(job_id, NOBODY, nowhere);
        assert_eq!(found, vec![marked.id() as i32]);
        assert!(
            job_processes(job_id, 0, nowhere).is_empty(),
            "root is never swept"
        );

        // Reap the killed child concurrently: a zombie is not counted as alive.
        let report = {
            let reaper = std::thread::spawn(move || marked.wait());
            let report = kill_job_processes(job_id, NOBODY, nowhere, Duration::from_secs(10));
            reaper.join().unwrap().unwrap();
            report
        };
        assert_eq!(report.killed, 1);
        assert!(report.survivors.is_empty());
        assert!(
            unmarked.try_wait().unwrap().is_none(),
            "another job's process was killed"
        );
        unmarked.kill().unwrap();
        unmarked.wait().unwrap();
    }
}
