//! The exec engine: an external program prints the listing, so an adapter can be a ten-line script
//! in any language.
//!
//! In: `command = ["python3", "list.py", "arg"]`, a timeout and an `env` table; the program gets
//! the resource's name in `POLLHOOK_RESOURCE` (and its `path` in `POLLHOOK_PATH`, the source's name
//! in `POLLHOOK_SOURCE`). Out: the items of the JSON array (or JSON lines) it prints on stdout,
//! each as the bytes it printed (cut out, not parsed: the intake parses what the snapshot lacks),
//! sent on in pages of about [`PAGE_BYTES`] as the program prints them (`Cutter`), so the
//! intake takes one page while the program prints the next.
//!
//! Invariants: a non-zero exit, a timeout or output that is not JSON is a failed fetch, with the
//! end of the program's stderr quoted in the error, the source's `env` values masked as `***`;
//! the pages sent before it failed are dropped with the listing, unwritten ([`crate::intake`]).
//! While the page queue is full, stdout is not read and the program waits on its writes; the
//! timeout bounds the program's run, that wait left out (as an HTTP source's bounds each request,
//! not the intake between them).
//! Trust boundary (DESIGN.md §3): the program sees only a minimal environment (`PATH`, `HOME`,
//! `LANG`, `LC_ALL`, `TZ`, as pollhook has them) plus its source's `env` table, never pollhook's
//! own secrets; stdout past `max_page_bytes` fails the fetch, and stderr is kept to
//! [`STDERR_KEEP`] bytes (the rest is read and dropped, so the program never blocks on it). It runs
//! in its own process group, killed whole when the fetch ends, however it ends: finished, timed
//! out, failed or dropped (a poll cancelled, pollhook shutting down), so nothing it started
//! outlives it.

use std::process::Stdio;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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
        let waits = Waits::default();
        let out = Out {
            shown: &shown,
            url: format!("exec:{shown}"),
            limit: self.config.max_output_bytes,
            pages,
            waits: &waits,
        };
        let run = async {
            let (streamed, stderr, status) = tokio::try_join!(
                out.stream(stdout, Cutter::new(PAGE_BYTES)),
                async { Ok(keep_start(stderr, STDERR_KEEP).await) },
                async {
                    child
                        .wait()
                        .await
                        .map_err(|e| SourceError::Exec(format!("`{shown}` failed: {e}")))
                },
            )?;
            // The exit status first: a program that failed says why on stderr, whatever it
            // printed on stdout.
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
            let printed = |e: String| SourceError::Exec(format!("`{shown}` printed {e}"));
            let Streamed {
                cutter,
                mut sent,
                bad,
            } = streamed;
            if let Some(bad) = bad {
                return Err(printed(bad));
            }
            if let Some(items) = cutter.finish().map_err(printed)? {
                out.send(items).await?;
                sent += 1;
            }
            Ok(Fetched {
                pages: sent,
                requests: 0,
                complete: true,
            })
        };
        // The timeout bounds the program, not the intake: the time its pages waited to be
        // taken is added to it.
        let started = Instant::now();
        let mut run = std::pin::pin!(run);
        loop {
            let deadline = started + self.config.timeout + waits.total();
            if let Ok(done) = tokio::time::timeout_at(deadline.into(), &mut run).await {
                return done;
            }
            if started + self.config.timeout + waits.total() <= Instant::now() {
                return Err(SourceError::Exec(format!(
                    "`{shown}` did not finish within {:?} and was killed, with every process it started (hint: raise the source's `timeout`)",
                    self.config.timeout
                )));
            }
        }
    }
}

/// The time a run's pages have waited for the intake to take them (a full queue), the wait
/// under way included.
#[derive(Default)]
struct Waits(Mutex<(Duration, Option<Instant>)>);

impl Waits {
    fn lock(&self) -> std::sync::MutexGuard<'_, (Duration, Option<Instant>)> {
        // Only plain values are kept: a panic while holding the lock leaves none half-made.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn total(&self) -> Duration {
        let (done, since) = *self.lock();
        done + since.map_or(Duration::ZERO, |since| since.elapsed())
    }

    /// Times `wait`.
    async fn time<T>(&self, wait: impl Future<Output = T>) -> T {
        self.lock().1 = Some(Instant::now());
        let out = wait.await;
        let mut waits = self.lock();
        if let Some(since) = waits.1.take() {
            waits.0 += since.elapsed();
        }
        out
    }
}

