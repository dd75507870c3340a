//! The exec engine: an external program prints the listing, so an adapter can be a ten-line script
//! in any language.
//!
//! In: `command = ["python3", "list.py", "arg"]` and a timeout; the program gets the resource's
//! name in `POLLHOOK_RESOURCE` (and its `path` in `POLLHOOK_PATH`, the source's name in
//! `POLLHOOK_SOURCE`). Out: the items of the JSON array (or JSON lines) it prints on stdout.
//!
//! Invariant: a non-zero exit, a timeout or output that is not JSON is a failed fetch, with the
//! program's stderr quoted in the error; the program is killed if the fetch is dropped.

use std::process::Stdio;

use async_trait::async_trait;
use serde_json::Value;
use tokio::process::Command;

use super::{FetchPlan, Fetched, Items, Page, PageItems, PageSender, Source, SourceError};
use crate::config::{ExecConfig, ResourceConfig};

/// How much of the program's stderr is quoted in an error.
const STDERR_QUOTE: usize = 1000;

/// A source backed by an external program.
pub struct ExecSource {
    name: String,
    config: ExecConfig,
}

impl ExecSource {
    /// A source running `config.command`.
    pub fn new(name: &str, config: ExecConfig) -> Self {
        Self {
            name: name.to_owned(),
            config,
        }
    }
}

#[async_trait]
impl Source for ExecSource {
    async fn fetch(
        &self,
        resource: &ResourceConfig,
        _plan: &FetchPlan<'_>,
        pages: &PageSender,
    ) -> Result<Fetched, SourceError> {
        let shown = self.config.command.join(" ");
        let (program, args) = self
            .config
            .command
            .split_first()
            .ok_or_else(|| SourceError::Exec(format!("source {}: empty command", self.name)))?;
        let child = Command::new(program)
            .args(args)
            .env("POLLHOOK_SOURCE", &self.name)
            .env("POLLHOOK_RESOURCE", &resource.name)
            .env("POLLHOOK_PATH", &resource.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SourceError::Exec(format!("cannot start `{shown}`: {e}")))?;
        let output = tokio::time::timeout(self.config.timeout, child.wait_with_output())
            .await
            .map_err(|_| {
                SourceError::Exec(format!(
                    "`{shown}` did not finish within {:?} and was killed (hint: raise the source's `timeout`)",
                    self.config.timeout
                ))
            })?
            .map_err(|e| SourceError::Exec(format!("`{shown}` failed: {e}")))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        let stderr = tail(stderr.trim(), STDERR_QUOTE);
        if !output.status.success() {
            return Err(SourceError::Exec(format!(
                "`{shown}` exited with {}: {}",
                output.status,
                if stderr.is_empty() {
                    "(no stderr)"
                } else {
                    stderr
                }
            )));
        }
        let items = parse_output(&output.stdout)
            .map_err(|e| SourceError::Exec(format!("`{shown}` printed {e}")))?;
        pages
            .send(Page {
                url: format!("exec:{shown}"),
                etag: None,
                last_modified: None,
                next_url: None,
                items: PageItems::Fresh(Items::from_values(&items)),
            })
            .await
            .map_err(|_| SourceError::Stopped)?;
        Ok(Fetched {
            pages: 1,
            requests: 0,
            complete: true,
        })
    }
}

fn tail(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut start = text.len() - max;
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}

/// A JSON array, or one JSON value per line.
fn parse_output(stdout: &[u8]) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "output that is not UTF-8".to_owned())?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        return match serde_json::from_str(trimmed) {
            Ok(Value::Array(items)) => Ok(items),
            Ok(_) => Err("something other than a JSON array".into()),
            Err(e) => Err(format!("invalid JSON: {e}")),
        };
    }
    if trimmed.is_empty() {
        return Err("nothing; print a JSON array (`[]` for an empty listing)".into());
    }
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line).map_err(|e| format!("invalid JSON on line {}: {e}", i + 1))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_json_lines() {
        assert_eq!(parse_output(b" [{\"id\":1}]\n").unwrap().len(), 1);
        assert_eq!(
            parse_output(b"{\"id\":1}\n\n{\"id\":2}\n").unwrap().len(),
            2
        );
        assert!(parse_output(b"").unwrap_err().contains("`[]`"));
        assert!(
            parse_output(b"{\"id\":1}\nnope")
                .unwrap_err()
                .contains("line 2")
        );
        assert!(parse_output(b"[1,").is_err());
    }
}
