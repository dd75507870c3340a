//! Diff: the snapshot's `(id → hash)` and a listing's records → the changes.
//!
//! In: the snapshot of one resource, then records page by page as they arrive (so only the
//! `(id, hash)` pairs and the *changed* bodies are held, never the whole listing). Out: a [`Diff`]
//! with `created` / `updated` / `deleted` changes and, if the listing would delete suspiciously
//! much, the deletes held back.
//!
//! Invariants (DESIGN.md §4): a new id is `created`, a changed hash `updated`, and an id missing
//! from a *complete* listing `deleted`; an id listed twice counts once (the last copy wins); a
//! listing that would delete more than `max_delete_ratio` of a snapshot of at least
//! [`GUARD_MIN_SNAPSHOT`] items keeps its deletes back. Pure: no I/O. Bodies are opaque here (`B`):
//! the poll decides where a changed body waits for its commit.

use foldhash::{HashMap, HashMapExt};
use serde_json::Value;

use crate::normalize::{Hash, RawHash, Record};

/// Snapshots smaller than this are never guarded: deleting 2 of 3 items is not suspicious.
pub const GUARD_MIN_SNAPSHOT: usize = 10;

/// What happened to one item.
#[derive(Debug, Clone, PartialEq)]
pub enum Change<B = Value> {
    /// An id the snapshot did not have.
    Created(Record<B>),
    /// A known id whose hash changed.
    Updated(Record<B>),
    /// A known id missing from a complete listing.
    Deleted {
        /// The item's id.
        id: String,
    },
}

impl<B> Change<B> {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            Change::Created(r) | Change::Updated(r) => &r.id,
            Change::Deleted { id } => id,
        }
    }
}

/// Deletes kept back because they looked like an API glitch rather than real deletions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// How many items the listing would have deleted.
    pub deletes: usize,
    /// How many the snapshot held.
    pub snapshot: usize,
}

/// The outcome of comparing a listing with the snapshot.
#[derive(Debug, Clone, PartialEq)]
pub struct Diff<B = Value> {
    /// Changes in listing order, deletes last.
    pub changes: Vec<Change<B>>,
    /// Set when the deletes were held back (they are then not in `changes`).
    pub held: Option<Held>,
    /// Distinct items in the listing.
    pub listed: usize,
    /// Items missing from this complete listing that are not deleted yet (`deleted_after`).
    pub missing: Vec<String>,
    /// Items listed again after having been missing.
    pub found: Vec<String>,
    /// Unchanged items whose bytes differ from the stored [`RawHash`] (an API that reorders keys,
    /// changed `ignore` paths): store the new one so the next poll takes the fast path.
    pub rehashed: Vec<(String, RawHash)>,
}

/// How deletes are judged when the listing ends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DeleteGuard {
    /// Largest share of the snapshot one listing may delete.
    pub max_ratio: f64,
    /// The operator accepted the held-back deletes: apply them whatever their number.
    pub accepted: bool,
    /// An item is deleted once missing from this many complete listings in a row (at least 1).
    pub after: u32,
}

/// What the snapshot holds of one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// Its canonical hash.
    pub hash: Hash,
    /// Its bytes' hash when last listed, if known.
    pub raw: Option<RawHash>,
    /// Complete listings it has been missing from.
    pub missing: u32,
    /// Listed in the listing being diffed (the differ's own mark).
    seen: bool,
}

impl Known {
    /// A snapshot entry.
    pub fn new(hash: Hash, raw: Option<RawHash>, missing: u32) -> Self {
        Self {
            hash,
            raw,
            missing,
            seen: false,
        }
    }
}

/// A snapshot as the differ takes it: `id → what is known`. Hashed with foldhash (seeded per
/// process): ids come from a remote API, and a million lookups per poll make SipHash's cost show.
pub type Snapshot = HashMap<String, Known>;

/// Compares records with a snapshot as they stream in.
#[derive(Debug)]
pub struct Differ<B = Value> {
    snapshot: Snapshot,
    changes: Vec<Change<B>>,
    /// ids seen in this listing that were not in the snapshot, or that changed: index in `changes`.
    pending: HashMap<String, usize>,
    rehashed: HashMap<String, RawHash>,
    listed: usize,
}

