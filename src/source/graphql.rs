//! The GraphQL engine, and the worked example of writing a [`Source`] in Rust.
//!
//! In: a source with `adapter = "graphql"` (its `base_url` is the GraphQL endpoint; auth, headers,
//! timeouts, retries and rate limits as for REST) and, per resource, a `document` (the query),
//! `items` (JSONPath of the list in `data`), and optionally cursor pagination whose
//! `cursor_param` names the query variable: the Relay `pageInfo { hasNextPage endCursor }` shape.
//! Out: the listing, one page per request. Where `items` is a plain member path
//! (`$.data.orders.nodes`) the nodes are cut out of the response's text unparsed, and only
//! `errors`, the cursor and `hasNextPage` are parsed, all in one skim of the text; other paths
//! parse the response whole.
//!
//! Invariant: a response with a non-empty `errors` array is a failed fetch, even when it carries
//! partial `data`: a partial listing must never reach the diff.
//!
//! Writing your own source follows the same steps: hold what you need to make requests, implement
//! [`Source::fetch`] to walk the listing and send each page to the poll, and return `Err` for
//! anything short of a complete listing. Reusing [`RestSource`] gives auth, pacing and retries.

use async_trait::async_trait;
use serde_json::{Map, Value, json};

use super::envelope::Envelope;
use super::items::{extract_items, member_chain};
use super::rest::{RestSource, parse_json};
use super::{FetchPlan, Fetched, Items, Page, PageItems, PageSender, Source, SourceError, shown};
use crate::config::{Pagination, ResourceConfig, RestConfig};

/// A GraphQL API polled with one query per resource.
pub struct GraphqlSource {
    http: RestSource,
    endpoint: url::Url,
}

impl GraphqlSource {
    /// A source POSTing to `config.base_url`.
    pub fn new(name: &str, config: &RestConfig) -> Result<Self, SourceError> {
        Ok(Self {
            http: RestSource::new(name, config)?,
            endpoint: config.base_url.clone(),
        })
    }
}

#[async_trait]
impl Source for GraphqlSource {
    async fn fetch(
        &self,
        resource: &ResourceConfig,
        plan: &FetchPlan<'_>,
        pages: &PageSender,
    ) -> Result<Fetched, SourceError> {
        let url = if resource.path.is_empty() {
            self.endpoint.clone()
        } else {
            self.http.url_of(resource)?
        };
        let shape = |message: String| SourceError::Shape {
            request: shown(true, self.http.redact(&url)),
            message,
        };
        let document = resource.document.as_deref().unwrap_or_default();
        let mut fetched = Fetched {
            pages: 0,
            requests: 0,
            complete: true,
        };
        // Where `items` is a plain member path (`$.data.orders.nodes`), the items are cut out of
        // the text unparsed and only what is read here besides them is parsed: `errors`, and the
        // cursor and `hasNextPage` (usually `pageInfo`), found in the same skim as the nodes.
        let chain = resource.items_text.as_deref().and_then(member_chain);
        let errors_path = serde_json_path::JsonPath::parse("$.errors").ok();
        let envelope = match &resource.pagination {
            Pagination::Cursor {
                next_cursor,
                has_more,
                ..
            } => Envelope::new(
                [errors_path.as_ref(), Some(next_cursor), has_more.as_ref()]
                    .into_iter()
                    .flatten(),
            ),
            _ => Envelope::new(errors_path.as_ref()),
        };
        let mut cursor: Option<String> = None;
        loop {
            // Static `query` entries (with their TOML types) and incremental `since` are the
            // query's variables.
            let mut variables: Map<String, Value> = resource.variables.clone();
            variables.extend(plan.query.iter().map(|(k, v)| (k.clone(), json!(v))));
            if let (Pagination::Cursor { cursor_param, .. }, Some(c)) =
                (&resource.pagination, &cursor)
            {
                variables.insert(cursor_param.clone(), json!(c));
            }
            let request = json!({ "query": document, "variables": variables });
            let (text, content_type) = self
                .http
                .post_json(&url, &request, &mut fetched.requests)
                .await?;
            fetched.pages += 1;
            let cut = chain
                .as_deref()
                .and_then(|chain| envelope.cut(&text, chain));
            let (body, spans) = match cut {
                Some((spans, envelope)) => (envelope, Some(spans)),
                None => (
                    parse_json(&text, content_type.as_deref(), None).map_err(shape)?,
                    None,
                ),
            };
            if let Some(errors) = body.get("errors").and_then(Value::as_array)
                && !errors.is_empty()
            {
                let messages: Vec<&str> = errors
                    .iter()
                    .filter_map(|e| e.get("message").and_then(Value::as_str))
                    .collect();
                return Err(shape(format!(
                    "the GraphQL response has errors: {}",
                    messages.join("; ")
                )));
            }
            let next = match &resource.pagination {
                Pagination::Cursor {
                    next_cursor,
                    has_more,
                    ..
                } => {
                    let more = has_more
                        .as_ref()
                        .is_none_or(|path| path.query(&body).first() == Some(&Value::Bool(true)));
                    match next_cursor.query(&body).first() {
                        Some(Value::String(c)) if more && !c.is_empty() => Some(c.clone()),
                        _ => None,
                    }
                }
                _ => None,
            };
            if next.is_some() && next == cursor {
                return Err(shape(
                    "the API returned the same cursor twice; the pager would loop".into(),
                ));
            }
            let items = match spans {
                Some(spans) => Items::from_spans(text, spans),
                None => Items::from_values(
                    &extract_items(
                        body,
                        resource.items.as_ref(),
                        resource.items_text.as_deref(),
                    )
                    .map_err(shape)?,
                ),
            };
            let empty = items.is_empty();
            pages
                .send(Page {
                    url: url.to_string(),
                    etag: None,
                    last_modified: None,
                    next_url: None,
                    items: PageItems::Fresh(items),
                })
                .await
                .map_err(|_| SourceError::Stopped)?;
            match next {
                Some(next) if !empty => cursor = Some(next),
                _ => return Ok(fetched),
            }
        }
    }
}
