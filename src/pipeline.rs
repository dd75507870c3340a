//! The running pipeline's shared parts: the built sources, the per-resource poll locks, the
//! dispatcher's wake-up, the health `/readyz` reports; and what can stop `run`.
//!
//! In: a validated config and an open store. Out: a [`Pipeline`] the scheduler, the dispatcher and
//! the admin API share behind an `Arc`.
//!
//! Invariant: polls of one resource never overlap, whoever starts them (the schedule, the API's
//! poll-now, the CLI's `poll` in process), because they all go through [`Pipeline::poll`].

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use tokio::task::{JoinHandle, JoinSet};

use crate::config::{Config, ResourceConfig, SourceConfig};
use crate::deliver::Wake;
use crate::poll::{self, Mode, PollError, PollReport};
use crate::source::{self, Source};
use crate::store::{Store, StoreError};

/// Why `pollhook run` could not start or keep running.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The database could not be opened, locked or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A source could not be set up.
    #[error(transparent)]
    Source(#[from] source::SourceError),
    /// The admin API could not listen.
    #[error(
        "cannot listen on {addr} for the admin API: {source} (hint: set [server] listen or POLLHOOK_LISTEN to a free address)"
    )]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// The health listener (`[server] health_listen`) could not listen.
    #[error(
        "cannot listen on {addr} for the probes and /metrics: {source} (hint: set [server] health_listen or POLLHOOK_HEALTH_LISTEN to a free address)"
    )]
    HealthListen {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
    /// A long-running part ended before shutdown.
    #[error(transparent)]
    Stopped(#[from] Stopped),
}

/// How long in-flight work may take to finish after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Whether the long-running parts are up, for `/readyz`. `run` sets both when it starts them and
/// clears them at shutdown or when one of them ends early.
#[derive(Debug, Default)]
pub struct Health {
    /// The scheduler is running.
    pub scheduler: AtomicBool,
    /// The dispatcher is running.
    pub dispatcher: AtomicBool,
}

/// Everything a running pollhook shares between the scheduler, the dispatcher and the admin API.
pub struct Pipeline {
    /// The validated config.
    pub config: Config,
    /// The database.
    pub store: Store,
    /// Every source, built.
    pub sources: Vec<(SourceConfig, Arc<dyn Source>)>,
    /// One lock per `source.resource`: polls of a resource never overlap, whoever starts them.
    locks: HashMap<String, Arc<tokio::sync::Mutex<()>>>,
    /// Wakes the dispatcher after a commit.
    pub wake: Wake,
    /// Liveness of the long-running tasks.
    pub health: Health,
}

impl Pipeline {
    /// Builds the sources of `config` around an open store.
    pub fn new(config: Config, store: Store) -> Result<Pipeline, RunError> {
        let sources = config
            .sources
            .iter()
            .map(|s| Ok((s.clone(), source::build(s)?)))
            .collect::<Result<Vec<_>, source::SourceError>>()?;
        let locks = config
            .sources
            .iter()
            .flat_map(|s| s.resources.iter().map(|r| r.key(&s.name)))
            .map(|key| (key, Arc::default()))
            .collect();
        Ok(Pipeline {
            config,
            store,
            sources,
            locks,
            wake: Wake::default(),
            health: Health::default(),
        })
    }

    /// Finds a resource by source and resource name.
    pub fn resource(
        &self,
        source: &str,
        resource: &str,
    ) -> Option<(&SourceConfig, &Arc<dyn Source>, &ResourceConfig)> {
        let (config, built) = self.sources.iter().find(|(s, _)| s.name == source)?;
        let resource = config.resources.iter().find(|r| r.name == resource)?;
        Some((config, built, resource))
    }

    /// Polls one resource now, waiting for a poll of it already running, and wakes the dispatcher
    /// if deliveries were queued.
    pub async fn poll(
        &self,
        source: &SourceConfig,
        built: &Arc<dyn Source>,
        resource: &ResourceConfig,
    ) -> Result<PollReport, PollError> {
        let lock = self
            .locks
            .get(&resource.key(&source.name))
            .cloned()
            .unwrap_or_default();
        let _guard = lock.lock().await;
        let report = poll::poll(
            &self.store,
            &source.name,
            built.as_ref(),
            resource,
            Mode::Commit,
        )
        .await?;
        if report.deliveries > 0 {
            self.wake.notify();
        }
        Ok(report)
    }
}

/// A long-running part of `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Task {
    /// One of the per-resource poll loops, or the replica's heartbeat.
    Scheduler,
    /// The delivery loop.
    Dispatcher,
    /// The admin API's accept loop.
    Api,
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Task::Scheduler => "scheduler",
            Task::Dispatcher => "dispatcher",
            Task::Api => "admin API",
        })
    }
}

