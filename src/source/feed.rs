//! The feed engine: RSS 0.9x, 1.0 and 2.0, Atom and JSON Feed documents, one item per entry.
//!
//! In: a source with `adapter = "feed"` (auth, headers, timeouts, retries, rate limits and the
//! byte cap as for REST) and, per resource, the feed's `path`. Out: one page holding every entry
//! of the document, each as JSON: `id`, `title`, `links`, `summary`, `content`, `authors`,
//! `published`, `updated`, `categories`.
//!
//! Invariants: an entry's id is its own (`<id>`, `<guid>`, JSON Feed `id`), else its first link,
//! else a hash of its title, never a date, so an old entry is never taken for a new one (n8n
//! #8856); the same entry gives the same JSON on every poll, so only a changed title, content or
//! other field emits `updated`. A feed is a *window* onto the newest entries: its resources
//! default to `window = true`, so an entry that falls out of it is not `deleted`. An XML feed
//! passes the XML safety checks of [`decode::xml`] (no DTD, node and depth limits) before it is
//! read as a feed.

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::rest::RestSource;
use super::{FetchPlan, Fetched, Items, Page, PageItems, PageSender, Source, SourceError, shown};
use crate::config::{ResourceConfig, RestConfig};
use crate::decode;

/// A source whose resources are feeds.
pub struct FeedSource {
    http: RestSource,
}

impl FeedSource {
    /// A source fetching feeds from `config.base_url`.
    pub fn new(name: &str, config: &RestConfig) -> Result<Self, SourceError> {
        Ok(Self {
            http: RestSource::new(name, config)?,
        })
    }
}

#[async_trait]
impl Source for FeedSource {
    async fn fetch(
        &self,
        resource: &ResourceConfig,
        plan: &FetchPlan<'_>,
        pages: &PageSender,
    ) -> Result<Fetched, SourceError> {
        let mut url = self.http.url_of(resource)?;
        if !plan.query.is_empty() {
            url.query_pairs_mut().extend_pairs(&plan.query);
        }
        let mut fetched = Fetched {
            pages: 1,
            requests: 0,
            complete: true,
        };
        let (text, _) = self.http.get_text(&url, &mut fetched.requests).await?;
        let entries = entries(&text).map_err(|message| SourceError::Shape {
            request: shown(false, self.http.redact(&url)),
            message,
        })?;
        pages
            .send(Page {
                url: url.to_string(),
                etag: None,
                last_modified: None,
                next_url: None,
                items: PageItems::Fresh(Items::from_values(&entries)),
            })
            .await
            .map_err(|_| SourceError::Stopped)?;
        Ok(fetched)
    }
}

/// Every entry of a feed document, as the JSON items of the module header.
pub fn entries(text: &str) -> Result<Vec<Value>, String> {
    if text.trim_start().starts_with('<') {
        // feed-rs reads XML with quick-xml, which expands no DTD entities; the same checks as an
        // XML listing keep a hostile document's shape from costing more than its bytes.
        decode::xml(text)?;
    }
    let parser = feed_rs::parser::Builder::new()
        .id_generator(|links, title, _| match links.first() {
            Some(link) => link.href.clone(),
            None => title_hash(title.as_ref().map(|t| t.content.as_str())),
        })
        .build();
    let feed = parser.parse(text.as_bytes()).map_err(|e| {
        format!("the response is not an RSS, Atom or JSON Feed document: {e} (hint: check the resource's path)")
    })?;
    Ok(feed.entries.into_iter().map(entry).collect())
}

/// An entry without id or link is known by a hash of its title.
fn title_hash(title: Option<&str>) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(title.unwrap_or_default()))
    )
}

fn entry(entry: feed_rs::model::Entry) -> Value {
    let time = |t: Option<DateTime<Utc>>| t.map(|t| t.to_rfc3339_opts(SecondsFormat::Secs, true));
    json!({
        "id": entry.id,
        "title": entry.title.map(|t| t.content),
        "links": entry.links.into_iter().map(|l| json!({
            "href": l.href,
            "rel": l.rel,
            "type": l.media_type,
            "title": l.title,
        })).collect::<Vec<_>>(),
        "summary": entry.summary.map(|t| t.content),
        "content": entry.content.and_then(|c| c.body),
        "authors": entry.authors.into_iter().map(|p| json!({
            "name": p.name,
            "email": p.email,
            "uri": p.uri,
        })).collect::<Vec<_>>(),
        "published": time(entry.published),
        "updated": time(entry.updated),
        "categories": entry.categories.into_iter().map(|c| c.term).collect::<Vec<_>>(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rss_atom_and_json_feed_entries() {
        let rss = r#"<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>
            <item><guid>g-1</guid><title>One</title><link>https://e.example/1</link>
              <description>first</description><pubDate>Tue, 10 Jun 2025 04:00:00 GMT</pubDate>
              <category>news</category></item>
            <item><title>No guid</title><link>https://e.example/2</link></item>
            <item><title>Only a title</title></item>
            </channel></rss>"#;
        let got = entries(rss).unwrap();
        assert_eq!(got[0]["id"], "g-1");
        assert_eq!(got[0]["title"], "One");
        assert_eq!(got[0]["summary"], "first");
        assert_eq!(got[0]["published"], "2025-06-10T04:00:00Z");
        assert_eq!(got[0]["categories"], json!(["news"]));
        assert_eq!(got[0]["links"][0]["href"], "https://e.example/1");
        assert_eq!(got[1]["id"], "https://e.example/2");
        assert_eq!(got[2]["id"], title_hash(Some("Only a title")));
        assert_eq!(
            entries(rss).unwrap(),
            got,
            "the same document, the same items"
        );

        let atom = r#"<feed xmlns="http://www.w3.org/2005/Atom"><title>t</title><id>urn:f</id>
            <updated>2025-06-10T04:00:00Z</updated>
            <entry><id>urn:e:1</id><title>A</title><updated>2025-06-10T04:00:00Z</updated>
              <author><name>Ada</name></author><content type="text">body</content>
              <link href="https://e.example/a"/></entry></feed>"#;
        let got = entries(atom).unwrap();
        assert_eq!(got[0]["id"], "urn:e:1");
        assert_eq!(got[0]["content"], "body");
        assert_eq!(got[0]["authors"][0]["name"], "Ada");
        assert_eq!(got[0]["updated"], "2025-06-10T04:00:00Z");

        let json_feed = r#"{"version": "https://jsonfeed.org/version/1.1", "title": "t",
            "items": [{"id": "j-1", "title": "J", "content_text": "hi", "url": "https://e.example/j"}]}"#;
        let got = entries(json_feed).unwrap();
        assert_eq!(got[0]["id"], "j-1");
        assert_eq!(got[0]["title"], "J");
    }

    #[test]
    fn hostile_or_foreign_documents_are_refused() {
        let laughs = r#"<!DOCTYPE rss [<!ENTITY a "aaaa">]><rss version="2.0"><channel><item><title>&a;</title></item></channel></rss>"#;
        assert!(entries(laughs).unwrap_err().contains("DOCTYPE"));
        let err = entries("<html><body>hi</body></html>").unwrap_err();
        assert!(err.contains("not an RSS, Atom or JSON Feed"), "{err}");
    }
}
