//! Sources: fetch the complete current listing of a resource, page by page.
//!
//! In: a resource's settings. Out: every item, handed to a sink one page at a time, then
//! [`Fetched`]; or a [`SourceError`].
//!
//! Invariant: a source returns `Ok` only for a *complete* listing. Anything less (a failed page,
//! a timeout, a body cut short, a runaway pager) is an `Err`, because the caller treats an item
//! missing from a complete listing as deleted. Ids, hashing, diffing and events belong to the core.
//!
//! Implementations: [`rest::RestSource`] (the generic engine behind every adapter definition) and
//! [`exec::ExecSource`] (an external program printing JSON). A Rust `Source` is the extension point
//! for what neither fits (SOAP, GraphQL, odd auth).

pub mod exec;
pub mod paginate;
pub mod rest;

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::config::{ResourceConfig, SourceConfig, SourceKind};
use crate::normalize::NormalizeError;

/// Receives one page of items; an `Err` stops the fetch.
pub type PageSink<'a> = dyn FnMut(Vec<Value>) -> Result<(), NormalizeError> + Send + 'a;

/// How a fetch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fetched {
    /// Pages (or program runs) it took.
    pub pages: u32,
    /// HTTP requests made, retries included.
    pub requests: u32,
}

/// Fetches listings. `Send + Sync` so a source can be shared by its resources' schedules.
#[async_trait]
pub trait Source: Send + Sync {
    /// Hands every item of `resource`'s current listing to `sink`, page by page, and returns once
    /// the listing is complete. Cancellation is by dropping the future.
    async fn fetch(
        &self,
        resource: &ResourceConfig,
        sink: &mut PageSink<'_>,
    ) -> Result<Fetched, SourceError>;
}

/// Why a fetch failed. Messages name the URL (secrets redacted) and what to check.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The API answered with an error status.
    #[error("GET {url} answered {status}{}: {body}", hint_for(*status))]
    Status {
        /// Redacted URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// The start of the response body.
        body: String,
    },
    /// The request did not complete (connect error, reset, body cut short).
    #[error("GET {url} failed: {message}")]
    Network {
        /// Redacted URL.
        url: String,
        /// What went wrong.
        message: String,
    },
    /// The request timed out.
    #[error("GET {url} timed out after {seconds:.1}s (hint: raise the source's `timeout`)")]
    Timeout {
        /// Redacted URL.
        url: String,
        /// The timeout.
        seconds: f64,
    },
    /// The API asked to wait longer than allowed.
    #[error(
        "GET {url} answered 429 with Retry-After {wait_secs}s, longer than max_retry_after ({max_secs}s)"
    )]
    RetryAfterTooLong {
        /// Redacted URL.
        url: String,
        /// What it asked.
        wait_secs: u64,
        /// The cap.
        max_secs: u64,
    },
    /// The response is not what the resource's settings describe.
    #[error("GET {url}: {message}")]
    Shape {
        /// Redacted URL.
        url: String,
        /// What is wrong.
        message: String,
    },
    /// An item could not be normalized.
    #[error("{0}")]
    Item(#[from] NormalizeError),
    /// The external program failed.
    #[error("{0}")]
    Exec(String),
    /// A client could not be built (bad header value, TLS setup).
    #[error("{0}")]
    Setup(String),
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
    })
}
