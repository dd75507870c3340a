//! `status` and `accept`: every resource's last poll and every endpoint's queue; the held-back
//! deletes of one resource applied at its next poll.

use std::io::Write;

use anyhow::anyhow;

use crate::out::{self, say};
use crate::run::split_target;
use crate::{Ctx, UsageError};

/// `pollhook status`.
pub async fn status(ctx: &Ctx, json: bool) -> anyhow::Result<()> {
    let status = ctx.admin().status().await?;
    if json {
        return out::json(&status);
    }
    let time = |t: Option<chrono::DateTime<chrono::Utc>>| {
        t.map_or_else(
            || "never".to_owned(),
            |t| t.format("%Y-%m-%d %H:%M:%S").to_string(),
        )
    };
    let rows = status.sources.iter().flat_map(|s| &s.resources).map(|r| {
        let key = if r.configured {
            r.key.clone()
        } else {
            format!("{} (not in config)", r.key)
        };
        vec![
            key,
            time(r.last_poll_at),
            r.last_outcome.clone().unwrap_or_else(|| "-".into()),
            r.item_count.to_string(),
            r.held_deletes.to_string(),
            r.consecutive_errors.to_string(),
            r.last_error.clone().unwrap_or_default(),
        ]
    });
    out::table(
        &[
            "RESOURCE",
            "LAST POLL",
            "OUTCOME",
            "ITEMS",
            "HELD",
            "FAILS",
            "ERROR",
        ],
        &[3, 4, 5],
        rows,
    )?;
    if !status.endpoints.is_empty() {
        say!();
        let rows = status.endpoints.iter().map(|e| {
            vec![
                e.name.clone(),
                e.pending.to_string(),
                e.delivered.to_string(),
                e.failed.to_string(),
                crate::endpoints::state_text(e.state, e.disabled_reason.as_deref()),
            ]
        });
        out::table(
            &["ENDPOINT", "PENDING", "DELIVERED", "FAILED", "STATE"],
            &[1, 2, 3],
            rows,
        )?;
    }
    let stats = ctx.store.storage_stats().await?;
    say!();
    say!(
        "database {}: {:.1} MB, {} event(s) kept, oldest detected {}; retain = {}, retain_failed = {}",
        ctx.store.describe(),
        stats.bytes as f64 / 1e6,
        stats.events,
        time(stats.oldest_event_at),
        humantime::format_duration(ctx.config.storage.retain),
        humantime::format_duration(ctx.config.storage.retain_failed),
    );
    Ok(())
}

/// `pollhook accept source.resource`.
pub async fn accept(ctx: &Ctx, target: &str) -> anyhow::Result<()> {
    let (source, resource) = split_target(&ctx.config, target)?;
    let resource =
        resource.ok_or_else(|| UsageError(anyhow!("name one resource: source.resource")))?;
    let n = ctx.admin().accept_deletes(&source, &resource).await?;
    say!("{n} held-back delete(s) of {source}.{resource} will be applied at its next poll.");
    Ok(())
}
