//! What the connection keeps of small resources from one poll to the next, so that an idle poll
//! neither reads its snapshot nor, after this process's own last poll of it, opens a
//! transaction to read anything at all.
//!
//! In: the snapshots [`read_prior`](super::snapshot) reads, and what each bookkeeping commit
//! leaves. Out: a snapshot still at its version, or a whole [`Prior`], remembered.
//!
//! Invariants:
//! - Every write of what a poll reads before it fetches (a resource's state, page records and
//!   snapshot rows) bumps the resource's `version` in the same transaction, and no resource row
//!   is ever removed: a resource still at a version holds what it held then.
//! - So a snapshot kept with the version it was read at is the snapshot for as long as a read
//!   finds that version ([`Kept::snapshot`]).
//! - A commit by this process that wrote nothing but the poll's bookkeeping moves its entry on
//!   to the version it made, with the state that commit's own `UPDATE` returned and the page
//!   records it left ([`Kept::moved_on`]). The entry is then all the next poll needs before it
//!   fetches, and [`Kept::recall`] hands it out without a read ([`Prior::remembered`]).
//! - Another process's write since then is found by the next commit: it checks the version in
//!   its own transaction, finds it moved, writes nothing and forgets the entry
//!   ([`Kept::forget`]), and the poll is repeated from a read. In this process, every other
//!   write of the resource forgets its entry before it commits.

use std::collections::HashMap;
use std::sync::Arc;

use crate::diff::Snapshot;
use crate::store::snapshot::READ_NOW;
use crate::store::{PageRecord, Prior, ResourceState};

/// Entries by source, then resource (looked up by `&str`, without allocating).
#[derive(Default)]
pub(super) struct Kept(HashMap<String, HashMap<String, Entry>>);

struct Entry {
    /// The resource's version when `snapshot` was read, or that the last commit moved it on to.
    version: i64,
    snapshot: Snapshot,
    /// The page records at `version`, if the read asked for them.
    pages: Option<Arc<HashMap<String, PageRecord>>>,
    /// The state this process's own commit left at `version`: set, the entry is a whole prior.
    state: Option<ResourceState>,
}

impl Kept {
    /// The snapshot of `source.resource` at `version`, if it is the one kept.
    pub(super) fn snapshot(&self, source: &str, resource: &str, version: i64) -> Option<&Snapshot> {
        self.entry(source, resource)
            .filter(|e| e.version == version)
            .map(|e| &e.snapshot)
    }

    /// Keeps `snapshot` as `source.resource` held it at `version`, if it is small.
    pub(super) fn put(&mut self, source: &str, resource: &str, version: i64, snapshot: &Snapshot) {
        if snapshot.len() as i64 > READ_NOW {
            return;
        }
        let entry = Entry {
            version,
            snapshot: snapshot.clone(),
            pages: None,
            state: None,
        };
        let resources = self.0.entry(source.to_owned()).or_default();
        resources.insert(resource.to_owned(), entry);
    }

    /// The page records `source.resource` held at `version`, as a read found them: kept with its
    /// snapshot, if that is kept at `version`.
    pub(super) fn pages_read(
        &mut self,
        source: &str,
        resource: &str,
        version: i64,
        pages: &Arc<HashMap<String, PageRecord>>,
    ) {
        if let Some(entry) = self
            .entry_mut(source, resource)
            .filter(|e| e.version == version)
        {
            entry.pages = Some(pages.clone());
        }
    }

    /// What a poll of `source.resource` needs before it fetches, if this process's own last
    /// commit of it left all of it here: its page records if `pages`, and its snapshot, which
    /// must be no larger than `snapshot_up_to`.
    pub(super) fn recall(
        &self,
        source: &str,
        resource: &str,
        pages: bool,
        snapshot_up_to: i64,
    ) -> Option<Prior> {
        let entry = self.entry(source, resource)?;
        let state = entry.state.as_ref()?;
        if !state.has_baseline || state.item_count > snapshot_up_to {
            return None;
        }
        let pages = match (pages, &entry.pages) {
            (false, _) => Arc::default(),
            (true, Some(pages)) => pages.clone(),
            (true, None) => return None,
        };
        Some(Prior {
            state: state.clone(),
            pages,
            snapshot: Some(entry.snapshot.clone()),
            remembered: true,
        })
    }

    /// A commit of `source.resource` made at `version` wrote no snapshot row and left `state`
    /// (and `pages`, where it replaced them): what was kept at `version` holds at the next.
    pub(super) fn moved_on(
        &mut self,
        source: &str,
        resource: &str,
        version: i64,
        state: ResourceState,
        pages: Option<&[PageRecord]>,
    ) {
        let Some(entry) = self
            .entry_mut(source, resource)
            .filter(|e| e.version == version)
        else {
            return;
        };
        entry.version = state.version;
        entry.state = Some(state);
        if let Some(pages) = pages {
            let by_url = pages.iter().map(|p| (p.url.clone(), p.clone())).collect();
            entry.pages = Some(Arc::new(by_url));
        }
    }

