//! Adapter definitions: what every user of one API family shares, so a source names it and adds only
//! its credentials and choices.
//!
//! In: the TOML files in `adapters/` (compiled in) and, optionally, a user directory whose files
//! override built-ins of the same name. Out: a source table with the definition merged under it,
//! before the config is deserialized, so a merged source is validated like a hand-written one.
//!
//! Invariant: a user value always wins over a definition value; tables merge key by key.
//!
//! A definition file holds source keys at its top level (`base_url`, `auth`, `rate_limit`, …),
//! `engine` (`"rest"`, the default, `"graphql"`, `"feed"` or `"exec"`), `description`, a `[resource_defaults]` table applied
//! to every resource, and `[resources.NAME]` tables for the resources it knows.

use std::collections::BTreeMap;
use std::path::Path;

include!(concat!(env!("OUT_DIR"), "/adapters.rs"));

const ENGINES: [&str; 4] = ["rest", "exec", "graphql", "feed"];

/// A problem merging a definition into a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MergeProblem {
    /// What is wrong.
    pub message: String,
    /// What to do.
    pub hint: Option<String>,
}

/// A definitions directory or file that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    /// The directory could not be listed or a file read.
    #[error("cannot read adapter definitions in {path}: {source}")]
    Read {
        /// The directory or file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// A definition is not valid TOML.
    #[error("adapter definition {name} is not valid TOML: {message}")]
    Syntax {
        /// The definition's name (file stem).
        name: String,
        /// The parser's message.
        message: String,
    },
}

/// Every definition available: the embedded ones, overridden by a user directory's.
#[derive(Debug, Default)]
pub struct Catalog {
    definitions: BTreeMap<String, toml::Table>,
    texts: BTreeMap<String, String>,
}

impl Catalog {
    /// Loads the embedded definitions and then every `*.toml` in `user_dir`.
    pub fn load(user_dir: Option<&Path>) -> Result<Catalog, CatalogError> {
        let mut definitions = BTreeMap::new();
        let mut texts = BTreeMap::new();
        for (name, text) in EMBEDDED {
            definitions.insert((*name).to_owned(), parse(name, text)?);
            texts.insert((*name).to_owned(), (*text).to_owned());
        }
        if let Some(dir) = user_dir {
            let read = |source| CatalogError::Read {
                path: dir.display().to_string(),
                source,
            };
            let mut files: Vec<_> = std::fs::read_dir(dir)
                .map_err(read)?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "toml"))
                .collect();
            files.sort();
            for file in files {
                let name = file
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let text = std::fs::read_to_string(&file).map_err(|source| CatalogError::Read {
                    path: file.display().to_string(),
                    source,
                })?;
                definitions.insert(name.clone(), parse(&name, &text)?);
                texts.insert(name, text);
            }
        }
        Ok(Catalog { definitions, texts })
    }

    /// The names of every definition, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.definitions.keys().map(String::as_str)
    }

    /// One definition's table.
    pub fn get(&self, name: &str) -> Option<&toml::Table> {
        self.definitions.get(name)
    }

    /// One definition's file text, comments included.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.texts.get(name).map(String::as_str)
    }

    /// A definition's one-line description.
    pub fn description(&self, name: &str) -> &str {
        self.definitions
            .get(name)
            .and_then(|d| d.get("description"))
            .and_then(toml::Value::as_str)
            .unwrap_or("")
    }

    /// Merges the definition a source names into the source's table, in place.
    pub fn apply(&self, source: &mut toml::Table) -> Result<(), MergeProblem> {
        let Some(name) = source.get("adapter").and_then(toml::Value::as_str) else {
            return Ok(());
        };
        if ENGINES.contains(&name) {
            return Ok(());
        }
        let Some(definition) = self.definitions.get(name) else {
            return Err(MergeProblem {
                message: format!("no adapter definition named `{name}`"),
                hint: Some(format!(
                    "known: rest, exec, {} (or add {name}.toml to adapters_dir)",
                    self.names().collect::<Vec<_>>().join(", ")
                )),
            });
        };
        let engine = match definition.get("engine") {
            None => "rest",
            Some(toml::Value::String(e)) if ENGINES.contains(&e.as_str()) => e.as_str(),
            Some(other) => {
                return Err(MergeProblem {
                    message: format!(
                        "adapter definition `{name}` has engine = {other}, which is not an engine"
                    ),
                    hint: Some(
                        "engine is \"rest\" (the default), \"graphql\", \"feed\" or \"exec\""
                            .into(),
                    ),
                });
            }
        };
        for key in ["resources", "resource_defaults"] {
            if definition.get(key).is_some_and(|v| !v.is_table()) {
                return Err(MergeProblem {
                    message: format!("adapter definition `{name}`: `{key}` must be a table"),
                    hint: Some(format!("write [{key}] (or [{key}.NAME]) tables")),
                });
            }
        }
        source.insert("adapter".into(), toml::Value::String(engine.into()));
        for (key, value) in definition {
            if matches!(
                key.as_str(),
                "engine" | "description" | "resource_defaults" | "resources"
            ) {
                continue;
            }
            merge_under(source, key, value);
        }
        let defaults = definition
            .get("resource_defaults")
            .and_then(toml::Value::as_table);
        let known = definition.get("resources").and_then(toml::Value::as_table);
        if let Some(toml::Value::Array(resources)) = source.get_mut("resources") {
            for resource in resources.iter_mut() {
                let toml::Value::Table(resource) = resource else {
                    continue;
                };
                let name = resource
                    .get("name")
                    .and_then(toml::Value::as_str)
                    .map(str::to_owned);
                if let Some(known) = name.and_then(|n| known.and_then(|k| k.get(&n)).cloned())
                    && let toml::Value::Table(known) = known
                {
                    for (key, value) in &known {
                        merge_under(resource, key, value);
                    }
                }
                for (key, value) in defaults.into_iter().flatten() {
                    merge_under(resource, key, value);
                }
            }
        }
        Ok(())
    }
}

