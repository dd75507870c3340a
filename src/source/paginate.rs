//! Pagination: given the page just fetched, the URL of the next one, or the end of the listing.
//!
//! In: the resource's [`Pagination`] style, the first URL, each response's body, item count and
//! what its headers said ([`Answer`]: `Link`, `Content-Range`, the stated total). Out: the next
//! URL or `None`; an error if the pager loops.
//!
//! The body the pager reads may be the page parsed whole or, for a JSON page, its [`Envelope`]:
//! only the members on the style's paths (`$.next`, `$.data[-1].id`, `$.has_more`), read out of
//! the text so the items around them are never parsed; either answers the pager the same.
//!
//! Invariant: a listing ends at an empty page (page and offset styles) or when the response names
//! no next page (the others), never earlier: stopping at a short page would cut listings short on
//! APIs that cap the page size below what was asked, and a cut listing would look like deletions.
//! A page or offset listing whose answers state its length (`total_header`, `total`) ends once
//! the items fetched reach the latest stated total, which is where the empty page would be: each
//! page's items sit at or after the place counted, so none can follow. A total that is missing,
//! not a count, or larger than what was fetched leaves the empty page to end it.
//! Where an answer says which pages follow (a stated total, `Content-Range`, `Link: rel="last"`),
//! [`Pager::ahead`] names them, to be asked for early; a page asked for ahead is only a guess
//! until the pager names its URL after the page before.
//! A listing fetched with a body (`method = "POST"`) may carry its place in the body instead of the
//! query: [`request_for`] moves it there. Pure: no I/O.

use std::collections::HashSet;
use std::ops::Range;

use serde_json::Value;
use serde_json_path::JsonPath;
use url::Url;

use super::envelope::Envelope;
use crate::config::{Pagination, Request, Total};

/// Item extraction lives in its own room; these paths stay for callers.
pub use super::items::{extract_items, extract_xml_items};

/// Walks the pages of one listing.
#[derive(Debug)]
pub struct Pager<'a> {
    style: &'a Pagination,
    /// The members of a response this style reads.
    reads: Envelope,
    first: Url,
    page: u64,
    offset: u64,
    /// Items fetched so far (fresh pages only: a page replayed from a 304 is not counted, so a
    /// stated total can only be reached later, never earlier).
    fetched: u64,
    seen: HashSet<String>,
}

impl<'a> Pager<'a> {
    /// Starts at `base` (the resource URL with its static query).
    pub fn new(style: &'a Pagination, base: Url) -> Self {
        let page = match style {
            Pagination::Page { first, .. } => *first,
            _ => 0,
        };
        let reads = match style {
            Pagination::Cursor {
                next_cursor,
                has_more,
                ..
            } => Envelope::new([Some(next_cursor), has_more.as_ref()].into_iter().flatten()),
            Pagination::NextUrl { next_url } => Envelope::new([next_url]),
            _ => match style.total() {
                Some(Total::Body(total)) => Envelope::new([total]),
                _ => Envelope::new([]),
            },
        };
        Self {
            style,
            reads,
            first: base,
            page,
            offset: 0,
            fetched: 0,
            seen: HashSet::new(),
        }
    }

    /// What [`Pager::next`] reads of a JSON page, found in its text without parsing the items
    /// around it: a small tree shaped like the page (`Value::Null` for styles that read no body).
    /// `None` when this style's paths are not plain (see [`Envelope`]): then parse the page.
    pub fn envelope(&self, text: &str) -> Option<Value> {
        self.reads.read(text)
    }

    /// The spans of a JSON page's items at `items` (member names from the root) and
    /// [`Pager::envelope`], both from one skim of the text ([`Envelope::cut`]). `None` when this
    /// style's paths are not plain or the page holds no list there: then parse the page.
    pub fn cut(&self, text: &str, items: &[String]) -> Option<(Vec<Range<usize>>, Value)> {
        self.reads.cut(text, items)
    }