    /// Drops what is kept of `source.resource`: it was written, or found written by another
    /// process.
    pub(super) fn forget(&mut self, source: &str, resource: &str) {
        if let Some(resources) = self.0.get_mut(source) {
            resources.remove(resource);
        }
    }

    fn entry(&self, source: &str, resource: &str) -> Option<&Entry> {
        self.0.get(source)?.get(resource)
    }

    fn entry_mut(&mut self, source: &str, resource: &str) -> Option<&mut Entry> {
        self.0.get_mut(source)?.get_mut(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::diff::Known;

    fn snapshot(n: u8) -> Snapshot {
        (0..n)
            .map(|i| (i.to_string(), Known::new([i; 32], None, 0)))
            .collect()
    }

    fn state(version: i64, item_count: i64) -> ResourceState {
        ResourceState {
            has_baseline: true,
            version,
            item_count,
            ..Default::default()
        }
    }

    fn page(url: &str) -> PageRecord {
        PageRecord {
            url: url.to_owned(),
            etag: Some("\"1\"".to_owned()),
            ids: vec!["0".to_owned()],
            ..Default::default()
        }
    }

    #[test]
    fn a_read_snapshot_is_kept_at_its_version_and_recalled_only_after_a_commit_moved_it_on() {
        let mut kept = Kept::default();
        kept.put("shop", "orders", 4, &snapshot(2));
        assert_eq!(kept.snapshot("shop", "orders", 4), Some(&snapshot(2)));
        assert_eq!(kept.snapshot("shop", "orders", 5), None);
        assert_eq!(kept.snapshot("shop", "other", 4), None);
        // Read, not yet committed: the next poll still reads.
        assert!(kept.recall("shop", "orders", false, 1_000).is_none());
        // A commit made at another version moves nothing on.
        kept.moved_on("shop", "orders", 3, state(4, 2), None);
        assert!(kept.recall("shop", "orders", false, 1_000).is_none());
        kept.moved_on("shop", "orders", 4, state(5, 2), None);
        let prior = kept
            .recall("shop", "orders", false, 1_000)
            .expect("remembered");
        assert!(prior.remembered);
        assert_eq!((prior.state.version, prior.state.item_count), (5, 2));
        assert_eq!(prior.snapshot, Some(snapshot(2)));
        assert!(prior.pages.is_empty());
        assert_eq!(kept.snapshot("shop", "orders", 5), Some(&snapshot(2)));
        // Larger than the caller asks for: read (and diffed) its own way.
        assert!(kept.recall("shop", "orders", false, 1).is_none());
        kept.forget("shop", "orders");
        assert!(kept.recall("shop", "orders", false, 1_000).is_none());
        assert_eq!(kept.snapshot("shop", "orders", 5), None);
    }

    #[test]
    fn page_records_are_recalled_only_if_the_read_or_the_commit_left_them() {
        let mut kept = Kept::default();
        kept.put("shop", "orders", 1, &snapshot(1));
        kept.moved_on("shop", "orders", 1, state(2, 1), None);
        // Not read with the snapshot: a poll that needs them reads.
        assert!(kept.recall("shop", "orders", true, 1_000).is_none());
        assert!(kept.recall("shop", "orders", false, 1_000).is_some());
        let read = Arc::new(HashMap::from([("u1".to_owned(), page("u1"))]));
        kept.pages_read("shop", "orders", 1, &read);
        assert!(
            kept.recall("shop", "orders", true, 1_000).is_none(),
            "not at version 1"
        );
        kept.pages_read("shop", "orders", 2, &read);
        let prior = kept
            .recall("shop", "orders", true, 1_000)
            .expect("remembered");
        assert_eq!(prior.pages, read);
        // A commit that wrote none keeps them; one that wrote some replaces them.
        kept.moved_on("shop", "orders", 2, state(3, 1), None);
        let prior = kept
            .recall("shop", "orders", true, 1_000)
            .expect("remembered");
        assert_eq!(prior.pages, read);
        kept.moved_on("shop", "orders", 3, state(4, 1), Some(&[page("u2")]));
        let prior = kept
            .recall("shop", "orders", true, 1_000)
            .expect("remembered");
        let pages: Vec<&String> = prior.pages.keys().collect();
        assert_eq!(pages, ["u2"]);
        assert_eq!(prior.pages["u2"], page("u2"));
    }

    #[test]
    fn a_large_snapshot_or_a_resource_without_a_baseline_is_not_kept() {
        let mut kept = Kept::default();
        let large: Snapshot = (0..=READ_NOW)
            .map(|i| (i.to_string(), Known::new([0; 32], None, 0)))
            .collect();
        kept.put("shop", "orders", 1, &large);
        assert_eq!(kept.snapshot("shop", "orders", 1), None);
        kept.put("shop", "orders", 1, &snapshot(0));
        let mut empty = state(2, 0);
        empty.has_baseline = false;
        kept.moved_on("shop", "orders", 1, empty, None);
        assert!(kept.recall("shop", "orders", false, 1_000).is_none());
    }
}
