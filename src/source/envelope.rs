//! The envelope of a page: the few members a pager reads (`$.next`, `$.meta.cursor`,
//! `$.data[-1].id`), taken out of the page's text without parsing the rest; and, in the same
//! pass, the spans of the page's items where its list is at a plain member path.
//!
//! In: the pager's JSONPaths, a page's text and, for [`Envelope::cut`], the member names of the
//! items' list. Out: a small tree shaped like the page holding just those members (and the items'
//! spans), or `None` when a path is not plain (then the page is parsed whole).
//!
//! Invariant: read on the envelope, every such path answers as it would on the whole page
//! parsed; the items around it cost one skim of the text, however deep the paths and the list
//! are, never a `Value`. Pure: no I/O.

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;
use serde_json_path::JsonPath;

/// The members of a response a pager reads (`$.next`, `$.meta.cursor`, `$.data[-1].id`), read out
/// of the response's text without parsing the rest, so a page's items cost no parse here.
///
/// Only plain paths qualify: member names and list indices from the root. A path with a
/// wildcard, a descendant step, a filter or a slice, or two paths through one list, leave the
/// envelope unknown ([`Envelope::read`] answers `None`) and the page is parsed whole. Read on a
/// tree, the envelope answers every such path as the whole page would: a member that is there
/// is there with its value; one that is missing, or under something that is not an object or a
/// list, is missing.
#[derive(Debug)]
pub struct Envelope {
    /// Each path's steps; `None` when one of them is not plain.
    paths: Option<Vec<Vec<Step>>>,
}

/// One step of a plain path.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Member(String),
    /// From the start, or from the end when negative (`-1` is the last).
    Index(i64),
}

impl Envelope {
    /// The envelope of `paths`.
    pub fn new<'p>(paths: impl IntoIterator<Item = &'p JsonPath>) -> Self {
        Self {
            paths: paths.into_iter().map(steps).collect(),
        }
    }

    /// The members at the paths, parsed, in a tree shaped like `text`'s (an empty envelope is
    /// `Value::Null`); `None` when the paths are not plain. `text` must be known to be JSON
    /// (as [`super::items::split_items`] finds it): what is not is read as holding nothing.
    pub fn read(&self, text: &str) -> Option<Value> {
        let paths = self.paths.as_ref()?;
        let wants = Wants::of(paths, None);
        let found = if wants.is_empty() {
            Found::default()
        } else {
            walk(text, &wants).unwrap_or_default()
        };
        tree(paths, found.at)
    }

    /// The spans in `text` of the items of the list at `items` (member names from the root), and
    /// the envelope as [`Envelope::read`] gives it, both from one skim of the text. `None` when
    /// the paths are not plain, or the text is not JSON with a list at `items` (then the page is
    /// parsed, and [`super::items::extract_items`] says what is wrong).
    pub fn cut(&self, text: &str, items: &[String]) -> Option<(Vec<Range<usize>>, Value)> {
        let paths = self.paths.as_ref()?;
        let found = walk(text, &Wants::of(paths, Some(items))).ok()?;
        let base = text.as_ptr() as usize;
        let spans = found
            .items?
            .iter()
            .map(|item| {
                let start = item.as_ptr() as usize - base;
                start..start + item.len()
            })
            .collect();
        Some((spans, tree(paths, found.at)?))
    }
}

/// What to take out of one node of the text: the paths (by number) that end there, whether the
/// items' list is there, and the members and list places to go into. Paths that share steps share
/// their nodes, so each object or list on the way is skimmed once.
#[derive(Debug, Default)]
struct Wants {
    here: Vec<usize>,
    items: bool,
    members: Vec<(String, Wants)>,
    places: Vec<(i64, Wants)>,
}

impl Wants {
    fn of(paths: &[Vec<Step>], items: Option<&[String]>) -> Self {
        let mut root = Wants::default();
        for (number, steps) in paths.iter().enumerate() {
            let node = steps.iter().fold(&mut root, |node, step| match step {
                Step::Member(name) => node.member(name),
                Step::Index(at) => node.place(*at),
            });
            node.here.push(number);
        }
        if let Some(chain) = items {
            chain
                .iter()
                .fold(&mut root, |node, name| node.member(name))
                .items = true;
        }
        root
    }

