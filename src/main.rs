//! The edge: command-line parsing, logging, signals. `anyhow` lives only here.
//!
//! Exit codes: 0 success, 1 runtime failure, 2 bad config or usage.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pollhook::config::{Config, DEFAULT_CONFIG_FILE, EndpointInput, validate_endpoint};
use pollhook::poll::{self, Mode};
use pollhook::store::{DeliveryFilter, EndpointPatch, EventFilter, Store, StoredEndpoint};

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
    MigrateStorage {
        /// The SQLite file to copy.
        #[arg(long)]
        from: PathBuf,
        /// The postgres:// URL to copy into [default: the config's [storage] url].
        #[arg(long, env = "POLLHOOK_STORAGE_URL", hide_env_values = true)]
        to: Option<String>,
    },
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
    /// Register, change and remove webhook endpoints.
    #[command(subcommand)]
    Endpoints(EndpointsCommand),
    /// Inspect and retry deliveries.
    #[command(subcommand)]
    Deliveries(DeliveriesCommand),
    /// Send an event again, with the same event id, to one endpoint or all that want it.
    Replay {
        /// The event id (`evt_…`).
        event_id: String,
        /// Only to this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// List adapter definitions, or show one and how it merges into a source.
    #[command(subcommand)]
    Adapters(AdaptersCommand),
    /// Exit 0 if a running pollhook answers its health check (for container HEALTHCHECKs).
    Healthcheck {
        /// URL to check [default: http://$POLLHOOK_LISTEN/healthz, else 127.0.0.1:8787].
        #[arg(long)]
        url: Option<String>,
    },
    /// Check a received webhook's signature (for receivers debugging their side).
    Verify(VerifyArgs),
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

#[derive(Subcommand)]
enum AdaptersCommand {
    /// Every definition: built in, and from `adapters_dir` / POLLHOOK_ADAPTERS_DIR.
    List,
    /// A definition's file, or with --source the source as the config's values merge into it.
    Show {
        /// Definition name.
        name: String,
        /// A source of the config that uses it.
        #[arg(long)]
        source: Option<String>,
    },
}

#[derive(Subcommand)]
enum EndpointsCommand {
    /// Every endpoint with its state.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// One endpoint (its secret shown only as a hint).
    Show {
        /// Endpoint name.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Register an endpoint.
    Add(AddEndpoint),
    /// Change an endpoint.
    Update(UpdateEndpoint),
    /// Remove an endpoint with its deliveries.
    Remove {
        /// Endpoint name.
        name: String,
    },
    /// Stop delivering to an endpoint; its deliveries wait.
    Pause {
        /// Endpoint name.
        name: String,
    },
    /// Deliver to a paused or disabled endpoint again.
    Resume {
        /// Endpoint name.
        name: String,
    },
    /// Print a new random secret for a signing scheme.
    Secret {
        /// jwt or standard-webhooks.
        #[arg(long, default_value = "jwt")]
        signing: String,
    },
}

#[derive(Args)]
struct AddEndpoint {
    /// Unique name.
    name: String,
    /// Where to POST.
    #[arg(long)]
    url: String,
    /// Signing secret; generated and printed once if omitted.
    #[arg(long, env = "POLLHOOK_ENDPOINT_SECRET", hide_env_values = true)]
    secret: Option<String>,
    /// jwt or standard-webhooks.
    #[arg(long, default_value = "jwt")]
    signing: String,
    /// `source.resource` pattern (repeatable; `*` wildcards); default: all.
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// created, updated or deleted (repeatable); default: all.
    #[arg(long = "action")]
    actions: Vec<String>,
    /// Extra header `Name: value` (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Request timeout (e.g. `10s`).
    #[arg(long)]
    timeout: Option<String>,
    /// Register it paused.
    #[arg(long)]
    paused: bool,
    /// Also send it the current state of its resources as `created` events.
    #[arg(long)]
    backfill: bool,
}

#[derive(Args)]
struct UpdateEndpoint {
    /// Endpoint name.
    name: String,
    /// New URL.
    #[arg(long)]
    url: Option<String>,
    /// New secret.
    #[arg(long, conflicts_with = "rotate_secret")]
    secret: Option<String>,
    /// Generate a new secret (printed once).
    #[arg(long)]
    rotate_secret: bool,
    /// How long the old secret keeps signing too (standard-webhooks sends both signatures).
    #[arg(long, default_value = "24h")]
    overlap: String,
    /// Replace the resource patterns.
    #[arg(long = "resource")]
    resources: Vec<String>,
    /// Replace the action filter.
    #[arg(long = "action")]
    actions: Vec<String>,
}

#[derive(Subcommand)]
enum DeliveriesCommand {
    /// Newest first.
    List {
        /// Endpoint name.
        #[arg(long)]
        endpoint: Option<String>,
        /// pending, delivered or failed.
        #[arg(long)]
        status: Option<String>,
        /// Only this event's deliveries.
        #[arg(long)]
        event: Option<String>,
        /// How many.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Every attempt of a delivery (its number) or of an event's deliveries (`evt_…`).
    Attempts {
        /// Delivery number or event id.
        id: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Put failed deliveries back in line with a fresh retry schedule.
    Retry {
        /// One delivery.
        #[arg(long, conflicts_with = "failed")]
        id: Option<i64>,
        /// Every failed delivery.
        #[arg(long)]
        failed: bool,
        /// With --failed: only this endpoint's.
        #[arg(long, requires = "failed")]
        endpoint: Option<String>,
    },
}

#[derive(Args)]
struct VerifyArgs {
    /// jwt or standard-webhooks.
    #[arg(long)]
    signing: String,
    /// The endpoint's secret.
    #[arg(long, env = "POLLHOOK_VERIFY_SECRET", hide_env_values = true)]
    secret: String,
    /// A raw HTTP request as received (request line, headers, blank line, body).
    #[arg(long, conflicts_with = "body")]
    request: Option<PathBuf>,
    /// The body as received.
    #[arg(long)]
    body: Option<PathBuf>,
    /// A header `Name: value` as received (repeatable).
    #[arg(long = "header")]
    headers: Vec<String>,
    /// Largest accepted age of a standard-webhooks timestamp.
    #[arg(long, default_value = "5m")]
    tolerance: String,
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
    // The demo prints what happens itself; its log shows only problems unless asked.
    let default_level = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    init_logging(cli.log_format, default_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
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
        Err(err) => {
            let usage = err.downcast_ref::<UsageError>().is_some();
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
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("POLLHOOK_LOG")
        .ok()
        .and_then(|v| EnvFilter::try_new(v).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new(default_level));
    use std::io::IsTerminal;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
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
                database(&config.storage)
            );
        }
        Command::Migrate => {
            let config = load(&path)?;
            let store = Store::connect(&config.storage).await?;
            println!(
                "{}: schema version {}, up to date.",
                database(&config.storage),
                store.schema_version().await?
            );
        }
        Command::MigrateStorage { from, to } => {
            if !from.is_file() {
                return Err(
                    UsageError(anyhow!("--from {}: no such SQLite file", from.display())).into(),
                );
            }
            let to = match to {
                Some(url) => url,
                None => load(&path)?
                    .storage
                    .url
                    .map(|u| u.expose().to_owned())
                    .ok_or_else(|| {
                        UsageError(anyhow!(
                            "name the PostgreSQL database with --to postgres://… or [storage] url"
                        ))
                    })?,
            };
            let source = Store::open(&from)?;
            let target = Store::connect_postgres(&to, 2).await?;
            let copied = pollhook::store::copy(&source, &target).await?;
            println!(
                "Copied {} into {}: {copied}.",
                source.describe(),
                target.describe()
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
            let store = Store::connect(&config.storage).await?;
            print_status(&config, &store, json).await?;
        }
        Command::Accept { target } => {
            let config = load(&path)?;
            let (source, resource) = split_target(&config, &target)?;
            let resource = resource
                .ok_or_else(|| UsageError(anyhow!("name one resource: source.resource")))?;
            let store = Store::connect(&config.storage).await?;
            let n = store.accept_deletes(&source, &resource).await?;
            println!(
                "{n} held-back delete(s) of {source}.{resource} will be applied at its next poll."
            );
        }
        Command::Events(EventsCommand::List {
            resource,
            action,
            limit,
            json,
        }) => {
            let config = load(&path)?;
            let store = Store::connect(&config.storage).await?;
            let events = store
                .events(EventFilter {
                    resource,
                    action,
                    limit,
                    ..EventFilter::default()
                })
                .await?;
            let mut out = std::io::stdout().lock();
            if json {
                let list: Vec<_> = events.into_iter().map(|(_, e)| e).collect();
                serde_json::to_writer_pretty(&mut out, &list)?;
                writeln!(out)?;
            } else if events.is_empty() {
                writeln!(out, "No events yet.")?;
            } else {
                writeln!(
                    out,
                    "{:<26} {:<22} {:<14} {:<38}",
                    "DETECTED", "TYPE", "RESOURCE ID", "EVENT ID"
                )?;
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
            let store = Store::connect(&config.storage).await?;
            let event = store
                .event(&id)
                .await?
                .ok_or_else(|| anyhow!("no event {id}"))?;
            println!("{}", serde_json::to_string_pretty(&event)?);
        }
        // Needs no config: a secret is often made before anything is deployed.
        Command::Endpoints(EndpointsCommand::Secret { signing }) => print_secret(&signing)?,
        Command::Endpoints(command) => {
            let config = load(&path)?;
            let store = Store::connect(&config.storage).await?;
            endpoints_command(&config, &store, command).await?;
        }
        Command::Deliveries(command) => {
            let config = load(&path)?;
            let store = Store::connect(&config.storage).await?;
            deliveries_command(&store, command).await?;
        }
        Command::Replay { event_id, endpoint } => {
            let config = load(&path)?;
            let store = Store::connect(&config.storage).await?;
            let targets = store.replay(&event_id, endpoint.as_deref()).await?;
            if targets.is_empty() {
                println!("No active endpoint wants {event_id}; nothing queued.");
            } else {
                println!("{event_id} queued again for: {}", targets.join(", "));
            }
        }
        Command::Verify(args) => return verify_command(args),
        Command::Adapters(command) => adapters_command(&path, command)?,
        Command::Healthcheck { url } => {
            let url = url.unwrap_or_else(|| {
                let listen =
                    std::env::var("POLLHOOK_LISTEN").unwrap_or_else(|_| "127.0.0.1:8787".into());
                // A wildcard listen address is reached on loopback.
                let listen = listen
                    .replace("0.0.0.0", "127.0.0.1")
                    .replace("[::]", "[::1]");
                format!("http://{listen}/healthz")
            });
            let client = reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(3))
                .no_proxy()
                .build()?;
            return match client.get(&url).send().await {
                Ok(r) if r.status().is_success() => Ok(ExitCode::SUCCESS),
                Ok(r) => {
                    eprintln!("{url}: HTTP {}", r.status());
                    Ok(ExitCode::from(1))
                }
                Err(e) => {
                    eprintln!("{url}: {e}");
                    Ok(ExitCode::from(1))
                }
            };
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn usage(message: String) -> anyhow::Error {
    UsageError(anyhow!(message)).into()
}

fn problems(list: Vec<pollhook::config::Problem>) -> anyhow::Error {
    usage(
        list.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn parse_headers(list: &[String]) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    list.iter()
        .map(|h| {
            h.split_once(':')
                .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                .ok_or_else(|| usage(format!("--header `{h}`: write `Name: value`")))
        })
        .collect()
}

fn endpoint_state(e: &StoredEndpoint) -> String {
    match (&e.disabled_reason, e.spec.active) {
        (Some(reason), false) => format!("disabled: {reason}"),
        (None, false) => "paused".into(),
        _ => "active".into(),
    }
}

fn endpoint_json(e: &StoredEndpoint) -> serde_json::Value {
    serde_json::json!({
        "name": e.spec.name,
        "url": pollhook::endpoint::shown_url_text(&e.spec.url),
        "signing": e.spec.signing.as_str(),
        "secret": e.spec.secret.hint(),
        "resources": e.spec.resources,
        "actions": e.spec.actions.as_slice(),
        "active": e.spec.active,
        "state": endpoint_state(e),
        "origin": e.origin,
        "headers": e.spec.headers.iter().map(|(k, _)| k).collect::<Vec<_>>(),
        "timeout_ms": e.spec.timeout.map(|t| t.as_millis() as u64),
    })
}

async fn endpoints_command(
    config: &Config,
    store: &Store,
    command: EndpointsCommand,
) -> anyhow::Result<()> {
    let warn_config = |name: &str| {
        if config.endpoints.iter().any(|e| e.name == name) {
            eprintln!(
                "note: endpoint {name} is defined in {}; the file's settings return at the next start.",
                config.file.display()
            );
        }
    };
    match command {
        EndpointsCommand::List { json } => {
            let list = store.endpoints().await?;
            if json {
                let list: Vec<_> = list.iter().map(endpoint_json).collect();
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else if list.is_empty() {
                println!("No endpoints. Add one with `pollhook endpoints add NAME --url URL`.");
            } else {
                println!(
                    "{:<16} {:<18} {:<8} {:<40} {:<20} STATE",
                    "NAME", "SIGNING", "ORIGIN", "URL", "RESOURCES"
                );
                for e in &list {
                    println!(
                        "{:<16} {:<18} {:<8} {:<40} {:<20} {}",
                        e.spec.name,
                        e.spec.signing.as_str(),
                        e.origin,
                        pollhook::endpoint::shown_url_text(&e.spec.url),
                        e.spec.resources.join(","),
                        endpoint_state(e)
                    );
                }
            }
        }
        EndpointsCommand::Show { name, json } => {
            let e = store.endpoint_named(&name).await?;
            let value = endpoint_json(&e);
            if json {
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else if let serde_json::Value::Object(map) = value {
                for (k, v) in map {
                    println!(
                        "{k:<11} {}",
                        v.as_str()
                            .map(str::to_owned)
                            .unwrap_or_else(|| v.to_string())
                    );
                }
            }
        }
        EndpointsCommand::Add(args) => {
            let generated = args.secret.is_none();
            let signing: pollhook::sign::Scheme = args
                .signing
                .parse()
                .map_err(|e| usage(format!("--signing: {e}")))?;
            let secret = args
                .secret
                .unwrap_or_else(|| pollhook::sign::generate_secret(signing));
            let input = EndpointInput {
                name: args.name.clone(),
                url: args.url,
                secret: secret.clone(),
                signing: args.signing,
                resources: (!args.resources.is_empty()).then_some(args.resources),
                actions: (!args.actions.is_empty()).then_some(args.actions),
                active: !args.paused,
                headers: parse_headers(&args.headers)?,
                timeout: args.timeout,
            };
            let spec = validate_endpoint(input, config).map_err(problems)?;
            store.add_endpoint(&spec).await?;
            println!("Endpoint {} added.", spec.name);
            if generated {
                println!("Its secret (shown once; give it to the receiver): {secret}");
            }
            if args.backfill {
                let n = store.backfill(&spec.name).await?;
                println!(
                    "Backfill: {n} item(s) queued for {} as created events.",
                    spec.name
                );
            }
        }
        EndpointsCommand::Update(args) => {
            warn_config(&args.name);
            let current = store.endpoint_named(&args.name).await?;
            let mut printed_secret = None;
            let secret = match (args.secret, args.rotate_secret) {
                (Some(s), _) => Some(s),
                (None, true) => {
                    let s = pollhook::sign::generate_secret(current.spec.signing);
                    printed_secret = Some(s.clone());
                    Some(s)
                }
                (None, false) => None,
            };
            // Validate the endpoint as it would be after the change.
            let input = EndpointInput {
                name: args.name.clone(),
                url: args.url.clone().unwrap_or_else(|| current.spec.url.clone()),
                secret: secret
                    .clone()
                    .unwrap_or_else(|| current.spec.secret.expose().to_owned()),
                signing: current.spec.signing.as_str().to_owned(),
                resources: Some(if args.resources.is_empty() {
                    current.spec.resources.clone()
                } else {
                    args.resources.clone()
                }),
                actions: (!args.actions.is_empty()).then(|| args.actions.clone()),
                active: current.spec.active,
                headers: current.spec.headers.iter().cloned().collect(),
                timeout: None,
            };
            let spec = validate_endpoint(input, config).map_err(problems)?;
            let overlap = pollhook::config::parse_duration(&args.overlap)
                .map_err(|e| usage(format!("--overlap: {e}")))?;
            store
                .update_endpoint(
                    &args.name,
                    EndpointPatch {
                        url: args.url,
                        secret: secret.map(pollhook::config::Secret::new),
                        rotation_overlap: Some(overlap),
                        resources: (!args.resources.is_empty()).then_some(spec.resources),
                        actions: (!args.actions.is_empty()).then_some(spec.actions),
                        signing: None,
                    },
                )
                .await?;
            println!("Endpoint {} updated.", args.name);
            if let Some(secret) = printed_secret {
                println!("New secret (shown once): {secret}");
                println!(
                    "The old one stays valid for {} (standard-webhooks requests carry both signatures).",
                    args.overlap
                );
            }
        }
        EndpointsCommand::Remove { name } => {
            warn_config(&name);
            store.remove_endpoint(&name).await?;
            println!("Endpoint {name} removed, with its deliveries.");
        }
        EndpointsCommand::Pause { name } => {
            warn_config(&name);
            store.set_endpoint_active(&name, false).await?;
            println!("Endpoint {name} paused; its deliveries wait.");
        }
        EndpointsCommand::Resume { name } => {
            store.set_endpoint_active(&name, true).await?;
            println!("Endpoint {name} resumed.");
        }
        EndpointsCommand::Secret { signing } => print_secret(&signing)?,
    }
    Ok(())
}

fn print_secret(signing: &str) -> anyhow::Result<()> {
    let scheme: pollhook::sign::Scheme = signing
        .parse()
        .map_err(|e| usage(format!("--signing: {e}")))?;
    println!("{}", pollhook::sign::generate_secret(scheme));
    Ok(())
}

async fn deliveries_command(store: &Store, command: DeliveriesCommand) -> anyhow::Result<()> {
    match command {
        DeliveriesCommand::List {
            endpoint,
            status,
            event,
            limit,
            json,
        } => {
            if let Some(s) = &status
                && !["pending", "delivered", "failed"].contains(&s.as_str())
            {
                return Err(usage(format!(
                    "--status `{s}`: use pending, delivered or failed"
                )));
            }
            let rows = store
                .deliveries(DeliveryFilter {
                    endpoint,
                    status,
                    event_id: event,
                    limit,
                })
                .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("No deliveries.");
            } else {
                println!(
                    "{:>6} {:<10} {:<14} {:<18} {:<12} {:>4} {:<24} LAST",
                    "ID", "STATUS", "ENDPOINT", "TYPE", "RESOURCE ID", "TRY", "NEXT"
                );
                for d in rows {
                    println!(
                        "{:>6} {:<10} {:<14} {:<18} {:<12} {:>4} {:<24} {}",
                        d.id,
                        d.status,
                        d.endpoint,
                        d.event_type,
                        d.resource_id,
                        d.attempts,
                        d.next_attempt_at
                            .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
                            .unwrap_or_default(),
                        d.last_error
                            .or(d.last_status.map(|s| format!("HTTP {s}")))
                            .unwrap_or_default()
                    );
                }
            }
        }
        DeliveriesCommand::Attempts { id, json } => {
            let rows = store.attempts(&id).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("No attempts for {id}.");
            } else {
                for a in rows {
                    println!(
                        "delivery {} → {} at {}: {} in {} ms{}",
                        a.delivery_id,
                        a.endpoint,
                        a.at.format("%Y-%m-%d %H:%M:%S%.3f"),
                        a.status
                            .map(|s| format!("HTTP {s}"))
                            .unwrap_or_else(|| "no response".into()),
                        a.latency_ms,
                        a.error.map(|e| format!(" ({e})")).unwrap_or_default()
                    );
                    if let Some(body) = a.response.filter(|b| !b.is_empty()) {
                        println!("    response: {body}");
                    }
                }
            }
        }
        DeliveriesCommand::Retry {
            id,
            failed,
            endpoint,
        } => match (id, failed) {
            (Some(id), _) => {
                store.retry_delivery(id).await?;
                println!("Delivery {id} queued again.");
            }
            (None, true) => {
                let n = store.retry_failed(endpoint.as_deref()).await?;
                println!("{n} failed delivery(ies) queued again.");
            }
            (None, false) => {
                return Err(usage(
                    "name a delivery with --id ID, or use --failed".into(),
                ));
            }
        },
    }
    Ok(())
}

fn verify_command(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let scheme: pollhook::sign::Scheme = args
        .signing
        .parse()
        .map_err(|e| usage(format!("--signing: {e}")))?;
    let key = pollhook::sign::decode_secret(scheme, &args.secret)
        .map_err(|e| usage(format!("--secret: {e}")))?;
    let tolerance = pollhook::config::parse_duration(&args.tolerance)
        .map_err(|e| usage(format!("--tolerance: {e}")))?;
    let (headers, body) = match (&args.request, &args.body) {
        (Some(file), _) => {
            let raw =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            split_request(&raw).ok_or_else(|| {
                usage(format!(
                    "{} is not an HTTP request: no blank line after the headers",
                    file.display()
                ))
            })?
        }
        (None, Some(file)) => {
            let body =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            (parse_headers(&args.headers)?.into_iter().collect(), body)
        }
        (None, None) => {
            return Err(usage(
                "give --request FILE, or --body FILE with --header 'Name: value'".into(),
            ));
        }
    };
    let now = chrono::Utc::now().timestamp();
    match pollhook::sign::verify(
        scheme,
        &[key.as_slice()],
        &headers,
        &body,
        now,
        tolerance.as_secs() as i64,
    ) {
        Ok(v) => {
            println!(
                "valid: {} signature of event {} (type {})",
                scheme,
                v.id,
                v.event["type"].as_str().unwrap_or("?")
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("INVALID: {e}");
            Ok(ExitCode::from(1))
        }
    }
}

/// Header name/value pairs as received.
type Headers = Vec<(String, String)>;

/// Splits a raw HTTP request into headers and body.
fn split_request(raw: &[u8]) -> Option<(Headers, Vec<u8>)> {
    let (head_len, sep) = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, 4))
        .or_else(|| raw.windows(2).position(|w| w == b"\n\n").map(|i| (i, 2)))?;
    let head = String::from_utf8_lossy(&raw[..head_len]);
    let headers = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Some((headers, raw[head_len + sep..].to_vec()))
}

/// The adapter catalog: built-in definitions plus the user directory named by the config file (if
/// one is there) or POLLHOOK_ADAPTERS_DIR.
fn catalog(
    config_file: &Path,
) -> anyhow::Result<(pollhook::adapters::Catalog, Option<toml::Table>)> {
    let raw: Option<toml::Table> = std::fs::read_to_string(config_file)
        .ok()
        .and_then(|text| text.parse().ok());
    let dir = std::env::var("POLLHOOK_ADAPTERS_DIR")
        .ok()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            let dir = raw.as_ref()?.get("adapters_dir")?.as_str()?;
            Some(config_file.parent().unwrap_or(Path::new(".")).join(dir))
        });
    let catalog =
        pollhook::adapters::Catalog::load(dir.as_deref()).map_err(|e| usage(e.to_string()))?;
    Ok((catalog, raw))
}

fn adapters_command(config_file: &Path, command: AdaptersCommand) -> anyhow::Result<()> {
    let (catalog, raw) = catalog(config_file)?;
    match command {
        AdaptersCommand::List => {
            println!("{:<20} {:<8} DESCRIPTION", "NAME", "ENGINE");
            for (name, description) in [
                (
                    "rest",
                    "the generic REST engine: everything inline in the source",
                ),
                ("exec", "a program that prints the listing as JSON"),
                ("graphql", "a GraphQL endpoint, one query per resource"),
            ] {
                println!("{name:<20} {:<8} {description}", "-");
            }
            for name in catalog.names() {
                let engine = catalog
                    .get(name)
                    .and_then(|d| d.get("engine"))
                    .and_then(toml::Value::as_str)
                    .unwrap_or("rest");
                println!("{name:<20} {engine:<8} {}", catalog.description(name));
            }
        }
        AdaptersCommand::Show { name, source: None } => {
            let text = catalog.text(&name).ok_or_else(|| {
                usage(format!(
                    "no adapter definition `{name}`; `pollhook adapters list` shows them"
                ))
            })?;
            print!("{text}");
        }
        AdaptersCommand::Show {
            name,
            source: Some(source),
        } => {
            // Merged before `${VAR}` interpolation, so secrets show as the references they are.
            let raw = raw.ok_or_else(|| {
                usage(format!(
                    "cannot read {} to find source {source}",
                    config_file.display()
                ))
            })?;
            let mut table = raw
                .get("sources")
                .and_then(toml::Value::as_array)
                .and_then(|list| {
                    list.iter()
                        .filter_map(toml::Value::as_table)
                        .find(|t| t.get("name").and_then(toml::Value::as_str) == Some(&source))
                })
                .cloned()
                .ok_or_else(|| {
                    usage(format!("no source `{source}` in {}", config_file.display()))
                })?;
            if table.get("adapter").and_then(toml::Value::as_str) != Some(&name) {
                return Err(usage(format!(
                    "source `{source}` does not use adapter `{name}`"
                )));
            }
            catalog.apply(&mut table).map_err(|p| usage(p.message))?;
            println!(
                "# source `{source}` as pollhook reads it: adapter `{name}` merged under the config's values"
            );
            let mut wrapper = toml::Table::new();
            wrapper.insert(
                "sources".into(),
                toml::Value::Array(vec![toml::Value::Table(table)]),
            );
            print!("{}", toml::to_string_pretty(&wrapper)?);
        }
    }
    Ok(())
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
            config
                .sources
                .iter()
                .map(|s| s.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    if let Some(resource) = resource
        && !src.resources.iter().any(|r| r.name == resource)
    {
        bail!(UsageError(anyhow!(
            "source `{source}` has no resource `{resource}`; known: {}",
            src.resources
                .iter()
                .map(|r| r.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok((source.to_owned(), resource.map(str::to_owned)))
}

/// The database `[storage]` names, as `check` and `migrate` print it: never its password, and
/// which setting wins when both are given.
fn database(storage: &pollhook::config::StorageConfig) -> String {
    match &storage.url {
        Some(url) => {
            let shown = url::Url::parse(url.expose())
                .map(|u| {
                    let host = u.host_str().unwrap_or_default();
                    let port = u.port().unwrap_or(5432);
                    format!("postgres://{host}:{port}{}", u.path())
                })
                .unwrap_or_else(|_| "PostgreSQL".to_owned());
            if storage.path_ignored {
                format!("{shown}; [storage] url wins over path, which is ignored")
            } else {
                shown
            }
        }
        None => storage.path.display().to_string(),
    }
}

async fn poll_command(
    config: &Config,
    target: &str,
    dry_run: bool,
    json: bool,
) -> anyhow::Result<ExitCode> {
    let (source_name, resource) = split_target(config, target)?;
    let source_config = config
        .sources
        .iter()
        .find(|s| s.name == source_name)
        .context("source vanished")?;
    let store = Store::connect(&config.storage).await?;
    if !dry_run {
        // A running `pollhook run` may poll the same resource; one writer per resource.
        store.reconcile_endpoints(&config.endpoints).await?;
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
                        if dry_run {
                            String::new()
                        } else {
                            format!(", {} delivery(ies) queued", report.deliveries)
                        }
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
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

async fn print_status(config: &Config, store: &Store, json: bool) -> anyhow::Result<()> {
    let rows = store.status().await?;
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
    let endpoints = store.endpoints().await?;
    if !endpoints.is_empty() {
        let counts = store.delivery_counts().await?;
        let count = |name: &str, status: &str| {
            counts
                .iter()
                .find(|(n, s, _)| n == name && s == status)
                .map_or(0, |c| c.2)
        };
        println!();
        println!(
            "{:<24} {:>9} {:>10} {:>7}  STATE",
            "ENDPOINT", "PENDING", "DELIVERED", "FAILED"
        );
        for e in &endpoints {
            println!(
                "{:<24} {:>9} {:>10} {:>7}  {}",
                e.spec.name,
                count(&e.spec.name, "pending"),
                count(&e.spec.name, "delivered"),
                count(&e.spec.name, "failed"),
                endpoint_state(e)
            );
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
