//! Deliver: claim due deliveries → per-endpoint lanes → sign → POST → record → reschedule.
//!
//! In: the outbox (deliveries written by `store.commit_poll`), the endpoints, `[delivery]`
//! settings and a cancellation token. Out: HTTP POSTs (each event encoded as its endpoint's
//! `format` asks, JSON or XML, by [`encode`]), and every attempt recorded.
//!
//! Invariants (DESIGN.md §7):
//! - At least once: a delivery is marked delivered only after a 2xx; outcomes are committed in
//!   groups, and a crash between a 2xx and its commit means a redelivery with the same event id.
//! - Isolation: each endpoint has its own lane with its own concurrency bound, so a slow or dead
//!   endpoint only ever occupies its own slots (plus at most those slots of the global bound).
//!   The bound starts low and grows while the endpoint answers fast ([`aimd`](crate::aimd)), up
//!   to `endpoint_concurrency`.
//! - Order: the store only offers an item's next delivery once the previous one is done.
//! - Safety: https only unless allowed; every address a request connects to passes the
//!   [`UrlPolicy`] (a resolver filters DNS answers, so rebinding cannot get around it); through
//!   `[http] proxy`, the target's addresses are checked before the request and the proxy's own
//!   address is not judged; redirects are not followed; response bodies are read up to
//!   [`RESPONSE_QUOTE`] bytes.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, RETRY_AFTER};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::aimd::{Limit, Signal};
use crate::config::DeliveryConfig;
use crate::encode;
use crate::endpoint::UrlPolicy;
use crate::retry::{self, Next, Outcome, Policy};
use crate::sign::{self, SignInput};
use crate::store::{Due, Recorded, Store, StoredEndpoint};

/// How much of a response body an attempt keeps.
pub const RESPONSE_QUOTE: usize = 1024;

/// How long a lane sleeps when it has nothing due and hears nothing.
const IDLE: Duration = Duration::from_secs(1);

/// The most outcomes committed in one transaction.
const BATCH: usize = 512;

/// Wakes the dispatcher when new deliveries may be due (a poll committed, an operator acted).
#[derive(Clone)]
pub struct Wake(Arc<watch::Sender<u64>>);

impl Default for Wake {
    fn default() -> Self {
        Self(Arc::new(watch::channel(0).0))
    }
}

impl Wake {
    /// Signals that there may be new work.
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
    fn subscribe(&self) -> watch::Receiver<u64> {
        self.0.subscribe()
    }
}

/// Shared by every lane.
struct Ctx {
    store: Store,
    config: DeliveryConfig,
    client: reqwest::Client,
    /// Sends through `[http] proxy`: its own resolver sees only the proxy's name, so each
    /// target is checked against the policy before it is sent ([`crate::http::check_target`]).
    proxied: Option<(reqwest::Client, crate::http::Proxy)>,
    policy: UrlPolicy,
    retry: Policy,
    global: Arc<Semaphore>,
    outcomes: mpsc::Sender<Recorded>,
    wake: Wake,
}

/// Runs the dispatcher until `cancel` fires, then lets in-flight requests finish and commits their
/// outcomes before returning.
pub async fn run(store: Store, config: DeliveryConfig, wake: Wake, cancel: CancellationToken) {
    let policy = UrlPolicy {
        allow_http: config.allow_http,
        allow_networks: config.allow_networks.clone(),
    };
    let built = client(&policy).and_then(|direct| {
        let proxied = match &config.proxy {
            Some(proxy) => Some((proxied_client(proxy)?, proxy.clone())),
            None => None,
        };
        Ok((direct, proxied))
    });
    let (client, proxied) = match built {
        Ok(clients) => clients,
        Err(e) => {
            tracing::error!(error = %e, "Cannot build the delivery HTTP client; nothing will be delivered.");
            return;
        }
    };
    let (tx, rx) = mpsc::channel(4 * BATCH);
    let recorder = tokio::spawn(record(
        store.clone(),
        rx,
        config.disable_after,
        wake.clone(),
    ));
    let ctx = Arc::new(Ctx {
        retry: Policy {
            schedule: config.retries.clone(),
            ..Policy::default()
        },
        global: Arc::new(Semaphore::new(config.concurrency)),
        store,
        config,
        client,
        proxied,
        policy,
        outcomes: tx,
        wake,
    });
    supervise(&ctx, &cancel).await;
    drop(ctx);
    // Every sender is gone once the lanes are: the recorder commits what is left and ends.
    let _ = recorder.await;
}

