//! `adapters …`: the definitions pollhook knows (built in, and the user's directory), one
//! definition's file, an engine's keys and defaults (`engines/*.toml`), or a source as its
//! config's values merge into its adapter.
//!
//! In: the config file, read raw (before `${VAR}` interpolation, so secrets show as the
//! references they are). Out: text.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::Subcommand;

use crate::out::{self, say};
use crate::usage;

#[derive(Subcommand)]
pub enum AdaptersCommand {
    /// Every definition: built in, and from `adapters_dir` / POLLHOOK_ADAPTERS_DIR.
    List,
    /// A definition's file, an engine's keys and defaults (rest, exec, graphql, feed), or with
    /// --source the source as the config's values merge into a definition.
    Show {
        /// Definition or engine name.
        name: String,
        /// A source of the config that uses it.
        #[arg(long)]
        source: Option<String>,
    },
}

/// The engines, each with its reference: every key a source and its resources take on it, with
/// the defaults, as a config `pollhook check` accepts (a test checks each against the parser's
/// defaults).
const ENGINES: [(&str, &str, &str); 4] = [
    (
        "rest",
        "the generic REST engine: everything inline in the source",
        include_str!("engines/rest.toml"),
    ),
    (
        "exec",
        "a program that prints the listing as JSON",
        include_str!("engines/exec.toml"),
    ),
    (
        "graphql",
        "a GraphQL endpoint, one query per resource",
        include_str!("engines/graphql.toml"),
    ),
    (
        "feed",
        "an RSS, Atom or JSON Feed document, one item per entry",
        include_str!("engines/feed.toml"),
    ),
];

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

/// `pollhook adapters …`.
pub fn command(config_file: &Path, command: AdaptersCommand) -> anyhow::Result<()> {
    let (catalog, raw) = catalog(config_file)?;
    match command {
        AdaptersCommand::List => {
            say!("{:<20} {:<8} DESCRIPTION", "NAME", "ENGINE");
            for (name, description, _) in ENGINES {
                say!("{name:<20} {:<8} {description}", "-");
            }
            for name in catalog.names() {
                let engine = catalog
                    .get(name)
                    .and_then(|d| d.get("engine"))
                    .and_then(toml::Value::as_str)
                    .unwrap_or("rest");
                say!("{name:<20} {engine:<8} {}", catalog.description(name));
            }
        }
        AdaptersCommand::Show { name, source: None } => {
            let engine = ENGINES.iter().find(|(engine, ..)| *engine == name);
            let text = engine
                .map(|(.., text)| *text)
                .or_else(|| catalog.text(&name));
            let text = text.ok_or_else(|| {
                usage(format!(
                    "no adapter definition `{name}`; `pollhook adapters list` shows them"
                ))
            })?;
            out::text(text)?;
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
            say!(
                "# source `{source}` as pollhook reads it: adapter `{name}` merged under the config's values"
            );
            let mut wrapper = toml::Table::new();
            wrapper.insert(
                "sources".into(),
                toml::Value::Array(vec![toml::Value::Table(table)]),
            );
            out::text(&toml::to_string_pretty(&wrapper)?)?;
        }
    }
    Ok(())
}
