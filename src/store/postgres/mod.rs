//! The PostgreSQL backend: a bounded pool of connections to a server that any number of
//! `pollhook run` replicas share.
//!
//! In: the facade's calls, awaited on the async runtime. Out: rows, and the same
//! [`StoreError`]s SQLite gives.
//!
//! Invariants:
//! - Every statement names its types; no transaction is held across an HTTP call or a timer.
//! - A lost connection (restart, failover, network cut) is an [`StoreError::Unavailable`] for
//!   the call that met it; the pool drops the broken connection and the next call opens a new
//!   one, so the caller's retry (the next poll, the next claim) is all recovery needs.
//! - Nothing pollhook says about the server names its user or password: only
//!   [`Db::target`] (`host:port/database`).
//! - A commit that queues deliveries sends `NOTIFY pollhook_deliveries` in its own transaction,
//!   so a replica is woken only for work it can already see.

mod copy;
mod endpoints;
mod events;
mod migrate;
mod outbox;
mod replicas;
mod retention;
mod snapshot;

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};
use serde::Serialize;
use tokio_postgres::config::{Host, SslMode};
use tokio_postgres::error::SqlState;

pub use outbox::CLAIM;

use super::StoreError;

pub(super) use replicas::NOTIFY_CHANNEL;

/// How long a call waits for a free connection, or for a new one to be opened.
const POOL_WAIT: Duration = Duration::from_secs(10);

/// The request timeout a replica announces before it has seen one (the default
/// `[delivery] timeout`); a longer one is announced at the next heartbeat.
const DEFAULT_ANNOUNCED: Duration = Duration::from_secs(10);

/// How long opening one connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// An open PostgreSQL database. Cheap to clone: clones share the pool.
#[derive(Clone)]
pub(super) struct Db {
    pool: Pool,
    shared: Arc<Shared>,
}

struct Shared {
    /// `host:port/database`, for messages.
    target: String,
    /// The parsed URL, for the one connection that listens for notifications.
    config: tokio_postgres::Config,
    /// How connections are encrypted.
    tls: Tls,
    /// This process's id in the `replicas` table.
    replica: String,
    /// When the last heartbeat that succeeded was sent.
    beat: Mutex<Option<Instant>>,
    /// The longest request timeout this replica has wanted to send with, ms.
    wanted_ms: AtomicI64,
    /// The longest one its last heartbeat announced (and so may be sent with), ms.
    announced_ms: AtomicI64,
    /// Whether the last heartbeat that succeeded took or renewed the leader lease.
    leading: AtomicBool,
    /// Heartbeats this replica has sent as the leader.
    led: AtomicU64,
}

/// How connections are encrypted: `sslmode=require` uses rustls with Mozilla's roots (so the
/// server's certificate is verified, which libpq's `require` does not do); `disable`, `prefer`
/// or none connect in the clear, as a loopback or in-cluster connection usually is.
#[derive(Clone)]
enum Tls {
    None,
    Rustls(tokio_postgres_rustls::MakeRustlsConnect),
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        match e.code() {
            Some(code) if *code == SqlState::UNIQUE_VIOLATION => StoreError::Duplicate(
                e.as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned()),
            ),
            Some(code)
                if *code == SqlState::T_R_SERIALIZATION_FAILURE
                    || *code == SqlState::T_R_DEADLOCK_DETECTED
                    || *code == SqlState::ADMIN_SHUTDOWN
                    || *code == SqlState::CRASH_SHUTDOWN
                    || *code == SqlState::CANNOT_CONNECT_NOW
                    || *code == SqlState::READ_ONLY_SQL_TRANSACTION
                    || *code == SqlState::QUERY_CANCELED =>
            {
                StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e)))
            }
            Some(_) => StoreError::Backend(Box::new(e)),
            // No SQL state: the connection itself failed (closed, reset, timed out).
            None => StoreError::Unavailable(format!("PostgreSQL: {}", describe(&e))),
        }
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => e.into(),
            e => StoreError::Unavailable(format!("no PostgreSQL connection: {e}")),
        }
    }
}

/// An error with its sources ("db error" alone says nothing).
fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return db.message().to_owned();
    }
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