/// Keeps one lane running per active endpoint.
async fn supervise(ctx: &Arc<Ctx>, cancel: &CancellationToken) {
    let mut lanes: HashMap<i64, tokio::task::AbortHandle> = HashMap::new();
    let mut tasks = JoinSet::new();
    let mut ids: HashMap<tokio::task::Id, i64> = HashMap::new();
    let mut wake = ctx.wake.subscribe();
    loop {
        let endpoints = ctx.store.endpoints().await;
        match endpoints {
            Ok(endpoints) => {
                for e in endpoints.into_iter().filter(|e| e.spec.active) {
                    if let std::collections::hash_map::Entry::Vacant(slot) = lanes.entry(e.id) {
                        let handle = tasks.spawn(lane(ctx.clone(), e.id, cancel.clone()));
                        ids.insert(handle.id(), e.id);
                        slot.insert(handle);
                    }
                }
            }
            Err(error) => tracing::error!(%error, "Cannot read endpoints."),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(done) = tasks.join_next_with_id() => {
                let id = match &done { Ok((id, ())) => *id, Err(e) => e.id() };
                if let Some(endpoint) = ids.remove(&id) {
                    lanes.remove(&endpoint);
                }
            }
            _ = wake.changed() => {}
            () = tokio::time::sleep(IDLE * 2) => {}
        }
    }
    while tasks.join_next().await.is_some() {}
}

