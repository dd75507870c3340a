//! The intake of a poll: takes the listing page by page as the source fetches it, and turns each
//! item into a diffed record, taking the fast path for bytes the snapshot already holds.
//!
//! In: the source, the resource's settings, the snapshot (or the word to load it) and the last
//! poll's page records. Out: a [`Listing`]: the [`Differ`] with every item pushed, the changed
//! bodies in [`Bodies`], the page records, the newest `since` value; or the fetch's error.
//!
//! Invariants:
//! - Fetch and intake run side by side through a short queue: only `(id, hash)` pairs and the
//!   changed bodies are held, never the whole listing.
//! - An item whose bytes hash to what the snapshot holds is unchanged without being parsed
//!   ([`Normalizer::peek_id`], its id mostly borrowed from the text, or [`Normalizer::peek`]
//!   where the item's time is watched; [`Differ::unchanged`]); anything else is hashed
//!   canonically from its text ([`Normalizer::identify_text`], no `Value` built), so the
//!   canonical hash stays the only judge of change.
//! - An error taking a page (an item without an id, a replayed page gone stale) stops the fetch
//!   and is the error reported: the fetch only stopped because of it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;

use crate::config::ResourceConfig;
use crate::diff::{Differ, Snapshot};
use crate::incremental::Newest;
use crate::normalize::{NormalizeError, Normalizer, RawHash, Record};
use crate::source::{FetchPlan, Fetched, Items, Page, PageItems, Source, SourceError, shown};
use crate::spill::{Bodies, BodyRef, SPILL_AFTER, SpillError};
use crate::store::{PageRecord, Store, StoreError};

