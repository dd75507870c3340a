//! The exec engine: an external program prints the listing, so an adapter can be a ten-line script
//! in any language.
//!
//! In: `command = ["python3", "list.py", "arg"]`, a timeout and an `env` table; the program gets
//! the resource's name in `POLLHOOK_RESOURCE` (and its `path` in `POLLHOOK_PATH`, the source's name
//! in `POLLHOOK_SOURCE`). Out: the items of the JSON array (or JSON lines) it prints on stdout,
//! each as the bytes it printed (cut out, not parsed: the intake parses what the snapshot lacks).
//!
//! Invariants: a non-zero exit, a timeout or output that is not JSON is a failed fetch, with the
//! end of the program's stderr quoted in the error, the source's `env` values masked as `***`.
//! Trust boundary (DESIGN.md §3): the program sees only a minimal environment (`PATH`, `HOME`,
//! `LANG`, `LC_ALL`, `TZ`, as pollhook has them) plus its source's `env` table, never pollhook's
//! own secrets; stdout past `max_page_bytes` fails the fetch, and stderr is kept to
//! [`STDERR_KEEP`] bytes (the rest is read and dropped, so the program never blocks on it). It runs
//! in its own process group, killed whole when the fetch ends, however it ends: finished, timed
//! out, failed or dropped (a poll cancelled, pollhook shutting down), so nothing it started
//! outlives it.

use std::process::Stdio;

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::process::Command;

use super::items::{split_items, split_lines};
use super::{FetchPlan, Fetched, Items, Page, PageItems, PageSender, Source, SourceError};
use crate::config::{ExecConfig, ResourceConfig};

/// How much of the program's stderr is quoted in an error.
const STDERR_QUOTE: usize = 1000;

/// How much of the program's stderr is kept; the rest is drained and dropped.
pub const STDERR_KEEP: usize = 64 << 10;

/// What the program inherits from pollhook's environment, where set: enough to find programs and
/// format text, nothing that could be a secret.
const BASE_ENV: [&str; 5] = ["PATH", "HOME", "LANG", "LC_ALL", "TZ"];

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

    /// `text` with every value of the source's `env` table replaced by `***`.
    fn mask(&self, text: &str) -> String {
        let mut text = text.to_owned();
        for (_, value) in &self.config.env {
            if !value.expose().is_empty() {
                text = text.replace(value.expose(), "***");
            }
        }
        text
    }
}

/// A running program's process group, killed (`SIGKILL`) when this is dropped.
struct Group(libc::pid_t);

