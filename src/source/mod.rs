//! Sources: fetch the complete current listing of a resource, page by page.
//!
//! In: a resource's settings. Out: every item, sent to the poll one page at a time, then
//! [`Fetched`]; or a [`SourceError`].
//!
//! Invariant: a source returns `Ok` only for a *complete* listing. Anything less (a failed page,
//! a timeout, a body cut short, a runaway pager) is an `Err`, because the caller treats an item
//! missing from a complete listing as deleted. Ids, hashing, diffing and events belong to the core.
//!
//! Implementations: [`rest::RestSource`] (the generic engine behind every adapter definition; its
//! pages JSON or XML, see [`decode`]), [`exec::ExecSource`] (an external program printing JSON),
//! [`graphql::GraphqlSource`] (the worked example of a Rust source) and [`feed::FeedSource`]
//! (RSS, Atom, JSON Feed). A Rust `Source` is the extension point for what none of them fits.

pub mod auth;
pub mod envelope;
pub mod exec;
pub mod feed;
pub mod graphql;
pub mod items;
pub mod paginate;
mod request;
pub mod rest;

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::{ResourceConfig, SourceConfig, SourceKind};
use crate::normalize::NormalizeError;
use crate::store::PageRecord;

/// What one fetch is asked for beyond the resource's own settings.
#[derive(Debug, Default)]
pub struct FetchPlan<'a> {
    /// Extra query parameters (incremental polling's `since`).
    pub query: Vec<(String, String)>,
    /// Pages fetched before, by URL: send their validators, and on a 304 replay them.
    pub pages: Option<&'a HashMap<String, PageRecord>>,
}

/// One page of a listing as the source hands it on.
#[derive(Debug)]
pub struct Page {
    /// Its URL (credentials never included).
    pub url: String,
    /// Its `ETag`, if the API sent one.
    pub etag: Option<String>,
    /// Its `Last-Modified`, if the API sent one.
    pub last_modified: Option<String>,
    /// The next page's URL, if there is one.
    pub next_url: Option<String>,
    /// The items, or word that they are what they were last time.
    pub items: PageItems,
}

/// A page's items.
#[derive(Debug)]
pub enum PageItems {
    /// Items as the API returned them.
    Fresh(Items),
    /// The API answered 304 Not Modified: the page holds what [`FetchPlan::pages`] recorded.
    NotModified,
}

/// The items of one page as JSON text: each the bytes the API sent where the page could be split
/// without parsing the items, or their compact serialization where the page had to be parsed.
#[derive(Debug, Default)]
pub struct Items {
    text: String,
    spans: Vec<std::ops::Range<usize>>,
}

impl Items {
    /// Items that are slices of `text` (each a complete JSON value).
    pub fn from_spans(text: String, spans: Vec<std::ops::Range<usize>>) -> Self {
        debug_assert!(spans.iter().all(|s| text.get(s.clone()).is_some()));
        Self { text, spans }
    }

    /// Items already parsed.
    pub fn from_values(values: &[Value]) -> Self {
        let (mut text, mut spans) = (Vec::new(), Vec::with_capacity(values.len()));
        for value in values {
            let start = text.len();
            // Serializing a `Value` into memory cannot fail, and writes UTF-8.
            let _ = serde_json::to_writer(&mut text, value);
            spans.push(start..text.len());
        }
        Self {
            text: String::from_utf8(text).unwrap_or_default(),
            spans,
        }
    }

    /// The number of items.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// Whether the page holds no items.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Each item's JSON text, in page order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.spans.iter().filter_map(|s| self.text.get(s.clone()))
    }
}

/// Where a source sends each page, in order. A full queue makes the source wait (the poll diffs
/// pages while the next is fetched, never more than a few ahead); a closed one means the poll
/// stopped taking pages, and the fetch ends with [`SourceError::Stopped`].
pub type PageSender = tokio::sync::mpsc::Sender<Page>;

/// How a fetch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Pages it took (for an exec source, the pieces its output was cut into as it arrived).
    pub pages: u32,
    /// HTTP requests made for the pages taken, retries included (a page asked for ahead and not
    /// taken is not counted).
    pub requests: u32,
    /// False when the listing, though walked to its end, may lack items: an empty page that
    /// still named a next page (an API glitch). Such a listing finds no deletes.
    pub complete: bool,
}

/// Whether an item missing from a listing still exists, asked of its own URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// `404` or `410`: it is gone.
    Gone,
    /// A `2xx`: it exists; pages shifted under the listing.
    Present,
    /// Anything else (an error status, a network failure): cannot tell this time.
    Unknown,
}

/// Fetches listings. `Send + Sync` so a source can be shared by its resources' schedules.
#[async_trait]
pub trait Source: Send + Sync {
    /// Sends every page of `resource`'s current listing to `pages` and returns once the listing
    /// is complete. Cancellation is by dropping the future.
    async fn fetch(
        &self,
        resource: &ResourceConfig,
        plan: &FetchPlan<'_>,
        pages: &PageSender,
    ) -> Result<Fetched, SourceError>;

