//! The passwd database (local files, LDAP, ... through NSS): whether a Unix user exists, a
//! uid's login name, a user's primary group.

/// Whether `name` is a user in the passwd database.
pub fn unix_user_exists(name: &str) -> Result<bool, std::io::Error> {
    nix::unistd::User::from_name(name)
        .map(|u| u.is_some())
        .map_err(std::io::Error::from)
}

/// The login name of a numeric uid, if it has one.
pub fn unix_user_name(uid: u32) -> Result<Option<String>, std::io::Error> {
    nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(uid))
        .map(|u| u.map(|u| u.name))
        .map_err(std::io::Error::from)
}

/// The numeric primary group of `name`; `None` when the user is unknown or cannot be looked
/// up (sbatch then names the problem in its own error).
pub fn primary_gid(name: &str) -> Option<u32> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(entry)) => Some(entry.gid.as_raw()),
        Ok(None) | Err(_) => None,
    }
}

/// The uid of `name`; `None` when the user is unknown or cannot be looked up.
pub fn uid_of(name: &str) -> Option<u32> {
    match nix::unistd::User::from_name(name) {
        Ok(Some(entry)) => Some(entry.uid.as_raw()),
        Ok(None) | Err(_) => None,
    }
}
