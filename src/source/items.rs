//! Items: the records of one fetched page, taken out of its decoded body.
//!
//! In: a page's body (JSON, or an XML page's tree read by the xmltodict convention) and the
//! resource's `items` JSONPath, compiled and as written. Out: the page's items, or a message that
//! names the path and says what the response holds instead. Where the list is at a plain member
//! path, or the text is JSON lines, the items' spans in the text instead, found without parsing
//! them ([`split_items`], [`split_lines`]).
//!
//! Invariant: an empty page is only a list that is there and empty (or, in XML, the element that
//! would hold it, without children); a path that misses is an error, never an empty page, since
//! an empty page read as a listing's end would look like deletions. Pure: no I/O.

use serde_json::Value;
use serde_json_path::JsonPath;

use super::envelope::Envelope;

/// Takes the items out of a response body: the nodes `items` selects (one array node is
/// unwrapped), or the body itself, which must then be an array.
pub fn extract_items(
    body: Value,
    items: Option<&JsonPath>,
    items_text: Option<&str>,
) -> Result<Vec<Value>, String> {
    let Some(path) = items else {
        return match body {
            Value::Array(list) => Ok(list),
            other => Err(format!(
                "the response is {}, not a JSON array (hint: set `items` to the JSONPath of the list, e.g. \"$.data\")",
                kind(&other)
            )),
        };
    };
    let text = items_text.unwrap_or("items");
    let nodes = path.query(&body).all();
    match nodes.as_slice() {
        [] if selects_members_of_empty(&body, text) => Ok(Vec::new()),
        [] => Err(format!(
            "`items = \"{text}\"` matches nothing in the response (hint: check the path against a real response)"
        )),
        [Value::Array(list)] => Ok(list.clone()),
        [Value::Null] => Err(format!("`items = \"{text}\"` is null in the response")),
        nodes if nodes.iter().all(|n| n.is_object()) => {
            Ok(nodes.iter().map(|n| (*n).clone()).collect())
        }
        [one] => Err(format!(
            "`items = \"{text}\"` selects {}, not a list of items",
            kind(one)
        )),
        _ => Err(format!(
            "`items = \"{text}\"` selects several values that are not all objects"
        )),
    }
}

/// Takes the items out of an XML page's tree ([`super::decode::xml`]). As [`extract_items`], and:
/// one matched element is a one-item list (the xmltodict convention cannot tell it from a list),
/// and a path whose last step misses under an element that is there (`$.orders.order` in
/// `<orders/>`) is an empty page, since XML writes an empty list as an element without children.
pub fn extract_xml_items(
    body: Value,
    items: Option<&JsonPath>,
    items_text: Option<&str>,
) -> Result<Vec<Value>, String> {
    let Some(path) = items else {
        let root = body
            .as_object()
            .and_then(|o| o.keys().next())
            .map(String::as_str)
            .unwrap_or("root");
        return Err(format!(
            "the response is XML; its root element <{root}> is not a list (hint: set `items` to the JSONPath of the entries, e.g. items = \"$['{root}'].entry\")"
        ));
    };
    let text = items_text.unwrap_or("items");
    if path.query(&body).all().is_empty() && parent_is_there(&body, text) {
        return Ok(Vec::new());
    }
    extract_items(body, Some(path), Some(text))
}

/// Whether the path `items` without its last member step (`.name` or `['name']`) selects an
/// element without children (`null`, or an object of attributes only): the element that would
/// hold the list, empty. An element with other children means the path is wrong, not the page
/// empty.
fn parent_is_there(body: &Value, items: &str) -> bool {
    let items = items.trim();
    let cut = if items.ends_with(']') {
        items.rfind("['").or_else(|| items.rfind("[\""))
    } else {
        items.rfind('.')
    };
    let Some(parent) = cut.map(|at| &items[..at]).filter(|p| !p.is_empty()) else {
        return false;
    };
    let Ok(parent) = JsonPath::parse(parent) else {
        return false;
    };
    match parent.query(body).all().as_slice() {
        [Value::Null] => true,
        [Value::Object(map)] => map.keys().all(|k| k.starts_with('@') || k == "#text"),
        _ => false,
    }
}

/// Whether `items` ends in a wildcard (`[*]`, `.*`) over a list or object that is there and empty:
/// an empty page, not a path that misses.
fn selects_members_of_empty(body: &Value, items: &str) -> bool {
    let items = items.trim();
    let Some(parent) = items
        .strip_suffix("[*]")
        .or_else(|| items.strip_suffix(".*"))
    else {
        return false;
    };
    let Ok(parent) = JsonPath::parse(parent) else {
        return false;
    };
    match parent.query(body).all().as_slice() {
        [Value::Array(list)] => list.is_empty(),
        [Value::Object(map)] => map.is_empty(),
        _ => false,
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The member names of a JSONPath that is only that (`$`, `$.data`, `$.a.b`, `$['odd key']`).
pub(super) fn member_chain(path: &str) -> Option<Vec<String>> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut chain = Vec::new();
    while !rest.is_empty() {
        if let Some(after) = rest.strip_prefix('.') {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            let name = &after[..end];
            if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
                return None;
            }
            chain.push(name.to_owned());
            rest = &after[end..];
        } else {
            let after = rest
                .strip_prefix("['")
                .or_else(|| rest.strip_prefix("[\""))?;
            let quote = if rest.starts_with("['") { "']" } else { "\"]" };
            let end = after.find(quote)?;
            let name = &after[..end];
            if name.contains(['\\', '\'', '"']) {
                return None;
            }
            chain.push(name.to_owned());
            rest = &after[end + 2..];
        }
    }
    Some(chain)
}

