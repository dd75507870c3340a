//! The bodies of a poll's changed items, kept from the moment they are read until the commit
//! writes them: in memory up to a limit, then in an unnamed temporary file beside the database.
//!
//! In: each changed item's bytes as the page held them. Out: a [`BodyRef`] per body, and at the
//! commit the rows in id order ([`ChangedRows`]), each body read back as it is written.
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
        let bad = |what: &str| SpillError(format!("{what} at byte {}", body.at));
        if body.at >= self.flushed {
            let start = usize::try_from(body.at - self.flushed).map_err(|_| bad("no body"))?;
            let bytes = self
                .memory
                .get(start..start + body.len as usize)
                .ok_or_else(|| bad("no body"))?;
            return std::str::from_utf8(bytes)
                .map(Cow::Borrowed)
                .map_err(|_| bad("a body that is not UTF-8"));
        }
        let file = self.file.as_ref().ok_or_else(|| bad("no file"))?;
        let mut bytes = vec![0; body.len as usize];
        file.read_exact_at(&mut bytes, body.at)
            .map_err(|e| SpillError(e.to_string()))?;
        String::from_utf8(bytes)
            .map(Cow::Owned)
            .map_err(|_| bad("a body that is not UTF-8"))
    }

    /// A body as an event carries it.
    pub fn payload(&self, body: BodyRef) -> Result<Payload, SpillError> {
        Payload::from_json(&self.text(body)?)
            .map_err(|e| SpillError(format!("a kept body is not JSON: {e}")))
    }
}

/// A commit's snapshot rows: the changed records, in id order (the table's, so a baseline of a
/// million rows appends to the B-tree rather than splitting pages all over it), each body read
/// back from [`Bodies`] as its row is written.
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
        for r in &self.records {
            let body = self
                .bodies
                .text(r.body)
                .map_err(|e| StoreError::Input(Box::new(e)))?;
            row(Upsert {
                id: &r.id,
                hash: &r.hash,
                raw: r.raw.as_ref(),
                body: &body,
            })?;
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
}