/// The output is sent on in pages of about this many bytes, cut as the program prints it: the
/// intake takes one page while the next is read, the pages in flight (the queue holds two) stay
/// a few MiB, and a page is large enough that handing it over costs little next to its items.
pub const PAGE_BYTES: usize = 1 << 20;

/// Bytes asked of the program's stdout at a time.
const READ_BYTES: usize = 64 << 10;

/// Where one run's output goes: its pages, named `exec:{command}`, and its cap.
struct Out<'a> {
    shown: &'a str,
    url: String,
    limit: u64,
    pages: &'a PageSender,
    waits: &'a Waits,
}

/// What reading the output to its end left: the last page's bytes, still in the cutter, the
/// pages sent, and why a page could not be cut, if one could not (reported once the exit status
/// is known, since a failed program's stderr says more than its output).
struct Streamed {
    cutter: Cutter,
    sent: u32,
    bad: Option<String>,
}

impl Out<'_> {
    /// Reads `stdout` to its end, sending each page as it is cut. A full queue stops the reading,
    /// and the program waits on its writes. Past the cap the run fails at once; after a page that
    /// could not be cut the rest is read and dropped, so the program runs to its exit status.
    async fn stream(
        &self,
        stdout: Option<impl AsyncRead + Unpin>,
        cutter: Cutter,
    ) -> Result<Streamed, SourceError> {
        let mut streamed = Streamed {
            cutter,
            sent: 0,
            bad: None,
        };
        let Some(mut stdout) = stdout else {
            return Ok(streamed);
        };
        let (shown, limit) = (self.shown, self.limit);
        let mut buf = vec![0u8; READ_BYTES];
        let mut total = 0u64;
        loop {
            let n = stdout
                .read(&mut buf)
                .await
                .map_err(|e| SourceError::Exec(format!("`{shown}`: reading its output: {e}")))?;
            if n == 0 {
                return Ok(streamed);
            }
            total += n as u64;
            if total > limit {
                return Err(SourceError::Exec(format!(
                    "`{shown}` printed more than max_page_bytes ({limit} bytes) and was killed (hint: raise the source's `max_page_bytes` if listings this large are expected)"
                )));
            }
            if streamed.bad.is_some() {
                continue;
            }
            match streamed.cutter.push(&buf[..n]) {
                Ok(Some(items)) => {
                    self.send(items).await?;
                    streamed.sent += 1;
                }
                Ok(None) => {}
                Err(bad) => streamed.bad = Some(bad),
            }
        }
    }

    /// Sends one page; a closed queue means the intake stopped, and reports why itself.
    async fn send(&self, items: Items) -> Result<(), SourceError> {
        let page = Page {
            url: self.url.clone(),
            etag: None,
            last_modified: None,
            next_url: None,
            items: PageItems::Fresh(items),
        };
        (self.waits.time(self.pages.send(page)).await).map_err(|_| SourceError::Stopped)
    }
}

/// Reads the first `keep` bytes of `pipe`, then drains it to its end (a read error ends it early).
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

/// What an output holding no item is told.
const NOTHING: &str = "nothing; print a JSON array (`[]` for an empty listing)";

/// Cuts a program's output into pages as it arrives: a JSON array (its first byte other than
/// whitespace is `[`), or one JSON value per line. Each item is the text the program printed,
/// cut out without parsing it (the intake parses what the snapshot does not already hold).
///
/// A page ends where an item ends: after a line's `\n`, or at a comma between the array's
/// items (the comma dropped, the page's items wrapped in `[` and `]`). Each page is checked
/// whole as it is cut ([`split_lines`], [`split_items`]), and only the sole page may be empty, so
/// the pages hold the items one read of the whole output would, byte for byte, and output that
/// is not one JSON array (or JSON lines) is refused. Errors name their place in the whole output.
struct Cutter {
    /// A page is cut once this many bytes are pending.
    batch: usize,
    form: Form,
    /// The output not yet cut into a page.
    pending: Vec<u8>,
    /// Where in `pending` the next page may end: after the last `\n`, or at the last comma
    /// between items.
    end: Option<usize>,
    /// Lines (`\n`) of the output before `pending`.
    line: usize,
    /// Bytes of the current line before `pending`.
    column: usize,
    /// Pages cut.
    pages: u32,
    /// Items cut.
    items: usize,
}