/// A part that ended before shutdown, and how.
#[derive(Debug, thiserror::Error)]
#[error("the {task} stopped unexpectedly ({reason}); pollhook exits so that it can be restarted")]
pub struct Stopped {
    /// Which part.
    pub task: Task,
    /// `returned`, or the panic as tokio reports it.
    pub reason: String,
}

impl Stopped {
    fn new(task: Task, ended: Result<(), tokio::task::JoinError>) -> Stopped {
        let reason = match ended {
            Ok(()) => "returned".to_owned(),
            Err(e) => e.to_string(),
        };
        Stopped { task, reason }
    }
}

/// Waits for `shutdown` (`None`) or for the first task to end before it (`Some`). A scheduler
/// with no resources has no tasks and never ends.
pub(crate) async fn watch(
    scheduler: &mut JoinSet<()>,
    dispatcher: &mut JoinHandle<()>,
    api: &mut JoinHandle<()>,
    shutdown: impl Future<Output = ()>,
) -> Option<Stopped> {
    tokio::select! {
        () = shutdown => None,
        Some(ended) = scheduler.join_next() => Some(Stopped::new(Task::Scheduler, ended)),
        ended = dispatcher => Some(Stopped::new(Task::Dispatcher, ended)),
        ended = api => Some(Stopped::new(Task::Api, ended)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> JoinHandle<()> {
        tokio::spawn(std::future::pending())
    }

    #[tokio::test]
    async fn a_panicking_dispatcher_is_reported_with_its_panic() {
        let mut scheduler = JoinSet::new();
        scheduler.spawn(std::future::pending());
        let mut dispatcher = tokio::spawn(async { panic!("concurrency must be positive") });
        let stopped = watch(
            &mut scheduler,
            &mut dispatcher,
            &mut idle(),
            std::future::pending(),
        )
        .await
        .expect("the panic ends the watch");
        assert_eq!(stopped.task, Task::Dispatcher);
        assert!(
            stopped.reason.contains("concurrency must be positive"),
            "{}",
            stopped.reason
        );
        let error = RunError::Stopped(stopped).to_string();
        assert!(
            error.contains("the dispatcher stopped unexpectedly"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn a_scheduler_task_that_returns_is_reported() {
        let mut scheduler = JoinSet::new();
        scheduler.spawn(std::future::pending());
        scheduler.spawn(async {});
        let stopped = watch(
            &mut scheduler,
            &mut idle(),
            &mut idle(),
            std::future::pending(),
        )
        .await
        .expect("the return ends the watch");
        assert_eq!(stopped.task, Task::Scheduler);
        assert_eq!(stopped.reason, "returned");
    }

    #[tokio::test]
    async fn shutdown_ends_the_watch_quietly_even_with_no_resources() {
        let mut scheduler = JoinSet::new();
        let stopped = watch(&mut scheduler, &mut idle(), &mut idle(), async {}).await;
        assert!(stopped.is_none(), "{stopped:?}");
    }

    #[tokio::test]
    async fn an_empty_scheduler_does_not_end_the_watch() {
        let mut scheduler = JoinSet::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let mut api = tokio::spawn(async move {
            let _ = rx.await;
        });
        let mut dispatcher = idle();
        let watched = watch(
            &mut scheduler,
            &mut dispatcher,
            &mut api,
            std::future::pending(),
        );
        drop(tx);
        let stopped = watched.await.expect("only the api ends it");
        assert_eq!(stopped.task, Task::Api);
    }
}
