//! The console's sessions and login links, in memory: who holds which session cookie, its
//! CSRF token and when it expires. A restart logs everybody out, which is the safe direction.
//!
//! An admin session comes from the admin token; a viewer session (read-only, one Unix user's
//! view) from a one-use login link that the CLI gets with a MUNGE credential. Ids, CSRF tokens
//! and link codes are 256 random bits; only their sha256 is kept as the map key, so a memory
//! dump shows no usable cookie.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::now_secs;

/// How long an admin session lasts (no sliding renewal: log in again).
pub const ADMIN_SESSION_SECS: i64 = 30 * 60;
/// How long a viewer session from a login link lasts.
pub const VIEWER_SESSION_SECS: i64 = 15 * 60;
/// How long a login link may wait before it is opened (once).
pub const LINK_SECS: i64 = 5 * 60;
/// Most live sessions and links each; the oldest goes first when full.
pub const MAX_ENTRIES: usize = 1024;

/// What a session may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// The admin token: every view, and changing mappings.
    Admin,
    /// A Unix user's read-only view of their own repositories.
    Viewer(String),
}

impl Role {
    pub fn may_edit(&self) -> bool {
        matches!(self, Role::Admin)
    }
}

/// A live session, as a handler sees it.
#[derive(Debug, Clone)]
pub struct Session {
    pub role: Role,
    pub csrf: String,
    pub expires_at: i64,
}

impl Session {
    /// Is `sent` this session's CSRF token (compared in constant time)?
    pub fn csrf_matches(&self, sent: &str) -> bool {
        bool::from(sent.as_bytes().ct_eq(self.csrf.as_bytes()))
    }
}

struct Link {
    user: String,
    expires_at: i64,
}

#[derive(Default)]
struct Tables {
    sessions: HashMap<String, Session>,
    links: HashMap<String, Link>,
}

/// The session and link tables, shared by the console's handlers.
#[derive(Clone, Default)]
pub struct Sessions {
    tables: Arc<Mutex<Tables>>,
}

/// 256 random bits, hex.
fn random_secret() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn key(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Drop what expired; if still full, drop the entry expiring first.
fn make_room<V>(map: &mut HashMap<String, V>, now: i64, expires: impl Fn(&V) -> i64) {
    map.retain(|_, v| expires(v) > now);
    while map.len() >= MAX_ENTRIES {
        let Some(first) = map
            .iter()
            .min_by_key(|(_, v)| expires(v))
            .map(|(k, _)| k.clone())
        else {
            return;
        };
        map.remove(&first);
    }
}

impl Sessions {
    fn tables(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `role`; returns (cookie value, session).
    pub fn open(&self, role: Role) -> (String, Session) {
        let now = now_secs();
        let ttl = match role {
            Role::Admin => ADMIN_SESSION_SECS,
            Role::Viewer(_) => VIEWER_SESSION_SECS,
        };
        let session = Session {
            role,
            csrf: random_secret(),
            expires_at: now + ttl,
        };
        let id = random_secret();
        let mut tables = self.tables();
        make_room(&mut tables.sessions, now, |s| s.expires_at);
        tables.sessions.insert(key(&id), session.clone());
        (id, session)
    }

    /// The live session whose cookie is `id`; an expired one is removed and not returned.
    pub fn get(&self, id: &str) -> Option<Session> {
        self.get_at(id, now_secs())
    }

    fn get_at(&self, id: &str, now: i64) -> Option<Session> {
        let mut tables = self.tables();
        let k = key(id);
        match tables.sessions.get(&k) {
            Some(s) if s.expires_at > now => Some(s.clone()),
            Some(_) => {
                tables.sessions.remove(&k);
                None
            }
            None => None,
        }
    }

    pub fn close(&self, id: &str) {
        self.tables().sessions.remove(&key(id));
    }

    /// A one-use login link code for `user`'s read-only view.
    pub fn issue_link(&self, user: &str) -> String {
        let now = now_secs();
        let code = random_secret();
        let mut tables = self.tables();
        make_room(&mut tables.links, now, |l| l.expires_at);
        tables.links.insert(
            key(&code),
            Link {
                user: user.to_string(),
                expires_at: now + LINK_SECS,
            },
        );
        code
    }

    /// Trade a link code (once, before it expires) for a viewer session.
    pub fn redeem_link(&self, code: &str) -> Option<(String, Session)> {
        let link = self.tables().links.remove(&key(code))?;
        if link.expires_at <= now_secs() {
            return None;
        }
        Some(self.open(Role::Viewer(link.user)))
    }

    /// Test hook: move every session's and link's expiry `secs` into the past.
    #[cfg(test)]
    pub(super) fn age(&self, secs: i64) {
        let mut tables = self.tables();
        tables
            .sessions
            .values_mut()
            .for_each(|s| s.expires_at -= secs);
        tables.links.values_mut().for_each(|l| l.expires_at -= secs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_and_close() {
        let sessions = Sessions::default();
        let (id, s) = sessions.open(Role::Admin);
        assert!(sessions.get(&id).is_some());
        assert!(s.csrf_matches(&s.csrf));
        assert!(!s.csrf_matches("") && !s.csrf_matches(&id));
        assert!(sessions.get("not-a-session").is_none());
        sessions.age(ADMIN_SESSION_SECS);
        assert!(
            sessions.get(&id).is_none(),
            "an expired session still opens"
        );
        let (id, _) = sessions.open(Role::Viewer("gha-ci".into()));
        sessions.close(&id);
        assert!(sessions.get(&id).is_none());
    }

    #[test]
    fn links_open_once_and_expire() {
        let sessions = Sessions::default();
        let code = sessions.issue_link("gha-ci");
        let (id, s) = sessions.redeem_link(&code).unwrap();
        assert_eq!(s.role, Role::Viewer("gha-ci".into()));
        assert!(!s.role.may_edit());
        assert!(sessions.get(&id).is_some());
        assert!(sessions.redeem_link(&code).is_none(), "a link opened twice");
        let late = sessions.issue_link("gha-ci");
        sessions.age(LINK_SECS);
        assert!(
            sessions.redeem_link(&late).is_none(),
            "an expired link opened"
        );
    }

    #[test]
    fn the_tables_are_bounded() {
        let sessions = Sessions::default();
        for _ in 0..MAX_ENTRIES + 10 {
            sessions.open(Role::Admin);
        }
        assert!(sessions.tables().sessions.len() <= MAX_ENTRIES);
    }
}
