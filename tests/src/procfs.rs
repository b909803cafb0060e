//! What `/proc` says about processes: which exist and whose they are (for the checks that a
//! job left nothing behind), start times on the kernel's boot clock (so a start seen by the
//! kernel can be compared with a moment the driver noted), memory and CPU time.

use std::fs;
use std::path::PathBuf;

use anyhow::{ensure, Context, Result};

/// Seconds since boot on `CLOCK_BOOTTIME`, the clock `/proc/<pid>/stat` start times use.
pub fn boottime_now() -> f64 {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)
        .map(|ts| ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9);
    // CLOCK_BOOTTIME exists on every Linux this runs on; MONOTONIC is the same minus suspend time.
    ts.unwrap_or_else(|_| {
        nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
            .map(|ts| ts.tv_sec() as f64 + ts.tv_nsec() as f64 / 1e9)
            .unwrap_or(0.0)
    })
}

/// Clock ticks per second of `/proc/<pid>/stat` times (100 on Linux).
pub fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// The fields of `/proc/<pid>/stat` after the command name (field 3 is index 0).
fn stat_fields(text: &str) -> Result<Vec<&str>> {
    // The command name is in parentheses and may itself contain spaces or parentheses.
    let after = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .context("no ')' in /proc/<pid>/stat")?;
    Ok(after.split_whitespace().collect())
}

/// A process's start time in seconds since boot, from a `/proc/<pid>/stat` text.
pub fn start_time_from_stat(text: &str) -> Result<f64> {
    let fields = stat_fields(text)?;
    // starttime is field 22 of stat(5); fields[0] is field 3.
    let ticks: f64 = fields
        .get(19)
        .context("/proc/<pid>/stat too short")?
        .parse()
        .context("starttime is not a number")?;
    Ok(ticks / clock_ticks_per_second())
}

/// User plus system CPU seconds a process has used.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let fields = stat_fields(&text)?;
    ensure!(fields.len() > 12, "/proc/{pid}/stat too short");
    // utime and stime are fields 14 and 15.
    let utime: f64 = fields[11].parse().context("utime")?;
    let stime: f64 = fields[12].parse().context("stime")?;
    Ok((utime + stime) / clock_ticks_per_second())
}

/// Resident memory now and at its peak, in MiB (`VmRSS`, `VmHWM` of `/proc/<pid>/status`).
pub fn memory_mib(pid: u32) -> Result<(f64, f64)> {
    let text = fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let kib = |key: &str| -> Result<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse::<f64>().ok())
            .with_context(|| format!("no {key} in /proc/{pid}/status"))
    };
    Ok((kib("VmRSS:")? / 1024.0, kib("VmHWM:")? / 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_start_time_past_a_tricky_command_name() {
        let stat = "42 (a) b (c) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 1 0 250 1000 10";
        assert_eq!(
            start_time_from_stat(stat).unwrap() * clock_ticks_per_second(),
            250.0
        );
    }

    #[test]
    fn own_process_is_readable() {
        let pid = std::process::id();
        let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let started = start_time_from_stat(&text).unwrap();
        assert!(started > 0.0 && started <= boottime_now());
        assert!(cpu_seconds(pid).unwrap() >= 0.0);
        let (rss, peak) = memory_mib(pid).unwrap();
        assert!(rss > 0.0 && peak >= rss);
    }
}

/// One process as `/proc` shows it.
#[derive(Debug, Clone)]
pub struct Process {
    pub pid: u32,
    /// Real uid.
    pub uid: u32,
    /// Exited but not reaped (this VM's PID 1 leaves orphans unreaped): not running anything.
    pub zombie: bool,
    /// Arguments joined by spaces.
    pub cmdline: String,
}

impl Process {
    /// Does the process's environment hold exactly `assignment` (`KEY=value`)?
    pub fn has_env(&self, assignment: &str) -> bool {
        fs::read(format!("/proc/{}/environ", self.pid))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .any(|var| var == assignment.as_bytes())
    }

    /// Its working directory, if it can be read.
    pub fn cwd(&self) -> Option<PathBuf> {
        fs::read_link(format!("/proc/{}/cwd", self.pid)).ok()
    }
}

/// Every process now, zombies included (filter on [`Process::zombie`]). Processes that exit
/// while being read are left out.
pub fn processes() -> Vec<Process> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let status = fs::read_to_string(entry.path().join("status")).ok()?;
            let uid = status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .and_then(|ids| ids.split_whitespace().next())
                .and_then(|id| id.parse().ok())?;
            let zombie = status
                .lines()
                .any(|line| line.starts_with("State:") && line.contains('Z'));
            let cmdline = cmdline(pid).unwrap_or_default();
            Some(Process {
                pid,
                uid,
                zombie,
                cmdline,
            })
        })
        .collect()
}

/// Process `pid`'s arguments joined by spaces (`None` once it is gone).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        String::from_utf8_lossy(&raw)
            .replace('\0', " ")
            .trim()
            .to_owned(),
    )
}

/// Every IPv4 TCP socket whose local port is `port`, as `<state> <local>-><remote>` and, when
/// a process holds it, `held by pid <pid> (<cmdline>)`: what an "address in use" error names.
pub fn sockets_on_port(port: u16) -> Vec<String> {
    let table = fs::read_to_string("/proc/net/tcp").unwrap_or_default();
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (local, remote, state, inode) = (
                *fields.get(1)?,
                *fields.get(2)?,
                *fields.get(3)?,
                *fields.get(9)?,
            );
            let local_port = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
            (local_port == port).then(|| {
                let holder = socket_holder(inode)
                    .map(|(pid, cmd)| format!(" held by pid {pid} ({cmd})"))
                    .unwrap_or_default();
                format!("{} {local}->{remote}{holder}", tcp_state_name(state))
            })
        })
        .collect()
}

/// The name of a `/proc/net/tcp` state (`st`, in hex).
fn tcp_state_name(hex: &str) -> &'static str {
    const NAMES: [&str; 12] = [
        "?",
        "ESTABLISHED",
        "SYN_SENT",
        "SYN_RECV",
        "FIN_WAIT1",
        "FIN_WAIT2",
        "TIME_WAIT",
        "CLOSE",
        "CLOSE_WAIT",
        "LAST_ACK",
        "LISTEN",
        "CLOSING",
    ];
    let index = usize::from_str_radix(hex, 16).unwrap_or(0);
    NAMES.get(index).copied().unwrap_or("?")
}

/// The first process with socket `inode` open, and its command line.
fn socket_holder(inode: &str) -> Option<(u32, String)> {
    if inode == "0" {
        return None; // TIME_WAIT and orphans belong to no process
    }
    let target = format!("socket:[{inode}]");
    processes().into_iter().find_map(|process| {
        let fds = fs::read_dir(format!("/proc/{}/fd", process.pid)).ok()?;
        fds.flatten()
            .any(|fd| {
                fs::read_link(fd.path()).is_ok_and(|link| link.as_os_str() == target.as_str())
            })
            .then_some((process.pid, process.cmdline))
    })
}