    fn member(&mut self, name: &str) -> &mut Wants {
        let at = match self.members.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.members.push((name.to_owned(), Wants::default()));
                self.members.len() - 1
            }
        };
        &mut self.members[at].1
    }

    fn place(&mut self, index: i64) -> &mut Wants {
        let at = match self.places.iter().position(|(i, _)| *i == index) {
            Some(at) => at,
            None => {
                self.places.push((index, Wants::default()));
                self.places.len() - 1
            }
        };
        &mut self.places[at].1
    }

    fn is_empty(&self) -> bool {
        self.here.is_empty() && !self.goes_deeper()
    }

    fn goes_deeper(&self) -> bool {
        self.items || !self.members.is_empty() || !self.places.is_empty()
    }
}

/// What a node of the text holds of its [`Wants`].
#[derive(Debug, Default)]
struct Found<'t> {
    /// Each path's value, as text, by the path's number.
    at: Vec<(usize, &'t str)>,
    /// The items' texts, where the list is there and a list.
    items: Option<Vec<&'t str>>,
}

impl<'t> Found<'t> {
    fn and(mut self, other: Found<'t>) -> Self {
        self.at.extend(other.at);
        self.items = other.items.or(self.items);
        self
    }
}

/// Reads what `wants` asks of `text`, which must be one JSON value and nothing after it.
fn walk<'t>(text: &'t str, wants: &Wants) -> Result<Found<'t>, serde_json::Error> {
    let mut reader = serde_json::Deserializer::from_str(text);
    let found = Walk { wants, whole: true }.deserialize(&mut reader)?;
    reader.end()?;
    Ok(found)
}

/// Reads one node for its [`Wants`]; `whole` unless the node's own text was taken already.
struct Walk<'w> {
    wants: &'w Wants,
    whole: bool,
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = Found<'de>;

    fn deserialize<D: Deserializer<'de>>(self, node: D) -> Result<Found<'de>, D::Error> {
        if !self.whole || self.wants.here.is_empty() {
            return node.deserialize_any(self);
        }
        // A path ends here: the node's text, and what lies deeper read from it (a path that ends
        // where another goes on is rare; that node is skimmed twice).
        let text = <&RawValue>::deserialize(node)?.get();
        let deeper = if self.wants.goes_deeper() {
            walk_within(text, self.wants).map_err(de::Error::custom)?
        } else {
            Found::default()
        };
        let here = self.wants.here.iter().map(|&number| (number, text));
        Ok(Found {
            at: here.collect(),
            items: None,
        }
        .and(deeper))
    }
}

/// Reads the node `text` (a value known to be JSON, cut from a page) for what lies below it.
fn walk_within<'t>(text: &'t str, wants: &Wants) -> Result<Found<'t>, serde_json::Error> {
    Walk {
        wants,
        whole: false,
    }
    .deserialize(&mut serde_json::Deserializer::from_str(text))
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = Found<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    /// Members wanted are read, the others skimmed. A repeated member: the last copy wins, as
    /// when the page is parsed.
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Found<'de>, A::Error> {
        let members = &self.wants.members;
        let mut copies: Vec<Option<Found<'de>>> = members.iter().map(|_| None).collect();
        while let Some(key) = map.next_key_seed(Key)? {
            match members.iter().position(|(name, _)| *name == key) {
                Some(at) => {
                    let wants = &members[at].1;
                    copies[at] = Some(map.next_value_seed(Walk { wants, whole: true })?);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(copies
            .into_iter()
            .flatten()
            .fold(Found::default(), Found::and))
    }

    /// The items' list, or a list with places wanted: each element's text, then the places read
    /// from theirs.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Found<'de>, A::Error> {
        if !self.wants.items && self.wants.places.is_empty() {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            return Ok(Found::default());
        }
        let mut list = Vec::new();
        while let Some(element) = seq.next_element::<&'de RawValue>()? {
            list.push(element.get());
        }
        let mut found = Found::default();
        for (index, wants) in &self.wants.places {
            if let Some(element) = element_at(&list, *index) {
                let deeper = Walk { wants, whole: true }
                    .deserialize(&mut serde_json::Deserializer::from_str(element))
                    .map_err(de::Error::custom)?;
                found = found.and(deeper);
            }
        }
        if self.wants.items {
            found.items = Some(list);
        }
        Ok(found)
    }

    // A node of another kind holds nothing at any step.
    fn visit_bool<E>(self, _: bool) -> Result<Found<'de>, E> {
        Ok(Found::default())
    }
    fn visit_i64<E>(self, _: i64) -> Result<Found<'de>, E> {
        Ok(Found::default())
    }
    fn visit_u64<E>(self, _: u64) -> Result<Found<'de>, E> {
        Ok(Found::default())
    }
    fn visit_f64<E>(self, _: f64) -> Result<Found<'de>, E> {
        Ok(Found::default())
    }
    fn visit_str<E>(self, _: &str) -> Result<Found<'de>, E> {
        Ok(Found::default())
    }
    fn visit_unit<E>(self) -> Result<Found<'de>, E> {
        Ok(Found::default())
    }
}