/// What the output is, as its first byte other than whitespace says.
enum Form {
    /// Nothing but whitespace yet.
    Unknown,
    /// One JSON array (`pending` starts with its `[` until the first page is cut).
    Array(Scan),
    /// One JSON value per line.
    Lines,
}

/// How far the skim of a JSON array has come: enough to tell the commas between its items from
/// those inside them, carried from one chunk to the next.
#[derive(Debug, Default)]
struct Scan {
    /// Bytes of `pending` skimmed.
    at: usize,
    /// Arrays and objects open (the top-level array is depth 1).
    depth: usize,
    in_string: bool,
    /// The last byte was a backslash in a string.
    escaped: bool,
    /// The top-level array is closed: what follows is left to the last page's check.
    closed: bool,
}

impl Scan {
    /// Skims `bytes` from where it left off to their end; the last comma at depth 1 outside a
    /// string, if there is one among them.
    fn run(&mut self, bytes: &[u8]) -> Option<usize> {
        let mut comma = None;
        while let Some(&b) = bytes.get(self.at).filter(|_| !self.closed) {
            if self.in_string {
                match b {
                    _ if self.escaped => self.escaped = false,
                    b'\\' => self.escaped = true,
                    b'"' => self.in_string = false,
                    _ => {}
                }
            } else {
                match b {
                    b'"' => self.in_string = true,
                    b'[' | b'{' => self.depth += 1,
                    b']' | b'}' => {
                        self.depth = self.depth.saturating_sub(1);
                        self.closed = self.depth == 0;
                    }
                    b',' if self.depth == 1 => comma = Some(self.at),
                    _ => {}
                }
            }
            self.at += 1;
        }
        comma
    }
}

impl Cutter {
    /// A cutter making pages of about `batch` bytes ([`PAGE_BYTES`] for a source).
    fn new(batch: usize) -> Self {
        Self {
            batch,
            form: Form::Unknown,
            pending: Vec::new(),
            end: None,
            line: 0,
            column: 0,
            pages: 0,
            items: 0,
        }
    }

    /// Takes the next bytes of the output; a page, once `batch` bytes are pending and a page can
    /// end among them.
    fn push(&mut self, chunk: &[u8]) -> Result<Option<Items>, String> {
        let mut from = self.pending.len();
        self.pending.extend_from_slice(chunk);
        if let Form::Unknown = self.form {
            self.settle_form(from);
            from = 0;
        }
        match &mut self.form {
            Form::Unknown => return Ok(None),
            Form::Lines => {
                if let Some(at) = self.pending[from..].iter().rposition(|&b| b == b'\n') {
                    self.end = Some(from + at + 1);
                }
            }
            Form::Array(scan) => {
                if let Some(at) = scan.run(&self.pending) {
                    self.end = Some(at);
                }
            }
        }
        match self.end {
            Some(end) if self.pending.len() >= self.batch => {
                self.end = None;
                self.cut(end)
            }
            _ => Ok(None),
        }
    }

    /// The last page, once the output has ended; `None` when the pages cut already hold every
    /// item (JSON lines ending in blank lines).
    fn finish(mut self) -> Result<Option<Items>, String> {
        let end = self.pending.len();
        match self.form {
            Form::Unknown => Err(NOTHING.into()),
            Form::Lines => match self.lines_page(end)? {
                None if self.items == 0 => Err(NOTHING.into()),
                page => Ok(page),
            },
            Form::Array(_) => self.array_page(end, true).map(Some),
        }
    }

