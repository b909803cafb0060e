//! The epilog's teardown, run as root after Slurm has ended the job's steps: kill every process
//! that still belongs to the job (its user's processes carrying the job's `SLURM_JOB_ID` or
//! working inside its work dir, and everything in the user namespaces those processes created,
//! which is where a rootless dockerd's containers live), then remove the work dir.

use std::collections::{BTreeSet, HashSet};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::sys;

/// One process found in `/proc`: what is cheap to read for every process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proc {
    pub pid: i32,
    pub uid: u32,
    /// The inode of its user namespace (`/proc/PID/ns/user`), if readable.
    pub user_ns: Option<u64>,
}

/// What [`verdict`] may ask about a process beyond [`Proc`]; read from `/proc` only for the
/// processes that pass the cheap checks.
pub trait Inspect {
    /// Its environment (`/proc/PID/environ`: NUL-separated `NAME=value` entries).
    fn environ(&self, pid: i32) -> Option<Vec<u8>>;
    /// Its working directory.
    fn cwd(&self, pid: i32) -> Option<PathBuf>;
    /// The uid that created the user namespace it lives in.
    fn user_ns_owner(&self, pid: i32) -> Option<u32>;
    /// Whether a live process of root (real uid 0) other than init is among its ancestors: a
    /// login session (sshd), an admin's `runuser` or `su`, cron. What hangs there is the user's
    /// business on this node, not a job's leftover; an escaped job process is an orphan
    /// whose ancestry ends at init.
    fn attended(&self, pid: i32) -> bool;
}

/// The job whose leftovers the epilog kills, and the epilog itself.
#[derive(Debug, Clone)]
pub struct Target<'a> {
    pub job_id: u32,
    /// The job's user.
    pub uid: u32,
    /// The job's work dir.
    pub workdir: &'a Path,
    /// The epilog's own pid (never killed).
    pub own_pid: i32,
    /// The epilog's (root's, the host's) user namespace; when it cannot be read, no namespace
    /// is swept.
    pub own_ns: Option<u64>,
    /// Every unattended process of the user, not only the job's: the user has no other job on
    /// this node, so nothing of theirs may stay (a workflow step that escaped with
    /// `env -i setsid` carries neither the job id nor the work dir, and would read the next
    /// runner's config). Processes under a live root-owned session are spared
    /// ([`Inspect::attended`]).
    pub whole_user: bool,
}

/// What the epilog does with one process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Spare,
    Kill,
    /// Kill it, and everything in its user namespace (id given), which the job's user created:
    /// a rootless dockerd's, whose containers run as subordinate ids.
    KillWithNamespace(u64),
}

/// The one rule for what the epilog kills. Never this process or pid 1. Everything inside a
/// user namespace already being swept (`swept`). Otherwise only a process of the job's user
/// (never root) that carries `SLURM_JOB_ID=<job>` in its environment or works inside the job's
/// work dir; its user namespace is swept too if it differs from the epilog's own and the job's
/// user created it. With `whole_user`, also every unattended process of the user. The host's
/// namespace is never swept, even where its identity cannot be read from pid 1 (a VM's init):
/// it is this root process's own.
pub fn verdict(p: &Proc, target: &Target, swept: &HashSet<u64>, inspect: &impl Inspect) -> Verdict {
    if p.pid == target.own_pid || p.pid == 1 {
        return Verdict::Spare;
    }
    if p.user_ns.is_some_and(|ns| swept.contains(&ns)) {
        return Verdict::Kill;
    }
    if target.uid == 0 || p.uid != target.uid {
        return Verdict::Spare;
    }
    let marker = format!("SLURM_JOB_ID={}", target.job_id).into_bytes();
    let marked = inspect
        .environ(p.pid)
        .is_some_and(|env| env.split(|b| *b == 0).any(|var| var == marker));
    let inside = || {
        inspect
            .cwd(p.pid)
            .is_some_and(|cwd| cwd.starts_with(target.workdir))
    };
    let leftover = || target.whole_user && !inspect.attended(p.pid);
    if !marked && !inside() && !leftover() {
        return Verdict::Spare;
    }
    match (p.user_ns, target.own_ns) {
        (Some(ns), Some(own)) if ns != own && inspect.user_ns_owner(p.pid) == Some(target.uid) => {
            Verdict::KillWithNamespace(ns)
        }
        _ => Verdict::Kill,
    }
}

