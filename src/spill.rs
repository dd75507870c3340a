//! The bodies of a poll's changed items, kept from the moment they are read until the commit
//! writes them: in memory up to a limit, then in an unnamed temporary file beside the database.
//!
//! In: each changed item's bytes as the page held them. Out: a [`BodyRef`] per body, and at the
//! commit the rows in id order ([`ChangedRows`]), their bodies read back a window at a time, the
//! reads of each window in file order and neighbours in one read.
//!
//! Invariants: a body reads back byte for byte; the file has no name (`O_TMPFILE`), so a crash
//! leaves nothing to clean up; it lives beside the database, not in `/tmp` (often a small tmpfs
//! in containers). A baseline of a million items so costs a few megabytes of memory, not
//! gigabytes.

use std::borrow::Cow;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::event::Payload;
use crate::normalize::Record;
use crate::store::{StoreError, Upsert, Upserts};

/// Changed bodies beyond this many bytes wait for their commit in a temporary file.
pub const SPILL_AFTER: usize = 8 << 20;

/// The commit reads bodies back in windows of up to this many bytes of them
const WINDOW_BYTES: u64 = 2 << 20;
/// … and this many bodies.
const WINDOW_BODIES: usize = 2048;
/// Bodies of one window that lie closer than this in the file are read in one `pread`, the
/// bytes between them read and dropped (at most this many per body, 8 MiB a window).
const READ_GAP: u64 = 4 << 10;

/// The spill file failed.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot use the temporary file beside the database: {0} (hint: check free space and permissions in the [storage] path's directory)"
)]
pub struct SpillError(String);

/// Where a changed item's body is kept until the commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyRef {
    at: u64,
    len: u64,
}

/// The bodies of a poll's changed items.
#[derive(Debug)]
pub struct Bodies {
    dir: PathBuf,
    limit: usize,
    memory: Vec<u8>,
    file: Option<File>,
    /// Bytes in `file`; `memory` holds the ones after.
    flushed: u64,
}

impl Bodies {
    /// Bodies kept in memory up to `limit` bytes, then in a file in the directory of `db`.
    pub fn beside(db: &Path, limit: usize) -> Self {
        let dir = match db.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => PathBuf::from("."),
        };
        Self {
            dir,
            limit,
            memory: Vec::new(),
            file: None,
            flushed: 0,
        }
    }

    /// Bytes that went to the file.
    pub fn spilled(&self) -> u64 {
        self.flushed
    }

    /// Keeps one body.
    pub fn put(&mut self, text: &str) -> Result<BodyRef, SpillError> {
        let at = self.flushed + self.memory.len() as u64;
        self.memory.extend_from_slice(text.as_bytes());
        if self.memory.len() >= self.limit {
            let file = match &mut self.file {
                Some(file) => file,
                None => self.file.insert(
                    tempfile::tempfile_in(&self.dir).map_err(|e| SpillError(e.to_string()))?,
                ),
            };
            file.write_all(&self.memory)
                .map_err(|e| SpillError(e.to_string()))?;
            self.flushed += self.memory.len() as u64;
            self.memory.clear();
        }
        Ok(BodyRef {
            at,
            len: text.len() as u64,
        })
    }

    /// A body's text.
    pub fn text(&self, body: BodyRef) -> Result<Cow<'_, str>, SpillError> {
        if body.at >= self.flushed {
            return utf8(self.in_memory(body)?, body).map(Cow::Borrowed);
        }
        let file = self.file.as_ref().ok_or_else(|| bad(body, "no file"))?;
        let mut bytes = vec![0; body.len as usize];
        file.read_exact_at(&mut bytes, body.at)
            .map_err(|e| SpillError(e.to_string()))?;
        String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| bad(body, "a body that is not UTF-8"))
    }

    /// Reads the bodies of `refs` into `window`, file reads in file order and neighbours in one
    /// read: ids sorted as strings visit sequential ids (`1`, `10`, `100`, `1000`, `1001`, …) in
    /// a handful of runs through the file, which so costs a few reads a window instead of one per
    /// body, while bodies far apart (random ids) cost a read each, as before.
    fn read_window(&self, refs: &[BodyRef], window: &mut Window) -> Result<(), SpillError> {
        window.bytes.clear();
        window.starts.clear();
        window.starts.resize(refs.len(), 0);
        window.order.clear();
        window.order.extend(0..refs.len());
        window.order.sort_unstable_by_key(|&i| refs[i].at);
        let order = &window.order;
        let mut k = 0;
        while k < order.len() {
            let first = refs[order[k]];
            if first.at >= self.flushed {
                // In memory, and so are the rest (they lie after the file's bytes).
                for &i in &order[k..] {
                    window.starts[i] = window.bytes.len();
                    window.bytes.extend_from_slice(self.in_memory(refs[i])?);
                }
                break;
            }
            let (start, mut end) = (first.at, first.at + first.len);
            let mut last = k + 1;
            while let Some(&i) = order.get(last) {
                let body = refs[i];
                if body.at >= self.flushed || body.at > end + READ_GAP {
                    break;
                }
                end = end.max(body.at + body.len);
                last += 1;
            }
            let file = self.file.as_ref().ok_or_else(|| bad(first, "no file"))?;
            let base = window.bytes.len();
            window.bytes.resize(base + (end - start) as usize, 0);
            file.read_exact_at(&mut window.bytes[base..], start)
                .map_err(|e| SpillError(e.to_string()))?;
            for &i in &order[k..last] {
                window.starts[i] = base + (refs[i].at - start) as usize;
            }
            k = last;
        }
        Ok(())
    }

    fn in_memory(&self, body: BodyRef) -> Result<&[u8], SpillError> {
        let start = usize::try_from(body.at - self.flushed).map_err(|_| bad(body, "no body"))?;
        self.memory
            .get(start..start + body.len as usize)
            .ok_or_else(|| bad(body, "no body"))
    }

    /// A body as an event carries it.
    pub fn payload(&self, body: BodyRef) -> Result<Payload, SpillError> {
        Payload::from_json(&self.text(body)?)
            .map_err(|e| SpillError(format!("a kept body is not JSON: {e}")))
    }
}

