//! pollhook turns pull into push: it polls request-based REST APIs, detects what changed since the
//! last poll, and delivers each change as a signed webhook to the endpoints registered for it.
//!
//! The spine, one module per box, in the order a change travels:
//!
//! ```text
//! config ──▶ schedule ──▶ poll ─┬─▶ source (rest | exec): fetch every page
//!                               ├─▶ normalize: item → Record { id, body, hash }
//!                               ├─▶ diff: snapshot + records → created / updated / deleted
//!                               ├─▶ event: change → the webhook payload
//!                               └─▶ store.commit_poll: snapshot + events + deliveries, ONE transaction
//!                                        │
//!            deliver ◀── claims due deliveries ◀──┘
//!              ├─▶ sign (jwt | standard-webhooks) ─▶ POST ─▶ retry: outcome → next attempt / dead letter
//!              └─▶ store: attempts and outcomes, committed in small groups
//! ```
//!
//! [`run`] is the whole thing; it takes its shutdown signal as an argument, so `main` passes
//! SIGTERM/SIGINT and tests pass a oneshot.

pub mod adapters;
pub mod config;
pub mod deliver;
pub mod demo;
pub mod diff;
pub mod endpoint;
pub mod event;
pub mod normalize;
pub mod poll;
pub mod retry;
pub mod schedule;
pub mod sign;
pub mod source;
pub mod store;

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::{RunLock, Store, StoreError};

/// Why `pollhook run` could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database could not be opened, locked or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A source could not be set up.
    #[error(transparent)]
    Source(#[from] source::SourceError),
}

/// How long in-flight work may take to finish after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Runs the pipeline until `shutdown` completes, then stops scheduling, lets in-flight work finish
/// within [`SHUTDOWN_GRACE`] and returns.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    let _lock = RunLock::acquire(&config.storage.path)?;
    let store = Store::open(&config.storage.path)?;
    store.reconcile_endpoints(&config.endpoints)?;
    let sources = config
        .sources
        .iter()
        .map(|s| Ok((s.clone(), source::build(s)?)))
        .collect::<Result<Vec<_>, source::SourceError>>()?;

    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    let wake = deliver::Wake::default();
    schedule::spawn(
        &mut tasks,
        &store,
        &sources,
        config.poll.concurrency,
        &wake,
        &cancel,
    );
    tasks.spawn(deliver::run(
        store.clone(),
        config.delivery.clone(),
        wake,
        cancel.clone(),
    ));
    tracing::info!(
        database = %config.storage.path.display(),
        resources = sources.iter().map(|(s, _)| s.resources.len()).sum::<usize>(),
        endpoints = config.endpoints.len(),
        "pollhook running."
    );

    shutdown.await;
    tracing::info!("Shutting down: no new polls or deliveries; finishing in-flight work.");
    cancel.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "In-flight work did not finish in time; it stays pending for the next start."
        );
        tasks.abort_all();
    }
    Ok(())
}
