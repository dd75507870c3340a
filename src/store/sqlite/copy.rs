//! Reading a whole SQLite database for [`crate::store::copy`]: one read transaction, every
//! table in key order, in chunks.

use rusqlite::types::ValueRef;

use super::Db;
use crate::store::StoreError;
use crate::store::copy::{CHUNK, Chunk, TABLES, Values};

impl Db {
    /// Sends every row of every table to `out`, in chunks, from one consistent state.
    pub(in crate::store) fn export(
        &self,
        out: &tokio::sync::mpsc::Sender<Chunk>,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        // Deferred: a read transaction, which WAL keeps consistent while others write.
        let tx = conn.transaction()?;
        for (index, table) in TABLES.iter().enumerate() {
            let names: Vec<&str> = table.columns.iter().map(|c| c.name).collect();
            let mut stmt = tx.prepare(&format!(
                "SELECT {} FROM {} ORDER BY {}",
                names.join(", "),
                table.name,
                table.order
            ))?;
            let mut rows = stmt.query([])?;
            let fresh = || Chunk {
                table: index,
                columns: table.columns.iter().map(|c| Values::new(c.kind)).collect(),
                rows: 0,
            };
            let mut chunk = fresh();
            while let Some(row) = rows.next()? {
                for (i, column) in chunk.columns.iter_mut().enumerate() {
                    let value = row.get_ref(i)?;
                    let odd = || {
                        StoreError::Corrupt(format!(
                            "{}.{} holds {:?}",
                            table.name,
                            table.columns[i].name,
                            value.data_type()
                        ))
                    };
                    match column {
                        Values::Int(v) => v.push(int(value).map_err(|_| odd())?),
                        Values::Int32(v) => v.push(
                            int(value)
                                .map_err(|_| odd())?
                                .map(|n| i32::try_from(n).map_err(|_| odd()))
                                .transpose()?,
                        ),
                        Values::Bool(v) => v.push(int(value).map_err(|_| odd())?.unwrap_or(0) != 0),
                        Values::Text(v) => v.push(match value {
                            ValueRef::Null => None,
                            ValueRef::Text(t) => Some(String::from_utf8_lossy(t).into_owned()),
                            _ => return Err(odd()),
                        }),
                        Values::Bytes(v) => v.push(match value {
                            ValueRef::Null => None,
                            ValueRef::Blob(b) => Some(b.to_vec()),
                            _ => return Err(odd()),
                        }),
                    }
                }
                chunk.rows += 1;
                if chunk.rows == CHUNK {
                    let full = std::mem::replace(&mut chunk, fresh());
                    out.blocking_send(full).map_err(|_| stopped())?;
                }
            }
            // An empty last chunk still says the table was read (and counts 0 rows).
            out.blocking_send(chunk).map_err(|_| stopped())?;
        }
        Ok(())
    }
}

fn int(value: ValueRef<'_>) -> Result<Option<i64>, ()> {
    match value {
        ValueRef::Null => Ok(None),
        ValueRef::Integer(n) => Ok(Some(n)),
        _ => Err(()),
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the copy's writer stopped".to_owned())
}