    /// Asks whether item `id` of `resource` still exists, at its `item_path`. A source that
    /// cannot ask answers [`Presence::Unknown`], so nothing is deleted on its word.
    async fn presence(&self, resource: &ResourceConfig, id: &str) -> Presence {
        let _ = (resource, id);
        Presence::Unknown
    }

    /// Requests of one listing this source lets be in flight at once (`page_concurrency`): its
    /// pages, and the items asked about by [`Source::presence`].
    fn concurrency(&self) -> usize {
        1
    }
}

/// Why a fetch failed. Messages name the URL (secrets redacted) and what to check.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The API answered with an error status.
    #[error("{request} answered {status}{}: {body}", hint_for(*status))]
    Status {
        /// The request: its method and redacted URL.
        request: String,
        /// HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The request did not complete (connect error, reset, body cut short).
    #[error("{request} failed: {message}")]
    Network {
        /// The request: its method and redacted URL.
        request: String,
        /// What went wrong.
        message: String,
    },
    /// The request timed out.
    #[error("{request} timed out after {seconds:.1}s (hint: raise the source's `timeout`)")]
    Timeout {
        /// The request: its method and redacted URL.
        request: String,
        /// The timeout.
        seconds: f64,
    },
    /// The API asked to wait longer than allowed.
    #[error(
        "{request} answered 429 with Retry-After {wait_secs}s, longer than max_retry_after ({max_secs}s)"
    )]
    RetryAfterTooLong {
        /// The request: its method and redacted URL.
        request: String,
        /// What it asked.
        wait_secs: u64,
        /// The cap.
        max_secs: u64,
    },
    /// The response is not what the resource's settings describe.
    #[error("{request}: {message}")]
    Shape {
        /// The request: its method and redacted URL.
        request: String,
        /// What is wrong.
        message: String,
    },
    /// A body is larger than the source's cap.
    #[error(
        "{request}: the response is larger than max_page_bytes ({limit} bytes) and was not read further (hint: raise the source's `max_page_bytes` if pages this large are expected)"
    )]
    TooLarge {
        /// The request: its method and redacted URL.
        request: String,
        /// The cap.
        limit: u64,
    },
    /// A next page or redirect leads to an origin the source does not list.
    #[error(
        "refused to send a request to {url}: {origin} is not the source's own origin ({own}), and the source's credentials and requests stay on it (hint: if the API really serves pages there, list it: follow_origins = [\"{origin}\"]; credentials go there only with {{ origin = \"{origin}\", credentials = true }})"
    )]
    Origin {
        /// Redacted URL of the refused request.
        url: String,
        /// Its origin.
        origin: String,
        /// The source's own origin.
        own: String,
    },
    /// An item could not be normalized.
    #[error("{0}")]
    Item(#[from] NormalizeError),
    /// A page answered 304 but what it held last time is no longer in the snapshot.
    #[error(
        "{request} answered 304 Not Modified but its items are gone from the snapshot; the next poll fetches it in full"
    )]
    StalePage {
        /// The request: its method and redacted URL.
        request: String,
    },
    /// OAuth2 token request failed.
    #[error("OAuth2 token request to {token_url} failed: {message}")]
    Token {
        /// The token endpoint.
        token_url: String,
        /// What went wrong.
        message: String,
    },
    /// The external program failed.
    #[error("{0}")]
    Exec(String),
    /// A client could not be built (bad header value, TLS setup).
    #[error("{0}")]
    Setup(String),
    /// The poll stopped taking pages (it failed on one and reports that instead).
    #[error("the poll stopped taking pages")]
    Stopped,
}

/// A request as errors and logs show it: its method and its URL, already redacted.
pub(crate) fn shown(post: bool, url: impl std::fmt::Display) -> String {
    format!("{} {url}", if post { "POST" } else { "GET" })
}

fn hint_for(status: u16) -> &'static str {
    match status {
        401 | 403 => " (hint: check the source's auth credentials)",
        404 => " (hint: check base_url and the resource's path)",
        _ => "",
    }
}

/// Builds the source a config describes.
pub fn build(config: &SourceConfig) -> Result<Arc<dyn Source>, SourceError> {
    Ok(match &config.kind {
        SourceKind::Rest(rest) => Arc::new(rest::RestSource::new(&config.name, rest)?),
        SourceKind::Exec(exec) => Arc::new(exec::ExecSource::new(&config.name, exec.clone())),
        SourceKind::Graphql(rest) => Arc::new(graphql::GraphqlSource::new(&config.name, rest)?),
        SourceKind::Feed(rest) => Arc::new(feed::FeedSource::new(&config.name, rest)?),
    })
}