impl Drop for Group {
    fn drop(&mut self) {
        // SAFETY: `killpg` takes plain integers and touches no memory of ours. The group was made
        // for the program (`process_group(0)`), so it holds the program and what it started.
        // ESRCH (already gone) is the expected outcome of a tidy run.
        unsafe {
            libc::killpg(self.0, libc::SIGKILL);
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
        let mut command = Command::new(program);
        command.args(args).env_clear();
        for key in BASE_ENV {
            if let Some(value) = std::env::var_os(key) {
                command.env(key, value);
            }
        }
        let mut child = command
            .envs(self.config.env.iter().map(|(k, v)| (k, v.expose())))
            .env("POLLHOOK_SOURCE", &self.name)
            .env("POLLHOOK_RESOURCE", &resource.name)
            .env("POLLHOOK_PATH", &resource.path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| SourceError::Exec(format!("cannot start `{shown}`: {e}")))?;
        // Dropped before `child` (declared after it): the whole group goes first.
        let _group = child
            .id()
            .and_then(|pid| libc::pid_t::try_from(pid).ok())
            .map(Group);
        let (stdout, stderr) = (child.stdout.take(), child.stderr.take());
        let limit = self.config.max_output_bytes;
        let run = async {
            tokio::try_join!(
                async {
                    let out = read_at_most(stdout, limit).await.map_err(|e| {
                        SourceError::Exec(format!("`{shown}`: reading its output: {e}"))
                    })?;
                    if out.len() as u64 > limit {
                        return Err(SourceError::Exec(format!(
                            "`{shown}` printed more than max_page_bytes ({limit} bytes) and was killed (hint: raise the source's `max_page_bytes` if listings this large are expected)"
                        )));
                    }
                    Ok(out)
                },
                async { Ok(keep_start(stderr, STDERR_KEEP).await) },
                async {
                    child
                        .wait()
                        .await
                        .map_err(|e| SourceError::Exec(format!("`{shown}` failed: {e}")))
                },
            )
        };
        let (stdout, stderr, status) = tokio::time::timeout(self.config.timeout, run)
            .await
            .map_err(|_| {
                SourceError::Exec(format!(
                    "`{shown}` did not finish within {:?} and was killed, with every process it started (hint: raise the source's `timeout`)",
                    self.config.timeout
                ))
            })??;
        if !status.success() {
            let stderr = self.mask(String::from_utf8_lossy(&stderr).trim());
            let stderr = tail(&stderr, STDERR_QUOTE);
            return Err(SourceError::Exec(format!(
                "`{shown}` exited with {status}: {}",
                if stderr.is_empty() {
                    "(no stderr)"
                } else {
                    stderr
                }
            )));
        }
        let items = parse_output(stdout)
            .map_err(|e| SourceError::Exec(format!("`{shown}` printed {e}")))?;
        pages
            .send(Page {
                url: format!("exec:{shown}"),
                etag: None,
                last_modified: None,
                next_url: None,
                items: PageItems::Fresh(items),
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

/// Reads `pipe` to its end or to one byte past `limit`, whichever comes first.
async fn read_at_most(
    pipe: Option<impl AsyncRead + Unpin>,
    limit: u64,
) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    if let Some(pipe) = pipe {
        pipe.take(limit.saturating_add(1))
            .read_to_end(&mut out)
            .await?;
    }
    Ok(out)
}

/// The first `keep` bytes of `pipe`, read to its end (a read error ends it early).
async fn keep_start(pipe: Option<impl AsyncRead + Unpin>, keep: usize) -> Vec<u8> {
    let mut kept = Vec::new();
    let Some(mut pipe) = pipe else {
        return kept;
    };
    let mut buf = [0u8; 8192];
    while let Ok(n @ 1..) = pipe.read(&mut buf).await {
        let room = keep.saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
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

/// A JSON array, or one JSON value per line: each item's text as the program printed it, cut out
/// without parsing it (the intake parses what the snapshot does not already hold).
fn parse_output(stdout: Vec<u8>) -> Result<Items, String> {
    let text = String::from_utf8(stdout).map_err(|_| "output that is not UTF-8".to_owned())?;
    let trimmed = text.trim_start();
    if trimmed.starts_with('[') {
        let skipped = text.len() - trimmed.len();
        return match split_items(trimmed, &[]) {
            Some(spans) => {
                let spans = spans
                    .into_iter()
                    .map(|s| s.start + skipped..s.end + skipped)
                    .collect();
                Ok(Items::from_spans(text, spans))
            }
            // Not an array after all: parsed, for the parser's word on what is wrong.
            None => match serde_json::from_str::<Value>(trimmed) {
                Ok(_) => Err("something other than a JSON array".into()),
                Err(e) => Err(format!("invalid JSON: {e}")),
            },
        };
    }
    if trimmed.is_empty() {
        return Err("nothing; print a JSON array (`[]` for an empty listing)".into());
    }
    let spans =
        split_lines(&text).map_err(|(line, e)| format!("invalid JSON on line {line}: {e}"))?;
    Ok(Items::from_spans(text, spans))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_json_lines() {
        let out = |text: &str| parse_output(text.as_bytes().to_vec());
        let items = out(" [{\"id\":1}, {\"id\": \"a]\\\"\"}]\n").unwrap();
        assert_eq!(
            items.iter().collect::<Vec<_>>(),
            [r#"{"id":1}"#, r#"{"id": "a]\""}"#]
        );
        let items = out("{\"id\":1}\n\n  {\"id\":2} \r\n[3]").unwrap();
        assert_eq!(
            items.iter().collect::<Vec<_>>(),
            [r#"{"id":1}"#, r#"{"id":2}"#, "[3]"]
        );
        assert!(out("").unwrap_err().contains("`[]`"));
        assert!(out("{\"id\":1}\nnope").unwrap_err().contains("line 2"));
        let err = out("[1,").unwrap_err();
        assert!(err.starts_with("invalid JSON: "), "{err}");
        assert!(out("[1] [2]").unwrap_err().starts_with("invalid JSON"));
        assert!(parse_output(vec![0xff]).unwrap_err().contains("UTF-8"));
    }
}
