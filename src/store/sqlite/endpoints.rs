//! Endpoints in SQLite: the file's, reconciled at start, and those added at run time.
//!
//! Invariant: a config endpoint's runtime state (paused, disabled, edited, removed) survives a
//! restart; only a change to the file's definition of it (its `config_fingerprint`) resets it.

use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{Db, json, rows, to_time, write_tx};
use crate::endpoint::{ActionFilter, EndpointSpec};
use crate::secret::Secret;
use crate::store::{EndpointPatch, Origin, StoreError, StoredEndpoint, now_ms};

impl Db {
    /// Makes the database's config-origin endpoints match `specs`: adds new ones, applies a
    /// changed definition (resetting what was done at run time), leaves an unchanged one as the
    /// operator left it (paused, disabled, edited or removed), and removes config endpoints no
    /// longer in the file (with their deliveries).
    pub(in crate::store) fn reconcile_endpoints(
        &self,
        specs: &[EndpointSpec],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let now = now_ms();
        for spec in specs {
            let fingerprint = spec.fingerprint();
            let removed: Option<String> = tx
                .query_row(
                    "SELECT config_fingerprint FROM removed_endpoints WHERE name = ?1",
                    params![spec.name],
                    |r| r.get(0),
                )
                .optional()?;
            match removed {
                Some(f) if f == fingerprint => continue,
                Some(_) => {
                    tx.execute(
                        "DELETE FROM removed_endpoints WHERE name = ?1",
                        params![spec.name],
                    )?;
                }
                None => {}
            }
            insert_endpoint(
                &tx,
                spec,
                Origin::Config,
                Some(&fingerprint),
                now,
                APPLY_CHANGED,
            )?;
        }
        // A config endpoint removed from the file is removed here too, with its queue: kept
        // inactive, it would collect deliveries nobody will ever send.
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        tx.execute(
            "DELETE FROM endpoints
             WHERE origin = 'config' AND name NOT IN (SELECT value FROM json_each(?1))",
            params![json(&names)],
        )?;
        tx.execute(
            "DELETE FROM removed_endpoints WHERE name NOT IN (SELECT value FROM json_each(?1))",
            params![json(&names)],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Every endpoint, by name.
    pub(in crate::store) fn endpoints(&self) -> Result<Vec<StoredEndpoint>, StoreError> {
        let conn = self.conn()?;
        load_endpoints(&conn)
    }

    /// Registers an endpoint at run time.
    pub(in crate::store) fn add_endpoint(
        &self,
        spec: &EndpointSpec,
        origin: Origin,
    ) -> Result<i64, StoreError> {
        let conn = self.conn()?;
        let now = now_ms();
        insert_endpoint(&conn, spec, origin, None, now, "").map_err(|e| match e {
            rusqlite::Error::SqliteFailure(f, _)
                if f.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                StoreError::Duplicate(format!("an endpoint named {} already exists", spec.name))
            }
            e => e.into(),
        })?;
        Ok(conn.last_insert_rowid())
    }

    /// Changes an endpoint's settings.
    pub(in crate::store) fn update_endpoint(
        &self,
        name: &str,
        patch: &EndpointPatch,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let now = now_ms();
        let exists: Option<String> = tx
            .query_row(
                "SELECT secret FROM endpoints WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        let Some(current_secret) = exists else {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        };
        if let Some(url) = &patch.url {
            tx.execute(
                "UPDATE endpoints SET url = ?2 WHERE name = ?1",
                params![name, url],
            )?;
        }
        if let Some(secret) = &patch.secret {
            let until = now + patch.rotation_overlap.unwrap_or_default().as_millis() as i64;
            tx.execute(
                "UPDATE endpoints SET secret = ?2, old_secret = ?3, old_secret_until = ?4 WHERE name = ?1",
                params![name, secret.expose(), current_secret, until],
            )?;
        }
        if let Some(resources) = &patch.resources {
            tx.execute(
                "UPDATE endpoints SET resources = ?2 WHERE name = ?1",
                params![name, json(resources)],
            )?;
        }
        if let Some(actions) = &patch.actions {
            tx.execute(
                "UPDATE endpoints SET actions = ?2 WHERE name = ?1",
                params![name, json(actions)],
            )?;
        }
        if let Some(signing) = patch.signing {
            tx.execute(
                "UPDATE endpoints SET signing = ?2 WHERE name = ?1",
                params![name, signing.as_str()],
            )?;
        }
        if let Some(format) = patch.format {
            tx.execute(
                "UPDATE endpoints SET format = ?2 WHERE name = ?1",
                params![name, format.as_str()],
            )?;
        }
        tx.execute(
            "UPDATE endpoints SET updated_at = ?2 WHERE name = ?1",
            params![name, now],
        )?;
        tx.commit()?;
        Ok(())
    }

    /// Removes an endpoint with its deliveries and attempts. A config endpoint stays removed
    /// across restarts until the file's definition of it changes.
    pub(in crate::store) fn remove_endpoint(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn()?;
        let tx = write_tx(&mut conn)?;
        let fingerprint: Option<Option<String>> = tx
            .query_row(
                "SELECT config_fingerprint FROM endpoints WHERE name = ?1 AND origin = 'config'",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(Some(fingerprint)) = fingerprint {
            tx.execute(
                "INSERT OR REPLACE INTO removed_endpoints (name, config_fingerprint) VALUES (?1, ?2)",
                params![name, fingerprint],
            )?;
        }
        if tx.execute("DELETE FROM endpoints WHERE name = ?1", params![name])? == 0 {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        }
        tx.commit()?;
        Ok(())
    }

    /// Pauses (`false`) or resumes (`true`) an endpoint; resuming clears a disabled state.
    pub(in crate::store) fn set_endpoint_active(
        &self,
        name: &str,
        active: bool,
    ) -> Result<(), StoreError> {
        let conn = self.conn()?;
        let n = conn.execute(
            "UPDATE endpoints SET active = ?2, updated_at = ?3,
                 disabled_reason = CASE WHEN ?2 THEN NULL ELSE disabled_reason END,
                 failing_since = CASE WHEN ?2 THEN NULL ELSE failing_since END
             WHERE name = ?1",
            params![name, active, now_ms()],
        )?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        }
        Ok(())
    }

    /// One endpoint by row id.
    pub(in crate::store) fn endpoint(&self, id: i64) -> Result<Option<StoredEndpoint>, StoreError> {
        let conn = self.conn()?;
        Ok(load_endpoints(&conn)?.into_iter().find(|e| e.id == id))
    }

    /// One endpoint by name.
    pub(in crate::store) fn endpoint_named(
        &self,
        name: &str,
    ) -> Result<StoredEndpoint, StoreError> {
        let conn = self.conn()?;
        load_endpoints(&conn)?
            .into_iter()
            .find(|e| e.spec.name == name)
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "no endpoint {name} (see `pollhook endpoints list`)"
                ))
            })
    }
}