/// One endpoint's lane: claims what is due for it a batch ahead, keeps up to its AIMD limit of
/// requests in flight (at most `endpoint_concurrency`), and ends when the endpoint is paused,
/// disabled or removed.
///
/// Claiming a batch ahead (not one delivery per freed slot) keeps the database out of the hot
/// path: one claim transaction serves many deliveries. A batch's lease covers sending all of it
/// even if every request took its full timeout; a queued delivery whose lease would run out before
/// its attempt could finish is dropped unsent (it is claimed again later), so no delivery is ever
/// sent twice by one process.
async fn lane(ctx: Arc<Ctx>, endpoint_id: i64, cancel: CancellationToken) {
    let mut inflight = JoinSet::new();
    let mut queue: VecDeque<(Due, Instant)> = VecDeque::new();
    let mut wake = ctx.wake.subscribe();
    let mut endpoint: Option<Arc<StoredEndpoint>> = None;
    let mut loaded = Instant::now();
    let mut limit = Limit::new(ctx.config.endpoint_concurrency);
    let mut last_limit = limit.current();
    loop {
        if endpoint.is_none() || loaded.elapsed() > Duration::from_millis(500) {
            endpoint = ctx
                .store
                .endpoint(endpoint_id)
                .await
                .ok()
                .flatten()
                .filter(|e| e.spec.active)
                .map(Arc::new);
            loaded = Instant::now();
        }
        let Some(current) = endpoint.clone() else {
            break;
        };
        let timeout = current.spec.timeout.unwrap_or(ctx.config.timeout);

        // Top the queue up once it runs low, unless this replica is fenced (its heartbeat is
        // stale, so the others may soon take its claims). Claims and leases follow the current
        // limit, so a slow endpoint's queue is not claimed further ahead than it can be sent.
        let concurrency = limit.current();
        let ahead = (concurrency * CLAIM_AHEAD).min(MAX_CLAIM);
        let mut claimed = 0;
        let fenced = !ctx.store.may_send(timeout);
        if queue.len() < concurrency && !fenced {
            let want = ahead.saturating_sub(queue.len());
            // Long enough to send the whole queue one timeout per round of `concurrency`.
            let rounds = (queue.len() + want).div_ceil(concurrency) as u32 + 1;
            let lease = timeout * rounds + LEASE_MARGIN;
            let lease_ms = lease.as_millis() as i64;
            match ctx.store.claim(endpoint_id, want, lease_ms).await {
                Ok(due) => {
                    claimed = due.len();
                    let expires = Instant::now() + lease;
                    queue.extend(due.into_iter().map(|d| (d, expires)));
                }
                Err(error) => {
                    tracing::error!(endpoint = %current.spec.name, %error, "Cannot claim deliveries.")
                }
            }
        }

        if concurrency != last_limit {
            tracing::debug!(endpoint = %current.spec.name, from = last_limit, to = concurrency, "Endpoint concurrency changed.");
            last_limit = concurrency;
        }
        // Send while there are slots: this endpoint's, then a global one.
        while inflight.len() < concurrency {
            let Some((due, expires)) = queue.pop_front() else {
                break;
            };
            if expires.saturating_duration_since(Instant::now()) < timeout + LEASE_MARGIN {
                // Its lease could run out mid-attempt; leave it to be claimed again.
                continue;
            }
            if !ctx.store.may_send(timeout) {
                // Fenced (this replica's heartbeat is late, so the others may soon presume it
                // dead): send nothing more, and hand the queue back so they need not wait for
                // its leases.
                queue.push_front((due, expires));
                let ids: Vec<i64> = queue.drain(..).map(|(d, _)| d.delivery_id).collect();
                if let Err(error) = ctx.store.release(ids).await {
                    tracing::warn!(%error, "Cannot hand claimed deliveries back; they come back when their lease ends.");
                }
                break;
            }
            let permit = tokio::select! {
                () = cancel.cancelled() => {
                    queue.push_front((due, expires));
                    break;
                }
                p = ctx.global.clone().acquire_owned() => match p {
                    Ok(p) => p,
                    Err(_) => break,
                },
            };
            let ctx = ctx.clone();
            let endpoint = current.clone();
            inflight.spawn(async move {
                let (recorded, signal) = attempt(&ctx, &endpoint, due).await;
                drop(permit);
                // The recorder outlives every lane; a closed channel means shutdown, and the
                // delivery's lease then brings it back at the next start.
                let _ = ctx.outcomes.send(recorded).await;
                signal
            });
        }
        if cancel.is_cancelled() {
            break;
        }
        if !queue.is_empty() || claimed == ahead {
            // Work is waiting: only wait for a slot to free (or for more to claim).
            tokio::select! {
                () = cancel.cancelled() => break,
                Some(done) = inflight.join_next(), if !inflight.is_empty() => feedback(&mut limit, done),
                () = std::future::ready(()), if inflight.is_empty() => {}
            }
            continue;
        }
        let idle = if fenced {
            // Ask again about as often as the heartbeat may come back.
            FENCED_RECHECK
        } else {
            match ctx.store.next_due_at(endpoint_id).await {
                Ok(Some(at)) => Duration::from_millis(
                    (at - crate::store::now_ms()).clamp(0, IDLE.as_millis() as i64) as u64,
                ),
                _ => IDLE,
            }
        };
        tokio::select! {
            () = cancel.cancelled() => break,
            Some(done) = inflight.join_next(), if !inflight.is_empty() => feedback(&mut limit, done),
            _ = wake.changed() => {}
            () = tokio::time::sleep(idle.max(Duration::from_millis(5))) => {}
        }
    }
    // Graceful: requests already sent finish and are recorded; what was claimed but not sent is
    // handed back at once, so the next start need not wait for its lease.
    if !queue.is_empty() {
        let ids: Vec<i64> = queue.iter().map(|(d, _)| d.delivery_id).collect();
        if let Err(error) = ctx.store.release(ids).await {
            tracing::warn!(%error, "Cannot release claimed deliveries; they come back when their lease ends.");
        }
    }
    while inflight.join_next().await.is_some() {}
}

/// Takes a finished attempt's signal into the lane's limit (a panicked attempt says nothing).
fn feedback(limit: &mut Limit, done: Result<Signal, tokio::task::JoinError>) {
    limit.record(done.unwrap_or(Signal::Neutral));
}

/// How often a fenced lane checks whether its replica may send again.
const FENCED_RECHECK: Duration = Duration::from_millis(100);

/// A lane claims this many deliveries per slot of `endpoint_concurrency` ahead.
const CLAIM_AHEAD: usize = 8;