/// The spans of the items of a page whose list is at `chain` (member names from the root), found
/// in one skim of the text without parsing the items ([`Envelope::cut`] with no other paths).
/// `None` when the page is not shaped so (then the page is parsed and [`extract_items`] says what
/// is wrong, or handles what is unusual).
pub(super) fn split_items(text: &str, chain: &[String]) -> Option<Vec<std::ops::Range<usize>>> {
    Envelope::new([]).cut(text, chain).map(|(spans, _)| spans)
}

/// The spans of the values of JSON lines (one value per line, blank lines skipped), found
/// without parsing them; or the first line (counted from 1) that holds no one JSON value, and why.
pub(super) fn split_lines(
    text: &str,
) -> Result<Vec<std::ops::Range<usize>>, (usize, serde_json::Error)> {
    let base = text.as_ptr() as usize;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(i, line)| {
            let value: &serde_json::value::RawValue =
                serde_json::from_str(line).map_err(|e| (i + 1, e))?;
            let start = value.get().as_ptr() as usize - base;
            Ok(start..start + value.get().len())
        })
        .collect()
}

pub(super) fn count_items(body: &Value, path: &serde_json_path::JsonPath) -> usize {
    let nodes = path.query(body).all();
    match nodes.as_slice() {
        [Value::Array(list)] => list.len(),
        nodes => nodes.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn xml_items_one_element_is_a_list_and_an_empty_parent_an_empty_page() {
        let path = JsonPath::parse("$.orders.order").unwrap();
        let text = Some("$.orders.order");
        let one = json!({"orders": {"order": {"@id": "1"}}});
        assert_eq!(extract_xml_items(one, Some(&path), text).unwrap().len(), 1);
        for empty in [json!({"orders": null}), json!({"orders": {"@count": "0"}})] {
            assert!(
                extract_xml_items(empty, Some(&path), text)
                    .unwrap()
                    .is_empty()
            );
        }
        let wrong = json!({"orders": {"ordr": {"@id": "1"}}});
        let err = extract_xml_items(wrong, Some(&path), text).unwrap_err();
        assert!(err.contains("matches nothing"), "{err}");
        let err = extract_xml_items(json!({"orders": null}), None, None).unwrap_err();
        assert!(err.contains("<orders>") && err.contains("items"), "{err}");
    }

    #[test]
    fn items_extraction() {
        let data = JsonPath::parse("$.data").unwrap();
        assert_eq!(
            extract_items(json!({"data": [1, 2]}), Some(&data), Some("$.data")).unwrap(),
            vec![json!(1), json!(2)]
        );
        let each = JsonPath::parse("$.data[*]").unwrap();
        assert_eq!(
            extract_items(json!({"data": [{"a": 1}, {"a": 2}]}), Some(&each), None)
                .unwrap()
                .len(),
            2
        );
        let err = extract_items(json!({"error": "x"}), Some(&data), Some("$.data")).unwrap_err();
        assert!(err.contains("matches nothing"), "{err}");
        // A wildcard over a list that is there and empty is an empty page; over nothing, a miss.
        for empty in [json!({"data": []}), json!({"data": {}})] {
            assert_eq!(
                extract_items(empty, Some(&each), Some("$.data[*]")).unwrap(),
                Vec::<Value>::new()
            );
        }
        let members = JsonPath::parse("$.data.*").unwrap();
        assert!(
            extract_items(json!({"data": {}}), Some(&members), Some("$.data.*"))
                .unwrap()
                .is_empty()
        );
        let err = extract_items(json!({"other": []}), Some(&each), Some("$.data[*]")).unwrap_err();
        assert!(err.contains("matches nothing"), "{err}");
        let err = extract_items(json!({"data": 1}), None, None).unwrap_err();
        assert!(err.contains("not a JSON array"), "{err}");
    }

    #[test]
    fn member_chains_are_recognised_and_anything_else_is_not() {
        let chain = |p: &str| member_chain(p);
        assert_eq!(chain("$"), Some(vec![]));
        assert_eq!(chain("$.data"), Some(vec!["data".to_owned()]));
        assert_eq!(
            chain("$.a.b_2"),
            Some(vec!["a".to_owned(), "b_2".to_owned()])
        );
        assert_eq!(
            chain("$['odd key'][\"x\"]"),
            Some(vec!["odd key".to_owned(), "x".to_owned()])
        );
        for other in ["$.data[*]", "$..id", "$.data[0]", "$.a-b", "data", "$.1"] {
            assert_eq!(chain(other), None, "{other}");
        }
    }

    #[test]
    fn items_are_cut_out_of_the_text_as_sent() {
        let text = r#"{"meta": {"n": 2}, "data": [ {"id": 1, "a": [1, 2]},{"id":"x\"y"} ], "data": [{"id": 3}]}"#;
        let spans = split_items(text, &["data".to_owned()]).unwrap();
        let items: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(
            items,
            [r#"{"id": 3}"#],
            "a repeated key: the last copy wins"
        );
        let text = r#"[ {"id": 1, "a": [1, 2]},{"id":"x\"y"} ]"#;
        let spans = split_items(text, &[]).unwrap();
        let items: Vec<&str> = spans.iter().map(|s| &text[s.clone()]).collect();
        assert_eq!(items, [r#"{"id": 1, "a": [1, 2]}"#, r#"{"id":"x\"y"}"#]);
        assert_eq!(
            split_items(r#"{"data": {"id": 1}}"#, &["data".to_owned()]),
            None
        );
        assert_eq!(
            split_items(r#"{"data": [1]} x"#, &["data".to_owned()]),
            None
        );
        assert_eq!(split_items(r#"{"other": []}"#, &["data".to_owned()]), None);
    }
}
