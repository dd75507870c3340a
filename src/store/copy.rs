//! Copy: moves everything a SQLite database holds into an empty PostgreSQL one (`pollhook
//! migrate-storage`), so a deployment grows past one machine without a re-baseline.
//!
//! In: an open SQLite store and an open, migrated, empty PostgreSQL store. Out: every row of
//! every table (snapshot, poll state, page records, events with their sequence numbers,
//! endpoints with their secrets and formats, config endpoints an operator removed, deliveries
//! and attempts), and how many of each.
//!
//! Invariants:
//! - The source is read in one read transaction, so the copy is one consistent state even if
//!   something writes to it meanwhile; the target is written in one transaction, so a failed
//!   copy leaves it empty and the command can simply be run again.
//! - Ids are kept (events' `seq` orders deliveries per item; deliveries and attempts refer to
//!   them), and the target's identity sequences continue after the highest.
//! - Leases are not copied: no process holds work in the new database yet.
//! - A target that already holds pollhook data is refused, never merged into.

use std::fmt;

use super::{Backend, Store, StoreError};

/// A column's type, the same in both schemas.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// `INTEGER` / `BIGINT`.
    Int,
    /// `INTEGER` / `INTEGER` (attempt counts, HTTP statuses).
    Int32,
    /// `TEXT`.
    Text,
    /// `BLOB` / `BYTEA`.
    Bytes,
    /// `INTEGER` 0 or 1 / `BOOLEAN`.
    Bool,
}

/// One column of a copied table.
pub(super) struct Column {
    pub(super) name: &'static str,
    pub(super) kind: Kind,
}

/// One table to copy, its columns, and the key it is read in order of.
pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) columns: &'static [Column],
    pub(super) order: &'static str,
    /// Its identity column in PostgreSQL, whose sequence must continue after the copy.
    pub(super) identity: Option<&'static str>,
}

const fn col(name: &'static str, kind: Kind) -> Column {
    Column { name, kind }
}

use Kind::{Bool, Bytes, Int, Int32, Text};

/// Every table, parents before children.
pub(super) const TABLES: &[Table] = &[
    Table {
        name: "resources",
        columns: &[
            col("source", Text),
            col("resource", Text),
            col("baseline_at", Int),
            col("last_poll_at", Int),
            col("last_duration_ms", Int),
            col("last_outcome", Text),
            col("last_error", Text),
            col("item_count", Int),
            col("consecutive_errors", Int),
            col("held_deletes", Int),
            col("held_at", Int),
            col("accept_deletes", Bool),
            col("since_cursor", Text),
            col("full_sync_at", Int),
            col("version", Int),
        ],
        order: "source, resource",
        identity: None,
    },
    Table {
        name: "pages",
        columns: &[
            col("source", Text),
            col("resource", Text),
            col("url", Text),
            col("etag", Text),
            col("last_modified", Text),
            col("next_url", Text),
            col("ids", Text),
        ],
        order: "source, resource, url",
        identity: None,
    },
    Table {
        name: "snapshot",
        columns: &[
            col("source", Text),
            col("resource", Text),
            col("item_id", Text),
            col("hash", Bytes),
            col("body", Text),
            col("changed_at", Int),
            col("missing", Int32),
            col("raw_hash", Bytes),
        ],
        order: "source, resource, item_id",
        identity: None,
    },
    Table {
        name: "events",
        columns: &[
            col("seq", Int),
            col("id", Text),
            col("type", Text),
            col("source", Text),
            col("resource", Text),
            col("action", Text),
            col("resource_id", Text),
            col("detected_at", Int),
            col("payload", Text),
        ],
        order: "seq",
        identity: Some("seq"),
    },
    Table {
        name: "endpoints",
        columns: &[
            col("id", Int),
            col("name", Text),
            col("url", Text),
            col("secret", Text),
            col("old_secret", Text),
            col("old_secret_until", Int),
            col("signing", Text),
            col("resources", Text),
            col("actions", Text),
            col("active", Bool),
            col("headers", Text),
            col("timeout_ms", Int),
            col("origin", Text),
            col("disabled_reason", Text),
            col("failing_since", Int),
            col("created_at", Int),
            col("updated_at", Int),
            col("format", Text),
            col("config_fingerprint", Text),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "removed_endpoints",
        columns: &[col("name", Text), col("config_fingerprint", Text)],
        order: "name",
        identity: None,
    },
    Table {
        name: "deliveries",
        columns: &[
            col("id", Int),
            col("event_seq", Int),
            col("endpoint_id", Int),
            col("item_key", Text),
            col("status", Text),
            col("attempts", Int32),
            col("next_attempt_at", Int),
            col("last_status", Int32),
            col("last_error", Text),
            col("created_at", Int),
            col("finished_at", Int),
        ],
        order: "id",
        identity: Some("id"),
    },
    Table {
        name: "attempts",
        columns: &[
            col("id", Int),
            col("delivery_id", Int),
            col("at", Int),
            col("status", Int32),
            col("latency_ms", Int),
            col("error", Text),
            col("response", Text),
        ],
        order: "id",
        identity: Some("id"),
    },
];

/// Rows read per chunk.
pub(super) const CHUNK: usize = 5000;

/// One column's values for a chunk of rows.
#[derive(Debug)]
pub(super) enum Values {
    Int(Vec<Option<i64>>),
    Int32(Vec<Option<i32>>),
    Text(Vec<Option<String>>),
    Bytes(Vec<Option<Vec<u8>>>),
    Bool(Vec<bool>),
}

impl Values {
    pub(super) fn new(kind: Kind) -> Values {
        match kind {
            Kind::Int => Values::Int(Vec::with_capacity(CHUNK)),
            Kind::Int32 => Values::Int32(Vec::with_capacity(CHUNK)),
            Kind::Text => Values::Text(Vec::with_capacity(CHUNK)),
            Kind::Bytes => Values::Bytes(Vec::with_capacity(CHUNK)),
            Kind::Bool => Values::Bool(Vec::with_capacity(CHUNK)),
        }
    }
}

/// A chunk of one table's rows, by column.
#[derive(Debug)]
pub(super) struct Chunk {
    /// Index into [`TABLES`].
    pub(super) table: usize,
    pub(super) columns: Vec<Values>,
    pub(super) rows: usize,
}

/// Rows copied, per table.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Copied(pub Vec<(&'static str, u64)>);

impl fmt::Display for Copied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(t, n)| format!("{n} {t}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// Copies every row of `from` (SQLite) into `to` (PostgreSQL, empty).
pub async fn copy(from: &Store, to: &Store) -> Result<Copied, StoreError> {
    let (Backend::Sqlite(source), Backend::Postgres(target)) = (&from.backend, &to.backend) else {
        return Err(StoreError::NotFound(
            "migrate-storage copies a SQLite database (--from PATH) into PostgreSQL (--to postgres://…)"
                .to_owned(),
        ));
    };
    let (send, chunks) = tokio::sync::mpsc::channel::<Chunk>(2);
    let source = source.clone();
    let reader = tokio::task::spawn_blocking(move || source.export(&send));
    let written = target.import(chunks).await;
    let read = match reader.await {
        Ok(read) => read,
        Err(e) => std::panic::resume_unwind(e.into_panic()),
    };
    // A write failure closes the channel and stops the reader: report the write's error.
    let copied = written?;
    read?;
    Ok(copied)
}
