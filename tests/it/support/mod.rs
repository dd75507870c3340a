//! What every integration test shares: the fake source APIs ([`FakeApi`] for paginated
//! listings, [`ScriptedApi`] for any reply, [`Shop`] for one edited item, [`RawServer`] for bytes
//! no framework sends), one webhook receiver ([`Hook`]), one [`eventually`], pollhook in process
//! ([`Harness`], [`Pipeline`], [`Run`]) and as the real binary ([`spawn_run`], [`command`]),
//! config built as TOML tables ([`ConfigBuilder`]), and an endpoint as the store takes it
//! ([`endpoint_spec`]).
//!
//! In: what a test scripts. Out: real servers on loopback and what they saw. Every server here
//! binds `127.0.0.1:0` and keeps that listener: the port it reports is the one it serves, with no
//! window in which another test can take it. The one exception is an in-process pipeline's admin
//! API, which `pollhook::run` binds itself ([`start_on_free_port`] says why and how it copes).

mod binary;
mod config;
mod eventually;
mod pipeline;
mod raw;
mod receiver;
mod scripted;
mod source;

pub use binary::*;
pub use config::*;
pub use eventually::*;
pub use pipeline::*;
pub use raw::*;
pub use receiver::*;
pub use scripted::*;
pub use source::*;

use pollhook::config::Secret;
use pollhook::endpoint::{ActionFilter, EndpointSpec};
use pollhook::event::Event;
use pollhook::sign::Scheme;
use serde_json::Value;
use tokio::net::TcpListener;

/// The keys of every event (DESIGN.md §5).
pub const EVENT_KEYS: [&str; 11] = [
    "id",
    "type",
    "source",
    "resource",
    "action",
    "resource_id",
    "detected_at",
    "data",
    "previous",
    "changes",
    "backfill",
];

/// The keys of a JSON object; panics, showing it, if it is not one.
#[track_caller]
pub fn object_keys(value: &Value) -> std::collections::BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// Locks `m`, whether or not a panicking test poisoned it: the data is still what a test wants
/// to see.
pub fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A listener on a free loopback port, and its `http://` URL.
pub async fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a free port on loopback");
    let addr = listener
        .local_addr()
        .expect("a bound listener has an address");
    (listener, format!("http://{addr}"))
}

/// Serves `app` on `listener` until the test's runtime ends.
pub fn serve(listener: TcpListener, app: axum::Router) {
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            panic!("a test server stopped: {e}");
        }
    });
}

/// Starts `app` on a free loopback port; its `http://` URL.
pub async fn start(app: axum::Router) -> String {
    let (listener, url) = listen().await;
    serve(listener, app);
    url
}

/// Ids sorted numerically when they all are numbers, else as text.
pub fn sorted_ids(ids: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut ids: Vec<String> = ids.into_iter().collect();
    ids.sort_by_key(|id| (id.parse::<u64>().unwrap_or(u64::MAX), id.clone()));
    ids
}

/// An event as JSON with its minted `id` and `detected_at` blanked, after checking their form.
pub fn stable(event: &Event) -> Value {
    assert!(
        event.id.starts_with("evt_") && event.id.len() == 36,
        "{}",
        event.id
    );
    assert!(
        chrono::DateTime::parse_from_rfc3339(&event.detected_at).is_ok(),
        "{}",
        event.detected_at
    );
    let mut v = serde_json::to_value(event).unwrap();
    v["id"] = Value::from("evt_");
    v["detected_at"] = Value::from("");
    v
}

/// `n` items `{"id": i, "status": "open"}`, ids 1..=n.
pub fn orders(n: u64) -> Vec<Value> {
    (1..=n)
        .map(|i| serde_json::json!({"id": i, "status": "open"}))
        .collect()
}

/// An endpoint `name` posting to `url`, signing with `secret` (Standard Webhooks), wanting every
/// resource and action, active, with no headers and the default timeout and format.
pub fn endpoint_spec(name: &str, url: &str, secret: &str) -> EndpointSpec {
    EndpointSpec {
        name: name.to_owned(),
        url: url.to_owned(),
        secret: Secret::new(secret),
        signing: Scheme::StandardWebhooks,
        resources: vec!["*".into()],
        actions: ActionFilter::default(),
        active: true,
        headers: Vec::new(),
        timeout: None,
        format: Default::default(),
    }
}

/// Runs a store call to completion from synchronous test code (an `eventually` check, a helper
/// that reads the database), inside an async test or not: on a thread of its own with its own
/// runtime, since a runtime cannot block on itself.
pub fn block_on<F>(future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    std::thread::scope(|s| {
        s.spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for a store call")
                .block_on(future)
        })
        .join()
        .expect("the store call did not panic")
    })
}
