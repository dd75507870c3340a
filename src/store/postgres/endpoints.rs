//! Endpoints in PostgreSQL: the file's, reconciled at start, and those added at run time. Every
//! replica's dispatcher re-reads them, so a change made through one replica reaches all.

use std::time::Duration;

use chrono::Utc;
use deadpool_postgres::GenericClient;

use super::events::insert_events_for;
use super::snapshot::notify;
use super::{Db, json, to_time};
use crate::config::Secret;
use crate::endpoint::{ActionFilter, EndpointSpec};
use crate::event::Event;
use crate::sign::Scheme;
use crate::store::{EndpointPatch, StoreError, StoredEndpoint, now_ms};

impl Db {
    /// Makes the database's config-origin endpoints match `specs`.
    pub(in crate::store) async fn reconcile_endpoints(
        &self,
        specs: &[EndpointSpec],
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // Replicas starting at once reconcile one after the other.
        tx.execute("LOCK TABLE endpoints IN SHARE ROW EXCLUSIVE MODE", &[])
            .await?;
        let now = now_ms();
        for spec in specs {
            tx.execute(
                "INSERT INTO endpoints (name, url, secret, signing, resources, actions, active,
                                        headers, timeout_ms, origin, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'config', $10, $10)
                 ON CONFLICT (name) DO UPDATE SET
                     url = excluded.url, secret = excluded.secret, signing = excluded.signing,
                     resources = excluded.resources, actions = excluded.actions,
                     active = excluded.active, headers = excluded.headers,
                     timeout_ms = excluded.timeout_ms, origin = 'config',
                     updated_at = excluded.updated_at
                 WHERE endpoints.url IS DISTINCT FROM excluded.url
                    OR endpoints.secret IS DISTINCT FROM excluded.secret
                    OR endpoints.signing IS DISTINCT FROM excluded.signing
                    OR endpoints.resources IS DISTINCT FROM excluded.resources
                    OR endpoints.actions IS DISTINCT FROM excluded.actions
                    OR endpoints.active IS DISTINCT FROM excluded.active
                    OR endpoints.headers IS DISTINCT FROM excluded.headers
                    OR endpoints.timeout_ms IS DISTINCT FROM excluded.timeout_ms",
                &[
                    &spec.name,
                    &spec.url,
                    &spec.secret.expose(),
                    &spec.signing.as_str(),
                    &json(&spec.resources),
                    &json(&spec.actions),
                    &spec.active,
                    &json(&spec.headers),
                    &spec.timeout.map(|t| t.as_millis() as i64),
                    &now,
                ],
            )
            .await?;
        }
        // A config endpoint removed from the file is removed here too, with its queue.
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        tx.execute(
            "DELETE FROM endpoints WHERE origin = 'config' AND name <> ALL($1::text[])",
            &[&names],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Every endpoint, by name.
    pub(in crate::store) async fn endpoints(&self) -> Result<Vec<StoredEndpoint>, StoreError> {
        let conn = self.conn().await?;
        load_endpoints(&conn).await
    }

    /// Registers an endpoint at run time.
    pub(in crate::store) async fn add_endpoint(
        &self,
        spec: &EndpointSpec,
    ) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "INSERT INTO endpoints (name, url, secret, signing, resources, actions, active,
                                        headers, timeout_ms, origin, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'api', $10, $10)
                 RETURNING id",
                &[
                    &spec.name,
                    &spec.url,
                    &spec.secret.expose(),
                    &spec.signing.as_str(),
                    &json(&spec.resources),
                    &json(&spec.actions),
                    &spec.active,
                    &json(&spec.headers),
                    &spec.timeout.map(|t| t.as_millis() as i64),
                    &now_ms(),
                ],
            )
            .await
            .map_err(|e| match StoreError::from(e) {
                StoreError::Duplicate(_) => {
                    StoreError::Duplicate(format!("an endpoint named {} already exists", spec.name))
                }
                e => e,
            })?;
        Ok(row.get(0))
    }

    /// Changes an endpoint's settings.
    pub(in crate::store) async fn update_endpoint(
        &self,
        name: &str,
        patch: &EndpointPatch,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let now = now_ms();
        let current = tx
            .query_opt(
                "SELECT secret FROM endpoints WHERE name = $1 FOR UPDATE",
                &[&name],
            )
            .await?;
        let Some(current) = current else {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        };
        let current_secret: String = current.get(0);
        if let Some(url) = &patch.url {
            tx.execute(
                "UPDATE endpoints SET url = $2 WHERE name = $1",
                &[&name, url],
            )
            .await?;
        }
        if let Some(secret) = &patch.secret {
            let until = now + patch.rotation_overlap.unwrap_or_default().as_millis() as i64;
            tx.execute(
                "UPDATE endpoints SET secret = $2, old_secret = $3, old_secret_until = $4
                 WHERE name = $1",
                &[&name, &secret.expose(), &current_secret, &until],
            )
            .await?;
        }
        if let Some(resources) = &patch.resources {
            tx.execute(
                "UPDATE endpoints SET resources = $2 WHERE name = $1",
                &[&name, &json(resources)],
            )
            .await?;
        }
        if let Some(actions) = &patch.actions {
            tx.execute(
                "UPDATE endpoints SET actions = $2 WHERE name = $1",
                &[&name, &json(actions)],
            )
            .await?;
        }
        if let Some(signing) = patch.signing {
            tx.execute(
                "UPDATE endpoints SET signing = $2 WHERE name = $1",
                &[&name, &signing.as_str()],
            )
            .await?;
        }
        tx.execute(
            "UPDATE endpoints SET updated_at = $2 WHERE name = $1",
            &[&name, &now],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes an endpoint with its deliveries and attempts.
    pub(in crate::store) async fn remove_endpoint(&self, name: &str) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        if conn
            .execute("DELETE FROM endpoints WHERE name = $1", &[&name])
            .await?
            == 0
        {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        }
        Ok(())
    }

    /// Pauses (`false`) or resumes (`true`) an endpoint; resuming clears a disabled state.
    pub(in crate::store) async fn set_endpoint_active(
        &self,
        name: &str,
        active: bool,
    ) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let n = tx
            .execute(
                "UPDATE endpoints SET active = $2, updated_at = $3,
                     disabled_reason = CASE WHEN $2 THEN NULL ELSE disabled_reason END,
                     failing_since = CASE WHEN $2 THEN NULL ELSE failing_since END
                 WHERE name = $1",
                &[&name, &active, &now_ms()],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        }
        if active {
            // Its waiting deliveries can go now, from whichever replica.
            notify(&tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Queues the current snapshot of every resource an endpoint wants, as `created` events for
    /// that endpoint alone. Returns how many.
    pub(in crate::store) async fn backfill(&self, name: &str) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let endpoint = load_endpoints(&tx)
            .await?
            .into_iter()
            .find(|e| e.spec.name == name)
            .ok_or_else(|| StoreError::NotFound(format!("no endpoint {name}")))?;
        // Ordered after the commits in flight of every resource (see events.rs).
        tx.execute("SELECT 1 FROM resources FOR UPDATE", &[])
            .await?;
        let now = Utc::now();
        let rows = tx
            .query(
                "SELECT source, resource, item_id, body FROM snapshot
                 ORDER BY source, resource, item_id",
                &[],
            )
            .await?;
        let mut events = Vec::new();
        for row in &rows {
            let (source, resource, id, body): (&str, &str, &str, &str) =
                (row.get(0), row.get(1), row.get(2), row.get(3));
            if !endpoint.spec.wants(source, resource, "created") {
                continue;
            }
            let data = serde_json::from_str(body)
                .map_err(|e| StoreError::Corrupt(format!("snapshot body of {id}: {e}")))?;
            events.push(Event::from_change(
                source,
                resource,
                &crate::diff::Change::Created(crate::normalize::Record {
                    id: id.to_owned(),
                    body: data,
                    hash: [0; 32],
                    raw: None,
                }),
                None,
                now,
            ));
        }
        let summary = insert_events_for(
            &tx,
            &events,
            std::slice::from_ref(&endpoint),
            now.timestamp_millis(),
        )
        .await?;
        if summary.deliveries > 0 {
            notify(&tx).await?;
        }
        tx.commit().await?;
        Ok(summary.events)
    }

    /// One endpoint by row id.
    pub(in crate::store) async fn endpoint(
        &self,
        id: i64,
    ) -> Result<Option<StoredEndpoint>, StoreError> {
        let conn = self.conn().await?;
        Ok(load_endpoints(&conn)
            .await?
            .into_iter()
            .find(|e| e.id == id))
    }

    /// One endpoint by name.
    pub(in crate::store) async fn endpoint_named(
        &self,
        name: &str,
    ) -> Result<StoredEndpoint, StoreError> {
        let conn = self.conn().await?;
        load_endpoints(&conn)
            .await?
            .into_iter()
            .find(|e| e.spec.name == name)
            .ok_or_else(|| {
                StoreError::NotFound(format!(
                    "no endpoint {name} (see `pollhook endpoints list`)"
                ))
            })
    }
}

pub(super) async fn load_endpoints(
    conn: &impl GenericClient,
) -> Result<Vec<StoredEndpoint>, StoreError> {
    let stmt = conn
        .prepare_cached(
            "SELECT id, name, url, secret, signing, resources, actions, active, headers, timeout_ms,
                    old_secret, old_secret_until, origin, disabled_reason, failing_since
             FROM endpoints ORDER BY name",
        )
        .await?;
    let rows = conn.query(&stmt, &[]).await?;
    rows.iter()
        .map(|r| {
            let name: String = r.get(1);
            let corrupt = |what: &str| StoreError::Corrupt(format!("endpoint {name}: {what}"));
            let signing: Scheme = r
                .get::<_, &str>(4)
                .parse()
                .map_err(|_| corrupt("signing"))?;
            let timeout: Option<i64> = r.get(9);
            Ok(StoredEndpoint {
                id: r.get(0),
                spec: EndpointSpec {
                    url: r.get(2),
                    secret: Secret::new(r.get::<_, String>(3)),
                    signing,
                    resources: serde_json::from_str(r.get(5)).map_err(|_| corrupt("resources"))?,
                    actions: serde_json::from_str::<ActionFilter>(r.get(6))
                        .map_err(|_| corrupt("actions"))?,
                    active: r.get(7),
                    headers: serde_json::from_str(r.get(8)).map_err(|_| corrupt("headers"))?,
                    timeout: timeout.map(|ms| Duration::from_millis(ms.max(0) as u64)),
                    name: name.clone(),
                },
                old_secret: match (r.get::<_, Option<String>>(10), r.get::<_, Option<i64>>(11)) {
                    (Some(s), Some(until)) => Some((Secret::new(s), to_time(until))),
                    _ => None,
                },
                origin: r.get(12),
                disabled_reason: r.get(13),
                failing_since: r.get::<_, Option<i64>>(14).map(to_time),
            })
        })
        .collect()
}
