//! Writing a copied database into PostgreSQL for [`crate::store::copy`]: one transaction, a
//! statement per chunk, then the identity sequences moved past the copied ids.

use tokio::sync::mpsc::Receiver;
use tokio_postgres::types::ToSql;

use super::Db;
use crate::store::StoreError;
use crate::store::copy::{Chunk, Copied, Kind, TABLES, Values};

impl Db {
    /// Writes every chunk into this (empty) database in one transaction.
    pub(in crate::store) async fn import(
        &self,
        mut chunks: Receiver<Chunk>,
    ) -> Result<Copied, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let used = tx
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM resources) OR EXISTS (SELECT 1 FROM events)
                     OR EXISTS (SELECT 1 FROM endpoints) OR EXISTS (SELECT 1 FROM snapshot)",
                &[],
            )
            .await?
            .get::<_, bool>(0);
        if used {
            return Err(StoreError::Duplicate(format!(
                "postgres://{} already holds pollhook data; migrate-storage copies into an empty database only",
                self.target()
            )));
        }
        let mut copied = Copied(TABLES.iter().map(|t| (t.name, 0)).collect());
        while let Some(chunk) = chunks.recv().await {
            let table = &TABLES[chunk.table];
            copied.0[chunk.table].1 += chunk.rows as u64;
            if chunk.rows == 0 {
                continue;
            }
            let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            let arrays: Vec<String> = table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let ty = match c.kind {
                        Kind::Int => "bigint",
                        Kind::Int32 => "integer",
                        Kind::Text => "text",
                        Kind::Bytes => "bytea",
                        Kind::Bool => "boolean",
                    };
                    format!("${}::{ty}[]", i + 1)
                })
                .collect();
            let sql = format!(
                "INSERT INTO {} ({}) SELECT * FROM unnest({})",
                table.name,
                names.join(", "),
                arrays.join(", ")
            );
            let params: Vec<&(dyn ToSql + Sync)> = chunk
                .columns
                .iter()
                .map(|v| -> &(dyn ToSql + Sync) {
                    match v {
                        Values::Int(v) => v,
                        Values::Int32(v) => v,
                        Values::Text(v) => v,
                        Values::Bytes(v) => v,
                        Values::Bool(v) => v,
                    }
                })
                .collect();
            tx.execute(&sql, &params).await?;
        }
        for table in TABLES {
            if let Some(column) = table.identity {
                tx.execute(
                    &format!(
                        "SELECT setval(pg_get_serial_sequence('{0}', '{1}'),
                                       coalesce((SELECT max({1}) FROM {0}), 0) + 1, false)",
                        table.name, column
                    ),
                    &[],
                )
                .await?;
            }
        }
        tx.commit().await?;
        Ok(copied)
    }
}
