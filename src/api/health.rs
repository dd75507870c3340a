//! Health: `/livez` (the process answers), `/readyz` (it can do its job), `/metrics`.
//!
//! In: nothing but the running pipeline. Out: small JSON bodies and Prometheus text.
//!
//! Invariant: no probe needs a token or changes anything; `/readyz` is not ready unless a write
//! transaction can be taken and the scheduler and dispatcher run.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Shared;
use crate::admin::{Admin, EndpointState};

/// `/livez` and `/healthz`: the process answers.
pub(super) async fn livez() -> Response {
    axum::Json(json!({ "status": "ok" })).into_response()
}

/// `/readyz`: the database takes a write and the scheduler and dispatcher run.
pub(super) async fn readyz(State(p): State<Shared>) -> Response {
    let writable = p.store.check_writable().await;
    let scheduler = p.health.scheduler.load(Ordering::Relaxed);
    let dispatcher = p.health.dispatcher.load(Ordering::Relaxed);
    let ready = writable.is_ok() && scheduler && dispatcher;
    let body = json!({
        "status": if ready { "ready" } else { "not_ready" },
        "database": writable.as_ref().map(|_| "writable".to_owned()).unwrap_or_else(|e| e.to_string()),
        "scheduler": scheduler,
        "dispatcher": dispatcher,
    });
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
}

/// `/metrics`: Prometheus text, with every endpoint's state and queue refreshed first.
pub(super) async fn metrics(State(p): State<Shared>) -> Response {
    let handle = crate::metrics::handle();
    if let Ok(stats) = p.store.storage_stats().await {
        crate::metrics::storage(&stats);
    }
    if let Ok(totals) = Admin::of(&p).endpoint_totals().await {
        for e in totals {
            crate::metrics::endpoint_state(
                &e.name,
                e.state == EndpointState::Active,
                e.pending,
                e.failed,
            );
        }
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        handle.render(),
    )
        .into_response()
}