    /// Settles the form once a byte other than whitespace is there (`pending[..from]` is all
    /// whitespace), dropping the whitespace before it: for JSON lines only whole blank lines, so
    /// each line keeps its text. Only the new bytes are looked at, however long the blank.
    fn settle_form(&mut self, from: usize) {
        let first = (self.pending[from..].iter())
            .position(|b| !b.is_ascii_whitespace())
            .map(|at| from + at);
        let Some(first) = first else {
            if let Some(at) = self.pending[from..].iter().rposition(|&b| b == b'\n') {
                self.consume(from + at + 1);
            }
            return;
        };
        if self.pending[first] == b'[' {
            self.consume(first);
            self.form = Form::Array(Scan::default());
        } else {
            let blank = self.pending[..first].iter().rposition(|&b| b == b'\n');
            self.consume(blank.map_or(0, |at| at + 1));
            self.form = Form::Lines;
        }
    }

    /// Cuts the page that ends at `end` of `pending`.
    fn cut(&mut self, end: usize) -> Result<Option<Items>, String> {
        match &self.form {
            Form::Unknown => Ok(None),
            Form::Lines => {
                let page = self.lines_page(end)?;
                self.consume(end);
                Ok(page)
            }
            Form::Array(_) => {
                let page = self.array_page(end, false)?;
                // The comma between this page's items and the next's goes with it.
                self.consume(end + 1);
                if let Form::Array(scan) = &mut self.form {
                    scan.at -= end + 1;
                }
                Ok(Some(page))
            }
        }
    }

    /// `pending[..end]` as JSON lines; `None` if they are all blank.
    fn lines_page(&mut self, end: usize) -> Result<Option<Items>, String> {
        let text = String::from_utf8(self.pending[..end].to_vec())
            .map_err(|e| self.not_utf8(e.utf8_error().valid_up_to()))?;
        let spans = split_lines(&text)
            .map_err(|(line, e)| format!("invalid JSON on line {}: {e}", self.line + line))?;
        if spans.is_empty() {
            return Ok(None);
        }
        self.pages += 1;
        self.items += spans.len();
        Ok(Some(Items::from_spans(text, spans)))
    }

    /// `pending[..end]` as items of the array: the first page's text starts with the array's
    /// own `[`, a later one's with a `[` where the comma before it was; the last page's ends with
    /// the array's own `]` (and whatever followed it), an earlier one's with a `]` where the comma
    /// after it is.
    fn array_page(&mut self, end: usize, last: bool) -> Result<Items, String> {
        let open = usize::from(self.pages > 0);
        let mut text = Vec::with_capacity(end + 2);
        if open == 1 {
            text.push(b'[');
        }
        text.extend_from_slice(&self.pending[..end]);
        if !last {
            text.push(b']');
        }
        let text = String::from_utf8(text)
            .map_err(|e| self.not_utf8(e.utf8_error().valid_up_to().saturating_sub(open)))?;
        let Some(spans) = split_items(&text, &[]) else {
            return Err(self.invalid(&text, end, last));
        };
        // An empty page between two commas, or after the last: an item missing, which the
        // page alone, wrapped in `[` and `]`, cannot show.
        if spans.is_empty() && !last {
            let (line, column) = self.place(end);
            return Err(format!(
                "invalid JSON: expected value at line {line} column {column}"
            ));
        }
        if spans.is_empty() && self.pages > 0 {
            let close = self.pending.iter().position(|b| !b.is_ascii_whitespace());
            let (line, column) = self.place(close.unwrap_or(end));
            return Err(format!(
                "invalid JSON: trailing comma at line {line} column {column}"
            ));
        }
        self.pages += 1;
        self.items += spans.len();
        Ok(Items::from_spans(text, spans))
    }

