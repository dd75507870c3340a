//! The edge: command-line parsing, logging, signals. `anyhow` lives only here.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad config or usage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pollhook::config::{Config, DEFAULT_CONFIG_FILE};
use pollhook::poll::{self, Mode};
use pollhook::store::{EventFilter, Store};

#[derive(Parser)]
#[command(name = "pollhook", version, about = "Turns pull into push: polls REST APIs and delivers every change as a signed webhook.")]
struct Cli {
    /// Config file [default: $POLLHOOK_CONFIG, then ./pollhook.toml].
    #[arg(long, short, global = true, env = "POLLHOOK_CONFIG")]
    config: Option<PathBuf>,
    /// Log format.
    #[arg(long, global = true, env = "POLLHOOK_LOG_FORMAT", default_value = "human")]
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
    /// Poll one resource (or all of a source's) once and print the changes found.
    Poll {
        /// `source.resource`, or `source` for all its resources.
        target: String,
        /// Fetch and diff, but write nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print the events as a JSON array.
        #[arg(long)]
        json: bool,
    },
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
    Events(EventsCommand),
    /// See pollhook work end to end on this machine: a fake API that keeps changing, a receiver
    /// that prints what arrives. Nothing to install or configure.
    Demo(DemoArgs),
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Newest first.
    List {
        /// `source.resource` or a resource name.
        #[arg(long)]
        resource: Option<String>,
        /// created, updated or deleted.
        #[arg(long)]
        action: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print the events as DESIGN.md §5 shapes them, as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// One event, as JSON.
    Show {
        /// The event id (`evt_…`).
        id: String,
    },
}

#[derive(Args)]
struct DemoArgs {
    /// Stop after this long (e.g. `30s`); default: until Ctrl-C.
    #[arg(long)]
    duration: Option<String>,
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

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(err) => {
            let usage = err.downcast_ref::<UsageError>().is_some();
            eprintln!("error: {err:#}");
            ExitCode::from(if usage { 2 } else { 1 })
        }
    }
}

fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("POLLHOOK_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_target(false).init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn config_path(cli: &Option<PathBuf>) -> PathBuf {
    cli.clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_FILE))
}

fn load(path: &Path) -> anyhow::Result<Config> {
    Config::load(path).map_err(|e| UsageError(e.into()).into())
}

async fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let path = config_path(&cli.config);
    match cli.command {
        Command::Demo(args) => {
            let limit = args
                .duration
                .as_deref()
                .map(pollhook::config::parse_duration)
                .transpose()
                .map_err(|e| UsageError(anyhow!("--duration: {e}")))?;
            pollhook::demo::run(limit, shutdown_signal()).await?;
        }
        Command::Check => {
            let config = load(&path)?;
            let resources: usize = config.sources.iter().map(|s| s.resources.len()).sum();
            println!(
                "{}: ok ({} source(s), {} resource(s), {} endpoint(s); database {})",
                path.display(),
                config.sources.len(),
                resources,
                config.endpoints.len(),
                config.storage.path.display()
            );
        }
        Command::Run => {
            let config = load(&path)?;
            pollhook::run(config, shutdown_signal()).await?;
        }
        Command::Poll {
            target,
            dry_run,
            json,
        } => {
            let config = load(&path)?;
            return poll_command(&config, &target, dry_run, json).await;
        }
        Command::Status { json } => {
            let config = load(&path)?;
            let store = Store::open(&config.storage.path)?;
            print_status(&config, &store, json)?;
        }
        Command::Accept { target } => {
            let config = load(&path)?;
            let (source, resource) = split_target(&config, &target)?;
            let resource = resource.ok_or_else(|| UsageError(anyhow!("name one resource: source.resource")))?;
            let store = Store::open(&config.storage.path)?;
            let n = store.accept_deletes(&source, &resource)?;
            println!("{n} held-back delete(s) of {source}.{resource} will be applied at its next poll.");
        }
        Command::Events(EventsCommand::List {
            resource,
            action,
            limit,
            json,
        }) => {
            let config = load(&path)?;
            let store = Store::open(&config.storage.path)?;
            let events = store.events(&EventFilter {
                resource,
                action,
                limit,
                ..EventFilter::default()
            })?;
            let mut out = std::io::stdout().lock();
            if json {
                let list: Vec<_> = events.into_iter().map(|(_, e)| e).collect();
                serde_json::to_writer_pretty(&mut out, &list)?;
                writeln!(out)?;
            } else if events.is_empty() {
                writeln!(out, "No events yet.")?;
            } else {
                writeln!(out, "{:<26} {:<22} {:<14} {:<38}", "DETECTED", "TYPE", "RESOURCE ID", "EVENT ID")?;
                for (_, e) in events {
                    writeln!(
                        out,
                        "{:<26} {:<22} {:<14} {:<38}",
                        e.detected_at,
                        format!("{}.{}", e.source, e.kind),
                        e.resource_id,
                        e.id
                    )?;
                }
            }
        }
        Command::Events(EventsCommand::Show { id }) => {
            let config = load(&path)?;
            let store = Store::open(&config.storage.path)?;
            let event = store
                .event(&id)?
                .ok_or_else(|| anyhow!("no event {id}"))?;
            println!("{}", serde_json::to_string_pretty(&event)?);
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Splits `source[.resource]` and checks both exist in the config.
fn split_target(config: &Config, target: &str) -> anyhow::Result<(String, Option<String>)> {
    let (source, resource) = match target.split_once('.') {
        Some((s, r)) => (s, Some(r)),
        None => (target, None),
    };
    let Some(src) = config.sources.iter().find(|s| s.name == source) else {
        bail!(UsageError(anyhow!(
            "no source `{source}` in {}; known: {}",
            config.file.display(),
            config.sources.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    };
    if let Some(resource) = resource
        && !src.resources.iter().any(|r| r.name == resource)
    {
        bail!(UsageError(anyhow!(
            "source `{source}` has no resource `{resource}`; known: {}",
            src.resources.iter().map(|r| r.name.as_str()).collect::<Vec<_>>().join(", ")
        )));
    }
    Ok((source.to_owned(), resource.map(str::to_owned)))
}

async fn poll_command(config: &Config, target: &str, dry_run: bool, json: bool) -> anyhow::Result<ExitCode> {
    let (source_name, resource) = split_target(config, target)?;
    let source_config = config
        .sources
        .iter()
        .find(|s| s.name == source_name)
        .context("source vanished")?;
    let store = Store::open(&config.storage.path)?;
    if !dry_run {
        // A running `pollhook run` may poll the same resource; one writer per resource.
        store.reconcile_endpoints(&config.endpoints)?;
    }
    let source = pollhook::source::build(source_config)?;
    let mode = if dry_run { Mode::DryRun } else { Mode::Commit };
    let mut failed = false;
    let mut all_events = Vec::new();
    for resource in source_config
        .resources
        .iter()
        .filter(|r| resource.as_deref().is_none_or(|name| r.name == name))
    {
        let key = resource.key(&source_name);
        match poll::poll(&store, &source_name, source.as_ref(), resource, mode).await {
            Ok(report) => {
                if json {
                    all_events.extend(report.events);
                    continue;
                }
                let verb = if dry_run { "would be" } else { "were" };
                if report.baseline {
                    println!(
                        "{key}: first poll: {} item(s) {} recorded as the baseline; no events.",
                        report.listed,
                        if dry_run { "would be" } else { "were" }
                    );
                } else {
                    println!(
                        "{key}: {} item(s) in {} page(s); {} change(s) {verb} recorded{}.",
                        report.listed,
                        report.pages,
                        report.events.len(),
                        if dry_run { String::new() } else { format!(", {} delivery(ies) queued", report.deliveries) }
                    );
                    for e in &report.events {
                        println!("  {:<8} {:<20} {}", e.action, e.resource_id, e.id);
                    }
                }
                if let Some(held) = report.held {
                    println!(
                        "  held back: {} delete(s) of {} item(s) exceed max_delete_ratio; `pollhook accept {key}` applies them.",
                        held.deletes, held.snapshot
                    );
                }
            }
            Err(err) => {
                failed = true;
                eprintln!("{key}: {err}");
            }
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&all_events)?);
    }
    Ok(if failed { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn print_status(config: &Config, store: &Store, json: bool) -> anyhow::Result<()> {
    let rows = store.status()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<24} {:<20} {:<10} {:>7} {:>7} {:>6}  ERROR",
        "RESOURCE", "LAST POLL", "OUTCOME", "ITEMS", "HELD", "FAILS"
    );
    for source in &config.sources {
        for resource in &source.resources {
            let row = rows
                .iter()
                .find(|r| r.source == source.name && r.resource == resource.name);
            let key = resource.key(&source.name);
            match row {
                None => println!("{key:<24} {:<20} {:<10}", "never", "-"),
                Some(r) => println!(
                    "{key:<24} {:<20} {:<10} {:>7} {:>7} {:>6}  {}",
                    r.last_poll_at
                        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                        .unwrap_or_else(|| "never".into()),
                    r.last_outcome.as_deref().unwrap_or("-"),
                    r.item_count,
                    r.held_deletes,
                    r.consecutive_errors,
                    r.last_error.as_deref().unwrap_or("")
                ),
            }
        }
    }
    Ok(())
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