/// The most deliveries one claim takes.
const MAX_CLAIM: usize = 128;

/// Time allowed beyond a request's timeout for its outcome to be committed: a process that dies
/// mid-attempt delays that delivery by at most its lease after the restart.
const LEASE_MARGIN: Duration = Duration::from_secs(5);

/// Signs and POSTs one delivery, and decides what happens next; the signal tells the lane's
/// limit how the endpoint coped.
async fn attempt(ctx: &Ctx, endpoint: &StoredEndpoint, due: Due) -> (Recorded, Signal) {
    let started_at = Utc::now();
    let started = Instant::now();
    let spec = &endpoint.spec;
    let result = send(ctx, endpoint, &due).await;
    let latency_ms = started.elapsed().as_millis() as i64;
    let (outcome, status, response) = match result {
        Ok((status, retry_after, body)) => (
            Outcome::from_response(status, retry_after),
            Some(status),
            Some(body),
        ),
        Err(outcome) => (outcome, None, None),
    };
    let error = match &outcome {
        Outcome::Delivered { .. } => None,
        Outcome::Status { status, .. } => Some(format!("HTTP {status}")),
        Outcome::Timeout => Some(format!(
            "timed out after {:?}",
            spec.timeout.unwrap_or(ctx.config.timeout)
        )),
        Outcome::Network(e) => Some(e.clone()),
    };
    let next = ctx
        .retry
        .next(due.attempts + 1, &outcome, Utc::now(), &mut rand::rng());
    let since_detection = matches!(next, Next::Done).then(|| {
        Duration::from_millis((Utc::now().timestamp_millis() - due.detected_at_ms).max(0) as u64)
    });
    let label = match next {
        Next::Done => "delivered",
        Next::RetryAt(_) => "retry",
        Next::Failed => "failed",
        Next::DisableEndpoint => "disabled",
    };
    crate::metrics::attempt(&spec.name, label, started.elapsed(), since_detection);
    match (&next, &error) {
        (Next::Done, _) => {
            tracing::info!(endpoint = %spec.name, source = %due.source, resource = %due.resource, event_id = %due.event_id, latency_ms, "Delivered.")
        }
        (Next::DisableEndpoint, Some(error)) => tracing::warn!(
            endpoint = %spec.name, source = %due.source, resource = %due.resource,
            event_id = %due.event_id, attempt = due.attempts + 1, %error,
            "Delivery refused for good; the endpoint is disabled."
        ),
        (Next::RetryAt(at), Some(error)) => tracing::warn!(
            endpoint = %spec.name, source = %due.source, resource = %due.resource,
            event_id = %due.event_id, attempt = due.attempts + 1, %error,
            retry_at = %at.to_rfc3339(), "Delivery failed; will retry."
        ),
        (Next::Failed, Some(error)) => tracing::warn!(
            endpoint = %spec.name, source = %due.source, resource = %due.resource,
            event_id = %due.event_id, attempts = due.attempts + 1, %error,
            "Delivery failed for good (dead letter); `pollhook deliveries retry` resends it."
        ),
        _ => {}
    }
    let timeout = spec.timeout.unwrap_or(ctx.config.timeout);
    // A refusal before sending (URL policy, signing) counts as a failure too: that endpoint's
    // deliveries all fail, and one request at a time is all it needs.
    let signal = Signal::of(status, started.elapsed(), timeout);
    let recorded = Recorded {
        delivery_id: due.delivery_id,
        endpoint_id: endpoint.id,
        at: started_at.timestamp_millis(),
        status,
        latency_ms,
        error,
        response,
        next,
    };
    (recorded, signal)
}

