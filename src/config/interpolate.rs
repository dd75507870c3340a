//! `${VAR}` and `${VAR:-default}` interpolation over the parsed TOML's string values, and the
//! short list of `POLLHOOK_*` environment overrides for containers.
//!
//! Invariant: a value is filled in where it stands, so a secret holding a quote or a newline
//! cannot change the file's structure; every missing variable is reported together.

use std::collections::BTreeMap;

use super::list_label;
use super::problem::Problems;

// ───────────────────────────── loading ─────────────────────────────

/// The environment a config is read in: a lookup so tests need not touch the process environment.
pub trait Env {
    /// The variable's value, if set.
    fn var(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Env for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Env for BTreeMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

/// The short list of environment overrides a container needs (DESIGN.md §2).
pub(super) fn apply_env_overrides(table: &mut toml::Table, env: &dyn Env) {
    let overrides = [
        ("POLLHOOK_STORAGE_PATH", "storage", "path"),
        ("POLLHOOK_STORAGE_URL", "storage", "url"),
        ("POLLHOOK_LISTEN", "server", "listen"),
        ("POLLHOOK_HEALTH_LISTEN", "server", "health_listen"),
        ("POLLHOOK_ADMIN_TOKEN", "server", "admin_token"),
    ];
    for (var, section, key) in overrides {
        if let Some(value) = env.var(var).filter(|v| !v.is_empty()) {
            let section = table
                .entry(section)
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(section) = section {
                section.insert(key.into(), toml::Value::String(value));
            }
        }
    }
    if let Some(dir) = env.var("POLLHOOK_ADAPTERS_DIR").filter(|v| !v.is_empty()) {
        table.insert("adapters_dir".into(), toml::Value::String(dir));
    }
}

pub(super) fn interpolate_table(
    table: &mut toml::Table,
    at: &str,
    env: &dyn Env,
    problems: &mut Problems,
) {
    for (key, value) in table.iter_mut() {
        let here = if at.is_empty() {
            key.clone()
        } else {
            format!("{at}.{key}")
        };
        interpolate_value(value, &here, env, problems);
    }
}

pub(super) fn interpolate_value(
    value: &mut toml::Value,
    at: &str,
    env: &dyn Env,
    problems: &mut Problems,
) {
    match value {
        toml::Value::String(s) => match interpolate(s, env) {
            Ok(out) => *s = out,
            Err(unfilled) => {
                for problem in unfilled {
                    match problem {
                        Unfilled::Missing(var) => problems.push(
                            at,
                            format!("environment variable `{var}` is not set"),
                            Some(&format!("export {var}=… or write ${{{var}:-default}}")),
                        ),
                        Unfilled::Unclosed => problems.push(
                            at,
                            "a `${` is never closed by `}`",
                            Some("write ${VAR}, or $${ for a literal ${"),
                        ),
                    }
                }
            }
        },
        toml::Value::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                let label = list_label(item, i);
                interpolate_value(item, &format!("{at}[{label}]"), env, problems);
            }
        }
        toml::Value::Table(table) => interpolate_table(table, at, env, problems),
        _ => {}
    }
}

/// Why a string's `${…}` could not be filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Unfilled {
    /// `${NAME}` names an unset variable and gives no default.
    Missing(String),
    /// A `${` with no `}` after it.
    Unclosed,
}

/// Replaces `${VAR}` and `${VAR:-default}` in `text`; `$${` stands for a literal `${`.
/// Returns every unset variable without a default, and an unclosed `${`.
pub fn interpolate(text: &str, env: &dyn Env) -> Result<String, Vec<Unfilled>> {
    let mut out = String::with_capacity(text.len());
    let mut unfilled = Vec::new();
    let mut rest = text;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        if let Some(tail) = after.strip_prefix("${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{')
            && let Some(end) = body.find('}')
        {
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            match (env.var(name), default) {
                (Some(value), _) if !(value.is_empty() && default.is_some()) => {
                    out.push_str(&value)
                }
                (_, Some(default)) => out.push_str(default),
                (None, None) => unfilled.push(Unfilled::Missing(name.to_owned())),
                (Some(value), None) => out.push_str(&value),
            }
            rest = &body[end + 1..];
        } else if after.starts_with('{') {
            unfilled.push(Unfilled::Unclosed);
            break;
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if unfilled.is_empty() {
        Ok(out)
    } else {
        Err(unfilled)
    }
}
