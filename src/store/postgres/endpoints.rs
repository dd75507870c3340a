//! Endpoints in PostgreSQL: the file's, reconciled at start, and those added at run time. Every
//! replica's dispatcher re-reads them, so a change made through one replica reaches all.

use std::time::Duration;

use deadpool_postgres::GenericClient;

use super::snapshot::notify;
use super::{Db, json, to_time};
use crate::endpoint::{ActionFilter, EndpointSpec};
use crate::event::Event;
use crate::secret::Secret;
use crate::sign::Scheme;
use crate::store::{EndpointPatch, Origin, StoreError, StoredEndpoint, now_ms};

impl Db {
    /// Makes the database's config-origin endpoints match `specs`: adds new ones, applies a
    /// changed definition (resetting what was done at run time), leaves an unchanged one as the
    /// operator left it (paused, disabled, edited or removed), and removes config endpoints no
    /// longer in the file (with their deliveries).
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
            let fingerprint = spec.fingerprint();
            let removed = tx
                .query_opt(
                    "SELECT config_fingerprint FROM removed_endpoints WHERE name = $1",
                    &[&spec.name],
                )
                .await?
                .map(|r| r.get::<_, String>(0));
            match removed {
                Some(f) if f == fingerprint => continue,
                Some(_) => {
                    tx.execute(
                        "DELETE FROM removed_endpoints WHERE name = $1",
                        &[&spec.name],
                    )
                    .await?;
                }
                None => {}
            }
            tx.execute(
                "INSERT INTO endpoints (name, url, secret, signing, resources, actions, active,
                                        headers, timeout_ms, format, origin, config_fingerprint,
                                        created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $12, 'config', $10, $11, $11)
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
                 WHERE endpoints.config_fingerprint IS DISTINCT FROM excluded.config_fingerprint",
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
                    &fingerprint,
                    &now,
                    &spec.format.as_str(),
                ],
            )
            .await?;
        }
        // A config endpoint removed from the file is removed here too, with its queue; and a
        // removal remembered for it is forgotten (back in the file, it is new again).
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        tx.execute(
            "DELETE FROM endpoints WHERE origin = 'config' AND name <> ALL($1::text[])",
            &[&names],
        )
        .await?;
        tx.execute(
            "DELETE FROM removed_endpoints WHERE name <> ALL($1::text[])",
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
        origin: Origin,
    ) -> Result<i64, StoreError> {
        let conn = self.conn().await?;
        let row = conn
            .query_one(
                "INSERT INTO endpoints (name, url, secret, signing, resources, actions, active,
                                        headers, timeout_ms, format, origin, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $11, $12, $10, $10)
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
                    &spec.format.as_str(),
                    &origin.as_str(),
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
        if let Some(format) = patch.format {
            tx.execute(
                "UPDATE endpoints SET format = $2 WHERE name = $1",
                &[&name, &format.as_str()],
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

    /// Removes an endpoint with its deliveries and attempts. A config endpoint stays removed
    /// across restarts until the file's definition of it changes.
    pub(in crate::store) async fn remove_endpoint(&self, name: &str) -> Result<(), StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        let fingerprint: Option<Option<String>> = tx
            .query_opt(
                "SELECT config_fingerprint FROM endpoints WHERE name = $1 AND origin = 'config'",
                &[&name],
            )
            .await?
            .map(|r| r.get(0));
        if let Some(Some(fingerprint)) = fingerprint {
            tx.execute(
                "INSERT INTO removed_endpoints (name, config_fingerprint) VALUES ($1, $2)
                 ON CONFLICT (name) DO UPDATE SET config_fingerprint = excluded.config_fingerprint",
                &[&name, &fingerprint],
            )
            .await?;
        }
        if tx
            .execute("DELETE FROM endpoints WHERE name = $1", &[&name])
            .await?
            == 0
        {
            return Err(StoreError::NotFound(format!("no endpoint {name}")));
        }
        tx.commit().await?;
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

    /// Writes `events` with one delivery each, for the endpoint with row id `endpoint_id` alone,
    /// in one transaction. Returns how many.
    pub(in crate::store) async fn queue_for_endpoint(
        &self,
        endpoint_id: i64,
        events: &[Event],
    ) -> Result<usize, StoreError> {
        let mut conn = self.conn().await?;
        let tx = conn.transaction().await?;
        // Held to the commit: the endpoint cannot be removed under the inserts.
        let exists = tx
            .query_opt(
                "SELECT id FROM endpoints WHERE id = $1 FOR SHARE",
                &[&endpoint_id],
            )
            .await?;
        if exists.is_none() {
            return Err(StoreError::NotFound(format!(
                "no endpoint with id {endpoint_id} (removed meanwhile?)"
            )));
        }
        // Ids are given while each event's resource row is locked, as a poll's commit gives
        // them (see events.rs), in one order so two of these cannot deadlock.
        let mut resources: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.source.as_str(), e.resource.as_str()))
            .collect();
        resources.sort_unstable();
        resources.dedup();
        let (sources, names): (Vec<&str>, Vec<&str>) = resources.into_iter().unzip();
        tx.execute(
            "SELECT 1 FROM resources r
             JOIN unnest($1::text[], $2::text[]) AS u(source, resource)
               ON r.source = u.source AND r.resource = u.resource
             ORDER BY r.source, r.resource FOR UPDATE OF r",
            &[&sources, &names],
        )
        .await?;
        let now = now_ms();
        let insert_event = tx
            .prepare_cached(
                "INSERT INTO events (id, type, source, resource, action, resource_id, detected_at, payload)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING seq",
            )
            .await?;
        let insert_delivery = tx
            .prepare_cached(
                "INSERT INTO deliveries (event_seq, endpoint_id, item_key, next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $4)",
            )
            .await?;
        for event in events {
            let seq: i64 = tx
                .query_one(
                    &insert_event,
                    &[
                        &event.id,
                        &event.kind,
                        &event.source,
                        &event.resource,
                        &event.action,
                        &event.resource_id,
                        &now,
                        &event.to_json(),
                    ],
                )
                .await?
                .get(0);
            let item_key = format!("{}/{}/{}", event.source, event.resource, event.resource_id);
            tx.execute(&insert_delivery, &[&seq, &endpoint_id, &item_key, &now])
                .await?;
        }
        if !events.is_empty() {
            notify(&tx).await?;
        }
        tx.commit().await?;
        Ok(events.len())
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
                    old_secret, old_secret_until, origin, disabled_reason, failing_since, format
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
                    format: r
                        .get::<_, &str>(15)
                        .parse()
                        .map_err(|_| corrupt("format"))?,
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
