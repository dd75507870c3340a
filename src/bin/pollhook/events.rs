//! `events …` and `replay`: events newest first, one event, an event sent again.

use std::io::Write;

use clap::Subcommand;
use pollhook::admin::EventQuery;

use crate::Ctx;
use crate::out::{self, say};

#[derive(Subcommand)]
pub enum EventsCommand {
    /// Newest first.
    List {
        /// `source.resource` or a resource name.
        #[arg(long)]
        resource: Option<String>,
        /// created, updated or deleted.
        #[arg(long)]
        action: Option<String>,
        /// How many (at most 1000).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the events as DESIGN.md §5 shapes them, as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One event, as JSON.
    Show {
        /// The event id (`evt_…`).
        id: String,
    },
}

/// `pollhook events …`.
pub async fn command(ctx: &Ctx, command: EventsCommand) -> anyhow::Result<()> {
    match command {
        EventsCommand::List {
            resource,
            action,
            limit,
            json,
        } => {
            let query = EventQuery {
                resource,
                action,
                limit: Some(limit),
                ..EventQuery::default()
            };
            let events = ctx.admin().events(query).await?.data;
            if json {
                out::json(&events)?;
            } else if events.is_empty() {
                say!("No events yet.");
            } else {
                let rows = events
                    .into_iter()
                    .map(|e| vec![e.detected_at, e.kind.clone(), e.resource_id, e.id]);
                out::table(&["DETECTED", "TYPE", "RESOURCE ID", "EVENT ID"], &[], rows)?;
            }
        }
        EventsCommand::Show { id } => out::json(&ctx.admin().event(&id).await?)?,
    }
    Ok(())
}

/// `pollhook replay EVENT [--endpoint NAME]`.
pub async fn replay(ctx: &Ctx, event_id: &str, endpoint: Option<&str>) -> anyhow::Result<()> {
    let targets = ctx.admin().replay(event_id, endpoint).await?;
    if targets.is_empty() {
        say!(
            "No endpoint had a delivery of {event_id}; nothing queued. Name one with --endpoint NAME."
        );
    } else {
        say!("{event_id} queued again for: {}", targets.join(", "));
    }
    Ok(())
}
