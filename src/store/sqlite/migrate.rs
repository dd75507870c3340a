//! SQLite migrations: an append-only list tracked by `PRAGMA user_version`, applied in one
//! transaction (cargo's habit). A database written by a newer pollhook is refused, not misread.

use std::path::Path;

use rusqlite::Connection;

use super::write_tx;
use crate::store::StoreError;

/// Schema versions, oldest first. Append only: never edit a released step.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: the whole first schema.
    r#"
    CREATE TABLE snapshot (
        source      TEXT NOT NULL,
        resource    TEXT NOT NULL,
        item_id     TEXT NOT NULL,
        hash        BLOB NOT NULL,
        body        TEXT NOT NULL,
        changed_at  INTEGER NOT NULL,
        PRIMARY KEY (source, resource, item_id)
    ) WITHOUT ROWID;

    CREATE TABLE resources (
        source              TEXT NOT NULL,
        resource            TEXT NOT NULL,
        baseline_at         INTEGER,
        last_poll_at        INTEGER,
        last_duration_ms    INTEGER,
        last_outcome        TEXT,
        last_error          TEXT,
        item_count          INTEGER NOT NULL DEFAULT 0,
        consecutive_errors  INTEGER NOT NULL DEFAULT 0,
        held_deletes        INTEGER NOT NULL DEFAULT 0,
        held_at             INTEGER,
        accept_deletes      INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (source, resource)
    );

    CREATE TABLE events (
        seq          INTEGER PRIMARY KEY AUTOINCREMENT,
        id           TEXT NOT NULL UNIQUE,
        type         TEXT NOT NULL,
        source       TEXT NOT NULL,
        resource     TEXT NOT NULL,
        action       TEXT NOT NULL,
        resource_id  TEXT NOT NULL,
        detected_at  INTEGER NOT NULL,
        payload      TEXT NOT NULL
    );
    CREATE INDEX events_by_resource ON events (source, resource, seq);

    CREATE TABLE endpoints (
        id                INTEGER PRIMARY KEY,
        name              TEXT NOT NULL UNIQUE,
        url               TEXT NOT NULL,
        secret            TEXT NOT NULL,
        old_secret        TEXT,
        old_secret_until  INTEGER,
        signing           TEXT NOT NULL,
        resources         TEXT NOT NULL,
        actions           TEXT NOT NULL,
        active            INTEGER NOT NULL,
        headers           TEXT NOT NULL DEFAULT '[]',
        timeout_ms        INTEGER,
        origin            TEXT NOT NULL,
        disabled_reason   TEXT,
        failing_since     INTEGER,
        created_at        INTEGER NOT NULL,
        updated_at        INTEGER NOT NULL
    );

    CREATE TABLE deliveries (
        id               INTEGER PRIMARY KEY,
        event_seq        INTEGER NOT NULL REFERENCES events (seq),
        endpoint_id      INTEGER NOT NULL REFERENCES endpoints (id) ON DELETE CASCADE,
        item_key         TEXT NOT NULL,
        status           TEXT NOT NULL DEFAULT 'pending',
        attempts         INTEGER NOT NULL DEFAULT 0,
        next_attempt_at  INTEGER NOT NULL,
        locked_until     INTEGER NOT NULL DEFAULT 0,
        last_status      INTEGER,
        last_error       TEXT,
        created_at       INTEGER NOT NULL,
        finished_at      INTEGER
    );
    CREATE INDEX deliveries_due ON deliveries (next_attempt_at) WHERE status = 'pending';
    CREATE INDEX deliveries_lane ON deliveries (endpoint_id, item_key, id) WHERE status = 'pending';
    CREATE INDEX deliveries_by_event ON deliveries (event_seq);

    CREATE TABLE attempts (
        id           INTEGER PRIMARY KEY,
        delivery_id  INTEGER NOT NULL REFERENCES deliveries (id) ON DELETE CASCADE,
        at           INTEGER NOT NULL,
        status       INTEGER,
        latency_ms   INTEGER NOT NULL,
        error        TEXT,
        response     TEXT
    );
    CREATE INDEX attempts_by_delivery ON attempts (delivery_id);
    "#,
    // 2: deleted_after, incremental polling, conditional requests.
    r#"
    ALTER TABLE snapshot ADD COLUMN missing INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE resources ADD COLUMN since_cursor TEXT;
    ALTER TABLE resources ADD COLUMN full_sync_at INTEGER;
    ALTER TABLE resources ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE pages (
        source         TEXT NOT NULL,
        resource       TEXT NOT NULL,
        url            TEXT NOT NULL,
        etag           TEXT,
        last_modified  TEXT,
        next_url       TEXT,
        ids            TEXT NOT NULL,
        PRIMARY KEY (source, resource, url)
    ) WITHOUT ROWID;
    "#,
    // 3: claims walk one endpoint's pending deliveries in order, without a sort.
    r#"
    CREATE INDEX deliveries_pending ON deliveries (endpoint_id, id) WHERE status = 'pending';
    "#,
    // 4: the fast path for unchanged items: the hash of their bytes as last served.
    r#"
    ALTER TABLE snapshot ADD COLUMN raw_hash BLOB;
    "#,
    // 5: an endpoint's body format (json | xml).
    r#"
    ALTER TABLE endpoints ADD COLUMN format TEXT NOT NULL DEFAULT 'json';
    "#,
    // 6: runtime state of config endpoints survives restarts: the file's definition last applied,
    // and config endpoints an operator removed (until the file's definition changes).
    r#"
    ALTER TABLE endpoints ADD COLUMN config_fingerprint TEXT;
    CREATE TABLE removed_endpoints (
        name               TEXT PRIMARY KEY,
        config_fingerprint TEXT NOT NULL
    ) WITHOUT ROWID;
    "#,
];

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let too_new = |found: i64| StoreError::TooNew {
        path: path.to_owned(),
        found,
        known: MIGRATIONS.len(),
    };
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(too_new(version));
    }
    if version == MIGRATIONS.len() as i64 {
        return Ok(());
    }
    let tx = write_tx(conn)?;
    // Read again under the write lock: another process may have migrated in between.
    let version: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if version > MIGRATIONS.len() as i64 {
        return Err(too_new(version));
    }
    for step in &MIGRATIONS[version as usize..] {
        tx.execute_batch(step)?;
    }
    tx.pragma_update(None, "user_version", MIGRATIONS.len() as i64)?;
    tx.commit()?;
    Ok(())
}