impl<B> Differ<B> {
    /// Starts a diff against `snapshot` (`id → hash`).
    pub fn new(snapshot: impl IntoIterator<Item = (String, Hash)>) -> Self {
        Self::with_missing(snapshot.into_iter().map(|(id, hash)| (id, hash, 0)))
    }

    /// Starts a diff against `snapshot` (`id → hash, listings missing from`).
    pub fn with_missing(snapshot: impl IntoIterator<Item = (String, Hash, u32)>) -> Self {
        Self::with_known(
            snapshot
                .into_iter()
                .map(|(id, hash, missing)| (id, Known::new(hash, None, missing)))
                .collect(),
        )
    }

    /// Starts a diff against `snapshot` as the store keeps it. ([`Known::new`] is the only way to
    /// make an entry, so none is marked listed yet.)
    pub fn with_known(snapshot: Snapshot) -> Self {
        Self {
            snapshot,
            changes: Vec::new(),
            pending: HashMap::new(),
            rehashed: HashMap::new(),
            listed: 0,
        }
    }

    /// The diff of a listing whose every page answered 304 Not Modified and whose page records
    /// name each of the snapshot's items, `listed` of them: each listed and unchanged, none
    /// missing. The snapshot need not be read to say so, and [`Differ::finish`] finds nothing.
    pub fn all_kept(listed: usize) -> Self {
        let mut differ = Self::with_known(Snapshot::new());
        differ.listed = listed;
        differ
    }

    /// Marks a snapshot item as listed and unchanged (its page answered 304 Not Modified).
    /// Returns false if the snapshot does not hold it, so the page cannot be replayed.
    pub fn keep(&mut self, id: &str) -> bool {
        match self.snapshot.get_mut(id) {
            Some(known) => {
                if !known.seen {
                    known.seen = true;
                    self.listed += 1;
                }
                true
            }
            None => self.pending.contains_key(id),
        }
    }

    /// The fast path: if the snapshot's item `id` was last listed with these very bytes (`raw`),
    /// marks it listed and unchanged and returns true. Otherwise the caller normalizes the item
    /// and [`Differ::push`]es it.
    pub fn unchanged(&mut self, id: &str, raw: &RawHash) -> bool {
        let Some(known) = self.snapshot.get_mut(id) else {
            return false;
        };
        if known.raw.as_ref() != Some(raw) {
            return false;
        }
        if !known.seen {
            // The common case: first listed now, so neither pending nor rehashed.
            known.seen = true;
            self.listed += 1;
            return true;
        }
        if self.pending.contains_key(id) {
            // Listed before in this listing with other content: the later copy must replace it.
            return false;
        }
        self.rehashed.remove(id);
        true
    }

    /// Number of items in the snapshot.
    pub fn snapshot_len(&self) -> usize {
        self.snapshot.len()
    }

    /// Takes in one record of the listing.
    pub fn push(&mut self, record: Record<B>) {
        if let Some(&at) = self.pending.get(&record.id) {
            // Listed twice (pages shifted while paging): the later copy replaces the earlier.
            if let Change::Created(r) | Change::Updated(r) = &mut self.changes[at] {
                *r = record;
            }
            return;
        }
        match self.snapshot.get_mut(&record.id) {
            Some(known) => {
                if !known.seen {
                    known.seen = true;
                    self.listed += 1;
                }
                if known.hash != record.hash {
                    self.pending.insert(record.id.clone(), self.changes.len());
                    self.changes.push(Change::Updated(record));
                } else if let Some(raw) = record.raw
                    && known.raw != Some(raw)
                {
                    self.rehashed.insert(record.id, raw);
                }
            }
            None => {
                self.listed += 1;
                self.pending.insert(record.id.clone(), self.changes.len());
                self.changes.push(Change::Created(record));
            }
        }
    }