fn parse(name: &str, text: &str) -> Result<toml::Table, CatalogError> {
    text.parse()
        .map_err(|e: toml::de::Error| CatalogError::Syntax {
            name: name.to_owned(),
            message: e.to_string().trim_end().to_owned(),
        })
}

/// Puts `value` under `key` unless the user set it; tables merge key by key.
fn merge_under(user: &mut toml::Table, key: &str, value: &toml::Value) {
    match (user.get_mut(key), value) {
        (None, _) => {
            user.insert(key.to_owned(), value.clone());
        }
        (Some(toml::Value::Table(mine)), toml::Value::Table(theirs)) => {
            // A user who changes a tagged table's kind (auth type, pagination style) replaces it.
            let tag_changed = ["type", "style"].iter().any(
                |tag| matches!((mine.get(*tag), theirs.get(*tag)), (Some(a), Some(b)) if a != b),
            );
            if !tag_changed {
                for (k, v) in theirs {
                    merge_under(mine, k, v);
                }
            }
        }
        (Some(_), _) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_values_win_and_tables_merge() {
        let catalog = Catalog::load(None).unwrap();
        let mut source: toml::Table = r#"
            name = "shop"
            adapter = "json-server"
            base_url = "http://127.0.0.1:9999"
            [[resources]]
            name = "orders"
            every = "5s"
        "#
        .parse()
        .unwrap();
        catalog.apply(&mut source).unwrap();
        assert_eq!(source["adapter"].as_str(), Some("rest"));
        assert_eq!(source["base_url"].as_str(), Some("http://127.0.0.1:9999"));
        let orders = source["resources"].as_array().unwrap()[0]
            .as_table()
            .unwrap();
        assert_eq!(orders["path"].as_str(), Some("/orders"));
        assert!(orders.contains_key("pagination"));
    }

    #[test]
    fn unknown_adapter_names_the_known_ones() {
        let catalog = Catalog::load(None).unwrap();
        let mut source: toml::Table = "adapter = \"nope\"".parse().unwrap();
        let err = catalog.apply(&mut source).unwrap_err();
        assert!(err.message.contains("nope"));
        assert!(err.hint.unwrap().contains("json-server"));
    }
}