/// The pids among `all` that [`verdict`] kills, sorted. A namespace found to be swept after
/// some of its members were passed over is swept in a second pass.
pub fn select(all: &[Proc], target: &Target, inspect: &impl Inspect) -> Vec<i32> {
    let mut swept = HashSet::new();
    let mut pids = BTreeSet::new();
    for p in all {
        match verdict(p, target, &swept, inspect) {
            Verdict::Spare => {}
            Verdict::Kill => {
                pids.insert(p.pid);
            }
            Verdict::KillWithNamespace(ns) => {
                pids.insert(p.pid);
                swept.insert(ns);
            }
        }
    }
    if !swept.is_empty() {
        for p in all {
            if !pids.contains(&p.pid) && verdict(p, target, &swept, inspect) != Verdict::Spare {
                pids.insert(p.pid);
            }
        }
    }
    pids.into_iter().collect()
}

/// The live system, through `/proc`.
struct ProcFs;

impl ProcFs {
    fn dir(pid: i32) -> PathBuf {
        Path::new("/proc").join(pid.to_string())
    }

    fn list() -> Vec<Proc> {
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
}

impl Inspect for ProcFs {
    fn environ(&self, pid: i32) -> Option<Vec<u8>> {
        std::fs::read(ProcFs::dir(pid).join("environ")).ok()
    }

    fn cwd(&self, pid: i32) -> Option<PathBuf> {
        std::fs::read_link(ProcFs::dir(pid).join("cwd")).ok()
    }

    fn user_ns_owner(&self, pid: i32) -> Option<u32> {
        let ns = std::fs::File::open(ProcFs::dir(pid).join("ns/user")).ok()?;
        sys::user_ns_owner(&ns).ok()
    }

    fn attended(&self, pid: i32) -> bool {
        // Bounded: a chain deeper than this is treated as unattended.
        let mut at = pid;
        for _ in 0..64 {
            let Some(parent) = ProcFs::parent(at) else {
                return false;
            };
            if parent <= 1 {
                return false;
            }
            match ProcFs::real_uid(parent) {
                Some(0) => return true,
                Some(_) => at = parent,
                None => return false,
            }
        }
        false
    }
}

impl ProcFs {
    /// The real uid, from `/proc/PID/status`. Not the owner of `/proc/PID`: that is root for
    /// any process that is not dumpable (one that changed credentials, as a rootless Docker's
    /// processes do), which would make every such parent look like a root session. The real
    /// uid also makes a setuid-root program a user runs count as the user's, not root's.
    fn real_uid(pid: i32) -> Option<u32> {
        let status = std::fs::read_to_string(ProcFs::dir(pid).join("status")).ok()?;
        let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
        line.split_whitespace().next()?.parse().ok()
    }

    /// The parent pid, from `/proc/PID/stat` (after the command name, which may hold spaces
    /// and parentheses: the fields follow the last `)`).
    fn parent(pid: i32) -> Option<i32> {
        let stat = std::fs::read_to_string(ProcFs::dir(pid).join("stat")).ok()?;
        let rest = &stat[stat.rfind(')')? + 1..];
        rest.split_whitespace().nth(1)?.parse().ok()
    }
}

/// The processes of job `job_id` (user `uid`; with `whole_user`, all of that user's) that are
/// still alive, as pids.
pub fn job_processes(job_id: u32, uid: u32, workdir: &Path, whole_user: bool) -> Vec<i32> {
    let target = Target {
        whole_user,
        job_id,
        uid,
        workdir,
        own_pid: i32::try_from(std::process::id()).unwrap_or(i32::MAX),
        own_ns: std::fs::metadata("/proc/self/ns/user")
            .ok()
            .map(|m| m.ino()),
    };
    select(&ProcFs::list(), &target, &ProcFs)
}

/// What the teardown found and did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct KillReport {
    pub killed: usize,
    pub survivors: Vec<i32>,
}

