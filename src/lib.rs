//! pollhook turns pull into push: it polls request-based REST APIs, detects what changed since the
//! last poll, and delivers each change as a signed webhook to the endpoints registered for it.
//!
//! The spine, one room per box, in the order a change travels:
//!
//! ```text
//! config ──▶ schedule ──▶ poll ─┬─▶ intake ◀── source/ (rest | exec | graphql | feed): every page,
//!                               │     │          JSON or XML (source/decode), in turn
//!                               │     ├─▶ normalize: item → Record { id, body, hash }
//!                               │     ├─▶ diff: snapshot + records → created / updated / deleted
//!                               │     └─▶ spill: changed bodies kept until the commit
//!                               ├─▶ event: change → the webhook payload
//!                               └─▶ store.commit_poll: snapshot + events + deliveries, ONE transaction
//!                                        │
//!            deliver ◀── claims due deliveries ◀──┘
//!              ├─▶ encode (JSON | XML) ─▶ sign (jwt | standard-webhooks) ─▶ POST
//!              ├─▶ retry: outcome → next attempt / dead letter
//!              └─▶ store: attempts and outcomes, committed in small groups
//! ```
//!
//! Beside the spine: `admin` (every operator operation and its `Serialize` view, shared by the
//! CLI, the API and the dashboard), `api/` (the admin API by noun over `admin`, health,
//! `/metrics`, and the dashboard at `/ui/`), `pipeline` (what a running pollhook shares, and what can stop it), `confirm` (an
//! item missing from a listing fetched alone before it counts as deleted), `aimd` (each
//! endpoint's concurrency, learned from its answers), `retention` (old, settled events removed in
//! small batches), `http` (the one way a client is built), `secret` (values that print as `***`),
//! `incremental` (`since` bookkeeping), `decode` / `encode` (page bytes → the JSON tree; an event
//! → JSON or XML bytes), `endpoint` (filters, the URL and address policy), `cluster`
//! (heartbeat, leader maintenance and wake-ups when replicas share a PostgreSQL database),
//! `adapters` (definitions merged into sources), `logging` (what `POLLHOOK_LOG` and `RUST_LOG` let
//! through), `metrics`, `demo`. `store/` is an async facade by noun; its SQL lives in
//! `store/sqlite/` and `store/postgres/`. The binary, `src/bin/pollhook/`, is one file per command group over the same
//! `admin`.
//!
//! [`run`] is the whole thing; it takes its shutdown signal as an argument, so `main` passes
//! SIGTERM/SIGINT and tests pass a oneshot.

pub mod adapters;
pub mod admin;
pub mod aimd;
pub mod api;
pub mod cluster;
pub mod config;
pub mod confirm;
pub mod decode;
pub mod deliver;
pub mod demo;
pub mod diff;
pub mod encode;
pub mod endpoint;
pub mod event;
pub mod http;
pub mod incremental;
pub mod intake;
pub mod logging;
pub mod metrics;
pub mod normalize;
pub mod pipeline;
pub mod poll;
pub mod retention;
pub mod retry;
pub mod schedule;
pub mod secret;
pub mod sign;
pub mod source;
pub mod spill;
pub mod store;

pub use pipeline::{Health, Pipeline, RunError, SHUTDOWN_GRACE, Stopped, Task};

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::pipeline::watch;
use crate::store::{RunLock, Store};

/// Runs the pipeline until `shutdown` completes, then stops scheduling, lets in-flight work finish
/// within [`SHUTDOWN_GRACE`] and returns.
///
/// If the scheduler, the dispatcher or the admin API ends before that (a panic, or a return it
/// should not make), `/readyz` turns not ready, everything else stops the same way, and `run`
/// returns [`RunError::Stopped`]: a half-running pollhook that looks alive is worse than one
/// that exits and gets restarted.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    // One process per SQLite file; any number of replicas on PostgreSQL.
    let _lock = match &config.storage.url {
        None => Some(RunLock::acquire(&config.storage.path)?),
        Some(_) => None,
    };
    // Installed before anything records, so no early sample is lost.
    metrics::handle();
    let store = Store::connect(&config.storage).await?;
    store.reconcile_endpoints(&config.endpoints).await?;
    if store.shared() {
        // Announces this replica, so its dispatcher may send from the start.
        cluster::beat(&store).await;
    }
    // On SQLite we hold the run lock: every lease in the database belongs to a process that
    // died. On PostgreSQL only those of replicas that are gone (the heartbeat sweep's rule).
    let released = store.release_all_leases().await?;
    if released > 0 {
        tracing::info!(
            released,
            "Deliveries a stopped process had claimed are due again."
        );
    }
    let pipeline = Arc::new(Pipeline::new(config, store)?);
    let listener = api::bind(&pipeline.config.server).await?;
    let health_listener = api::bind_health(&pipeline.config.server).await?;

    let cancel = CancellationToken::new();
    let mut scheduler = JoinSet::new();
    schedule::spawn(&mut scheduler, &pipeline, &cancel);
    scheduler.spawn(cluster::run(
        pipeline.store.clone(),
        pipeline.wake.clone(),
        cancel.clone(),
    ));
    pipeline.health.scheduler.store(true, Ordering::Relaxed);
    pipeline.health.dispatcher.store(true, Ordering::Relaxed);
    let mut dispatcher = tokio::spawn(deliver::run(
        pipeline.store.clone(),
        pipeline.config.delivery.clone(),
        pipeline.wake.clone(),
        cancel.clone(),
    ));
    // Housekeeping, not a part whose end stops the rest: a failed pass is logged and retried.
    let retention = tokio::spawn(retention::run(
        pipeline.store.clone(),
        pipeline.config.storage.clone(),
        cancel.clone(),
    ));
    let upkeep = tokio::spawn(metrics::upkeep(cancel.clone()));
    let mut api = tokio::spawn({
        let admin = api::serve(listener, pipeline.clone(), cancel.clone());
        let health =
            health_listener.map(|l| api::serve_health(l, pipeline.clone(), cancel.clone()));
        async move {
            match health {
                Some(health) => _ = tokio::join!(admin, health),
                None => admin.await,
            }
        }
    });
    tracing::info!(
        database = %pipeline.store.describe(),
        resources = pipeline.sources.iter().map(|(s, _)| s.resources.len()).sum::<usize>(),
        endpoints = pipeline.config.endpoints.len(),
        "pollhook running."
    );

    let stopped = watch(&mut scheduler, &mut dispatcher, &mut api, shutdown).await;
    pipeline.health.scheduler.store(false, Ordering::Relaxed);
    match &stopped {
        None => {
            tracing::info!("Shutting down: no new polls or deliveries; finishing in-flight work.")
        }
        Some(Stopped { task, reason }) => {
            pipeline
                .health
                .dispatcher
                .store(*task != Task::Dispatcher, Ordering::Relaxed);
            tracing::error!(%task, %reason, "A part of pollhook stopped; shutting the rest down.");
        }
    }
    cancel.cancel();
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while scheduler.join_next().await.is_some() {}
        if !dispatcher.is_finished() {
            let _ = (&mut dispatcher).await;
        }
    })
    .await;
    pipeline.health.dispatcher.store(false, Ordering::Relaxed);
    if drained.is_err() {
        tracing::warn!(
            grace_secs = SHUTDOWN_GRACE.as_secs(),
            "In-flight work did not finish in time; it stays pending for the next start."
        );
        scheduler.abort_all();
        dispatcher.abort();
    }
    api.abort();
    retention.abort();
    upkeep.abort();
    match stopped {
        None => Ok(()),
        Some(stopped) => Err(RunError::Stopped(stopped)),
    }
}
