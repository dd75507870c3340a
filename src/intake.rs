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
    /// Page records for conditional requests.
    pub pages: Vec<PageRecord>,
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
    records: Vec<PageRecord>,
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
            differ: self.differ,
            bodies: self.bodies,
            pages: self.records,
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
        let mut ids = Vec::new();
        match page.items {
            PageItems::Fresh(items) => {
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
                ids = known.map(|k| k.ids.clone()).unwrap_or_default();
            }
        }
        self.record(page.url, page.etag, page.last_modified, page.next_url, ids);
        Ok(())
    }

    /// Receives pages for as long as they need no snapshot: pages that answered 304, and whole
    /// pages of at most [`LOOKUP_ITEMS`] items in all whose every item the snapshot holds with
    /// these very bytes, looked up by id (the page a stated total ended is fetched whole, with
    /// or without validators). Each such page comes back with its items' ids, in order; then
    /// the first page that needs the snapshot, if the listing did not end first.
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
                PageItems::NotModified => {
                    Some((self.known_pages.get(&page.url)).map_or_else(Vec::new, |k| k.ids.clone()))
                }
                // Times watched (an incremental resource's full sync) are seen by the intake.
                PageItems::Fresh(_) if self.newest.watches() => None,
                PageItems::Fresh(items) if looked_up + items.len() <= LOOKUP_ITEMS => {
                    looked_up += items.len();
                    self.as_stored(store, source, resource, items).await?
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
        pages: Vec<(Page, Vec<String>)>,
        expected: i64,
    ) -> Result<(), Vec<Page>> {
        let mut distinct: foldhash::HashSet<&str> = foldhash::HashSet::default();
        for (_, ids) in &pages {
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

    /// Keeps a page's record for the next poll's conditional request, if it has a validator.
    fn record(
        &mut self,
        url: String,
        etag: Option<String>,
        last_modified: Option<String>,
        next_url: Option<String>,
        ids: Vec<String>,
    ) {
        if self.conditional && (etag.is_some() || last_modified.is_some()) {
            self.records.push(PageRecord {
                url,
                etag,
                last_modified,
                next_url,
                ids,
            });
        }
    }
}

/// Fresh items a validated listing may look up by id while its snapshot waits
/// ([`Intake::take_unchanged`]): the page a stated total ended, which is fetched whole, and a
/// little more; past it, reading the whole snapshot is the cheaper way.
const LOOKUP_ITEMS: usize = 1_000;

/// The pages of a validated listing that needed no snapshot, and the first that does.
#[derive(Default)]
struct Waited {
    /// Each page as it was, with its items' ids.
    kept: Vec<(Page, Vec<String>)>,
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
