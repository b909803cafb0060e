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
use test_support::wait_until_async;

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
}
