//! Every raw libc call the plugin makes outside the SPANK handle (`spank.rs`), each behind
//! a safe function: process groups and privilege drop between fork and exec, signals, pidfds and
//! `poll`, non-blocking pipes, the owner of a user namespace, and the `*at` calls that create the
//! work dir without following links. Nothing here keeps state. The rest of the crate is
//! `#![deny(unsafe_code)]`.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The effective uid of this process.
pub fn geteuid() -> u32 {
    // SAFETY: geteuid has no failure mode and touches no memory of ours.
    unsafe { libc::geteuid() }
}

/// The effective gid of this process.
pub fn getegid() -> u32 {
    // SAFETY: getegid has no failure mode and touches no memory of ours.
    unsafe { libc::getegid() }
}

/// Arranges that `command`'s child, between fork and exec, leads its own process group (so
/// [`sigkill_group`] reaches everything it starts) and, given `ids` = (uid, gid), drops to
/// them with `gid` as its only group, then checks that root cannot be regained.
pub fn own_group_and_identity(command: &mut Command, ids: Option<(u32, u32)>) {
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
    // (setpgid, setgroups, setgid, setuid; no allocation).
    unsafe {
        command.pre_exec(move || {
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some((uid, gid)) = ids {
                let groups = [gid];
                if libc::setgroups(1, groups.as_ptr()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // Regaining root must be impossible once the ids are dropped.
                if uid != 0 && libc::setuid(0) == 0 {
                    return Err(io::Error::from_raw_os_error(libc::EPERM));
                }
            }
            Ok(())
        });
    }
}

fn pid_t(pid: u32) -> io::Result<libc::pid_t> {
    libc::pid_t::try_from(pid).map_err(|_| io::ErrorKind::InvalidInput.into())
}

/// SIGKILLs process `pid` (a pid that vanished meanwhile gives an error, ESRCH).
pub fn sigkill(pid: u32) -> io::Result<()> {
    let pid = pid_t(pid)?;
    if pid <= 0 {
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: kill(2) with a positive pid signals that one process; no memory is touched.
    if unsafe { libc::kill(pid, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// SIGKILLs every process in process group `pgid`.
pub fn sigkill_group(pgid: u32) -> io::Result<()> {
    let pgid = pid_t(pgid)?;
    if pgid <= 1 {
        // kill(-1) would signal every process we may signal; 0 our own group.
        return Err(io::ErrorKind::InvalidInput.into());
    }
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is touched.
    if unsafe { libc::kill(-pgid, libc::SIGKILL) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A pidfd for process `pid`: readable once the process has exited (reaped or not).
pub fn pidfd_open(pid: u32) -> io::Result<OwnedFd> {
    let pid = pid_t(pid)?;
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let raw = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    let raw = i32::try_from(raw).map_err(|_| io::Error::from(io::ErrorKind::InvalidData))?;
    // SAFETY: a fresh fd returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Waits until one of `fds` is readable or hung up, or `timeout` passes. `None` entries are
/// skipped. Returns which are ready; an interrupted wait reports none.
pub fn poll_readable<const N: usize>(
    fds: [Option<BorrowedFd<'_>>; N],
    timeout: Duration,
) -> io::Result<[bool; N]> {
    // poll ignores negative fds.
    let mut polled = fds.map(|fd| libc::pollfd {
        fd: fd.map_or(-1, |fd| fd.as_raw_fd()),
        events: libc::POLLIN,
        revents: 0,
    });
    let millis = i32::try_from(timeout.as_millis().max(1)).unwrap_or(i32::MAX);
    let count =
        libc::nfds_t::try_from(N).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: `polled` holds `count` initialised pollfds that live across the call.
    let rc = unsafe { libc::poll(polled.as_mut_ptr(), count, millis) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
        return Ok([false; N]);
    }
    Ok(polled.map(|p| p.revents != 0))
}

/// Puts `fd` in non-blocking mode.
pub fn set_nonblocking(fd: BorrowedFd<'_>) -> io::Result<()> {
    // SAFETY: fcntl(F_GETFL) on a valid fd borrowed for the call.
    let flags = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) };
    if flags < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fcntl(F_SETFL) on the same fd.
    if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `ioctl(NS_GET_OWNER_UID)` (linux/nsfs.h: `_IO(0xb7, 0x4)`).
const NS_GET_OWNER_UID: libc::c_ulong = 0xb704;

/// The uid that created the user namespace `ns` (an open `/proc/PID/ns/user`).
pub fn user_ns_owner(ns: &File) -> io::Result<u32> {
    let mut owner: libc::uid_t = 0;
    // SAFETY: NS_GET_OWNER_UID writes one uid_t to the pointer, which lives across the call.
    let rc = unsafe { libc::ioctl(ns.as_raw_fd(), NS_GET_OWNER_UID as _, &mut owner) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(owner)
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput.into())
}

fn at_fd(dir: Option<&File>) -> libc::c_int {
    dir.map_or(libc::AT_FDCWD, |fd| fd.as_raw_fd())
}

fn owned(fd: libc::c_int) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd just returned by the kernel, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the directory `path` (relative to `dir`, or to the working dir), not following a
/// final symlink unless `follow`.
pub fn open_dir(dir: Option<&File>, path: &Path, follow: bool) -> io::Result<File> {
    let path = c_path(path)?;
    let nofollow = if follow { 0 } else { libc::O_NOFOLLOW };
    let flags = libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC | nofollow;
    // SAFETY: a valid dirfd (or AT_FDCWD) and a NUL-terminated path, both live across the call.
    owned(unsafe { libc::openat(at_fd(dir), path.as_ptr(), flags) }).map(File::from)
}

/// Creates directory `name` in `dir` with `mode` (less the umask). Never follows a final
/// symlink: anything already there gives `AlreadyExists`.
pub fn mkdir_at(dir: &File, name: &Path, mode: u32) -> io::Result<()> {
    let name = c_path(name)?;
    // SAFETY: a valid dirfd and a NUL-terminated name, both live across the call.
    if unsafe { libc::mkdirat(dir.as_raw_fd(), name.as_ptr(), mode) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the new regular file `name` in `dir` with `mode` (less the umask), for writing;
/// anything already there, a symlink included, is an error.
pub fn create_new_file_at(dir: &File, name: &Path, mode: u32) -> io::Result<File> {
    let name = c_path(name)?;
    let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC;
    // SAFETY: a valid dirfd and a NUL-terminated name; O_CREAT takes the mode as third argument.
    let fd = unsafe { libc::openat(dir.as_raw_fd(), name.as_ptr(), flags, mode as libc::c_uint) };
    owned(fd).map(File::from)
}

/// Renames `from` to `to`, both in `dir`, never following symlinks (renameat works on the
/// entries themselves).
pub fn rename_at(dir: &File, from: &Path, to: &Path) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    let fd = dir.as_raw_fd();
    // SAFETY: a valid dirfd and two NUL-terminated names, all live across the call.
    if unsafe { libc::renameat(fd, from.as_ptr(), fd, to.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn refuses_signals_that_would_reach_everyone() {
        assert!(sigkill(0).is_err());
        assert!(sigkill_group(0).is_err());
        assert!(sigkill_group(1).is_err());
        assert!(sigkill(u32::MAX).is_err());
    }

    #[test]
    fn polls_a_pipe() {
        let (reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
        let ready = poll_readable([Some(reader.as_fd()), None], Duration::from_millis(1));
        assert_eq!(ready.unwrap(), [false, false]);
        drop(writer);
        let ready = poll_readable([Some(reader.as_fd()), None], Duration::from_secs(5));
        assert_eq!(ready.unwrap(), [true, false]);
    }
}
