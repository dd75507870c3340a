//! pollhook in this process: [`Harness`] polls one resource by hand, [`Pipeline`] runs the whole
//! of `pollhook::run` with a oneshot as its shutdown.
//!
//! In: a config (text without `[storage]`, or a [`super::ConfigBuilder`]). Out: the store the
//! pipeline writes, read back as events, deliveries, status and snapshot rows. Each gets a fresh
//! database in a temp dir, so tests never share state.

use std::sync::Arc;

use pollhook::config::{Config, ResourceConfig};
use pollhook::demo::Received;
use pollhook::event::Event;
use pollhook::normalize::Hash;
use pollhook::poll::{Mode, PollError, PollReport, poll};
use pollhook::source::Source;
use pollhook::store::{DeliveryFilter, DeliveryRow, EventFilter, ResourceStatus, Store};
use tempfile::TempDir;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::{ConfigBuilder, PATIENCE, block_on, config_in, eventually, sorted_ids};

/// One resource of one source over a fresh database: poll it and look at what was written.
pub struct Harness {
    /// Holds the database.
    pub dir: TempDir,
    /// The parsed config.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// The first source's name.
    pub source_name: String,
    /// The first source.
    pub source: Arc<dyn Source>,
    /// The first source's first resource.
    pub resource: ResourceConfig,
}

impl Harness {
    /// Parses `text` (a config without `[storage]`) and opens a fresh database for it.
    pub fn new(text: &str) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let config = config_in(&dir, text);
        let store = Store::open(&config.storage.path).unwrap();
        let source_config = config.sources[0].clone();
        let source = pollhook::source::build(&source_config).unwrap();
        Harness {
            dir,
            store,
            source_name: source_config.name.clone(),
            source,
            resource: source_config.resources[0].clone(),
            config,
        }
    }

    /// One committed poll.
    pub async fn poll(&self) -> Result<PollReport, PollError> {
        poll(
            &self.store,
            &self.source_name,
            self.source.as_ref(),
            &self.resource,
            Mode::Commit,
        )
        .await
    }

    /// Every stored event, oldest first.
    pub fn events(&self) -> Vec<Event> {
        events(&self.store)
    }

    /// The resource's status row.
    pub fn status(&self) -> ResourceStatus {
        block_on(self.store.status())
            .unwrap()
            .into_iter()
            .find(|s| s.source == self.source_name && s.resource == self.resource.name)
            .expect("the resource has a status row")
    }

    /// The snapshot, sorted by id.
    pub fn snapshot(&self) -> Vec<(String, Hash)> {
        let mut rows = block_on(
            self.store
                .snapshot_hashes(&self.source_name, &self.resource.name),
        )
        .unwrap();
        rows.sort();
        rows
    }

    /// The snapshot's ids, sorted as numbers where they are numbers.
    pub fn snapshot_ids(&self) -> Vec<String> {
        sorted_ids(self.snapshot().into_iter().map(|(id, _)| id))
    }
}

/// A config in a temp dir, its database, and `pollhook::run` once started.
pub struct Pipeline {
    /// Holds the config's database.
    _dir: TempDir,
    /// The parsed config.
    pub config: Config,
    /// A second connection to the database, for the test to look and act.
    pub store: Store,
    run: Option<Run>,
}

impl Pipeline {
    /// Parses `config` with its database and file in a fresh temp dir, and opens
    /// the database; nothing runs yet.
    pub fn new(config: ConfigBuilder) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let config = config.in_dir(dir.path()).parse();
        let store = Store::open(&config.storage.path).unwrap();
        Pipeline {
            _dir: dir,
            config,
            store,
            run: None,
        }
    }

    /// Parses `config` and starts `pollhook::run` on it.
    pub fn start(config: ConfigBuilder) -> Pipeline {
        let mut p = Pipeline::new(config);
        p.run();
        p
    }

    /// Starts `pollhook::run`, stopped by [`Pipeline::stop`] (or by the test's runtime ending).
    pub fn run(&mut self) {
        self.run = Some(Run::start(self.config.clone()));
    }

    /// Asks `run` to stop and checks that it returns `Ok` within its grace period.
    pub async fn stop(&mut self) {
        if let Some(run) = self.run.take() {
            run.stop().await;
        }
    }

    /// Every event, oldest first.
    pub fn events(&self) -> Vec<Event> {
        events(&self.store)
    }

    /// The deliveries of one endpoint, oldest first.
    pub fn deliveries(&self, endpoint: &str) -> Vec<DeliveryRow> {
        deliveries(&self.store, endpoint)
    }
}