/// The element at `index` (from the end when negative).
fn element_at<'t>(list: &[&'t str], index: i64) -> Option<&'t str> {
    let at = if index < 0 {
        list.len()
            .checked_sub(usize::try_from(index.unsigned_abs()).ok()?)?
    } else {
        usize::try_from(index).ok()?
    };
    list.get(at).copied()
}

/// A member's name, borrowed from the text unless it holds escapes.
struct Key;

impl<'de> DeserializeSeed<'de> for Key {
    type Value = Cow<'de, str>;

    fn deserialize<D: Deserializer<'de>>(self, name: D) -> Result<Cow<'de, str>, D::Error> {
        name.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for Key {
    type Value = Cow<'de, str>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_borrowed_str<E>(self, name: &'de str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Borrowed(name))
    }

    fn visit_str<E>(self, name: &str) -> Result<Cow<'de, str>, E> {
        Ok(Cow::Owned(name.to_owned()))
    }
}

/// The envelope's tree: each path's value parsed and placed; `None` where two paths through one
/// list could not both be placed.
fn tree(paths: &[Vec<Step>], mut at: Vec<(usize, &str)>) -> Option<Value> {
    at.sort_by_key(|(number, _)| *number);
    let mut tree = Value::Null;
    for (number, text) in at {
        place(&mut tree, &paths[number], serde_json::from_str(text).ok()?)?;
    }
    Some(tree)
}

/// The steps of `path` when it is plain, read from its normalized form (`$.a['b c'][-1]`).
fn steps(path: &JsonPath) -> Option<Vec<Step>> {
    let text = path.to_string();
    let mut rest = text.strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after.find(['.', '[']).unwrap_or(after.len());
            let name = &after[..end];
            // `..` (descendants) and `.*` (every member) are not one member.
            if name.is_empty() || name == "*" {
                return None;
            }
            steps.push(Step::Member(name.to_owned()));
            rest = &after[end..];
        } else if let Some(after) = rest.strip_prefix("['") {
            // The normalized form writes a name between quotes as it is, so a name holding a
            // quote cannot be told from its end: such a path is not taken as plain.
            let end = after.find('\'')?;
            let (name, tail) = after.split_at(end);
            rest = tail.strip_prefix("']")?;
            steps.push(Step::Member(name.to_owned()));
        } else {
            let after = rest.strip_prefix('[')?;
            let end = after.find(']')?;
            steps.push(Step::Index(after[..end].parse().ok()?));
            rest = &after[end + 1..];
        }
    }
    Some(steps)
}