    /// The response header this style reads the listing's length from, if any.
    pub fn total_header(&self) -> Option<&'a reqwest::header::HeaderName> {
        match self.style.total() {
            Some(Total::Header(name)) => Some(name),
            _ => None,
        }
    }

    /// The first page's URL.
    pub fn first_url(&mut self) -> Url {
        let url = match self.style {
            Pagination::Page {
                page_param,
                size_param,
                size,
                ..
            } => {
                let mut url = self.first.clone();
                set_param(&mut url, page_param, &self.page.to_string());
                if let Some(size_param) = size_param {
                    set_param(&mut url, size_param, &size.to_string());
                }
                url
            }
            Pagination::Offset {
                offset_param,
                limit_param,
                size,
                ..
            } => {
                let mut url = self.first.clone();
                set_param(&mut url, offset_param, "0");
                set_param(&mut url, limit_param, &size.to_string());
                url
            }
            Pagination::Range { unit, size } => with_range(&self.first, unit, 0, *size),
            _ => self.first.clone(),
        };
        self.seen.insert(url.to_string());
        url
    }

    /// Records that the listing continues at `next` without `next` having been computed here (a
    /// page replayed from a 304 carries its recorded next URL). Keeps loop detection whole.
    pub fn revisit(&mut self, next: &Url) {
        self.seen.insert(next.to_string());
    }

    /// The URL after a page that came from `current` with `items` items, `body` and `link`
    /// (the `Link` header). `Ok(None)` ends the listing.
    pub fn next(
        &mut self,
        current: &Url,
        items: usize,
        body: &Value,
        link: Option<&str>,
    ) -> Result<Option<Url>, String> {
        let answer = Answer {
            link,
            ..Answer::default()
        };
        self.next_with(current, items, body, answer)
    }

    /// [`Pager::next`] with everything the answer said besides its body.
    pub fn next_with(
        &mut self,
        current: &Url,
        items: usize,
        body: &Value,
        answer: Answer<'_>,
    ) -> Result<Option<Url>, String> {
        let link = answer.link;
        // For page and offset styles an empty page is the only sign of the end. Styles whose
        // responses name the next page end when none is named: an empty page that still names
        // one (an API glitch, a filtered page) does not cut the listing short, and loop
        // detection and `max_pages` bound the walk.
        if items == 0
            && matches!(
                self.style,
                Pagination::None
                    | Pagination::Page { .. }
                    | Pagination::Offset { .. }
                    | Pagination::Range { .. }
            )
        {
            return Ok(None);
        }
        self.fetched += items as u64;
        if let Some(total) = self.style.total()
            && stated_total(total, body, answer.total).is_some_and(|total| self.fetched >= total)
        {
            return Ok(None);
        }
        let next = match self.style {
            Pagination::None => None,
            Pagination::LinkHeader => match link.and_then(next_link) {
                Some(target) => Some(
                    current
                        .join(&target)
                        .map_err(|e| format!("Link header names `{target}` as next page: {e}"))?,
                ),
                None => None,
            },
            Pagination::Page {
                page_param,
                size_param,
                size,
                ..
            } => {
                // From the URL itself, so a page replayed from a 304 keeps the count right.
                self.page = param(current, page_param).unwrap_or(self.page) + 1;
                let mut url = current.clone();
                set_param(&mut url, page_param, &self.page.to_string());
                if let Some(size_param) = size_param {
                    set_param(&mut url, size_param, &size.to_string());
                }
                Some(url)
            }
            Pagination::Offset {
                offset_param,
                limit_param,
                size,
                ..
            } => {
                self.offset = param(current, offset_param).unwrap_or(self.offset) + items as u64;
                let mut url = current.clone();
                set_param(&mut url, offset_param, &self.offset.to_string());
                set_param(&mut url, limit_param, &size.to_string());
                Some(url)
            }
            Pagination::Cursor {
                has_more: Some(has_more),
                ..
            } if !matches!(has_more.query(body).first(), Some(Value::Bool(true))) => None,
            Pagination::Cursor {
                cursor_param,
                next_cursor,
                ..
            } => match scalar_at(body, next_cursor) {
                Some(cursor) => {
                    let mut url = self.first.clone();
                    set_param(&mut url, cursor_param, &cursor);
                    Some(url)
                }
                None => None,
            },
            Pagination::NextUrl { next_url } => match scalar_at(body, next_url) {
                Some(target) => Some(
                    current
                        .join(&target)
                        .map_err(|e| format!("next page URL `{target}` is not a URL: {e}"))?,
                ),
                None => None,
            },
            Pagination::Range { unit, size } => {
                let content_range = match (answer.content_range, answer.partial) {
                    (Some(text), _) => Some(parse_content_range(text)?),
                    (None, true) => {
                        return Err(
                            "answered 206 Partial Content without a Content-Range header; the listing's end is unknown".into(),
                        );
                    }
                    // A 200 without Content-Range: the whole listing in one answer.
                    (None, false) => None,
                };
                match content_range {
                    Some((Some(last), total)) if total.is_none_or(|total| last + 1 < total) => {
                        Some(with_range(current, unit, last + 1, *size))
                    }
                    _ => None,
                }
            }
        };
        if let Some(url) = &next
            && !self.seen.insert(url.to_string())
        {
            return Err(format!(
                "the API points back to a page already fetched ({url}); the pager would loop"
            ));
        }
        Ok(next)
    }
}

