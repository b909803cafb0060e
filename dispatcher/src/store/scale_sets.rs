//! The `scale_sets` table: the runner scale set of each pool and registration scope
//! (listener intake), and the last message of its session that was applied.
//!
//! A message's effects and its id are written in one transaction ([`apply_message`]), so a
//! message redelivered after `kill -9` (it was applied, not yet acknowledged) is recognised
//! by its id and applied once.

use rusqlite::{params, Connection, OptionalExtension};

/// A scale set as we recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSetRow {
    pub pool: String,
    pub scope: String,
    pub scale_set_id: u64,
    pub name: String,
    pub last_message_id: u64,
}

pub fn scale_set(
    conn: &Connection,
    pool: &str,
    scope: &str,
) -> rusqlite::Result<Option<ScaleSetRow>> {
    conn.query_row(
        "SELECT pool, scope, scale_set_id, name, last_message_id FROM scale_sets
         WHERE pool = ?1 AND scope = ?2",
        params![pool, scope],
        |r| {
            Ok(ScaleSetRow {
                pool: r.get(0)?,
                scope: r.get(1)?,
                scale_set_id: r.get::<_, i64>(2)? as u64,
                name: r.get(3)?,
                last_message_id: r.get::<_, i64>(4)? as u64,
            })
        },
    )
    .optional()
}

/// Record the scale set found or created for `pool` in `scope`. A set recreated under a new
/// id (deleted on GitHub's side) starts its message ids afresh.
pub fn upsert_scale_set(
    conn: &Connection,
    pool: &str,
    scope: &str,
    scale_set_id: u64,
    name: &str,
) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO scale_sets (pool, scope, scale_set_id, name) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (pool, scope) DO UPDATE SET
           last_message_id = CASE WHEN scale_set_id = excluded.scale_set_id THEN last_message_id ELSE 0 END,
           scale_set_id = excluded.scale_set_id, name = excluded.name",
        params![pool, scope, scale_set_id as i64, name],
    )?;
    Ok(())
}

/// Apply one session message: `effects` run only when `message_id` is past the last one
/// applied, in the same transaction that records it. False: a redelivery, nothing applied.
pub fn apply_message<T>(
    conn: &mut Connection,
    scale_set_id: u64,
    message_id: u64,
    effects: impl FnOnce(&Connection) -> rusqlite::Result<T>,
) -> rusqlite::Result<Option<T>> {
    let tx = conn.transaction()?;
    let last: Option<i64> = tx
        .query_row(
            "SELECT MAX(last_message_id) FROM scale_sets WHERE scale_set_id = ?1",
            params![scale_set_id as i64],
            |r| r.get(0),
        )
        .optional()?
        .flatten();
    if last.is_some_and(|last| message_id as i64 <= last) {
        return Ok(None);
    }
    let applied = effects(&tx)?;
    tx.execute(
        "UPDATE scale_sets SET last_message_id = ?2 WHERE scale_set_id = ?1",
        params![scale_set_id as i64, message_id as i64],
    )?;
    tx.commit()?;
    Ok(Some(applied))
}
