//! `run`, `check`, `poll` and `demo`: the pipeline itself, a config's validation, one poll now,
//! and the demo (which lives in the library).

use std::future::Future;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use pollhook::config::Config;
use pollhook::poll::{self, Mode};
use pollhook::store::Store;

use crate::out::{self, say};
use crate::{UsageError, load};

#[derive(Args)]
pub struct PollArgs {
    /// `source.resource`, or `source` for all its resources.
    target: String,
    /// Fetch and diff, but write nothing.
    #[arg(long)]
    dry_run: bool,
    /// Print the events as a JSON array.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct DemoArgs {
    /// Stop after this long (e.g. `30s`); default: until Ctrl-C.
    #[arg(long)]
    duration: Option<String>,
}

/// `pollhook demo`.
pub async fn demo(args: DemoArgs, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let limit = args
        .duration
        .as_deref()
        .map(pollhook::config::parse_duration)
        .transpose()
        .map_err(|e| UsageError(anyhow!("--duration: {e}")))?;
    pollhook::demo::run(limit, shutdown).await?;
    Ok(())
}

/// `pollhook check`.
pub fn check(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let resources: usize = config.sources.iter().map(|s| s.resources.len()).sum();
    say!(
        "{}: ok ({} source(s), {} resource(s), {} endpoint(s); database {})",
        path.display(),
        config.sources.len(),
        resources,
        config.endpoints.len(),
        database(&config.storage)
    );
    Ok(())
}

#[derive(Args)]
pub struct MigrateStorageArgs {
    /// The SQLite file to copy.
    #[arg(long)]
    from: PathBuf,
    /// The postgres:// URL to copy into [default: the config's [storage] url].
    #[arg(long, env = "POLLHOOK_STORAGE_URL", hide_env_values = true)]
    to: Option<String>,
}

/// `pollhook migrate`.
pub async fn migrate(path: &Path) -> anyhow::Result<()> {
    let config = load(path)?;
    let store = Store::connect(&config.storage).await?;
    say!(
        "{}: schema version {}, up to date.",
        database(&config.storage),
        store.schema_version().await?
    );
    Ok(())
}

/// `pollhook migrate-storage`.
pub async fn migrate_storage(path: &Path, args: MigrateStorageArgs) -> anyhow::Result<()> {
    let MigrateStorageArgs { from, to } = args;
    if !from.is_file() {
        bail!(UsageError(anyhow!(
            "--from {}: no such SQLite file",
            from.display()
        )));
    }
    let to = match to {
        Some(url) => url,
        None => load(path)?
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
    say!(
        "Copied {} into {}: {copied}.",
        source.describe(),
        target.describe()
    );
    Ok(())
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

/// `pollhook run`.
pub async fn run(path: &Path, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let config = load(path)?;
    pollhook::run(config, shutdown).await?;
    Ok(())
}

/// Splits `source[.resource]` and checks both exist in the config.
pub fn split_target(config: &Config, target: &str) -> anyhow::Result<(String, Option<String>)> {
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

/// `pollhook poll`: exit 1 if any resource's poll failed.
pub async fn poll(config: &Config, args: PollArgs) -> anyhow::Result<ExitCode> {
    let PollArgs {
        target,
        dry_run,
        json,
    } = args;
    let (source_name, resource) = split_target(config, &target)?;
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
    let would = if dry_run { "would be" } else { "were" };
    let mut failed = false;
    let mut all_events = Vec::new();
    for resource in source_config
        .resources
        .iter()
        .filter(|r| resource.as_deref().is_none_or(|name| r.name == name))
    {
        let key = resource.key(&source_name);
        let report = match poll::poll(&store, &source_name, source.as_ref(), resource, mode).await {
            Ok(report) => report,
            Err(err) => {
                failed = true;
                eprintln!("{key}: {err}");
                continue;
            }
        };
        if json {
            all_events.extend(report.events);
            continue;
        }
        if report.baseline {
            say!(
                "{key}: first poll: {} item(s) {would} recorded as the baseline; no events.",
                report.listed
            );
        } else {
            let queued = if dry_run {
                String::new()
            } else {
                format!(", {} delivery(ies) queued", report.deliveries)
            };
            say!(
                "{key}: {} item(s) in {} page(s); {} change(s) {would} recorded{queued}.",
                report.listed,
                report.pages,
                report.events.len(),
            );
            for e in &report.events {
                say!("  {:<8} {:<20} {}", e.action, e.resource_id, e.id);
            }
        }
        if let Some(held) = report.held {
            say!(
                "  held back: {} delete(s) of {} item(s) exceed max_delete_ratio; `pollhook accept {key}` applies them.",
                held.deletes,
                held.snapshot
            );
        }
    }
    if json {
        out::json(&all_events)?;
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}