impl Pager<'_> {
    /// The pages from `next` on that the answer before it names in advance, in order, at most
    /// `limit`: each one the pager would name after the one before it, were every page as full
    /// as the page just read from `current` with `items` items. Empty where the answer does not
    /// say where the listing ends, and for styles whose next page is in the page itself.
    ///
    /// - `page`, `offset`: the stated total (`total_header`, `total`), less the items fetched.
    /// - `range`: `Content-Range`'s total.
    /// - `link-header`: `rel="last"`, where it and `rel="next"` differ only in one numeric query
    ///   value, stepped as from `current` to `next` (json-server, GitHub, GitLab, WordPress).
    ///
    /// Only guesses, to ask for early: call it after [`Pager::next_with`] named `next`, and take
    /// a page asked for ahead only if the pager names its URL after the page before.
    pub fn ahead(
        &self,
        current: &Url,
        next: &Url,
        items: usize,
        body: &Value,
        answer: Answer<'_>,
        limit: usize,
    ) -> Vec<Url> {
        let per_page = items as u64;
        if per_page == 0 || limit == 0 {
            return Vec::new();
        }
        let left = || {
            let total = stated_total(self.style.total()?, body, answer.total)?;
            Some(total.saturating_sub(self.fetched).div_ceil(per_page))
        };
        let take = |pages: u64| usize::try_from(pages).unwrap_or(usize::MAX).min(limit);
        match self.style {
            Pagination::Page { page_param, .. } => {
                let (Some(pages), Some(at)) = (left(), param(next, page_param)) else {
                    return Vec::new();
                };
                (0..take(pages) as u64)
                    .map(|k| with_param(next, page_param, at + k))
                    .collect()
            }
            Pagination::Offset { offset_param, .. } => {
                let (Some(pages), Some(at)) = (left(), param(next, offset_param)) else {
                    return Vec::new();
                };
                (0..take(pages) as u64)
                    .map(|k| with_param(next, offset_param, at + k * per_page))
                    .collect()
            }
            Pagination::Range { unit, size } => {
                let Some((Some(last), Some(total))) = answer
                    .content_range
                    .and_then(|t| parse_content_range(t).ok())
                else {
                    return Vec::new();
                };
                let step = u64::from((*size).max(1));
                (0..)
                    .map(|k| last + 1 + k * step)
                    .take_while(|first| *first < total)
                    .take(limit)
                    .map(|first| with_range(current, unit, first, *size))
                    .collect()
            }
            Pagination::LinkHeader => answer
                .link
                .and_then(|link| link_to(link, "last"))
                .and_then(|last| current.join(&last).ok())
                .map(|last| numbered_run(current, next, &last, limit))
                .unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// `next`, then the URLs that step on to `last` in the one query value where `next` and `last`
/// differ (at most `limit` in all), stepped by that value's change from `current` to `next`; or
/// from an implied 1 where `current` leaves it out and `next` says 2 (a first page without
/// `page=`). Empty where `next` and `last` differ otherwise, or the values are not counts.
fn numbered_run(current: &Url, next: &Url, last: &Url, limit: usize) -> Vec<Url> {
    let (mut a, mut b) = (next.clone(), last.clone());
    a.set_query(None);
    b.set_query(None);
    let pairs = |url: &Url| -> Vec<(String, String)> { url.query_pairs().into_owned().collect() };
    let (next_pairs, last_pairs) = (pairs(next), pairs(last));
    if a != b || next_pairs.len() != last_pairs.len() {
        return Vec::new();
    }
    let mut differing = next_pairs.iter().zip(&last_pairs).filter(|(n, l)| n != l);
    let (Some(((name, at), (last_name, end))), None) = (differing.next(), differing.next()) else {
        return Vec::new();
    };
    let (Ok(at), Ok(end)) = (at.parse::<u64>(), end.parse::<u64>()) else {
        return Vec::new();
    };
    let from = match param(current, name) {
        Some(from) => from,
        None if at == 2 => 1,
        None => return Vec::new(),
    };
    let Some(step) = at.checked_sub(from).filter(|step| *step > 0) else {
        return Vec::new();
    };
    if name != last_name || end < at || (end - at) % step != 0 {
        return Vec::new();
    }
    (0..)
        .map(|k| at + k * step)
        .take_while(|value| *value <= end)
        .take(limit)
        .map(|value| with_param(next, name, value))
        .collect()
}

/// `url` with query parameter `name` set to `value`, made as [`Pager::next_with`] makes its own
/// next URLs, so that a URL guessed here and the one named later compare equal.
fn with_param(url: &Url, name: &str, value: u64) -> Url {
    let mut url = url.clone();
    set_param(&mut url, name, &value.to_string());
    url
}

/// What an answer said in its status line and headers, for the pager.
#[derive(Debug, Clone, Copy, Default)]
pub struct Answer<'a> {
    /// Its `Link` header (`link-header` listings).
    pub link: Option<&'a str>,
    /// Its `Content-Range`, e.g. `0-99/2500`, `0-99/*`, `*/0` (`range` listings).
    pub content_range: Option<&'a str>,
    /// `206 Partial Content` (more may follow) rather than `200` (`range` listings).
    pub partial: bool,
    /// The header named by [`Pager::total_header`], if the answer had it.
    pub total: Option<&'a str>,
}

/// The listing's length as an answer states it: the header's value, or the number (or string of
/// digits) at the body's path. `None` when it is missing or not a count.
fn stated_total(total: &Total, body: &Value, header: Option<&str>) -> Option<u64> {
    match total {
        Total::Header(_) => header?.trim().parse().ok(),
        Total::Body(path) => match path.query(body).first()? {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        },
    }
}

/// `url` marked with the range it asks for, `#pollhook-range=<unit>:<first>-<last>`. The
/// fragment is never sent (it becomes the `Range-Unit` and `Range` headers); it keeps each page's
/// URL distinct for loop detection and conditional requests.
fn with_range(url: &Url, unit: &str, first: u64, size: u32) -> Url {
    let mut url = url.clone();
    let last = first + u64::from(size.max(1)) - 1;
    url.set_fragment(Some(&format!("{RANGE_MARK}{unit}:{first}-{last}")));
    url
}

/// The fragment prefix of a URL made by [`with_range`].
const RANGE_MARK: &str = "pollhook-range=";

/// The `Range-Unit` and `Range` a URL made by [`with_range`] asks for, e.g. `("items", "0-99")`.
pub fn range_of(url: &Url) -> Option<(&str, &str)> {
    url.fragment()?.strip_prefix(RANGE_MARK)?.split_once(':')
}

/// `first-last/total` → `(Some(last), Some(total))`; `*` for either part → `None`.
fn parse_content_range(text: &str) -> Result<(Option<u64>, Option<u64>), String> {
    let bad = || format!("Content-Range `{text}` is not `first-last/total` (e.g. `0-99/2500`)");
    // RFC 9110 §14.4 puts the unit first (`items 0-99/2500`); PostgREST leaves it out.
    let spec = text.trim().rsplit(' ').next().unwrap_or_default();
    let (range, total) = spec.split_once('/').ok_or_else(bad)?;
    let total = match total {
        "*" => None,
        n => Some(n.parse::<u64>().map_err(|_| bad())?),
    };
    let last = match range {
        "*" => None,
        r => {
            let (_, last) = r.split_once('-').ok_or_else(bad)?;
            Some(last.parse::<u64>().map_err(|_| bad())?)
        }
    };
    Ok((last, total))
}

/// A numeric query parameter of `url`.
fn param(url: &Url, name: &str) -> Option<u64> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .and_then(|(_, v)| v.parse().ok())
}