    /// What is wrong with a page that is not an array's items, in the parser's words, placed in
    /// the whole output. Parsed with the comma after it where there is one, so the parser sees
    /// what the output holds there, not the page's own `]`.
    fn invalid(&self, text: &str, end: usize, last: bool) -> String {
        let open = usize::from(self.pages > 0);
        let parse = |bytes: &[u8]| serde_json::from_slice::<Value>(bytes).err();
        let with_comma = (!last)
            .then(|| [&text.as_bytes()[..open], &self.pending[..=end]].concat())
            .and_then(|bytes| parse(&bytes))
            .filter(|e| !e.is_eof());
        let Some(e) = with_comma.or_else(|| parse(text.as_bytes())) else {
            return "something other than a JSON array".into();
        };
        if e.line() == 0 {
            return format!("invalid JSON: {e}");
        }
        let (line, column) = match e.line() {
            1 => (
                self.line + 1,
                (self.column + e.column()).saturating_sub(open),
            ),
            n => (self.line + n, e.column()),
        };
        let message = e.to_string();
        let at = format!(" at line {} column {}", e.line(), e.column());
        let message = message.strip_suffix(&at).unwrap_or(&message);
        format!("invalid JSON: {message} at line {line} column {column}")
    }

    fn not_utf8(&self, at: usize) -> String {
        format!("output that is not UTF-8 (line {})", self.place(at).0)
    }

    /// Line and column (from 1, in bytes, as the parser counts them) of `pending[at]` in the
    /// whole output.
    fn place(&self, at: usize) -> (usize, usize) {
        let before = &self.pending[..at.min(self.pending.len())];
        match before.iter().rposition(|&b| b == b'\n') {
            Some(newline) => (self.line + 1 + newlines(before), at - newline),
            None => (self.line + 1, self.column + at + 1),
        }
    }

    /// Drops the first `n` bytes of `pending`, counting the lines they end.
    fn consume(&mut self, n: usize) {
        let gone = &self.pending[..n];
        match gone.iter().rposition(|&b| b == b'\n') {
            Some(newline) => {
                self.line += newlines(gone);
                self.column = n - newline - 1;
            }
            None => self.column += n,
        }
        self.pending.drain(..n);
    }
}

