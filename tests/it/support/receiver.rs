//! The scripted webhook receiver: records the bytes and headers of every request, answers the
//! status a closure picks from the request, and holds responses while the test says so.
//!
//! In: POSTs from pollhook's delivery. Out: [`Exchange`]s in arrival order. `pollhook::demo::Receiver`
//! covers the plain case; this one exists for what it cannot do.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::routing::post;
use pollhook::demo::Received;
use tokio::sync::watch;

use super::listen;

/// One request a [`Hook`] got, and what it answered.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request.
    pub request: Received,
    /// The status chosen for it when it arrived.
    pub status: u16,
    /// Whether the response has been released (false while the hook holds it).
    pub answered: bool,
}

impl Exchange {
    /// A request header.
    pub fn header(&self, name: &str) -> &str {
        self.request.header(name).unwrap_or_default()
    }
}

type Respond = dyn Fn(&Received) -> u16 + Send + Sync;

/// A webhook receiver on loopback that picks each response's status from the request, and
/// holds every response while [`Hook::hold`] is on.
#[derive(Clone)]
pub struct Hook {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    log: Arc<Mutex<Vec<Exchange>>>,
    respond: Arc<Respond>,
    open: Arc<watch::Sender<bool>>,
}

impl Hook {
    /// Starts a receiver answering `respond(request)` to each request.
    pub async fn start(respond: impl Fn(&Received) -> u16 + Send + Sync + 'static) -> Hook {
        let (listener, url) = listen().await;
        let hook = Hook {
            url,
            log: Arc::default(),
            respond: Arc::new(respond),
            open: Arc::new(watch::channel(true).0),
        };
        super::serve(
            listener,
            Router::new()
                .route("/{*path}", post(receive))
                .with_state(hook.clone()),
        );
        hook
    }

    /// While `true`, requests are recorded but not answered; `false` releases them.
    pub fn hold(&self, hold: bool) {
        self.open.send_replace(!hold);
    }

    /// Every request so far, in arrival order.
    pub fn log(&self) -> MutexGuard<'_, Vec<Exchange>> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn receive(
    State(hook): State<Hook>,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let request = Received {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), v.to_str().unwrap_or("").to_owned()))
            .collect(),
        body: body.to_vec(),
    };
    let status = (hook.respond)(&request);
    let at = {
        let mut log = hook.log();
        log.push(Exchange {
            request,
            status,
            answered: false,
        });
        log.len() - 1
    };
    let mut open = hook.open.subscribe();
    let _ = open.wait_for(|open| *open).await;
    hook.log()[at].answered = true;
    StatusCode::from_u16(status).unwrap()
}

/// A switch shared between a test and a `Hook`'s respond closure.
#[derive(Clone, Default)]
pub struct Switch(Arc<AtomicBool>);

impl Switch {
    /// A switch that starts on.
    pub fn on() -> Switch {
        Switch(Arc::new(AtomicBool::new(true)))
    }
    /// Whether it is on.
    pub fn is_on(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    /// Turns it off.
    pub fn off(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}