/// A non-empty string or number at `path`; null, absent, `""` and `false` mean "no next page".
fn scalar_at(body: &Value, path: &JsonPath) -> Option<String> {
    match path.query(body).first()? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Sets one query parameter: replaced where it stands (later copies dropped), or appended.
pub fn set_param(url: &mut Url, name: &str, value: &str) {
    let mut found = false;
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter_map(|(k, v)| {
            if k != name {
                return Some((k.into_owned(), v.into_owned()));
            }
            (!std::mem::replace(&mut found, true)).then(|| (k.into_owned(), value.to_owned()))
        })
        .collect();
    let mut query = url.query_pairs_mut();
    query.clear().extend_pairs(&pairs);
    if !found {
        query.append_pair(name, value);
    }
}

/// Removes every copy of one query parameter.
fn remove_param(url: &mut Url, name: &str) {
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(k, _)| k != name)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    url.set_query(None);
    if !pairs.is_empty() {
        url.query_pairs_mut().extend_pairs(pairs);
    }
}

/// The URL to send and the body to send with it, for the page the pager calls `page`.
///
/// A GET sends `page` as it is. A POST sends the resource's body with `{page}`, `{offset}`,
/// `{size}` and `{cursor}` filled in from `page`'s query (where its pagination style puts them),
/// and those parameters taken out of the URL it sends; a placeholder the body does not hold
/// leaves its parameter in the query. A value is escaped for the body's `content_type`: XML
/// escapes, or JSON string escapes (the placeholder is written inside quotes, `"{cursor}"`).
/// Before the first cursor, `{cursor}` is empty.
pub fn request_for(
    request: &Request,
    pagination: &Pagination,
    page: &Url,
) -> (Url, Option<String>) {
    if !request.post {
        return (page.clone(), None);
    }
    let mut body = request.body.clone().unwrap_or_default();
    let mut sent = page.clone();
    let value = |name: &str| {
        page.query_pairs()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let mut fills: Vec<(&str, &str)> = Vec::new();
    match pagination {
        Pagination::Page {
            page_param,
            size_param,
            ..
        } => {
            fills.push(("{page}", page_param));
            if let Some(size_param) = size_param {
                fills.push(("{size}", size_param));
            }
        }
        Pagination::Offset {
            offset_param,
            limit_param,
            ..
        } => fills.extend([("{offset}", offset_param.as_str()), ("{size}", limit_param)]),
        Pagination::Cursor { cursor_param, .. } => fills.push(("{cursor}", cursor_param)),
        _ => {}
    }
    let media = request.content_type.to_ascii_lowercase();
    for (token, param) in fills {
        if body.contains(token) {
            let raw = value(param);
            let escaped = if media.contains("xml") {
                xml_escape(&raw)
            } else if media.contains("json") {
                let quoted = serde_json::Value::String(raw).to_string();
                quoted[1..quoted.len() - 1].to_owned()
            } else {
                raw
            };
            body = body.replace(token, &escaped);
            remove_param(&mut sent, param);
        }
    }
    (sent, Some(body))
}

/// Text made safe inside an XML element or attribute value.
fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

/// The `rel="next"` target of an RFC 8288 `Link` header value.
pub fn next_link(header: &str) -> Option<String> {
    link_to(header, "next")
}

/// The target of the link with relation `rel` in a `Link` header (RFC 8288), if any.
fn link_to(header: &str, rel: &str) -> Option<String> {
    let mut rest = header;
    loop {
        let start = rest.find('<')?;
        let end = start + rest[start..].find('>')?;
        let target = &rest[start + 1..end];
        rest = &rest[end + 1..];
        // Parameters run until the next link, which starts with `,` followed by `<`.
        let params_end = rest.find('<').unwrap_or(rest.len());
        let params = &rest[..params_end];
        let is_next = params.split(';').any(|p| {
            let Some((key, value)) = p.split_once('=') else {
                return false;
            };
            key.trim().eq_ignore_ascii_case("rel")
                && value
                    .trim()
                    .trim_end_matches(',')
                    .trim()
                    .trim_matches('"')
                    .split_ascii_whitespace()
                    .any(|named| named.eq_ignore_ascii_case(rel))
        });
        if is_next {
            return Some(target.to_owned());
        }
        rest = &rest[params_end..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cursor page cut in one pass: the items as sent, and a next page as the page parsed gives.
    #[test]
    fn cut_gives_the_items_and_the_next_page_that_parsing_gives() {
        let style = Pagination::Cursor {
            cursor_param: "starting_after".into(),
            next_cursor: JsonPath::parse("$.data[-1].id").unwrap(),
            has_more: Some(JsonPath::parse("$.has_more").unwrap()),
        };
        let (mut cut, mut parsed) = (
            Pager::new(&style, "http://h/o".parse().unwrap()),
            Pager::new(&style, "http://h/o".parse().unwrap()),
        );
        let data = ["data".to_owned()];
        let text = r#"{"object": "list", "data": [{"id": "a", "has_more": false},
            {"id": "b", "data": [{"id": "no"}]}], "has_more": true}"#;
        let (spans, envelope) = cut.cut(text, &data).unwrap();
        let items: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(
            items,
            [
                r#"{"id": "a", "has_more": false}"#,
                r#"{"id": "b", "data": [{"id": "no"}]}"#
            ]
        );
        assert_eq!(envelope, json!({"data": [{"id": "b"}], "has_more": true}));
        let (first, whole) = (cut.first_url(), serde_json::from_str(text).unwrap());
        let next = cut.next(&first, 2, &envelope, None).unwrap().unwrap();
        assert_eq!(next.as_str(), "http://h/o?starting_after=b");
        let first = parsed.first_url();
        assert_eq!(parsed.next(&first, 2, &whole, None), Ok(Some(next)));
        assert_eq!(
            cut.cut(r#"{"data": {"id": "a"}, "has_more": true}"#, &data),
            None
        );
    }

    #[test]
    fn range_asks_by_header_and_ends_at_the_total_or_a_200() {
        let style = Pagination::Range {
            unit: "items".into(),
            size: 100,
        };
        let mut pager = Pager::new(&style, "http://api/orders?x=1".parse().unwrap());
        let first = pager.first_url();
        assert_eq!(range_of(&first), Some(("items", "0-99")));
        assert_eq!(first.query(), Some("x=1"));
        let answer = |text, partial| Answer {
            content_range: Some(text),
            partial,
            ..Answer::default()
        };
        let body = json!([]);
        let second = (pager.next_with(&first, 100, &body, answer("0-99/250", true)))
            .unwrap()
            .unwrap();
        assert_eq!(range_of(&second), Some(("items", "100-199")));
        let third = (pager.next_with(&second, 100, &body, answer("100-199/*", true)))
            .unwrap()
            .unwrap();
        assert_eq!(range_of(&third), Some(("items", "200-299")));
        let end = pager.next_with(&third, 50, &body, answer("items 200-249/250", true));
        assert_eq!(end.unwrap(), None, "the total is reached");

        let mut pager = Pager::new(&style, "http://api/orders".parse().unwrap());
        let first = pager.first_url();
        let whole = Answer::default();
        assert_eq!(
            pager.next_with(&first, 7, &body, whole).unwrap(),
            None,
            "200: all of it"
        );
        let capped = pager.next_with(&first, 100, &body, answer("0-99/500", false));
        assert!(
            capped.unwrap().is_some(),
            "a 200 that says more remain goes on"
        );
        let bare = Answer {
            partial: true,
            ..Answer::default()
        };
        assert!(pager.next_with(&first, 1, &body, bare).is_err());
        assert!(
            pager
                .next_with(&first, 1, &body, answer("lots", true))
                .is_err()
        );
        assert_eq!(
            pager
                .next_with(&first, 0, &body, answer("*/0", true))
                .unwrap(),
            None
        );
    }
    use serde_json::json;

    #[test]
    fn link_header_next() {
        assert_eq!(
            next_link(
                r#"<https://api.github.com/x?page=2>; rel="next", <https://api.github.com/x?page=5>; rel="last""#
            ),
            Some("https://api.github.com/x?page=2".into())
        );
        assert_eq!(
            next_link(r#"<http://a/?p=1>; rel="first", <http://a/?p=3>; rel=next"#),
            Some("http://a/?p=3".into())
        );
        assert_eq!(next_link(r#"<http://a/?p=1>; rel="prev last""#), None);
        assert_eq!(
            next_link(r#"<http://a/?p=2>; title="x"; rel="prefetch next""#),
            Some("http://a/?p=2".into())
        );
        assert_eq!(next_link(""), None);
        assert_eq!(next_link("<unterminated"), None);
    }

    /// The URLs' `param` values, in order.
    fn values(urls: &[Url], param: &str) -> Vec<String> {
        urls.iter()
            .map(|u| super::param(u, param).map_or("-".into(), |v| v.to_string()))
            .collect()
    }

    #[test]
    fn a_stated_total_names_the_pages_ahead_as_full_pages_would_follow() {
        let style = Pagination::Page {
            page_param: "page".into(),
            size_param: Some("per_page".into()),
            size: 3,
            first: 1,
            total: Some(Total::Header("x-total-count".parse().unwrap())),
        };
        let total = |value| Answer {
            total: Some(value),
            ..Answer::default()
        };
        let body = json!([]);
        let mut pager = Pager::new(&style, Url::parse("http://h/o?s=a").unwrap());
        let first = pager.first_url();
        let next = pager
            .next_with(&first, 3, &body, total("14"))
            .unwrap()
            .unwrap();
        // 11 items left after page 1, 3 a page: pages 2 to 5, the first being `next` itself.
        let ahead = pager.ahead(&first, &next, 3, &body, total("14"), 8);
        assert_eq!(values(&ahead, "page"), ["2", "3", "4", "5"]);
        assert_eq!(ahead[0], next);
        assert_eq!(ahead[3].as_str(), "http://h/o?s=a&page=5&per_page=3");
        assert_eq!(
            pager.ahead(&first, &next, 3, &body, total("14"), 2).len(),
            2
        );
        // Each one is what the pager names after the page before.
        let mut at = next;
        for expected in &ahead[1..] {
            at = pager
                .next_with(&at, 3, &body, total("14"))
                .unwrap()
                .unwrap();
            assert_eq!(&at, expected);
        }
        // No total, a garbled one, or an empty page: nothing to name.
        let mut pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        let first = pager.first_url();
        let next = pager
            .next_with(&first, 3, &body, total("x"))
            .unwrap()
            .unwrap();
        assert!(
            pager
                .ahead(&first, &next, 3, &body, total("x"), 8)
                .is_empty()
        );
        assert!(
            pager
                .ahead(&first, &next, 3, &body, Answer::default(), 8)
                .is_empty()
        );
        assert!(
            pager
                .ahead(&first, &next, 0, &body, total("14"), 8)
                .is_empty()
        );
    }

    #[test]
    fn an_offset_listing_steps_its_pages_ahead_by_the_page_just_read() {
        let style = Pagination::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            size: 100,
            total: Some(Total::Body(JsonPath::parse("$.meta.total").unwrap())),
        };
        let body = json!({"meta": {"total": 250}});
        let mut pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        let first = pager.first_url();
        // The API caps its pages at 40 items though 100 were asked.
        let next = pager
            .next_with(&first, 40, &body, Answer::default())
            .unwrap()
            .unwrap();
        let ahead = pager.ahead(&first, &next, 40, &body, Answer::default(), 10);
        // 210 items left, 40 a page: six pages, the last holding items 241-250.
        assert_eq!(
            values(&ahead, "offset"),
            ["40", "80", "120", "160", "200", "240"]
        );
    }

    #[test]
    fn a_content_range_total_names_the_ranges_ahead() {
        let style = Pagination::Range {
            unit: "items".into(),
            size: 100,
        };
        let mut pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        let first = pager.first_url();
        let answer = Answer {
            content_range: Some("0-99/350"),
            partial: true,
            ..Answer::default()
        };
        let next = pager
            .next_with(&first, 100, &json!([]), answer)
            .unwrap()
            .unwrap();
        let ahead = pager.ahead(&first, &next, 100, &json!([]), answer, 10);
        let ranges: Vec<_> = ahead.iter().filter_map(|u| range_of(u)).collect();
        assert_eq!(
            ranges,
            [
                ("items", "100-199"),
                ("items", "200-299"),
                ("items", "300-399")
            ]
        );
        assert_eq!(ahead[0], next);
        let unknown = Answer {
            content_range: Some("0-99/*"),
            ..answer
        };
        assert!(
            pager
                .ahead(&first, &next, 100, &json!([]), unknown, 10)
                .is_empty()
        );
    }

    #[test]
    fn a_last_link_names_the_numbered_pages_between() {
        let style = Pagination::LinkHeader;
        let pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        let ahead = |current: &str, link: &str, limit| {
            let current = Url::parse(current).unwrap();
            let next = current.join(&next_link(link).unwrap()).unwrap();
            let answer = Answer {
                link: Some(link),
                ..Answer::default()
            };
            pager.ahead(&current, &next, 10, &json!([]), answer, limit)
        };
        // json-server: `_page` in every URL, the others kept as they were asked.
        let json_server = r#"<http://h/o?_page=1&_limit=10>; rel="first", <http://h/o?_page=2&_limit=10>; rel="next", <http://h/o?_page=5&_limit=10>; rel="last""#;
        let urls = ahead("http://h/o?_limit=10&_page=1", json_server, 8);
        assert_eq!(values(&urls, "_page"), ["2", "3", "4", "5"]);
        assert_eq!(urls[3].as_str(), "http://h/o?_page=5&_limit=10");
        assert_eq!(
            ahead("http://h/o?_limit=10&_page=1", json_server, 3).len(),
            3
        );
        // GitHub: the first page has no `page`; relative targets.
        let github = r#"</o?per_page=10&page=2>; rel="next", </o?per_page=10&page=4>; rel="last""#;
        assert_eq!(
            values(&ahead("http://h/o", github, 8), "page"),
            ["2", "3", "4"]
        );
        // Offsets in links, stepped as from the current page to the next.
        let offsets = r#"</o?offset=20>; rel="next", </o?offset=60>; rel="last""#;
        let urls = ahead("http://h/o?offset=10", offsets, 8);
        assert_eq!(values(&urls, "offset"), ["20", "30", "40", "50", "60"]);
        // Nothing to name: cursors, no last link, two values differing, an implied start that
        // is not page 1, a step that misses the last page, another path.
        for (current, link) in [
            (
                "http://h/o",
                r#"</o?after=b2>; rel="next", </o?after=zz>; rel="last""#,
            ),
            ("http://h/o", r#"</o?page=2>; rel="next""#),
            (
                "http://h/o?page=1&v=1",
                r#"</o?page=2&v=2>; rel="next", </o?page=5&v=3>; rel="last""#,
            ),
            (
                "http://h/o",
                r#"</o?offset=20>; rel="next", </o?offset=60>; rel="last""#,
            ),
            (
                "http://h/o?page=1",
                r#"</o?page=3>; rel="next", </o?page=6>; rel="last""#,
            ),
            (
                "http://h/o?page=1",
                r#"</o?page=2>; rel="next", </p?page=6>; rel="last""#,
            ),
        ] {
            assert!(ahead(current, link, 8).is_empty(), "{current} {link}");
        }
        // A style whose next page is in the page itself names nothing ahead.
        let style = Pagination::NextUrl {
            next_url: JsonPath::parse("$.next").unwrap(),
        };
        let pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        let (current, next) = (
            Url::parse("http://h/o?page=1").unwrap(),
            Url::parse("http://h/o?page=2").unwrap(),
        );
        let answer = Answer {
            link: Some(r#"</o?page=2>; rel="next", </o?page=6>; rel="last""#),
            ..Answer::default()
        };
        assert!(
            pager
                .ahead(&current, &next, 10, &json!({}), answer, 8)
                .is_empty()
        );
    }

    #[test]
    fn page_style_counts_from_first_and_ends_on_empty() {
        let style = Pagination::Page {
            page_param: "page".into(),
            size_param: Some("per_page".into()),
            size: 2,
            first: 1,
            total: None,
        };
        let mut pager = Pager::new(&style, Url::parse("http://h/o?status=any").unwrap());
        let first = pager.first_url();
        assert_eq!(first.as_str(), "http://h/o?status=any&page=1&per_page=2");
        let second = pager.next(&first, 2, &json!([]), None).unwrap().unwrap();
        assert_eq!(second.as_str(), "http://h/o?status=any&page=2&per_page=2");
        // A short page is not the end: the API may cap page size below what was asked.
        assert!(pager.next(&second, 1, &json!([]), None).unwrap().is_some());
        assert!(pager.next(&second, 0, &json!([]), None).unwrap().is_none());
    }

    #[test]
    fn a_stated_total_ends_the_listing_once_the_items_fetched_reach_it() {
        let header = |value| Answer {
            total: Some(value),
            ..Answer::default()
        };
        let style = Pagination::Page {
            page_param: "page".into(),
            size_param: None,
            size: 3,
            first: 1,
            total: Some(Total::Header("x-total-count".parse().unwrap())),
        };
        let mut pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        assert_eq!(
            pager.total_header().map(|h| h.as_str()),
            Some("x-total-count")
        );
        let first = pager.first_url();
        let body = json!([]);
        let second = pager
            .next_with(&first, 3, &body, header("7"))
            .unwrap()
            .unwrap();
        // Garbled or missing: the empty page will end it.
        let third = pager
            .next_with(&second, 3, &body, header("x"))
            .unwrap()
            .unwrap();
        let fourth = (pager.next_with(&third, 0, &body, Answer::default())).unwrap();
        assert_eq!(fourth, None, "the empty page");
        let mut pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        let first = pager.first_url();
        let second = pager
            .next_with(&first, 3, &body, header(" 6 "))
            .unwrap()
            .unwrap();
        assert_eq!(
            pager.next_with(&second, 3, &body, header("6")).unwrap(),
            None
        );

        let style = Pagination::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            size: 2,
            total: Some(Total::Body(JsonPath::parse("$.meta.total").unwrap())),
        };
        let mut pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        assert_eq!(pager.total_header(), None);
        let text = r#"{"data": [{"meta": {"total": 1}}, {}], "meta": {"total": "4"}}"#;
        let envelope = pager.envelope(text).unwrap();
        assert_eq!(envelope, json!({"meta": {"total": "4"}}));
        let first = pager.first_url();
        let next = pager
            .next_with(&first, 2, &envelope, Answer::default())
            .unwrap();
        let next = next.unwrap();
        assert_eq!(next.query(), Some("offset=2&limit=2"));
        let end = json!({"meta": {"total": 4}});
        assert_eq!(
            pager.next_with(&next, 2, &end, Answer::default()).unwrap(),
            None
        );
    }

    #[test]
    fn offset_advances_by_items_received() {
        let style = Pagination::Offset {
            offset_param: "offset".into(),
            limit_param: "limit".into(),
            size: 100,
            total: None,
        };
        let mut pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        let first = pager.first_url();
        assert_eq!(first.query(), Some("offset=0&limit=100"));
        let next = pager.next(&first, 40, &json!([]), None).unwrap().unwrap();
        assert_eq!(next.query(), Some("offset=40&limit=100"));
    }

    #[test]
    fn cursor_and_next_url_and_loops() {
        let style = Pagination::Cursor {
            cursor_param: "cursor".into(),
            next_cursor: JsonPath::parse("$.meta.next").unwrap(),
            has_more: None,
        };
        let mut pager = Pager::new(&style, Url::parse("http://h/o?x=1").unwrap());
        let first = pager.first_url();
        let next = pager
            .next(&first, 1, &json!({"meta": {"next": "abc"}}), None)
            .unwrap()
            .unwrap();
        assert_eq!(next.as_str(), "http://h/o?x=1&cursor=abc");
        assert!(
            pager
                .next(&next, 1, &json!({"meta": {"next": null}}), None)
                .unwrap()
                .is_none()
        );
        assert!(
            pager
                .next(&next, 1, &json!({"meta": {"next": "abc"}}), None)
                .is_err()
        );

        let style = Pagination::NextUrl {
            next_url: JsonPath::parse("$.links.next").unwrap(),
        };
        let mut pager = Pager::new(&style, Url::parse("http://h/api/o").unwrap());
        let first = pager.first_url();
        let next = pager
            .next(
                &first,
                1,
                &json!({"links": {"next": "/api/o?page=2"}}),
                None,
            )
            .unwrap()
            .unwrap();
        assert_eq!(next.as_str(), "http://h/api/o?page=2");
    }

    #[test]
    fn stripe_style_cursor_from_the_last_item_until_has_more_is_false() {
        let style = Pagination::Cursor {
            cursor_param: "starting_after".into(),
            next_cursor: JsonPath::parse("$.data[-1].id").unwrap(),
            has_more: Some(JsonPath::parse("$.has_more").unwrap()),
        };
        let mut pager = Pager::new(&style, Url::parse("http://h/v1/customers?limit=2").unwrap());
        let first = pager.first_url();
        let page =
            json!({"object": "list", "data": [{"id": "cus_1"}, {"id": "cus_2"}], "has_more": true});
        let next = pager.next(&first, 2, &page, None).unwrap().unwrap();
        assert_eq!(
            next.as_str(),
            "http://h/v1/customers?limit=2&starting_after=cus_2"
        );
        let last = json!({"object": "list", "data": [{"id": "cus_3"}], "has_more": false});
        assert!(pager.next(&next, 1, &last, None).unwrap().is_none());
    }

    #[test]
    fn a_post_body_carries_the_page_and_the_url_loses_it() {
        let style = Pagination::Page {
            page_param: "page".into(),
            size_param: Some("size".into()),
            size: 2,
            first: 1,
            total: None,
        };
        let request = Request {
            post: true,
            body: Some("<List><Page>{page}</Page><Size>{size}</Size></List>".into()),
            content_type: "text/xml".into(),
        };
        let page = Url::parse("http://h/svc?x=1&page=3&size=2").unwrap();
        let (sent, body) = request_for(&request, &style, &page);
        assert_eq!(sent.as_str(), "http://h/svc?x=1");
        assert_eq!(body.unwrap(), "<List><Page>3</Page><Size>2</Size></List>");
        let cursor = Pagination::Cursor {
            cursor_param: "cursor".into(),
            next_cursor: JsonPath::parse("$.next").unwrap(),
            has_more: None,
        };
        let json = Request {
            post: true,
            body: Some(r#"{"after": "{cursor}"}"#.into()),
            content_type: "application/json".into(),
        };
        let (_, body) = request_for(&json, &cursor, &Url::parse("http://h/s").unwrap());
        assert_eq!(body.unwrap(), r#"{"after": ""}"#);
        let page = Url::parse("http://h/s?cursor=a%22b%3Cc").unwrap();
        assert_eq!(
            request_for(&json, &cursor, &page).1.unwrap(),
            r#"{"after": "a\"b<c"}"#
        );
        let get = Request::default();
        assert_eq!(request_for(&get, &cursor, &page), (page.clone(), None));
    }
}