fn newlines(bytes: &[u8]) -> usize {
    bytes.iter().filter(|&&b| b == b'\n').count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The one-shot reading of the whole output this cutter replaced, kept as the reference.
    fn one_shot(stdout: &[u8]) -> Result<Vec<String>, String> {
        let text = String::from_utf8(stdout.to_vec())
            .map_err(|_| "output that is not UTF-8".to_owned())?;
        let trimmed = text.trim_start();
        let spans = if trimmed.starts_with('[') {
            let skipped = text.len() - trimmed.len();
            match split_items(trimmed, &[]) {
                Some(spans) => spans
                    .into_iter()
                    .map(|s| s.start + skipped..s.end + skipped)
                    .collect(),
                None => return Err("invalid JSON".into()),
            }
        } else if trimmed.is_empty() {
            return Err(NOTHING.into());
        } else {
            split_lines(&text).map_err(|(line, _)| format!("invalid JSON on line {line}"))?
        };
        Ok(spans.into_iter().map(|s| text[s].to_owned()).collect())
    }

    /// `output` fed to a cutter of `batch` bytes in chunks of `chunk`: each page's items.
    fn pages(output: &[u8], chunk: usize, batch: usize) -> Result<Vec<Vec<String>>, String> {
        let mut cutter = Cutter::new(batch);
        let mut pages = Vec::new();
        let mut keep = |items: Items| pages.push(items.iter().map(str::to_owned).collect());
        for piece in output.chunks(chunk.max(1)) {
            if let Some(items) = cutter.push(piece)? {
                keep(items);
            }
        }
        if let Some(items) = cutter.finish()? {
            keep(items);
        }
        Ok(pages)
    }

    /// `output` in one chunk, cut at [`PAGE_BYTES`]: its items.
    fn whole(output: &str) -> Result<Vec<String>, String> {
        pages(output.as_bytes(), output.len(), PAGE_BYTES).map(|p| p.concat())
    }

    const CHUNKS: [usize; 5] = [1, 2, 3, 7, usize::MAX];

    #[test]
    fn arrays_and_json_lines() {
        let items = whole(" [{\"id\":1}, {\"id\": \"a]\\\"\"}]\n").unwrap();
        assert_eq!(items, [r#"{"id":1}"#, r#"{"id": "a]\""}"#]);
        let items = whole("{\"id\":1}\n\n  {\"id\":2} \r\n[3]").unwrap();
        assert_eq!(items, [r#"{"id":1}"#, r#"{"id":2}"#, "[3]"]);
        assert_eq!(whole("[]\n").unwrap(), Vec::<String>::new());
        for nothing in ["", " \n\t\r\n ", "\n\u{b}\n"] {
            for chunk in CHUNKS {
                let err = pages(nothing.as_bytes(), chunk, 1).unwrap_err();
                assert_eq!(err, NOTHING, "{nothing:?} {chunk}");
            }
        }
        assert!(whole("{\"id\":1}\nnope").unwrap_err().contains("line 2"));
        let err = whole("[1,").unwrap_err();
        assert!(err.starts_with("invalid JSON: "), "{err}");
        assert!(whole("[1] [2]").unwrap_err().starts_with("invalid JSON"));
        assert!(pages(&[0xff], 1, 1).unwrap_err().contains("UTF-8"));
        let err = pages(b"[1,\n2,\n\"\xff\"]", 1, 1).unwrap_err();
        assert_eq!(err, "output that is not UTF-8 (line 3)");
        let err = pages(b"1\n2\n\"\xff\"\n", 1, 1).unwrap_err();
        assert_eq!(err, "output that is not UTF-8 (line 3)");
    }

    /// Outputs whose strings hold what the skim must not take for structure.
    const ARRAYS: [&str; 5] = [
        r#"[{"id":1,"s":"a,b]c[d"},{"id":"x\"y,"},"\\",["\\\"],",[1,[2,{"k":"}"}]]],{},[],3]"#,
        "\n  [ 1 ,\t2,\r\n\"é,€😀\" , {\"a\":[{\"b\":[]}]} ]  \n",
        "[]",
        "[{\"only\": \"one\"}]",
        "[\"\\\\\",\"\\\\\\\\\",\"\\\\\\\",\",\"]\"]",
    ];

    #[test]
    fn arrays_cut_wherever_the_chunks_end_hold_the_one_shot_items() {
        for output in ARRAYS {
            let reference = one_shot(output.as_bytes()).unwrap();
            let values: Vec<Value> = match serde_json::from_str(output).unwrap() {
                Value::Array(values) => values,
                other => panic!("{other}"),
            };
            assert_eq!(reference.len(), values.len(), "{output}");
            for (text, value) in reference.iter().zip(&values) {
                assert_eq!(&serde_json::from_str::<Value>(text).unwrap(), value);
            }
            // Two chunks, split at every byte: every cut of the skim's state.
            for at in 0..=output.len() {
                let (head, rest) = output.as_bytes().split_at(at);
                let mut cutter = Cutter::new(1);
                let mut items = Vec::new();
                for chunk in [head, rest] {
                    items.extend(cutter.push(chunk).unwrap());
                }
                items.extend(cutter.finish().unwrap());
                let items: Vec<&str> = items.iter().flat_map(Items::iter).collect();
                assert_eq!(items, reference, "{output:?} split at {at}");
            }
            for chunk in CHUNKS {
                for batch in [1, 2, 5, 16, PAGE_BYTES] {
                    let cut = pages(output.as_bytes(), chunk, batch).unwrap();
                    assert_eq!(cut.concat(), reference, "{output:?} {chunk} {batch}");
                    if batch <= 2 && chunk < 3 && reference.len() > 1 {
                        assert_eq!(cut.len(), reference.len(), "{output:?} {chunk}");
                    }
                }
            }
        }
    }

    #[test]
    fn an_array_is_cut_at_its_last_top_level_comma() {
        let output = br#"[{"a":"x,]"},[1,[2]],"\\",3]"#;
        let one_a_page = [
            vec![r#"{"a":"x,]"}"#],
            vec!["[1,[2]]"],
            vec![r#""\\""#],
            vec!["3"],
        ];
        assert_eq!(pages(output, 1, 1).unwrap(), one_a_page);
        // One chunk of it: one cut, at the last comma between items.
        assert_eq!(
            pages(output, output.len(), 1).unwrap(),
            [vec![r#"{"a":"x,]"}"#, "[1,[2]]", r#""\\""#], vec!["3"]]
        );
        // Chunks of 7: "[{\"a\":\"" has no comma; then "x,]\"},[" cuts after the first item.
        assert_eq!(pages(output, 7, 8).unwrap()[0], [r#"{"a":"x,]"}"#]);
        assert_eq!(
            pages(output, output.len(), PAGE_BYTES).unwrap(),
            [one_a_page.concat()]
        );
        // An empty array is one empty page: an empty listing.
        for empty in [&b"[]"[..], b" [ \n ] \n"] {
            for chunk in CHUNKS {
                assert_eq!(pages(empty, chunk, 1).unwrap(), [Vec::<String>::new()]);
            }
        }
    }

    #[test]
    fn json_lines_are_cut_after_a_newline() {
        let output = "{\"id\":1}\n\n  {\"id\":\"2\\n,\"} \r\n[3,\n4]\n";
        assert!(one_shot(output.as_bytes()).is_err(), "line 4 holds `[3,`");
        let output = "\n{\"id\":1}\n\n  {\"id\":\"2\\n,\"} \r\n[3,4]\n\n";
        let reference = one_shot(output.as_bytes()).unwrap();
        assert_eq!(reference.len(), 3);
        for chunk in CHUNKS {
            for batch in [1, 3, 16, PAGE_BYTES] {
                let cut = pages(output.as_bytes(), chunk, batch).unwrap();
                assert_eq!(cut.concat(), reference, "{chunk} {batch}");
                assert!(cut.iter().all(|page| !page.is_empty()));
            }
        }
        assert_eq!(
            pages(output.as_bytes(), 1, 1).unwrap(),
            [[r#"{"id":1}"#], [r#"{"id":"2\n,"}"#], ["[3,4]"]]
        );
    }

    #[test]
    fn a_bad_line_past_the_first_pages_is_named_by_its_line_in_the_output() {
        let mut output = String::new();
        for line in 1..=1000 {
            match line {
                700 => output.push_str("{\"id\": 700,}\n"),
                n if n % 10 == 0 => output.push('\n'),
                n => output.push_str(&format!("{{\"id\": {n}}}\n")),
            }
        }
        let expected = "invalid JSON on line 700: key must be a string at line 1 column 12";
        for chunk in CHUNKS {
            for batch in [64, 1000] {
                let err = pages(output.as_bytes(), chunk, batch).unwrap_err();
                assert_eq!(err, expected, "{chunk} {batch}");
            }
        }
        assert!(
            one_shot(output.as_bytes())
                .unwrap_err()
                .contains("line 700")
        );
    }

    #[test]
    fn array_errors_are_placed_in_the_whole_output_as_the_parser_places_them() {
        let mut items: Vec<String> = (1..=200).map(|n| format!("{{\"id\": {n}}}")).collect();
        items[150] = "{\"id\": tru}".into();
        let late = format!("[\n{}\n]\n", items.join(",\n"));
        let bad = [
            late.as_str(),
            "[1,,2]",
            "[1, ]",
            "[1,2 3,4]",
            "  [1,\n 2,\n x]",
            "[1,2] [3,4]",
            "[1,{\"a\":2,}]",
        ];
        for output in bad {
            let parser = serde_json::from_str::<Value>(output).unwrap_err();
            let expected = format!("invalid JSON: {parser}");
            for chunk in CHUNKS {
                for batch in [1, 4, 64, PAGE_BYTES] {
                    let err = pages(output.as_bytes(), chunk, batch).unwrap_err();
                    assert_eq!(err, expected, "{output:?} {chunk} {batch}");
                }
            }
        }
        let err = pages(late.as_bytes(), 7, 64).unwrap_err();
        assert_eq!(err, "invalid JSON: expected ident at line 152 column 11");
        // Cut short: the parser's word on the piece, placed where the output ends.
        let err = pages(b"[1,2,", 1, 1).unwrap_err();
        assert_eq!(
            err,
            "invalid JSON: EOF while parsing a list at line 1 column 5"
        );
        let err = pages(b"[1,2,", 5, PAGE_BYTES).unwrap_err();
        assert_eq!(
            err,
            "invalid JSON: EOF while parsing a value at line 1 column 5"
        );
        let err = pages(b"[1,2]x", 1, 1).unwrap_err();
        assert_eq!(err, "invalid JSON: trailing characters at line 1 column 6");
    }
}