fn bad(body: BodyRef, what: &str) -> SpillError {
    SpillError(format!("{what} at byte {}", body.at))
}

fn utf8(bytes: &[u8], body: BodyRef) -> Result<&str, SpillError> {
    std::str::from_utf8(bytes).map_err(|_| bad(body, "a body that is not UTF-8"))
}

/// Bodies read back together ([`Bodies::read_window`]); the buffers are kept for the next window.
#[derive(Default)]
struct Window {
    bytes: Vec<u8>,
    /// Where each body's text starts in `bytes`, in the order asked for.
    starts: Vec<usize>,
    /// The bodies in file order (indices into the ones asked for).
    order: Vec<usize>,
}

/// A commit's snapshot rows: the changed records, in id order (the table's, so a baseline of a
/// million rows appends to the B-tree rather than splitting pages all over it), their bodies read
/// back from [`Bodies`] a window of a few megabytes at a time as the rows are written.
pub struct ChangedRows {
    records: Vec<Record<BodyRef>>,
    bodies: Bodies,
}

impl ChangedRows {
    /// The rows of `records`, sorted by id.
    pub fn new(mut records: Vec<Record<BodyRef>>, bodies: Bodies) -> Self {
        records.sort_unstable_by(|a, b| a.id.cmp(&b.id));
        Self { records, bodies }
    }
}

impl Upserts for ChangedRows {
    fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    fn each(
        &mut self,
        row: &mut dyn FnMut(Upsert<'_>) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let input = |e: SpillError| StoreError::Input(Box::new(e));
        let mut window = Window::default();
        let mut refs = Vec::new();
        let mut rest = self.records.as_slice();
        while !rest.is_empty() {
            let (mut n, mut bytes) = (0, 0);
            while n < rest.len().min(WINDOW_BODIES) && (n == 0 || bytes < WINDOW_BYTES) {
                bytes += rest[n].body.len;
                n += 1;
            }
            let (these, after) = rest.split_at(n);
            rest = after;
            refs.clear();
            refs.extend(these.iter().map(|r| r.body));
            self.bodies.read_window(&refs, &mut window).map_err(input)?;
            for ((r, &start), body) in these.iter().zip(&window.starts).zip(&refs) {
                let text = window.bytes.get(start..start + body.len as usize);
                let text = text.ok_or_else(|| input(bad(*body, "no body")))?;
                row(Upsert {
                    id: &r.id,
                    hash: &r.hash,
                    raw: r.raw.as_ref(),
                    body: utf8(text, *body).map_err(input)?,
                })?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_move_to_a_file_past_the_limit_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let mut bodies = Bodies::beside(&dir.path().join("x.db"), 20);
        let texts = [
            r#"{"id":1}"#,
            r#"{"id":2,"é":"ü"}"#,
            "[]",
            r#"{"id":"four"}"#,
            "7",
        ];
        let refs: Vec<BodyRef> = texts.iter().map(|t| bodies.put(t).unwrap()).collect();
        assert!(bodies.file.is_some() && bodies.flushed > 0, "spilled");
        assert!(!bodies.memory.is_empty(), "the tail stays in memory");
        for (text, body) in texts.iter().zip(&refs) {
            assert_eq!(bodies.text(*body).unwrap(), *text);
        }
        assert_eq!(
            bodies.payload(refs[1]).unwrap(),
            serde_json::json!({"id": 2, "é": "ü"})
        );
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "the file has no name: nothing to clean up after a crash"
        );
        let small = Bodies::beside(Path::new("x.db"), 1 << 20);
        assert_eq!(small.dir, Path::new("."));
    }

    /// Rows come in id order with their own bodies, whether the bodies lie in the file or in
    /// memory, next to each other or far apart, over several windows.
    #[test]
    fn changed_rows_read_their_bodies_back_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut bodies = Bodies::beside(&dir.path().join("x.db"), 64 << 10);
        let mut records = Vec::new();
        let mut expected = std::collections::BTreeMap::new();
        // Sequential numbers (ids sorted as strings jump through the file), every 97th body
        // large enough to end a window early.
        for n in 0..9_000u32 {
            let filler = if n % 97 == 0 {
                "x".repeat(5_000)
            } else {
                String::new()
            };
            let text = format!(r#"{{"id":{n},"f":"{filler}"}}"#);
            let body = bodies.put(&text).unwrap();
            records.push(Record {
                id: n.to_string(),
                body,
                hash: [0; 32],
                raw: None,
            });
            expected.insert(n.to_string(), text);
        }
        assert!(bodies.flushed > 0 && !bodies.memory.is_empty());
        let mut rows = ChangedRows::new(records, bodies);
        let mut seen = Vec::new();
        rows.each(&mut |row| {
            seen.push((row.id.to_owned(), row.body.to_owned()));
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, expected.into_iter().collect::<Vec<_>>());
    }
}
