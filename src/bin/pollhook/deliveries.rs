//! `deliveries …`: deliveries newest first, the attempts of one or of an event's, retries.

use std::io::Write;

use clap::Subcommand;
use pollhook::admin::DeliveryQuery;

use crate::out::{self, say};
use crate::{Ctx, usage};

#[derive(Subcommand)]
pub enum DeliveriesCommand {
    /// Newest first.
    List {
        /// Endpoint name.
        #[arg(long)]
        endpoint: Option<String>,
        /// pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
        /// Only this event's deliveries.
        #[arg(long)]
        event: Option<String>,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every attempt of a delivery (its number) or of an event's deliveries (`evt_…`).
    Attempts {
        /// Delivery number or event id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put failed deliveries back in line with a fresh retry schedule.
    Retry {
        /// One delivery.
        #[arg(long, conflicts_with = "failed")]
        id: Option<i64>,
        /// Every failed delivery.
        #[arg(long)]
        failed: bool,
        /// With --failed: only this endpoint's.
        #[arg(long, requires = "failed")]
        endpoint: Option<String>,
    },
}

/// `pollhook deliveries …`.
pub async fn command(ctx: &Ctx, command: DeliveriesCommand) -> anyhow::Result<()> {
    let admin = ctx.admin();
    match command {
        DeliveriesCommand::List {
            endpoint,
            status,
            event,
            limit,
            json,
        } => {
            let query = DeliveryQuery {
                endpoint,
                status,
                event_id: event,
                limit: Some(limit),
                ..DeliveryQuery::default()
            };
            let rows = admin.deliveries(query).await?;
            if json {
                out::json(&rows)?;
            } else if rows.is_empty() {
                say!("No deliveries.");
            } else {
                let rows = rows.into_iter().map(|view| {
                    let d = view.delivery;
                    vec![
                        d.id.to_string(),
                        d.status,
                        d.endpoint,
                        d.event_type,
                        d.resource_id,
                        d.attempts.to_string(),
                        d.next_attempt_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                        d.last_error
                            .or(d.last_status.map(|s| format!("HTTP {s}")))
                            .unwrap_or_default(),
                    ]
                });
                out::table(
                    &[
                        "ID",
                        "STATUS",
                        "ENDPOINT",
                        "TYPE",
                        "RESOURCE ID",
                        "TRY",
                        "NEXT",
                        "LAST",
                    ],
                    &[0, 5],
                    rows,
                )?;
            }
        }
        DeliveriesCommand::Attempts { id, json } => {
            let rows = match id.parse::<i64>() {
                Ok(n) => admin.attempts(n).await?,
                Err(_) => admin.event_attempts(&id).await?,
            };
            if json {
                out::json(&rows)?;
            } else if rows.is_empty() {
                say!("No attempts for {id}.");
            } else {
                for a in rows {
                    let status = a
                        .status
                        .map_or_else(|| "no response".to_owned(), |s| format!("HTTP {s}"));
                    say!(
                        "delivery {} → {} at {}: {status} in {} ms{}",
                        a.delivery_id,
                        a.endpoint,
                        a.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                        a.latency_ms,
                        a.error.map(|e| format!(" ({e})")).unwrap_or_default()
                    );
                    if let Some(body) = a.response.filter(|b| !b.is_empty()) {
                        say!("    response: {body}");
                    }
                }
            }
        }
        DeliveriesCommand::Retry { id: Some(id), .. } => {
            admin.retry(id).await?;
            say!("Delivery {id} queued again.");
        }
        DeliveriesCommand::Retry {
            id: None,
            failed: true,
            endpoint,
        } => {
            let n = admin.retry_failed(endpoint.as_deref()).await?;
            say!("{n} failed delivery(ies) queued again.");
        }
        DeliveriesCommand::Retry { .. } => {
            return Err(usage(
                "name a delivery with --id ID, or use --failed".into(),
            ));
        }
    }
    Ok(())
}
