//! The cluster's one dispatcher address. Runner jobs redeem their tickets at the plugin's
//! `dispatcher_url`, which `ci/lib/plugin-fixtures.sh` points at a fixed port
//! (`GHA_DISPATCHER_PORT`, 6820), as an admin points it at the cluster's one dispatcher. A test
//! (or the demo) whose jobs redeem tickets holds this slot for as long as its dispatcher runs:
//! an exclusive lock on a file beside the cluster directory serialises them across processes.

use std::fs::File;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use test_support::{wait_until, wait_until_async};

use crate::Cluster;

/// Holds the dispatcher port until dropped.
pub struct DispatcherSlot {
    _lock: File,
    addr: SocketAddr,
}

impl DispatcherSlot {
    /// Waits for the slot (other holders finish their test first) and returns it.
    pub fn acquire(cluster: &Cluster) -> Result<DispatcherSlot> {
        let port: u16 = match std::env::var("GHA_DISPATCHER_PORT") {
            Ok(p) => p
                .parse()
                .context("GHA_DISPATCHER_PORT is not a port number")?,
            Err(_) => 6820,
        };
        let path = PathBuf::from(format!("{}.dispatcher.lock", cluster.dir().display()));
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        // SAFETY: a valid fd; flock blocks until the lock is ours, released when the file closes.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot lock {}", path.display()));
        }
        Ok(DispatcherSlot {
            _lock: lock,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    /// The address plugstack.conf's `dispatcher_url` names.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A listener on the slot's address, for the dispatcher (or a relay in front of it). The
    /// previous holder's listener may close a moment after its lock was released (its runtime
    /// shuts down after the test): an address in use is retried for a while.
    pub async fn listen(&self) -> Result<tokio::net::TcpListener> {
        let what = format!("the dispatcher slot {} to be free", self.addr);
        let bound = wait_until_async(&what, Duration::from_secs(30), || async {
            match tokio::net::TcpListener::bind(self.addr).await {
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => Err(e),
                other => Ok(Some(other)),
            }
        })
        .await?;
        bound.with_context(|| format!("cannot listen on the dispatcher slot {}", self.addr))
    }

    /// Waits until a dispatcher could bind the slot's address; fails, naming every socket on
    /// the port and the process that holds it, when that does not happen within 75 s. A holder
    /// can be fleeting (a client socket that drew the port as its ephemeral one, where
    /// `ci/`'s port reservation could not be made, holds it through TIME_WAIT's 60 s), hence
    /// the wait; a lasting one (a dispatcher this lock does not account for) is named.
    pub fn ensure_free(&self) -> Result<()> {
        let what = format!("the dispatcher address {} to be free", self.addr);
        let bound = wait_until(&what, Duration::from_secs(75), || {
            probe_bind(self.addr).is_ok()
        });
        bound.map_err(|timed_out| {
            let holders = crate::procfs::sockets_on_port(self.addr.port());
            anyhow::anyhow!(
                "the dispatcher address {} is in use ({timed_out}); its sockets: {}",
                self.addr,
                if holders.is_empty() {
                    "none listed".to_owned()
                } else {
                    holders.join("; ")
                }
            )
        })
    }
}

/// Binds and listens on `addr` as the dispatcher does, then lets go. With `SO_REUSEADDR`, as
/// tokio's `TcpListener::bind` sets it: a killed predecessor's connections linger in TIME_WAIT
/// on the port, and they do not stop the dispatcher.
fn probe_bind(addr: SocketAddr) -> std::io::Result<()> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1)
}

#[cfg(test)]
mod tests {
    use std::io::Read;
    use std::net::{TcpListener, TcpStream};

    use super::probe_bind;

    /// The port of a server that closed an accepted connection first and then stopped: the
    /// server's side of that connection is in TIME_WAIT, as after a dispatcher is SIGKILLed.
    fn port_left_in_time_wait() -> std::net::SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener.local_addr().expect("its address");
        let mut client = TcpStream::connect(addr).expect("connecting");
        let (served, _) = listener.accept().expect("accepting");
        drop(served); // the server closes first: its side goes to TIME_WAIT
        let mut rest = Vec::new();
        client
            .read_to_end(&mut rest)
            .expect("reading to the server's close");
        drop(client);
        drop(listener);
        addr
    }

    #[test]
    fn a_killed_predecessors_time_wait_connections_do_not_hold_the_slot() {
        let addr = port_left_in_time_wait();
        let lingering = crate::procfs::sockets_on_port(addr.port());
        assert!(
            lingering.iter().any(|socket| socket.contains("TIME_WAIT")),
            "no TIME_WAIT was made, so this test shows nothing: {lingering:?}"
        );
        probe_bind(addr).expect("the slot is free for a dispatcher");
    }

    #[test]
    fn a_listener_on_the_slot_is_found() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let addr = listener.local_addr().expect("its address");
        let found = probe_bind(addr).expect_err("a live listener holds the address");
        assert_eq!(found.kind(), std::io::ErrorKind::AddrInUse);
        let named = crate::procfs::sockets_on_port(addr.port());
        let me = format!("pid {}", std::process::id());
        assert!(
            named
                .iter()
                .any(|s| s.contains("LISTEN") && s.contains(&me)),
            "the listener and its process are named: {named:?}"
        );
    }
}
