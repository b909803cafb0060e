//! The state database (runner rows, ticket hashes, the mapping) and its WAL and SHM files
//! are private to the daemon's user whatever umask it was started with. Alone in its test
//! binary: the umask is the process's.

mod support;

use std::os::unix::fs::PermissionsExt;

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn database_files_are_0600_under_a_permissive_umask() {
    // The attack's precondition: a daemon started with umask 000 (every file world-writable).
    nix::sys::stat::umask(nix::sys::stat::Mode::empty());
    let dir = tempfile::tempdir().unwrap();
    let cfg = support::ConfigBuilder::new(dir.path()).build();
    let db = cfg.db_path.clone();
    let running = support::start(cfg).await;
    let files = ["", "-wal", "-shm"].map(|suffix| {
        let mut p = db.clone().into_os_string();
        p.push(suffix);
        std::path::PathBuf::from(p)
    });
    for file in &files {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    running.shutdown().await;

    // Files an earlier run left readable are made private again at start.
    for file in files.iter().filter(|f| f.exists()) {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let running = support::start(support::ConfigBuilder::new(dir.path()).build()).await;
    for file in files.iter().filter(|f| f.exists()) {
        assert_eq!(mode(file), 0o600, "{}", file.display());
    }
    running.shutdown().await;
}
