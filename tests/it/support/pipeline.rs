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

use super::{ConfigBuilder, PATIENCE, block_on, config_in, sorted_ids};

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
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<Result<(), pollhook::RunError>>>,
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
            stop: None,
            task: None,
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
        let (tx, rx) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = rx.await;
        };
        self.task = Some(tokio::spawn(pollhook::run(self.config.clone(), shutdown)));
        self.stop = Some(tx);
    }

    /// Asks `run` to stop and checks that it returns `Ok` within its grace period.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let result = tokio::time::timeout(PATIENCE, task)
                .await
                .expect("pollhook::run stops within its grace period")
                .expect("pollhook::run does not panic");
            if let Err(e) = result {
                panic!("pollhook::run failed: {e}");
            }
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
pub fn events(store: &Store) -> Vec<Event> {
    let filter = EventFilter {
        limit: 10_000,
        ..EventFilter::default()
    };
    let mut events: Vec<Event> = block_on(store.events(filter))
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    events.reverse();
    events
}

/// The deliveries of one endpoint, oldest first.
pub fn deliveries(store: &Store, endpoint: &str) -> Vec<DeliveryRow> {
    let mut rows = block_on(store.deliveries(DeliveryFilter {
        endpoint: Some(endpoint.to_owned()),
        limit: 10_000,
        ..DeliveryFilter::default()
    }))
    .unwrap();
    rows.reverse();
    rows
}

/// The `Pollhook-Event-Id` of each request.
pub fn event_ids(received: &[Received]) -> Vec<String> {
    received
        .iter()
        .map(|r| r.header("pollhook-event-id").unwrap_or_default().to_owned())
        .collect()
}