/// The POST itself: `Ok((status, retry_after, body start))` for any response, `Err(outcome)` when
/// none came.
async fn send(
    ctx: &Ctx,
    endpoint: &StoredEndpoint,
    due: &Due,
) -> Result<(u16, Option<Duration>, String), Outcome> {
    let spec = &endpoint.spec;
    let url = ctx.policy.check_url(&spec.url).map_err(Outcome::Network)?;
    let mut keys = vec![
        sign::decode_secret(spec.signing, spec.secret.expose())
            .map_err(|e| Outcome::Network(format!("cannot sign: {e}")))?,
    ];
    if let Some((old, until)) = &endpoint.old_secret
        && *until > Utc::now()
        && let Ok(old) = sign::decode_secret(spec.signing, old.expose())
    {
        keys.push(old);
    }
    let keys: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let encoded = encode::encode(spec.format, &due.payload)
        .map_err(|e| Outcome::Network(format!("cannot encode the event: {e}")))?;
    let signed = sign::sign(
        spec.signing,
        &keys,
        &SignInput {
            endpoint_name: &spec.name,
            url: &spec.url,
            event_id: &due.event_id,
            body: &encoded.body,
            timestamp: Utc::now().timestamp(),
        },
    )
    .map_err(|e| Outcome::Network(format!("cannot sign: {e}")))?;

    let mut headers = HeaderMap::new();
    // `check` refuses reserved names; one stored by an older pollhook is still never sent.
    let extra = spec
        .headers
        .iter()
        .filter(|(name, _)| !crate::endpoint::reserved_endpoint_header(name));
    for (name, value) in extra {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            headers.insert(n, v);
        }
    }
    headers.insert(CONTENT_TYPE, HeaderValue::from_static(encoded.content_type));
    let routing = [
        ("pollhook-event-id", due.event_id.as_str()),
        ("pollhook-event-type", due.event_type.as_str()),
        (
            "pollhook-resource",
            &format!("{}.{}", due.source, due.resource),
        ),
        ("pollhook-resource-id", due.resource_id.as_str()),
        ("pollhook-action", due.action.as_str()),
        ("pollhook-endpoint", spec.name.as_str()),
    ];
    for (name, value) in routing {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    for (name, value) in &signed.headers {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(HeaderName::from_static(name), v);
        }
    }
    let client = match &ctx.proxied {
        Some((proxied, proxy)) if proxy.applies_to(&url) => {
            crate::http::check_target(&ctx.policy, &url)
                .await
                .map_err(Outcome::Network)?;
            proxied
        }
        _ => &ctx.client,
    };
    let response = client
        .post(url)
        .timeout(spec.timeout.unwrap_or(ctx.config.timeout))
        .headers(headers)
        .body(signed.body)
        .send()
        .await
        .map_err(|e| {
            if e.is_timeout() {
                Outcome::Timeout
            } else {
                Outcome::Network(crate::http::error_text(&e))
            }
        })?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, Utc::now()));
    Ok((status, retry_after, quote(response).await))
}

/// The first [`RESPONSE_QUOTE`] bytes of a response body; the rest is never read.
async fn quote(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < RESPONSE_QUOTE {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk),
            _ => break,
        }
    }
    body.truncate(RESPONSE_QUOTE);
    String::from_utf8_lossy(&body).into_owned()
}

/// Commits outcomes in groups: whatever has arrived while the previous group was committing.
async fn record(
    store: Store,
    mut rx: mpsc::Receiver<Recorded>,
    disable_after: Duration,
    wake: Wake,
) {
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match rx.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        match store.record_outcomes(batch, disable_after).await {
            Ok(disabled) => {
                for (endpoint_id, reason) in disabled {
                    tracing::error!(endpoint_id, %reason, "Endpoint disabled.");
                }
            }
            // The deliveries stay leased and come back when the lease ends: delivered again,
            // never lost.
            Err(error) => {
                tracing::error!(%error, "Cannot record delivery outcomes; they will be retried.")
            }
        }
        wake.notify();
    }
}

/// The delivery client through `[http] proxy`: no redirects, and no address policy in its
/// resolver, which only resolves the proxy's own name (the proxy's address is the operator's
/// choice; the policy judges targets, before each request).
fn proxied_client(proxy: &crate::http::Proxy) -> Result<reqwest::Client, reqwest::Error> {
    crate::http::client()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .proxy(reqwest::Proxy::all(proxy.url.clone())?)
        .build()
}

/// The delivery client: no redirects, no proxy, and only addresses the policy allows.
fn client(policy: &UrlPolicy) -> Result<reqwest::Client, reqwest::Error> {
    crate::http::client()
        .connect_timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(64)
        .dns_resolver(Arc::new(crate::http::PolicyResolver::new(policy.clone())))
        .build()
}
