//! The edge: command-line parsing, logging, signals, exit codes. `anyhow` lives only here.
//!
//! In: the command line and the environment. Out: what each command prints, and the exit code:
//! 0 success (also when stdout was closed early, as by `| head -1`), 1 runtime failure, 2 bad
//! config or usage. Errors print once as `error: …`, each cause said once.
//!
//! One file per command group; each calls [`pollhook::admin`] (through [`Ctx`]) for what the
//! API can do too, so both print the same views.

mod adapters;
mod deliveries;
mod endpoints;
mod events;
mod healthcheck;
mod out;
mod run;
mod status;
mod verify;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Parser, Subcommand, ValueEnum};
use pollhook::admin::{Admin, AdminError};
use pollhook::config::{Config, DEFAULT_CONFIG_FILE};
use pollhook::deliver::Wake;
use pollhook::store::Store;

#[derive(Parser)]
#[command(
    name = "pollhook",
    version,
    about = "Turns pull into push: polls REST APIs and delivers every change as a signed webhook."
)]
struct Cli {
    /// Config file [default: $POLLHOOK_CONFIG, then ./pollhook.toml].
    #[arg(long, short, global = true, env = "POLLHOOK_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(
        long,
        global = true,
        env = "POLLHOOK_LOG_FORMAT",
        default_value = "human"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Human,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Poll every resource on its schedule and deliver the changes, until SIGTERM/SIGINT.
    Run,
    /// Validate the config and report every problem; runs nothing.
    Check,
    /// Create or upgrade the database's schema, then exit (`run` and every command also do it).
    Migrate,
    /// Copy a SQLite database into an empty PostgreSQL one: snapshot, poll state, events in
    /// order, endpoints with their secrets, deliveries and attempts. Nothing is re-baselined.
    /// Stop `pollhook run` first.
    MigrateStorage(run::MigrateStorageArgs),
    /// Poll one resource (or all of a source's) once and print the changes found.
    Poll(run::PollArgs),
    /// Per resource: last poll, outcome, item count, held-back deletes.
    Status {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Apply the deletes a resource's guard held back, at its next poll.
    Accept {
        /// `source.resource`.
        target: String,
    },
    /// Inspect events.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Register, change and remove webhook endpoints.
    #[command(subcommand)]
    Endpoints(endpoints::EndpointsCommand),
    /// Inspect and retry deliveries.
    #[command(subcommand)]
    Deliveries(deliveries::DeliveriesCommand),
    /// Send an event again, with the same event id, to one endpoint or to every endpoint that
    /// had a delivery of it.
    Replay {
        /// The event id (`evt_…`).
        event_id: String,
        /// Only to this endpoint (also one added after the event).
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// List adapter definitions, or show one and how it merges into a source.
    #[command(subcommand)]
    Adapters(adapters::AdaptersCommand),
    /// Exit 0 if a running pollhook answers its health check (for container HEALTHCHECKs).
    Healthcheck {
        /// URL to check [default: /healthz on the config's [server] health_listen, else its
        /// listen; with no config file, $POLLHOOK_HEALTH_LISTEN, $POLLHOOK_LISTEN, 127.0.0.1:8787].
        #[arg(long)]
        url: Option<String>,
    },
    /// Check a received webhook's signature (for receivers debugging their side).
    Verify(verify::VerifyArgs),
    /// See pollhook work end to end on this machine: a fake API that keeps changing, a receiver
    /// that prints what arrives. Nothing to install or configure.
    Demo(run::DemoArgs),
}

/// An error that means the user must fix their input: exit code 2.
#[derive(Debug)]
struct UsageError(anyhow::Error);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for UsageError {}

/// A usage error (exit 2) with `message`.
fn usage(message: String) -> anyhow::Error {
    UsageError(anyhow!(message)).into()
}

/// What the operator commands share, built once: the config, its database, and the admin
/// operations over both.
struct Ctx {
    config: Config,
    store: Store,
    /// Nobody listens in a CLI process; a running `pollhook run` notices the change itself.
    wake: Wake,
}

impl Ctx {
    /// Loads the config (a problem is exit 2) and opens its database.
    async fn open(path: &Path) -> anyhow::Result<Ctx> {
        let config = load(path)?;
        let store = Store::connect(&config.storage).await?;
        Ok(Ctx {
            config,
            store,
            wake: Wake::default(),
        })
    }

    fn admin(&self) -> Admin<'_> {
        Admin::new(&self.store, &self.config, &self.wake)
    }
}

/// The async runtime's worker threads: half the cores, at least one, unless
/// `TOKIO_WORKER_THREADS` names a number. The heavy part of a poll (taking a large listing,
/// SQLite's larger reads and commits) runs on the blocking pool's threads, beside the workers;
/// what is left to the workers between requests is small, and at idle a second worker on two
/// cores mostly wakes to find nothing: 5.5 task switches and 1.9 migrations a poll against 3.1
/// and 0.06 with one, and 15 % more CPU (BENCHMARKS.md §8).
fn worker_threads() -> usize {
    let set = std::env::var("TOKIO_WORKER_THREADS").ok();
    match set
        .and_then(|n| n.trim().parse::<usize>().ok())
        .filter(|&n| n > 0)
    {
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| (n.get() / 2).max(1)),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The demo prints what happens itself; its log shows only problems unless asked.
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(worker_threads())
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        // The reader stopped reading (`| head -1`): it has what it wanted.
        Err(err) if out::closed_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let usage = err.downcast_ref::<UsageError>().is_some()
                || matches!(
                    err.downcast_ref::<AdminError>(),
                    Some(AdminError::Invalid(_))
                );
            eprintln!("error: {}", chain(&err));
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

/// The error and its causes, each said once: pollhook's own errors already quote their cause,
/// which `{:#}` would print a second time.
fn chain(err: &anyhow::Error) -> String {
    let mut text = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

fn init_logging(format: LogFormat, default_level: &str) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let (pollhook_log, rust_log) = (std::env::var("POLLHOOK_LOG"), std::env::var("RUST_LOG"));
    let directives = pollhook::logging::directives(
        pollhook_log.as_deref().ok(),
        rust_log.as_deref().ok(),
        default_level,
    );
    let filter = EnvFilter::try_new(&directives).unwrap_or_else(|_| EnvFilter::new(default_level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

/// Loads and validates the config; a problem is a usage error.
fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| UsageError(e.into()).into())
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let explicit_config = cli.config.is_some();
    let path = cli
        .config
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE));
    match cli.command {
        Command::Demo(args) => run::demo(args, shutdown_signal()).await?,
        Command::Check => run::check(&path)?,
        Command::Migrate => run::migrate(&path).await?,
        Command::MigrateStorage(args) => run::migrate_storage(&path, args).await?,
        Command::Run => run::run(&path, shutdown_signal()).await?,
        Command::Poll(args) => return run::poll(&load(&path)?, args).await,
        Command::Status { json } => status::status(&Ctx::open(&path).await?, json).await?,
        Command::Accept { target } => status::accept(&Ctx::open(&path).await?, &target).await?,
        Command::Events(command) => events::command(&Ctx::open(&path).await?, command).await?,
        // Needs no config: a secret is often made before anything is deployed.
        Command::Endpoints(endpoints::EndpointsCommand::Secret { signing }) => {
            endpoints::print_secret(&signing)?
        }
        Command::Endpoints(command) => {
            endpoints::command(&Ctx::open(&path).await?, command).await?
        }
        Command::Deliveries(command) => {
            deliveries::command(&Ctx::open(&path).await?, command).await?
        }
        Command::Replay { event_id, endpoint } => {
            events::replay(&Ctx::open(&path).await?, &event_id, endpoint.as_deref()).await?
        }
        Command::Verify(args) => return verify::verify(args),
        Command::Adapters(command) => adapters::command(&path, command)?,
        Command::Healthcheck { url } => {
            return healthcheck::check(&path, explicit_config, url).await;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `Name: value` pairs, as `--header` takes them.
fn parse_headers(list: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    list.iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| usage(format!("--header `{h}`: write `Name: value`")))
        })
        .collect()
}

/// Completes on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