/// How [`Db::reconcile_endpoints`] writes a config endpoint that exists: the file's definition
/// replaces it, with its runtime state, only if that definition changed.
const APPLY_CHANGED: &str = "
     ON CONFLICT (name) DO UPDATE SET
         url = excluded.url, secret = excluded.secret, signing = excluded.signing,
         format = excluded.format,
         resources = excluded.resources, actions = excluded.actions,
         active = excluded.active, headers = excluded.headers,
         timeout_ms = excluded.timeout_ms, origin = 'config',
         config_fingerprint = excluded.config_fingerprint,
         old_secret = NULL, old_secret_until = NULL,
         disabled_reason = NULL, failing_since = NULL,
         updated_at = excluded.updated_at
     WHERE config_fingerprint IS NOT excluded.config_fingerprint";

/// Inserts an endpoint's row, `on_conflict` saying what an existing one of that name becomes
/// (nothing: the insert fails).
fn insert_endpoint(
    conn: &Connection,
    spec: &EndpointSpec,
    origin: Origin,
    fingerprint: Option<&str>,
    now: i64,
    on_conflict: &str,
) -> rusqlite::Result<usize> {
    let sql = format!(
        "INSERT INTO endpoints (name, url, secret, signing, resources, actions, active, headers,
                                timeout_ms, format, origin, config_fingerprint, created_at,
                                updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13){on_conflict}"
    );
    conn.prepare_cached(&sql)?.execute(params![
        spec.name,
        spec.url,
        spec.secret.expose(),
        spec.signing.as_str(),
        json(&spec.resources),
        json(&spec.actions),
        spec.active,
        json(&spec.headers),
        spec.timeout.map(|t| t.as_millis() as i64),
        spec.format.as_str(),
        origin.as_str(),
        fingerprint,
        now,
    ])
}

pub(super) fn load_endpoints(conn: &Connection) -> Result<Vec<StoredEndpoint>, StoreError> {
    rows(
        conn,
        "SELECT id, name, url, secret, signing, resources, actions, active, headers, timeout_ms,
                old_secret, old_secret_until, origin, disabled_reason, failing_since, format
         FROM endpoints ORDER BY name",
        [],
        |r| {
            let name: String = r.get(1)?;
            let corrupt = |what: &str| StoreError::Corrupt(format!("endpoint {name}: {what}"));
            // The JSON and enum columns, read as text and parsed.
            let text = |i: usize| r.get::<_, String>(i);
            let timeout: Option<i64> = r.get(9)?;
            let old_secret: Option<String> = r.get(10)?;
            let old_until: Option<i64> = r.get(11)?;
            Ok(StoredEndpoint {
                id: r.get(0)?,
                spec: EndpointSpec {
                    url: r.get(2)?,
                    secret: Secret::new(text(3)?),
                    signing: text(4)?.parse().map_err(|_| corrupt("signing"))?,
                    resources: serde_json::from_str(&text(5)?).map_err(|_| corrupt("resources"))?,
                    actions: serde_json::from_str::<ActionFilter>(&text(6)?)
                        .map_err(|_| corrupt("actions"))?,
                    active: r.get(7)?,
                    headers: serde_json::from_str(&text(8)?).map_err(|_| corrupt("headers"))?,
                    timeout: timeout.map(|ms| Duration::from_millis(ms.max(0) as u64)),
                    format: text(15)?.parse().map_err(|_| corrupt("format"))?,
                    name: name.clone(),
                },
                old_secret: match (old_secret, old_until) {
                    (Some(s), Some(until)) => Some((Secret::new(s), to_time(until))),
                    _ => None,
                },
                origin: r.get(12)?,
                disabled_reason: r.get(13)?,
                failing_since: r.get::<_, Option<i64>>(14)?.map(to_time),
            })
        },
    )
}
