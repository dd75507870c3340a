//! The envelope of a page: the few members a pager reads (`$.next`, `$.meta.cursor`,
//! `$.data[-1].id`), taken out of the page's text without parsing the rest.
//!
//! In: the pager's JSONPaths and a page's text. Out: a small tree shaped like the page holding
//! just those members, or `None` when a path is not plain (then the page is parsed whole).
//!
//! Invariant: read on the envelope, every such path answers as it would on the whole page
//! parsed; the items around it cost a skim, never a `Value`. Pure: no I/O.

use std::collections::BTreeMap;

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
        let mut found = Vec::with_capacity(paths.len());
        visit(
            text,
            paths.iter().map(Vec::as_slice).enumerate().collect(),
            &mut found,
        );
        found.sort_by_key(|(path, _)| *path);
        let mut tree = Value::Null;
        for (path, raw) in found {
            place(&mut tree, &paths[path], serde_json::from_str(raw).ok()?)?;
        }
        Some(tree)
    }
}

/// Follows `paths` (each numbered, with the steps left) from `node`, and adds the text each
/// leads to, if any, to `found`. Paths that share a step share its reading: each list or object on
/// the way is skimmed once, however many paths pass through it.
fn visit<'t>(node: &'t str, paths: Vec<(usize, &[Step])>, found: &mut Vec<(usize, &'t str)>) {
    let (here, mut deeper): (Vec<_>, Vec<_>) = paths.into_iter().partition(|(_, s)| s.is_empty());
    found.extend(here.into_iter().map(|(path, _)| (path, node)));
    let wants = |member: bool| {
        deeper
            .iter()
            .any(|(_, steps)| matches!(steps[0], Step::Member(_)) == member)
    };
    // A repeated member: the last copy wins, as when the page is parsed. A node of another kind
    // holds nothing at any step.
    let members: Option<BTreeMap<String, &'t RawValue>> = wants(true)
        .then(|| serde_json::from_str(node).ok())
        .flatten();
    let list: Option<Vec<&'t RawValue>> = wants(false)
        .then(|| serde_json::from_str(node).ok())
        .flatten();
    while let Some((_, steps)) = deeper.first() {
        let step = steps[0].clone();
        let (same, other): (Vec<_>, Vec<_>) = deeper.into_iter().partition(|(_, s)| s[0] == step);
        deeper = other;
        let child = match &step {
            Step::Member(name) => members.as_ref().and_then(|m| m.get(name.as_str())),
            Step::Index(at) => list.as_ref().and_then(|list| {
                let at = if *at < 0 {
                    list.len()
                        .checked_sub(usize::try_from(at.unsigned_abs()).ok()?)?
                } else {
                    usize::try_from(*at).ok()?
                };
                list.get(at)
            }),
        };
        if let Some(child) = child {
            let rest = same.into_iter().map(|(path, s)| (path, &s[1..])).collect();
            visit(child.get(), rest, found);
        }
    }
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