    /// Ends the listing. `complete` is false for listings that cannot show deletions (an
    /// incremental fetch); a failed fetch never reaches here.
    pub fn finish(mut self, complete: bool, guard: DeleteGuard) -> Diff<B> {
        // An updated item whose last copy equals the snapshot is not a change after all; its
        // bytes' hash is still worth keeping.
        let snapshot = &self.snapshot;
        let rehashed = &mut self.rehashed;
        self.changes.retain(|c| match c {
            Change::Updated(r) => match snapshot.get(&r.id) {
                Some(known) if known.hash == r.hash => {
                    if let Some(raw) = r.raw.filter(|raw| known.raw != Some(*raw)) {
                        rehashed.insert(r.id.clone(), raw);
                    }
                    false
                }
                _ => true,
            },
            _ => true,
        });
        let mut held = None;
        let mut missing = Vec::new();
        let found: Vec<String> = self
            .snapshot
            .iter()
            .filter(|(_, k)| k.seen && k.missing > 0)
            .map(|(id, _)| id.clone())
            .collect();
        if complete {
            let mut deleted: Vec<&String> = Vec::new();
            for (id, known) in &self.snapshot {
                if known.seen {
                    continue;
                }
                if known.missing + 1 >= guard.after.max(1) {
                    deleted.push(id);
                } else {
                    missing.push(id.clone());
                }
            }
            deleted.sort_unstable();
            missing.sort_unstable();
            let total = self.snapshot.len();
            let suspicious = total >= GUARD_MIN_SNAPSHOT
                && deleted.len() as f64 > guard.max_ratio * total as f64;
            if suspicious && !guard.accepted {
                held = Some(Held {
                    deletes: deleted.len(),
                    snapshot: total,
                });
            } else {
                self.changes.extend(
                    deleted
                        .into_iter()
                        .map(|id| Change::Deleted { id: id.clone() }),
                );
            }
        }
        let mut rehashed: Vec<(String, RawHash)> = self.rehashed.into_iter().collect();
        rehashed.sort_unstable();
        Diff {
            changes: self.changes,
            held,
            listed: self.listed,
            missing,
            found,
            rehashed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(id: &str, h: u8) -> Record {
        Record {
            id: id.into(),
            body: json!({"id": id, "h": h}),
            hash: [h; 32],
            raw: None,
        }
    }

    const OPEN: DeleteGuard = DeleteGuard {
        max_ratio: 0.5,
        accepted: false,
        after: 1,
    };

    fn summary(diff: &Diff) -> Vec<String> {
        diff.changes
            .iter()
            .map(|c| match c {
                Change::Created(r) => format!("+{}", r.id),
                Change::Updated(r) => format!("~{}", r.id),
                Change::Deleted { id } => format!("-{id}"),
            })
            .collect()
    }

    #[test]
    fn created_updated_deleted() {
        let mut d = Differ::<Value>::new([
            ("a".into(), [1; 32]),
            ("b".into(), [2; 32]),
            ("c".into(), [3; 32]),
        ]);
        d.push(rec("a", 1));
        d.push(rec("b", 9));
        d.push(rec("d", 4));
        let diff = d.finish(true, OPEN);
        assert_eq!(summary(&diff), ["~b", "+d", "-c"]);
        assert_eq!(diff.listed, 3);
        assert_eq!(diff.held, None);
    }

    #[test]
    fn incomplete_listing_never_deletes() {
        let mut d = Differ::<Value>::new([("a".into(), [1; 32])]);
        d.push(rec("b", 2));
        assert_eq!(summary(&d.finish(false, OPEN)), ["+b"]);
    }

    #[test]
    fn duplicates_are_merged_last_copy_wins() {
        let mut d = Differ::<Value>::new([("a".into(), [1; 32])]);
        d.push(rec("n", 1));
        d.push(rec("a", 2));
        d.push(rec("n", 5));
        d.push(rec("a", 1)); // back to the snapshot's content
        d.push(rec("a", 1));
        let diff = d.finish(true, OPEN);
        assert_eq!(summary(&diff), ["+n"]);
        assert!(matches!(&diff.changes[0], Change::Created(r) if r.hash == [5; 32]));
        assert_eq!(diff.listed, 2);
    }

    #[test]
    fn deleted_after_waits_for_n_complete_listings() {
        let guard = DeleteGuard { after: 3, ..OPEN };
        let first =
            Differ::<Value>::with_missing([("a".into(), [1; 32], 0), ("b".into(), [2; 32], 1)]);
        let diff = first.finish(true, guard);
        assert!(diff.changes.is_empty());
        assert_eq!(diff.missing, ["a", "b"]);
        let third = Differ::<Value>::with_missing([("a".into(), [1; 32], 2)]).finish(true, guard);
        assert_eq!(summary(&third), ["-a"]);
        let mut back = Differ::<Value>::with_missing([("a".into(), [1; 32], 2)]);
        back.push(rec("a", 1));
        let diff = back.finish(true, guard);
        assert!(diff.changes.is_empty() && diff.missing.is_empty());
        assert_eq!(diff.found, ["a"]);
    }

    #[test]
    fn kept_pages_count_as_listed_and_unchanged() {
        let mut d = Differ::<Value>::new([("a".into(), [1; 32]), ("b".into(), [2; 32])]);
        assert!(d.keep("a"));
        assert!(!d.keep("zz"));
        let diff = d.finish(true, OPEN);
        assert_eq!(summary(&diff), ["-b"]);
        assert_eq!(diff.listed, 1);
    }

    fn known(h: u8, raw: u8) -> Known {
        Known::new([h; 32], Some([raw; 16]), 0)
    }

    #[test]
    fn same_bytes_are_unchanged_without_a_record() {
        let mut d = Differ::<Value>::with_known(Snapshot::from_iter([
            ("a".into(), known(1, 1)),
            ("b".into(), known(2, 2)),
        ]));
        assert!(d.unchanged("a", &[1; 16]));
        assert!(d.unchanged("a", &[1; 16]), "listed twice, still one item");
        assert!(
            !d.unchanged("b", &[9; 16]),
            "other bytes: the caller normalizes"
        );
        assert!(!d.unchanged("new", &[1; 16]));
        let diff = d.finish(true, OPEN);
        assert_eq!(summary(&diff), ["-b"]);
        assert_eq!(diff.listed, 1);
    }

    #[test]
    fn other_bytes_with_the_same_content_are_rehashed_not_updated() {
        let mut d = Differ::<Value>::with_known(Snapshot::from_iter([
            ("a".into(), known(1, 1)),
            ("b".into(), known(2, 2)),
            ("c".into(), known(3, 3)),
        ]));
        // Keys reordered by the API: same canonical hash, new bytes.
        d.push(Record {
            raw: Some([7; 16]),
            ..rec("a", 1)
        });
        // Changed, then changed back within the listing: no event, but the new bytes are kept.
        d.push(Record {
            raw: Some([8; 16]),
            ..rec("b", 9)
        });
        assert!(
            !d.unchanged("b", &[2; 16]),
            "a pending change needs the later copy"
        );
        d.push(Record {
            raw: Some([2; 16]),
            ..rec("b", 2)
        });
        d.push(Record {
            raw: Some([5; 16]),
            ..rec("c", 4)
        });
        let diff = d.finish(true, OPEN);
        assert_eq!(summary(&diff), ["~c"]);
        assert_eq!(diff.rehashed, [("a".to_owned(), [7; 16])]);
        assert!(matches!(&diff.changes[0], Change::Updated(r) if r.raw == Some([5; 16])));
    }

    #[test]
    fn mass_delete_is_held_unless_accepted() {
        let snapshot: Vec<(String, Hash)> = (0..100).map(|i| (i.to_string(), [0; 32])).collect();
        let diff = Differ::<Value>::new(snapshot.clone()).finish(true, OPEN);
        assert!(diff.changes.is_empty());
        assert_eq!(
            diff.held,
            Some(Held {
                deletes: 100,
                snapshot: 100
            })
        );
        let accepted = Differ::<Value>::new(snapshot.clone()).finish(
            true,
            DeleteGuard {
                accepted: true,
                ..OPEN
            },
        );
        assert_eq!(accepted.changes.len(), 100);
        // Half exactly is allowed; one more is not.
        let mut d = Differ::<Value>::new(snapshot.clone());
        (0..50).for_each(|i| d.push(rec(&i.to_string(), 0)));
        assert_eq!(d.finish(true, OPEN).changes.len(), 50);
        // Small snapshots are not guarded.
        let small = Differ::<Value>::new([("a".into(), [0; 32]), ("b".into(), [0; 32])]);
        assert_eq!(small.finish(true, OPEN).changes.len(), 2);
    }
}