/// SIGKILLs the job's processes until none are left (processes may fork while being killed) or
/// `limit` passes.
pub fn kill_job_processes(
    job_id: u32,
    uid: u32,
    workdir: &Path,
    whole_user: bool,
    limit: Duration,
) -> KillReport {
    let deadline = Instant::now() + limit;
    let mut killed = HashSet::new();
    loop {
        let pids = job_processes(job_id, uid, workdir, whole_user);
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
            // A pid that vanished meanwhile just gives ESRCH.
            if let Ok(pid) = u32::try_from(*pid) {
                let _ = sys::sigkill(pid);
            }
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

    const USER: u32 = 1000;
    const HOST_NS: u64 = 4_026_531_837;
    const DOCKER_NS: u64 = 4_026_532_900;

    /// A made-up process table: per pid, its environment, working dir and namespace owner;
    /// and the pids under a live root-owned session.
    #[derive(Default)]
    struct Fake(
        std::collections::HashMap<i32, (&'static str, &'static str, Option<u32>)>,
        HashSet<i32>,
    );

    impl Fake {
        fn with(mut self, pid: i32, env: &'static str, cwd: &'static str, owner: u32) -> Fake {
            self.0.insert(pid, (env, cwd, Some(owner)));
            self
        }

        fn attended_pid(mut self, pid: i32) -> Fake {
            self.1.insert(pid);
            self
        }
    }

    impl Inspect for Fake {
        fn environ(&self, pid: i32) -> Option<Vec<u8>> {
            Some(self.0.get(&pid)?.0.replace(' ', "\0").into_bytes())
        }
        fn cwd(&self, pid: i32) -> Option<PathBuf> {
            Some(PathBuf::from(self.0.get(&pid)?.1))
        }
        fn user_ns_owner(&self, pid: i32) -> Option<u32> {
            self.0.get(&pid)?.2
        }
        fn attended(&self, pid: i32) -> bool {
            self.1.contains(&pid)
        }
    }

    fn target(own_ns: Option<u64>) -> Target<'static> {
        Target {
            job_id: 12,
            uid: USER,
            workdir: Path::new("/tmp/gha-12"),
            own_pid: 99,
            own_ns,
            whole_user: false,
        }
    }

    fn proc(pid: i32, uid: u32, ns: u64) -> Proc {
        Proc {
            pid,
            uid,
            user_ns: Some(ns),
        }
    }

    #[test]
    fn the_filter_kills_the_jobs_user_processes_marked_or_inside_the_work_dir() {
        let fake = Fake::default()
            .with(10, "HOME=/h SLURM_JOB_ID=12", "/home/u", 0)
            .with(11, "SLURM_JOB_ID=120 SLURM_JOB_ID_X=12", "/home/u", 0)
            .with(12, "", "/tmp/gha-12/work", 0)
            .with(13, "", "/tmp/gha-120", 0)
            .with(14, "SLURM_JOB_ID=12", "/tmp/gha-12", 0)
            .with(15, "", "/home/u", 0)
            .attended_pid(15)
            .with(16, "SLURM_JOB_ID=12", "/home/u", 0)
            .attended_pid(16);
        let none = HashSet::new();
        let t = target(Some(HOST_NS));
        let v = |p: Proc| verdict(&p, &t, &none, &fake);
        assert_eq!(v(proc(10, USER, HOST_NS)), Verdict::Kill, "marked");
        assert_eq!(v(proc(11, USER, HOST_NS)), Verdict::Spare, "another job");
        assert_eq!(v(proc(12, USER, HOST_NS)), Verdict::Kill, "in the work dir");
        assert_eq!(
            v(proc(13, USER, HOST_NS)),
            Verdict::Spare,
            "a look-alike dir"
        );
        assert_eq!(v(proc(14, 1001, HOST_NS)), Verdict::Spare, "another user");
        assert_eq!(v(proc(14, 0, HOST_NS)), Verdict::Spare, "root");
        assert_eq!(v(proc(99, USER, HOST_NS)), Verdict::Spare, "the epilog");
        assert_eq!(v(proc(1, USER, HOST_NS)), Verdict::Spare, "init");
        let root_job = Target {
            uid: 0,
            ..t.clone()
        };
        assert_eq!(
            verdict(&proc(10, 0, HOST_NS), &root_job, &none, &fake),
            Verdict::Spare,
            "root is never swept"
        );
        let whole = Target {
            whole_user: true,
            ..t.clone()
        };
        let w = |p: Proc| verdict(&p, &whole, &none, &fake);
        assert_eq!(w(proc(11, USER, HOST_NS)), Verdict::Kill, "an escapee");
        assert_eq!(w(proc(13, USER, HOST_NS)), Verdict::Kill, "anywhere");
        assert_eq!(
            w(proc(15, USER, HOST_NS)),
            Verdict::Spare,
            "under a live session (sshd, runuser)"
        );
        assert_eq!(
            w(proc(16, USER, HOST_NS)),
            Verdict::Kill,
            "the job's own, even under a session"
        );
        assert_eq!(w(proc(14, 1001, HOST_NS)), Verdict::Spare, "another user");
        assert_eq!(w(proc(99, USER, HOST_NS)), Verdict::Spare, "the epilog");
        let whole_root = Target {
            uid: 0,
            ..whole.clone()
        };
        assert_eq!(
            verdict(&proc(10, 0, HOST_NS), &whole_root, &none, &fake),
            Verdict::Spare,
            "root is never swept, even as a whole user"
        );
    }

    #[test]
    fn the_filter_sweeps_only_namespaces_the_jobs_user_made() {
        let fake = Fake::default()
            .with(20, "SLURM_JOB_ID=12", "/", USER)
            .with(21, "SLURM_JOB_ID=12", "/", 1001)
            .with(22, "", "/", USER);
        let none = HashSet::new();
        let t = target(Some(HOST_NS));
        assert_eq!(
            verdict(&proc(20, USER, DOCKER_NS), &t, &none, &fake),
            Verdict::KillWithNamespace(DOCKER_NS)
        );
        assert_eq!(
            verdict(&proc(21, USER, DOCKER_NS), &t, &none, &fake),
            Verdict::Kill,
            "a namespace someone else made"
        );
        assert_eq!(
            verdict(&proc(20, USER, HOST_NS), &t, &none, &fake),
            Verdict::Kill,
            "the host's namespace"
        );
        assert_eq!(
            verdict(&proc(20, USER, DOCKER_NS), &target(None), &none, &fake),
            Verdict::Kill,
            "no sweeping without knowing the host's namespace"
        );
        // A container process: a subordinate uid, no marker, inside the swept namespace.
        let container = proc(22, 100_000, DOCKER_NS);
        assert_eq!(verdict(&container, &t, &none, &fake), Verdict::Spare);
        let swept = HashSet::from([DOCKER_NS]);
        assert_eq!(verdict(&container, &t, &swept, &fake), Verdict::Kill);
        assert_eq!(
            verdict(&proc(1, 100_000, DOCKER_NS), &t, &swept, &fake),
            Verdict::Spare
        );
        // Listed before its dockerd, the container is still found.
        let all = [
            container,
            proc(20, USER, DOCKER_NS),
            proc(30, USER, HOST_NS),
        ];
        assert_eq!(select(&all, &t, &fake), [20, 22]);
    }

    /// Only meaningful as root (the epilog's identity): the marked process of another user is
    /// found and killed, and nothing else is selected (in particular nothing in the host's user
    /// namespace, which once swept the whole machine when pid 1's namespace was unreadable).
    #[test]
    fn selects_and_kills_exactly_the_jobs_processes() {
        assert_eq!(
            sys::geteuid(),
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
        let found = job_processes(job_id, NOBODY, nowhere, false);
        assert_eq!(found, vec![marked.id() as i32]);
        assert!(
            job_processes(job_id, 0, nowhere, true).is_empty(),
            "root is never swept"
        );

        // Reap the killed child concurrently: a zombie is not counted as alive.
        let report = {
            let reaper = std::thread::spawn(move || marked.wait());
            let report =
                kill_job_processes(job_id, NOBODY, nowhere, false, Duration::from_secs(10));
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

    /// As root (the epilog's identity): a process under this root process is attended, an
    /// orphan (its parent exited, as an escaped job process's has) is not.
    #[test]
    fn a_sessions_processes_are_attended_and_orphans_are_not() {
        assert_eq!(
            sys::geteuid(),
            0,
            "run the plugin's unit tests as root (the epilog's identity)"
        );
        let mut child = Command::new("sleep")
            .arg("61")
            .uid(NOBODY)
            .gid(NOBODY)
            .spawn()
            .unwrap();
        assert!(
            ProcFs.attended(child.id() as i32),
            "a child of a root process"
        );
        // The shell prints its background sleep's pid and exits: the sleep is an orphan.
        let out = Command::new("sh")
            .args(["-c", "sleep 62 >/dev/null 2>&1 & echo $!"])
            .uid(NOBODY)
            .gid(NOBODY)
            .output()
            .unwrap();
        let orphan: i32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let unattended = !ProcFs.attended(orphan);
        let _ = Command::new("kill").arg(orphan.to_string()).status();
        child.kill().unwrap();
        child.wait().unwrap();
        assert!(unattended, "an orphan counted as attended");
    }
}