impl Db {
    /// Opens a pool on `url` and checks that one connection works, naming host and database
    /// (never the password) if it does not.
    pub(super) async fn connect(url: &str, pool_size: usize) -> Result<Db, StoreError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|e| StoreError::Connect {
            target: "the [storage] url".to_owned(),
            reason: format!("it cannot be read: {e}"),
            hint: "write postgres://user:password@host:5432/database",
        })?;
        config
            .connect_timeout(CONNECT_TIMEOUT)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .application_name("pollhook");
        let target = target(&config);
        let tls = match config.get_ssl_mode() {
            SslMode::Require => Tls::Rustls(rustls_connector()),
            // Prefer means "TLS if the server offers it" to libpq; pollhook connects in the clear
            // then, rather than half-verifying a certificate.
            _ => {
                config.ssl_mode(SslMode::Disable);
                Tls::None
            }
        };
        let manager_config = ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        };
        let manager = match &tls {
            Tls::None => {
                Manager::from_config(config.clone(), tokio_postgres::NoTls, manager_config)
            }
            Tls::Rustls(tls) => Manager::from_config(config.clone(), tls.clone(), manager_config),
        };
        let pool = Pool::builder(manager)
            .max_size(pool_size)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(CONNECT_TIMEOUT * 2))
            .build()
            .map_err(|e| StoreError::Connect {
                target: target.clone(),
                reason: e.to_string(),
                hint: "check [storage] pool_size",
            })?;
        let db = Db {
            pool,
            shared: Arc::new(Shared {
                target,
                config,
                tls,
                replica: uuid::Uuid::now_v7().to_string(),
                beat: Mutex::new(None),
                wanted_ms: AtomicI64::new(DEFAULT_ANNOUNCED.as_millis() as i64),
                announced_ms: AtomicI64::new(0),
                leading: AtomicBool::new(false),
                led: AtomicU64::new(0),
            }),
        };
        // Fail now, with the reason, rather than at the first poll.
        drop(db.pool.get().await.map_err(|e| db.connect_error(e))?);
        Ok(db)
    }

    /// `host:port/database`.
    pub(super) fn target(&self) -> &str {
        &self.shared.target
    }

    /// This process's replica id.
    pub(super) fn replica(&self) -> &str {
        &self.shared.replica
    }

    /// A pooled connection.
    async fn conn(&self) -> Result<deadpool_postgres::Object, StoreError> {
        Ok(self.pool.get().await?)
    }

    /// The server answers and takes writes (a standby after a failover does not).
    pub(super) async fn check_writable(&self) -> Result<(), StoreError> {
        let conn = self.conn().await?;
        let stmt = conn.prepare_cached("SELECT pg_is_in_recovery()").await?;
        let standby: bool = conn.query_one(&stmt, &[]).await?.get(0);
        if standby {
            return Err(StoreError::Unavailable(format!(
                "{} is a read-only standby; point [storage] url at the primary",
                self.target()
            )));
        }
        Ok(())
    }

    /// Opens one connection outside the pool (the notification listener), returning it with
    /// the future that drives it and the notifications it receives.
    async fn dedicated(&self) -> Result<Dedicated, StoreError> {
        let fail = |e| self.connect_error(deadpool_postgres::PoolError::Backend(e));
        Ok(match &self.shared.tls {
            Tls::None => {
                let (client, connection) = self
                    .shared
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(fail)?;
                drive(client, connection)
            }
            Tls::Rustls(tls) => {
                let (client, connection) = self
                    .shared
                    .config
                    .connect(tls.clone())
                    .await
                    .map_err(fail)?;
                drive(client, connection)
            }
        })
    }

    /// Says why no connection could be had, naming host and database.
    fn connect_error(&self, e: deadpool_postgres::PoolError) -> StoreError {
        let (reason, hint) = match &e {
            deadpool_postgres::PoolError::Backend(e) => {
                let hint = match e.code() {
                    Some(c) if *c == SqlState::INVALID_PASSWORD => {
                        "check the user and password in [storage] url (or POLLHOOK_STORAGE_URL)"
                    }
                    Some(c) if *c == SqlState::INVALID_CATALOG_NAME => {
                        "create the database first (CREATE DATABASE …), or fix its name in the URL"
                    }
                    Some(c) if *c == SqlState::INVALID_AUTHORIZATION_SPECIFICATION => {
                        "the server refused this user from this address: check pg_hba.conf"
                    }
                    _ => "check that PostgreSQL is running and reachable at that host and port",
                };
                (describe(e), hint)
            }
            e => (
                e.to_string(),
                "check that PostgreSQL is running and reachable at that host and port",
            ),
        };
        StoreError::Connect {
            target: self.shared.target.clone(),
            reason,
            hint,
        }
    }
}

/// A connection outside the pool: the client, the future that drives it (it ends when the
/// connection does), and the notifications it receives.
struct Dedicated {
    client: tokio_postgres::Client,
    driven: std::pin::Pin<Box<dyn Future<Output = Result<(), tokio_postgres::Error>> + Send>>,
    messages: tokio::sync::mpsc::UnboundedReceiver<tokio_postgres::AsyncMessage>,
}

fn drive<S, T>(
    client: tokio_postgres::Client,
    mut connection: tokio_postgres::Connection<S, T>,
) -> Dedicated
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (tx, messages) = tokio::sync::mpsc::unbounded_channel();
    let driven = Box::pin(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(message)) => {
                    let _ = tx.send(message);
                }
                Some(Err(e)) => return Err(e),
                None => return Ok(()),
            }
        }
    });
    Dedicated {
        client,
        driven,
        messages,
    }
}

/// `host:port/database`, from a parsed URL.
fn target(config: &tokio_postgres::Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        #[cfg(unix)]
        Some(Host::Unix(path)) => path.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let db = config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or("postgres");
    format!("{host}:{port}/{db}")
}

fn rustls_connector() -> tokio_postgres_rustls::MakeRustlsConnect {
    let roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|b| b.with_root_certificates(roots).with_no_client_auth())
        // The ring provider supports the default versions; this only guards a future change.
        .unwrap_or_else(|_| {
            rustls::ClientConfig::builder()
                .with_root_certificates(rustls::RootCertStore::empty())
                .with_no_client_auth()
        });
    tokio_postgres_rustls::MakeRustlsConnect::new(config)
}

fn json<T: Serialize + ?Sized>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

fn to_time(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