/// Puts `value` into `tree` at `steps`, making the members and lists on the way: a list gets
/// `null`s before (or after, for an index from the end) so the index finds `value`. `None` where
/// another path already put something else there.
fn place(tree: &mut Value, steps: &[Step], value: Value) -> Option<()> {
    let Some((step, rest)) = steps.split_first() else {
        return match tree {
            Value::Null => {
                *tree = value;
                Some(())
            }
            same if *same == value => Some(()),
            _ => None,
        };
    };
    if tree.is_null() {
        *tree = match step {
            Step::Member(_) => Value::Object(serde_json::Map::new()),
            Step::Index(at) => {
                let len = at.unsigned_abs() + u64::from(*at >= 0);
                let len = usize::try_from(len).ok()?;
                Value::Array(vec![Value::Null; len])
            }
        };
    } else if matches!(step, Step::Index(_)) {
        // Two paths through one list: where each lands in the real list is not known here.
        return None;
    }
    let slot = match (step, tree) {
        (Step::Member(name), Value::Object(members)) => {
            members.entry(name.clone()).or_insert(Value::Null)
        }
        (Step::Index(at), Value::Array(list)) => {
            let slot = if *at < 0 { 0 } else { list.len() - 1 };
            &mut list[slot]
        }
        _ => return None,
    };
    place(slot, rest, value)
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use url::Url;

    use super::*;
    use crate::config::Pagination;
    use crate::source::paginate::Pager;

    /// The envelope read from the text answers the pager as the parsed page does.
    fn same_next(style: &Pagination, pages: &[&str]) {
        let (mut cut, mut parsed) = (
            Pager::new(style, Url::parse("http://h/o?x=1").unwrap()),
            Pager::new(style, Url::parse("http://h/o?x=1").unwrap()),
        );
        let (mut a, mut b) = (cut.first_url(), parsed.first_url());
        for text in pages {
            let envelope = cut.envelope(text).expect("plain paths");
            let whole: Value = serde_json::from_str(text).unwrap();
            let next_cut = cut.next(&a, 1, &envelope, None);
            let next_parsed = parsed.next(&b, 1, &whole, None);
            assert_eq!(next_cut, next_parsed, "{text}");
            match (next_cut, next_parsed) {
                (Ok(Some(x)), Ok(Some(y))) => (a, b) = (x, y),
                _ => return,
            }
        }
    }

    #[test]
    fn next_url_envelope_reads_only_the_link_around_the_items() {
        let style = Pagination::NextUrl {
            next_url: JsonPath::parse("$['@odata.nextLink']").unwrap(),
        };
        let pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        // Items with a member named like the pager's, nested lists and escaped strings.
        let text = r#"{"value": [{"id": 1, "@odata.nextLink": "/no", "a": [[1], {"b": "]\"}"}]}],
            "@odata.nextLink": "/o?skip=1\u0026x=\"y\""}"#;
        assert_eq!(
            pager.envelope(text),
            Some(json!({"@odata.nextLink": "/o?skip=1&x=\"y\""}))
        );
        assert_eq!(pager.envelope(r#"{"value": []}"#), Some(Value::Null));
        assert_eq!(
            pager.envelope(r#"{"value": [], "@odata.nextLink": null}"#),
            Some(json!({"@odata.nextLink": null}))
        );
        // A repeated member: the last copy, as a parse takes it.
        assert_eq!(
            pager.envelope(r#"{"@odata.nextLink": "/a", "@odata.nextLink": "/b"}"#),
            Some(json!({"@odata.nextLink": "/b"}))
        );
        same_next(
            &style,
            &[
                r#"{"value": [{"@odata.nextLink": "/x"}], "@odata.nextLink": "/o?p=2"}"#,
                r#"{"@odata.nextLink": "http://h/o?p=3", "value": [1]}"#,
                r#"{"value": [{"@odata.nextLink": "/x"}]}"#,
            ],
        );
        let nested = Pagination::NextUrl {
            next_url: JsonPath::parse("$.paging.next.link").unwrap(),
        };
        let pager = Pager::new(&nested, Url::parse("http://h/o").unwrap());
        for (text, envelope) in [
            (
                r#"{"results": [{"paging": 1}], "paging": {"next": {"link": "/2", "after": "9"}}}"#,
                json!({"paging": {"next": {"link": "/2"}}}),
            ),
            (r#"{"results": [], "paging": {"next": "x"}}"#, Value::Null),
            (r#"{"results": [], "paging": [1]}"#, Value::Null),
            (r#"{"results": [], "paging": null}"#, Value::Null),
        ] {
            assert_eq!(pager.envelope(text), Some(envelope), "{text}");
        }
    }

    #[test]
    fn cursor_envelope_reads_the_cursor_and_has_more_even_inside_the_items() {
        let style = Pagination::Cursor {
            cursor_param: "starting_after".into(),
            next_cursor: JsonPath::parse("$.data[-1].id").unwrap(),
            has_more: Some(JsonPath::parse("$.has_more").unwrap()),
        };
        let pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
        let text = r#"{"data": [{"id": "a", "has_more": false}, {"id": "b\u00e9", "x": [[]]}], "has_more": true}"#;
        let envelope = pager.envelope(text).unwrap();
        assert_eq!(envelope, json!({"data": [{"id": "bé"}], "has_more": true}));
        same_next(
            &style,
            &[
                text,
                r#"{"has_more": true, "data": [{"id": 7}, {"id": 8, "has_more": false}]}"#,
                r#"{"data": [{"id": "c"}], "has_more": false}"#,
            ],
        );
        same_next(&style, &[r#"{"data": [], "has_more": true}"#]);

        let meta = Pagination::Cursor {
            cursor_param: "cursor".into(),
            next_cursor: JsonPath::parse("$.meta.next_cursor").unwrap(),
            has_more: Some(JsonPath::parse("$.meta.has_more").unwrap()),
        };
        let pager = Pager::new(&meta, Url::parse("http://h/o").unwrap());
        assert_eq!(
            pager.envelope(r#"{"items": [{"meta": {"next_cursor": "no"}}], "meta": {"has_more": true, "next_cursor": "c2", "n": [1, 2]}}"#),
            Some(json!({"meta": {"has_more": true, "next_cursor": "c2"}}))
        );
        same_next(
            &meta,
            &[
                r#"{"items": [1], "meta": {"has_more": true, "next_cursor": "c2"}}"#,
                r#"{"items": [1], "meta": {"has_more": true, "next_cursor": 3}}"#,
                r#"{"items": [1], "meta": {"has_more": true, "next_cursor": null}}"#,
            ],
        );
        // Index from the start: nulls before the value keep it at its place.
        let second = Envelope::new([&JsonPath::parse("$.d[1].id").unwrap()]);
        let envelope = second
            .read(r#"{"d": [{"id": 1}, {"id": 2}, {"id": 3}]}"#)
            .unwrap();
        assert_eq!(envelope, json!({"d": [null, {"id": 2}]}));
        assert_eq!(second.read(r#"{"d": [{"id": 1}]}"#), Some(Value::Null));
    }

    /// A GraphQL connection cut in one skim: the same items, as sent, and the same envelope as
    /// the page parsed whole and queried.
    #[test]
    fn a_connection_is_cut_in_one_pass_as_parsing_it_would_take_it() {
        let paths = [
            "$.errors",
            "$.data.orders.pageInfo.endCursor",
            "$.data.orders.pageInfo.hasNextPage",
        ]
        .map(|p| JsonPath::parse(p).unwrap());
        let envelope = Envelope::new(&paths);
        let nodes = ["data".to_owned(), "orders".to_owned(), "nodes".to_owned()];
        let text = r#"{"data": {"orders": {"nodes": [ {"id": 1, "pageInfo": {"endCursor": "no"}},
            {"id": "a\"]}", "n": [[{}], -1.5e2]} ],
            "pageInfo": {"hasNextPage": true, "endCursor": "Y3Vy", "startCursor": "x"},
            "totalCount": 2}, "other": {"orders": {"nodes": [3]}}}, "extensions": {"cost": 1}}"#;
        let (spans, read) = envelope.cut(text, &nodes).unwrap();
        let items: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(
            items,
            [
                r#"{"id": 1, "pageInfo": {"endCursor": "no"}}"#,
                r#"{"id": "a\"]}", "n": [[{}], -1.5e2]}"#
            ]
        );
        assert_eq!(
            read,
            json!({"data": {"orders": {"pageInfo": {"endCursor": "Y3Vy", "hasNextPage": true}}}})
        );
        let whole: Value = serde_json::from_str(text).unwrap();
        let parsed = crate::source::items::extract_items(
            whole.clone(),
            Some(&JsonPath::parse("$.data.orders.nodes").unwrap()),
            None,
        )
        .unwrap();
        let cut: Vec<Value> = items
            .iter()
            .map(|i| serde_json::from_str(i).unwrap())
            .collect();
        assert_eq!(cut, parsed);
        for path in &paths {
            assert_eq!(path.query(&read).all(), path.query(&whole).all(), "{path}");
        }
        assert_eq!(envelope.read(text), Some(read));

        // The last copy of a repeated member wins, for the items as for the envelope.
        let (spans, read) = envelope
            .cut(
                r#"{"data": {"orders": {"nodes": [1, 2], "pageInfo": {"endCursor": "a"}}},
                    "data": {"orders": {"nodes": [3]}}}"#,
                &nodes,
            )
            .unwrap();
        assert_eq!(spans.len(), 1);
        assert_eq!(read, Value::Null);
        // A failed query: `errors`, and no list to cut (the page is then parsed whole).
        let failed = r#"{"errors": [{"message": "nope"}], "data": null}"#;
        assert_eq!(envelope.cut(failed, &nodes), None);
        assert_eq!(
            envelope.read(failed),
            Some(json!({"errors": [{"message": "nope"}]}))
        );
        for not_cut in [
            r#"{"data": {"orders": {"nodes": {"id": 1}}}}"#,
            r#"{"data": {"orders": [{"nodes": []}]}}"#,
            r#"{"data": {"orders": {"nodes": []}}} x"#,
            r#"{"data": {"orders": {"nodes": [1,]}}}"#,
            r#"{"data": {"orders": {"nodes": ["\x"]}}}"#,
        ] {
            assert_eq!(envelope.cut(not_cut, &nodes), None, "{not_cut}");
        }
        // An empty connection, and a cursor read from the items' own list in the same pass.
        let (spans, read) = envelope
            .cut(
                r#"{"data": {"orders": {"nodes": [], "pageInfo": {"hasNextPage": false}}}}"#,
                &nodes,
            )
            .unwrap();
        assert!(spans.is_empty());
        assert_eq!(
            read,
            json!({"data": {"orders": {"pageInfo": {"hasNextPage": false}}}})
        );
        let last = Envelope::new([&JsonPath::parse("$.data[-1].id").unwrap()]);
        let text = r#"{"data": [{"id": 7}, {"id": "z", "x": {"id": 0}}], "has_more": true}"#;
        let (spans, read) = last.cut(text, &["data".to_owned()]).unwrap();
        assert_eq!(spans.len(), 2);
        assert_eq!(read, json!({"data": [{"id": "z"}]}));
    }

    #[test]
    fn only_plain_paths_are_read_from_the_text() {
        for path in [
            "$..next",
            "$.data[*].id",
            "$.data[0:2]",
            "$[?@.a]",
            "$.a.*",
            "$['it''s']",
        ] {
            let Ok(path) = JsonPath::parse(path) else {
                continue;
            };
            assert_eq!(Envelope::new([&path]).read("{}"), None, "{path}");
        }
        let (a, b) = (
            JsonPath::parse("$.d[0].id").unwrap(),
            JsonPath::parse("$.d[-1].id").unwrap(),
        );
        assert_eq!(Envelope::new([&a, &b]).read(r#"{"d": [{"id": 1}]}"#), None);
        for style in [
            Pagination::LinkHeader,
            Pagination::None,
            Pagination::Offset {
                offset_param: "o".into(),
                limit_param: "l".into(),
                size: 1,
                total: None,
            },
        ] {
            let pager = Pager::new(&style, Url::parse("http://h/o").unwrap());
            assert_eq!(pager.envelope(r#"{"next": "x"}"#), Some(Value::Null));
        }
        // Paths that share steps (a GraphQL connection's `pageInfo`, and `errors`).
        let paths = [
            "$.errors",
            "$.data.orders.pageInfo.endCursor",
            "$.data.orders.pageInfo.hasNextPage",
        ]
        .map(|p| JsonPath::parse(p).unwrap());
        let text = r#"{"data": {"orders": {"nodes": [{"pageInfo": {"endCursor": "no"}}],
            "pageInfo": {"hasNextPage": true, "endCursor": "Y3Vy", "startCursor": "x"}}}}"#;
        assert_eq!(
            Envelope::new(&paths).read(text),
            Some(
                json!({"data": {"orders": {"pageInfo": {"endCursor": "Y3Vy", "hasNextPage": true}}}})
            )
        );
        let failed = r#"{"errors": [{"message": "nope"}], "data": null}"#;
        assert_eq!(
            Envelope::new(&paths).read(failed),
            Some(json!({"errors": [{"message": "nope"}]}))
        );
        let odd = Envelope::new([&JsonPath::parse("$['odd key'].x").unwrap()]);
        assert_eq!(
            odd.read(r#"{"odd key": {"x": 1.5e3}}"#),
            Some(json!({"odd key": {"x": 1500.0}}))
        );
    }
}