/// Every event, oldest first.
pub async fn all_events(store: &Store) -> Vec<Event> {
    let filter = EventFilter {
        limit: 10_000,
        ..EventFilter::default()
    };
    let mut events: Vec<Event> = store
        .events(filter)
        .await
        .expect("the store lists events")
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    events.reverse();
    events
}

/// [`all_events`] from synchronous code.
pub fn events(store: &Store) -> Vec<Event> {
    block_on(all_events(store))
}

/// Every delivery, oldest first.
pub async fn all_deliveries(store: &Store) -> Vec<DeliveryRow> {
    let mut rows = store
        .deliveries(DeliveryFilter {
            limit: 10_000,
            ..DeliveryFilter::default()
        })
        .await
        .expect("the store lists deliveries");
    rows.reverse();
    rows
}

/// The deliveries of one endpoint, oldest first.
pub async fn deliveries_of(store: &Store, endpoint: &str) -> Vec<DeliveryRow> {
    let filter = DeliveryFilter {
        endpoint: Some(endpoint.to_owned()),
        limit: 10_000,
        ..DeliveryFilter::default()
    };
    let mut rows = store
        .deliveries(filter)
        .await
        .expect("the store lists deliveries");
    rows.reverse();
    rows
}

/// [`deliveries_of`] from synchronous code.
pub fn deliveries(store: &Store, endpoint: &str) -> Vec<DeliveryRow> {
    block_on(deliveries_of(store, endpoint))
}

/// The `Pollhook-Event-Id` of each request.
pub fn event_ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("pollhook-event-id").unwrap_or_default().to_owned())
        .collect()
}

// ───────────────────────────── `pollhook::run` on a task ─────────────────────────────

/// `pollhook::run` on a task, stopped by [`Run::stop`] or when dropped.
pub struct Run {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), pollhook::RunError>>,
}

impl Run {
    /// Spawns `pollhook::run(config, …)`, its shutdown a oneshot this guard holds.
    pub fn start(config: Config) -> Run {
        let (stop, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(pollhook::run(config, async {
            let _ = rx.await;
        }));
        Run {
            stop: Some(stop),
            task,
        }
    }

    /// Whether `run` has returned (a failed start, say).
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Asks `run` to stop and checks that it returns `Ok` within its grace period.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("pollhook::run stops within its grace period")
            .expect("pollhook::run does not panic");
        if let Err(e) = result {
            panic!("pollhook::run failed: {e}");
        }
    }

    /// What `run` returned; for a run that [`Run::is_finished`].
    pub async fn returned(mut self) -> Result<(), pollhook::RunError> {
        (&mut self.task)
            .await
            .expect("pollhook::run does not panic")
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Starts `pollhook::run` with its admin API on a port found free, and waits until that API
/// answers as this pipeline's: `ours(port)` says `Some(true)` when it does, `Some(false)` when
/// the port answers as another's, `None` while it cannot tell yet.
///
/// `pollhook::run` binds `[server] listen` itself and the library has no way to hand it a bound
/// listener or to report the port it got from `127.0.0.1:0` (the binary logs it; in process no
/// subscriber sees the log), so the port is found free first and may be taken by another test
/// before `run` binds it. Then `run` fails to listen, or the port answers as someone else's,
/// and the start is retried on another port, up to five times.
pub async fn start_on_free_port(
    mut config: impl FnMut(u16) -> Config,
    mut ours: impl AsyncFnMut(u16) -> Option<bool>,
) -> (u16, Run) {
    for _ in 0..5 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port on loopback")
            .port();
        let run = Run::start(config(port));
        let answered = eventually("the admin API to answer", PATIENCE, async || {
            if run.is_finished() {
                return Some(false);
            }
            ours(port).await
        })
        .await;
        if answered {
            return (port, run);
        }
        let returned = run.returned().await;
        eprintln!("pollhook did not start on port {port} ({returned:?}); retrying on another");
    }
    panic!("pollhook did not start five times in a row");
}
