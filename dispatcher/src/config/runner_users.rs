//! Who runner jobs may run as: not root, not a system account (uid below `slurm.min_uid`,
//! by default `UID_MIN` of `/etc/login.defs`). Checked by the config check and the mapping
//! API.

/// The default lowest uid a runner job may run as: `UID_MIN` of `/etc/login.defs`, 1000
/// when absent or unreadable. Below it are root and the system accounts.
pub fn default_min_uid() -> u32 {
    std::fs::read_to_string("/etc/login.defs")
        .ok()
        .and_then(|text| login_defs_uid_min(&text))
        .unwrap_or(1000)
}

/// `UID_MIN` in `login.defs` text.
pub fn login_defs_uid_min(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        (words.next() == Some("UID_MIN"))
            .then(|| words.next()?.parse().ok())
            .flatten()
    })
}

/// Why `user` may not run runner jobs (root, a system account below `min_uid`); `None`
/// when it may, or when it is not in the passwd database (sbatch then says so).
pub fn refuse_runner_user(user: &str, min_uid: u32) -> Option<String> {
    let uid = nix::unistd::User::from_name(user)
        .ok()
        .flatten()?
        .uid
        .as_raw();
    if uid == 0 {
        Some(format!(
            "{user} is root (uid 0): runner jobs may not run as root"
        ))
    } else if uid < min_uid {
        Some(format!(
            "{user} is a system account (uid {uid}, below {min_uid}): runner jobs may not run as it"
        ))
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uid_min_and_refusals() {
        let defs = "# comment\nUID_MAX 60000\nUID_MIN\t 500\nSYS_UID_MIN 100\n";
        assert_eq!(login_defs_uid_min(defs), Some(500));
        assert_eq!(login_defs_uid_min("#UID_MIN 5\n"), None);
        assert!(refuse_runner_user("root", 1000).unwrap().contains("root"));
        assert!(refuse_runner_user("daemon", 1000)
            .unwrap()
            .contains("system account"));
        assert_eq!(refuse_runner_user("no-such-user-here", 1000), None);
    }
}