/// Why a listing could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum TakeError {
    /// The fetch failed, or a page could not be taken (an item without an id, a stale page).
    #[error(transparent)]
    Fetch(#[from] SourceError),
    /// A changed body could not be kept until the commit.
    #[error(transparent)]
    Spill(#[from] SpillError),
    /// The snapshot could not be loaded.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Pages fetched ahead of the one being taken.
const PAGES_AHEAD: usize = 2;

/// A listing, taken whole.
pub struct Listing {
    /// What the source said of the fetch.
    pub fetched: Fetched,
    /// Every item, pushed.
    pub differ: Differ<BodyRef>,
    /// The changed items' bodies.
    pub bodies: Bodies,
    /// Page records for conditional requests; `None` where they are the last poll's, every one
    /// (a listing whose every page answered 304 leaves them as they are, unwritten).
    pub pages: Option<Vec<PageRecord>>,
    /// The newest modification time seen (incremental polling).
    pub newest: Newest,
}

/// Where the snapshot to diff against comes from.
pub enum Against {
    /// Already loaded (a small resource): the intake runs on the poll's own task, a few
    /// microseconds a page, with no thread hand-off.
    Loaded(Snapshot),
    /// To be loaded while the first page is fetched (a large resource, or a first poll): the
    /// intake runs on a blocking thread. A listing whose pages are validated loads it only once
    /// a page is not as it was ([`Intake::take_unchanged`]), and not at all if every page is and
    /// they name every item it holds ([`Intake::take_kept`]).
    Load {
        /// Source name.
        source: String,
        /// Items the snapshot is expected to hold, to size its map once.
        expected: i64,
    },
}

/// Fetches `resource` and takes every page as it arrives.
pub async fn take_listing(
    store: &Store,
    source: &dyn Source,
    resource: &ResourceConfig,
    plan: &FetchPlan<'_>,
    against: Against,
    known_pages: Arc<HashMap<String, PageRecord>>,
) -> Result<Listing, TakeError> {
    let (page_tx, page_rx) = tokio::sync::mpsc::channel::<Page>(PAGES_AHEAD);
    let fetch = async move {
        let fetched = source.fetch(resource, plan, &page_tx).await;
        drop(page_tx);
        fetched
    };
    let mut intake = Intake::new(resource, store, known_pages);
    let (fetched, taken) = match against {
        Against::Loaded(snapshot) => {
            intake.differ = Differ::with_known(snapshot);
            tokio::join!(fetch, intake.take_all(page_rx))
        }
        Against::Load { source, expected } => {
            let validated = plan.pages.is_some_and(|known| !known.is_empty());
            let take = async {
                let mut page_rx = page_rx;
                // While the pages are as they were, the snapshot is not needed yet: if every page
                // is and their records name every item it holds, it is not read at all.
                let waited = match validated {
                    true => {
                        (intake.take_unchanged(store, &source, &resource.name, &mut page_rx))
                            .await?
                    }
                    false => Waited::default(),
                };
                let held: Vec<Page> = match waited.next {
                    None => match intake.take_kept(waited.kept, expected) {
                        Ok(()) => return Ok(intake),
                        Err(pages) => pages,
                    },
                    Some(next) => (waited.kept.into_iter().map(|(page, _)| page))
                        .chain([next])
                        .collect(),
                };
                intake.differ =
                    Differ::with_known(store.snapshot(&source, &resource.name, expected).await?);
                let taken =
                    tokio::task::spawn_blocking(move || intake.take_all_blocking(held, page_rx));
                match taken.await {
                    Ok(taken) => taken,
                    Err(e) => std::panic::resume_unwind(e.into_panic()),
                }
            };
            tokio::join!(fetch, take)
        }
    };
    match (fetched, taken) {
        (Ok(fetched), Ok(intake)) => Ok(intake.into_listing(fetched)),
        (Err(error), Ok(_)) => Err(TakeError::Fetch(error)),
        (_, Err(error)) => Err(error),
    }
}

/// The intake's state while pages arrive.
struct Intake {
    differ: Differ<BodyRef>,
    normalizer: Normalizer,
    newest: Newest,
    bodies: Bodies,
    records: Vec<Recorded>,
    /// The page records of the last poll, for pages that answer 304.
    known_pages: Arc<HashMap<String, PageRecord>>,
    conditional: bool,
    /// The listing is POSTed: its pages are shown as such in errors.
    post: bool,
}

impl Intake {
    fn new(
        resource: &ResourceConfig,
        store: &Store,
        known_pages: Arc<HashMap<String, PageRecord>>,
    ) -> Self {
        let mut normalizer = Normalizer::new(resource.id.clone(), resource.ignore.clone());
        if let Some(inc) = &resource.incremental {
            normalizer.also_peek(&inc.field);
        }
        Self {
            differ: Differ::new([]),
            normalizer,
            newest: Newest::new(resource.incremental.as_ref()),
            bodies: Bodies::beside(&store.path(), SPILL_AFTER),
            records: Vec::new(),
            known_pages,
            conditional: resource.conditional,
            post: resource.request.post,
        }
    }

    fn into_listing(self, fetched: Fetched) -> Listing {
        Listing {
            fetched,
            pages: page_records(self.records, &self.known_pages),
            differ: self.differ,
            bodies: self.bodies,
            newest: self.newest,
        }
    }

    /// Takes every page the fetch sends, on the poll's task.
    async fn take_all(
        mut self,
        mut pages: tokio::sync::mpsc::Receiver<Page>,
    ) -> Result<Self, TakeError> {
        while let Some(page) = pages.recv().await {
            self.take_page(page)?;
        }
        Ok(self)
    }

    /// Takes the pages already received (`first`), then every page the fetch sends, on a
    /// blocking thread.
    fn take_all_blocking(
        mut self,
        first: Vec<Page>,
        mut pages: tokio::sync::mpsc::Receiver<Page>,
    ) -> Result<Self, TakeError> {
        for page in first {
            self.take_page(page)?;
        }
        while let Some(page) = pages.blocking_recv() {
            self.take_page(page)?;
        }
        Ok(self)
    }

    /// Normalizes and diffs one page.
    fn take_page(&mut self, page: Page) -> Result<(), TakeError> {
        let ids = match page.items {
            PageItems::Fresh(items) => {
                let mut ids = Vec::new();
                for text in items.iter() {
                    let id = match take(text, &self.normalizer, &mut self.differ, &mut self.newest)
                    {
                        Taken::Unchanged(id) if self.conditional => id.into_owned(),
                        Taken::Unchanged(_) => String::new(),
                        Taken::Changed(raw) => {
                            let (id, hash) =
                                self.normalizer.identify_text(text).map_err(|e| match e {
                                    NormalizeError::NotJson(message) => SourceError::Shape {
                                        request: shown(self.post, &page.url),
                                        message: format!("an item is not valid JSON: {message}"),
                                    },
                                    other => SourceError::from(other),
                                })?;
                            let body = self.bodies.put(text)?;
                            let copy = self.conditional.then(|| id.clone());
                            self.differ.push(Record {
                                id,
                                body,
                                hash,
                                raw: Some(raw),
                            });
                            copy.unwrap_or_default()
                        }
                    };
                    if self.conditional {
                        ids.push(id);
                    }
                }
                Some(ids)
            }
            PageItems::NotModified => {
                let known = self.known_pages.get(&page.url);
                for id in known.map(|k| k.ids.as_slice()).unwrap_or_default() {
                    if !self.differ.keep(id) {
                        return Err(SourceError::StalePage {
                            request: shown(self.post, &page.url),
                        }
                        .into());
                    }
                }
                None
            }
        };
        self.record(page.url, page.etag, page.last_modified, page.next_url, ids);
        Ok(())
    }

    /// Receives pages for as long as they need no snapshot: pages that answered 304, and whole
    /// pages of at most [`LOOKUP_ITEMS`] items in all whose every item the snapshot holds with
    /// these very bytes, looked up by id (the page a stated total ended is fetched whole, with
    /// or without validators). Each such page comes back with its items' ids, in order (`None`
    /// for a 304: its record's); then the first page that needs the snapshot, if the listing did
    /// not end first.
    async fn take_unchanged(
        &self,
        store: &Store,
        source: &str,
        resource: &str,
        pages: &mut tokio::sync::mpsc::Receiver<Page>,
    ) -> Result<Waited, TakeError> {
        let mut waited = Waited::default();
        let mut looked_up = 0;
        while let Some(page) = pages.recv().await {
            let ids = match &page.items {
                PageItems::NotModified => Some(None),
                // Times watched (an incremental resource's full sync) are seen by the intake.
                PageItems::Fresh(_) if self.newest.watches() => None,
                PageItems::Fresh(items) if looked_up + items.len() <= LOOKUP_ITEMS => {
                    looked_up += items.len();
                    self.as_stored(store, source, resource, items)
                        .await?
                        .map(Some)
                }
                PageItems::Fresh(_) => None,
            };
            match ids {
                Some(ids) => waited.kept.push((page, ids)),
                None => {
                    waited.next = Some(page);
                    break;
                }
            }
        }
        Ok(waited)
    }

    /// The ids of `items` if the snapshot holds each of them with these very bytes, and none
    /// was missing from the last listing; `None` otherwise.
    async fn as_stored(
        &self,
        store: &Store,
        source: &str,
        resource: &str,
        items: &Items,
    ) -> Result<Option<Vec<String>>, StoreError> {
        if items.is_empty() {
            // The empty page that ends a listing: nothing to look up.
            return Ok(Some(Vec::new()));
        }
        let mut raws = Vec::with_capacity(items.len());
        let mut ids = Vec::with_capacity(items.len());
        for text in items.iter() {
            let Some(id) = self.normalizer.peek_id(text) else {
                return Ok(None);
            };
            ids.push(id.into_owned());
            raws.push(self.normalizer.raw_hash(text));
        }
        let known = store.snapshot_of(source, resource, ids.clone()).await?;
        let same = ids.iter().zip(&raws).all(|(id, raw)| {
            known
                .get(id)
                .is_some_and(|k| k.raw.as_ref() == Some(raw) && k.missing == 0)
        });
        Ok(same.then_some(ids))
    }

    /// A listing whose every page was as it was (`pages`, each with its items' ids), taken
    /// without the snapshot: if the pages name, between them, as many distinct items as the
    /// snapshot holds (`expected`), every item is listed and unchanged and none is missing, so
    /// the diff is empty. Page records are written in the same transaction as the snapshot, from
    /// the items that listing saw, so their ids are all in it, as are those looked up; a count
    /// that differs (an item missing from the last listing, deletes held back) hands the pages
    /// back, to be replayed against the snapshot.
    fn take_kept(
        &mut self,
        pages: Vec<(Page, Option<Vec<String>>)>,
        expected: i64,
    ) -> Result<(), Vec<Page>> {
        let known = &self.known_pages;
        let mut distinct: foldhash::HashSet<&str> = foldhash::HashSet::with_capacity_and_hasher(
            usize::try_from(expected).unwrap_or(0),
            Default::default(),
        );
        for (page, ids) in &pages {
            let ids = match ids {
                Some(ids) => ids.as_slice(),
                None => known.get(&page.url).map_or(&[][..], |k| k.ids.as_slice()),
            };
            distinct.extend(ids.iter().map(String::as_str));
        }
        let listed = distinct.len();
        if pages.is_empty() || i64::try_from(listed) != Ok(expected) {
            return Err(pages.into_iter().map(|(page, _)| page).collect());
        }
        self.differ = Differ::all_kept(listed);
        for (page, ids) in pages {
            self.record(page.url, page.etag, page.last_modified, page.next_url, ids);
        }
        Ok(())
    }

    /// Keeps a page's record for the next poll's conditional request, if it has a validator:
    /// with its items' `ids`, or (`None`, a 304) the last poll's record of its URL.
    fn record(
        &mut self,
        url: String,
        etag: Option<String>,
        last_modified: Option<String>,
        next_url: Option<String>,
        ids: Option<Vec<String>>,
    ) {
        if !self.conditional || (etag.is_none() && last_modified.is_none()) {
            return;
        }
        let record = PageRecord {
            url,
            etag,
            last_modified,
            next_url,
            ids: Vec::new(),
        };
        if let Some(recorded) = recorded(record, ids, &self.known_pages) {
            self.records.push(recorded);
        }
    }
}

/// How a page's `record` is kept, given its items' `ids` (`None` for a 304: the last poll's
/// record of its URL, which `known` holds; a 304 is only asked for with its validators).
fn recorded(
    mut record: PageRecord,
    ids: Option<Vec<String>>,
    known: &HashMap<String, PageRecord>,
) -> Option<Recorded> {
    let was = known.get(&record.url);
    match ids {
        None => was.map(|_| Recorded::AsKnown(record.url)),
        Some(ids) => {
            record.ids = ids;
            Some(match was == Some(&record) {
                true => Recorded::AsKnown(record.url),
                false => Recorded::New(record),
            })
        }
    }
}

/// A page's record as the intake keeps it for the next poll.
enum Recorded {
    /// The last poll's record of this URL, as it is: the page answered 304, or came with the
    /// same validators, next page and ids.
    AsKnown(String),
    /// A record that is new or differs from the last poll's.
    New(PageRecord),
}

/// The page records to write: `None` where they are the last poll's (`known`), every one. The
/// pager never takes a URL twice, so as many records as known, each as known, are the same set.
fn page_records(
    records: Vec<Recorded>,
    known: &HashMap<String, PageRecord>,
) -> Option<Vec<PageRecord>> {
    let as_known = |r: &Recorded| matches!(r, Recorded::AsKnown(_));
    if records.len() == known.len() && records.iter().all(as_known) {
        return None;
    }
    let records = records.into_iter().filter_map(|r| match r {
        Recorded::AsKnown(url) => known.get(&url).cloned(),
        Recorded::New(record) => Some(record),
    });
    Some(records.collect())
}

/// Fresh items a validated listing may look up by id while its snapshot waits
/// ([`Intake::take_unchanged`]): the page a stated total ended, which is fetched whole, and a
/// little more; past it, reading the whole snapshot is the cheaper way.
const LOOKUP_ITEMS: usize = 1_000;

/// The pages of a validated listing that needed no snapshot, and the first that does.
#[derive(Default)]
struct Waited {
    /// Each page as it was, with its items' ids (`None` for a 304: its record's).
    kept: Vec<(Page, Option<Vec<String>>)>,
    /// The first page that needs the snapshot; `None` if the listing ended first.
    next: Option<Page>,
}

/// What became of one item of a page.
enum Taken<'t> {
    /// Its bytes are what they were: listed and unchanged. Its id, borrowed from its text where
    /// the text spells it as it is.
    Unchanged(Cow<'t, str>),
    /// New or changed bytes, and their hash: for [`Normalizer::identify_text`] (which reads them
    /// without building a `Value`) and [`Differ::push`].
    Changed(RawHash),
}

/// The fast path first: the item's id and bytes' hash, and the snapshot's word that those bytes
/// are what it holds; otherwise changed (its time seen, if watched).
fn take<'t>(
    text: &'t str,
    normalizer: &Normalizer,
    differ: &mut Differ<BodyRef>,
    newest: &mut Newest,
) -> Taken<'t> {
    let raw = normalizer.raw_hash(text);
    let id = if newest.watches() {
        normalizer.peek(text).map(|(id, fields)| {
            newest.see(&fields);
            Cow::Owned(id)
        })
    } else if differ.snapshot_len() > 0 {
        // Only the id is wanted: no fields built, and most ids borrowed from the text.
        normalizer.peek_id(text)
    } else {
        // Nothing to be unchanged against on a first listing: no need to peek for the id.
        None
    };
    match id {
        Some(id) if differ.unchanged(&id, &raw) => Taken::Unchanged(id),
        _ => Taken::Changed(raw),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(url: &str, etag: &str, ids: &[&str]) -> PageRecord {
        PageRecord {
            url: url.into(),
            etag: Some(etag.into()),
            ids: ids.iter().map(|id| id.to_string()).collect(),
            ..PageRecord::default()
        }
    }

    /// The records a listing of `pages` keeps: `(record, None)` for a page that answered 304.
    fn kept(
        pages: &[(PageRecord, Option<&[&str]>)],
        known: &HashMap<String, PageRecord>,
    ) -> Option<Vec<PageRecord>> {
        let records = pages.iter().filter_map(|(page, ids)| {
            let ids = ids.map(|ids| ids.iter().map(|id| id.to_string()).collect());
            recorded(page.clone(), ids, known)
        });
        page_records(records.collect(), known)
    }

    #[test]
    fn page_records_are_written_unless_every_page_is_as_recorded() {
        let (p1, p2) = (record("/p1", "a", &["1", "2"]), record("/p2", "b", &["3"]));
        let known: HashMap<String, PageRecord> = [p1.clone(), p2.clone()]
            .into_iter()
            .map(|r| (r.url.clone(), r))
            .collect();
        let head = |r: &PageRecord| PageRecord {
            ids: Vec::new(),
            ..r.clone()
        };
        fn ids(r: &PageRecord) -> Vec<&str> {
            r.ids.iter().map(String::as_str).collect()
        }
        let (ids1, ids2) = (ids(&p1), ids(&p2));
        // Every page answered 304, or came back as recorded, in any order: nothing to write.
        assert_eq!(kept(&[(head(&p2), None), (head(&p1), None)], &known), None);
        assert_eq!(
            kept(&[(head(&p1), Some(&ids1)), (head(&p2), None)], &known),
            None
        );
        // A page with a new validator or new ids: every record is written, the 304's as it was.
        let written = kept(
            &[(head(&p2), None), (record("/p1", "a2", &ids1), Some(&ids1))],
            &known,
        );
        assert_eq!(written, Some(vec![p2.clone(), record("/p1", "a2", &ids1)]));
        let written = kept(
            &[(head(&p1), Some(&["1"])), (head(&p2), Some(&ids2))],
            &known,
        );
        assert_eq!(written, Some(vec![record("/p1", "a", &["1"]), p2.clone()]));
        // One page fewer, or one more: written.
        assert_eq!(kept(&[(head(&p1), None)], &known), Some(vec![p1.clone()]));
        let p3 = record("/p3", "c", &["4"]);
        let more = [
            (head(&p1), None),
            (head(&p2), None),
            (head(&p3), Some(&["4"][..])),
        ];
        assert_eq!(kept(&more, &known), Some(vec![p1, p2, p3]));
        // No page recorded: written (empty) where there were records, left where there were none.
        assert_eq!(kept(&[], &known), Some(vec![]));
        assert_eq!(kept(&[], &HashMap::new()), None);
        // A 304 without a record keeps nothing.
        assert_eq!(
            kept(&[(record("/p9", "z", &[]), None)], &HashMap::new()),
            None
        );
    }
}
