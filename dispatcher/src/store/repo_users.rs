//! The `repo_users` table: the repository-to-user mapping (seeded from the config, changed
//! through `/repositories`).

use rusqlite::{params, Connection, OptionalExtension};

use crate::model::{now_millis, RepoUser};

fn repo_user_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RepoUser> {
    Ok(RepoUser {
        repo_key: r.get(0)?,
        unix_user: r.get(1)?,
        account: r.get(2)?,
    })
}

/// The whole mapping.
pub fn repo_users(conn: &Connection) -> rusqlite::Result<Vec<RepoUser>> {
    let mut stmt =
        conn.prepare("SELECT repo_key, unix_user, account FROM repo_users ORDER BY repo_key")?;
    let rows = stmt.query_map([], repo_user_from_row)?;
    rows.collect()
}

/// The entries mapped to `unix_user`.
pub fn repositories_of(conn: &Connection, unix_user: &str) -> rusqlite::Result<Vec<RepoUser>> {
    let mut stmt = conn.prepare(
        "SELECT repo_key, unix_user, account FROM repo_users WHERE unix_user = ?1 ORDER BY repo_key",
    )?;
    let rows = stmt.query_map(params![unix_user], repo_user_from_row)?;
    rows.collect()
}

/// Insert the config's entries whose key is not in the table yet; existing rows (earlier
/// seeds or API writes) are kept. Returns how many were inserted.
pub fn seed_repo_users(conn: &mut Connection, entries: &[RepoUser]) -> rusqlite::Result<usize> {
    let tx = conn.transaction()?;
    let mut inserted = 0;
    for e in entries {
        inserted += tx.execute(
            "INSERT OR IGNORE INTO repo_users (repo_key, unix_user, account, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            params![e.repo_key, e.unix_user, e.account, now_millis()],
        )?;
    }
    tx.commit()?;
    Ok(inserted)
}

/// Replace `unix_user`'s whole list in one transaction. Keys already mapped to another user
/// are returned (sorted) and nothing changes.
pub fn replace_repositories(
    conn: &mut Connection,
    unix_user: &str,
    entries: &[RepoUser],
) -> rusqlite::Result<Result<(), Vec<(String, String)>>> {
    let tx = conn.transaction()?;
    let mut conflicts = Vec::new();
    for e in entries {
        let owner: Option<String> = tx
            .query_row(
                "SELECT unix_user FROM repo_users WHERE repo_key = ?1 AND unix_user <> ?2",
                params![e.repo_key, unix_user],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(owner) = owner {
            conflicts.push((e.repo_key.clone(), owner));
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort();
        return Ok(Err(conflicts)); // dropping `tx` rolls back (nothing was written)
    }
    tx.execute(
        "DELETE FROM repo_users WHERE unix_user = ?1",
        params![unix_user],
    )?;
    for e in entries {
        tx.execute(
            "INSERT INTO repo_users (repo_key, unix_user, account, updated_ms) VALUES (?1, ?2, ?3, ?4)",
            params![e.repo_key, unix_user, e.account, now_millis()],
        )?;
    }
    tx.commit()?;
    Ok(Ok(()))
}
