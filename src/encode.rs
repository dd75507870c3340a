//! Encode: an event → the body an endpoint receives, in its [`Format`], and that body's media type.
//!
//! In: the event's JSON as stored (DESIGN.md §5) and the endpoint's format. Out: [`Encoded`]
//! bytes and `Content-Type`. JSON is the stored text itself; XML is `<event>` holding the same
//! fields in the same order, `data` and `previous` rendered back by the xmltodict convention the
//! XML sources are read with ([`crate::decode`]): `"@name"` members are attributes (`"@xmlns:p"`
//! declares a prefix), `"#text"` is text, an array is repeated elements, `null` an empty element,
//! and numbers and booleans their JSON text. So an item that came from XML goes out as equivalent
//! XML (sibling order by name, as the JSON tree keeps it). `changes` holds one `<change>` per
//! RFC 6902 operation; an array item or `data` holds one `<item>` per element.
//!
//! A member name that is not an XML name (`"odd key"`, `"1st"`) becomes `<field name="odd key">`;
//! a prefix the item uses but does not declare (the source declared it on an ancestor) is declared
//! where it is used, as [`UNDECLARED`]`<prefix>`; a character XML 1.0 cannot carry (most controls)
//! becomes U+FFFD.
//!
//! Invariant: the bytes depend on the event alone (object members in key order, no clock, no
//! randomness), so every retry signs and sends the same body. Pure: no I/O.

use std::fmt::Write;

use serde_json::{Map, Value};

/// How a body is written: a source's pages, an endpoint's webhooks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Format {
    /// JSON (RFC 8259).
    #[default]
    Json,
    /// XML 1.0, mapped to and from the JSON tree by the xmltodict convention (`decode`,
    /// `encode`).
    Xml,
}

impl Format {
    /// `json` or `xml`, as written in config and stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Xml => "xml",
        }
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "json" => Ok(Format::Json),
            "xml" => Ok(Format::Xml),
            other => Err(format!(
                "`{other}` is not a format; use \"json\" or \"xml\""
            )),
        }
    }
}

/// The top-level fields of an event, in wire order (DESIGN.md §5).
const EVENT_FIELDS: [&str; 10] = [
    "id",
    "type",
    "source",
    "resource",
    "action",
    "resource_id",
    "detected_at",
    "data",
    "previous",
    "changes",
];

/// A body ready to sign and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The exact bytes to sign and POST.
    pub body: String,
    /// Its `Content-Type`.
    pub content_type: &'static str,
}

/// Why an event could not be encoded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The stored event is not a JSON object (a corrupt row).
    #[error("the stored event is not a JSON object")]
    NotAnObject,
}

/// Encodes the event `event_json` (compact JSON, as stored) for an endpoint taking `format`.
pub fn encode(format: Format, event_json: &str) -> Result<Encoded, EncodeError> {
    match format {
        Format::Json => Ok(Encoded {
            body: event_json.to_owned(),
            content_type: "application/json",
        }),
        Format::Xml => {
            let event: Map<String, Value> =
                serde_json::from_str(event_json).map_err(|_| EncodeError::NotAnObject)?;
            Ok(Encoded {
                body: xml_event(&event),
                content_type: "application/xml",
            })
        }
    }
}

/// `<event>` with the event's fields: the known ones in wire order, then any other in key order.
pub fn xml_event(event: &Map<String, Value>) -> String {
    let mut out = String::from(r#"<?xml version="1.0" encoding="UTF-8"?><event>"#);
    let known = EVENT_FIELDS
        .iter()
        .filter_map(|k| Some((*k, event.get(*k)?)));
    let others = event
        .iter()
        .filter(|(k, _)| !EVENT_FIELDS.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v));
    for (name, value) in known.chain(others) {
        match value {
            // A field appears once: a list goes inside it, one element per entry.
            Value::Array(list) => {
                let each = if name == "changes" { "change" } else { "item" };
                open(&mut out, name, &[], false);
                for entry in list {
                    element(&mut out, each, entry, &[]);
                }
                close(&mut out, name);
            }
            value => element(&mut out, name, value, &[]),
        }
    }
    out.push_str("</event>");
    out
}

/// Writes `value` as the element(s) `name`; `scope` holds the prefixes declared around it.
fn element(out: &mut String, name: &str, value: &Value, scope: &[String]) {
    if let Value::Array(list) = value {
        // Repeated siblings; a list directly inside a list nests as `<item>`s.
        for entry in list {
            match entry {
                Value::Array(_) => {
                    open(out, name, &[], false);
                    element(out, "item", entry, scope);
                    close(out, name);
                }
                entry => element(out, name, entry, scope),
            }
        }
        return;
    }
    let tag = tag(name);
    let mut scope = scope.to_vec();
    let mut attributes: Vec<(String, String)> = Vec::new();
    let mut children = Vec::new();
    let mut text = None;
    match value {
        Value::Object(map) => {
            scope.extend(
                map.keys()
                    .filter_map(|k| k.strip_prefix("@xmlns:"))
                    .map(str::to_owned),
            );
            for (key, value) in map {
                match (key.strip_prefix('@'), value) {
                    (Some(attr), Value::String(_) | Value::Number(_) | Value::Bool(_))
                        if is_name(attr) =>
                    {
                        attributes.push((attr.to_owned(), scalar(value)))
                    }
                    _ if key == "#text" && !value.is_object() && !value.is_array() => {
                        text = Some(scalar(value))
                    }
                    _ => children.push((key.as_str(), value)),
                }
            }
        }
        Value::Null => {}
        scalar_value => text = Some(scalar(scalar_value)),
    }
    // A prefix used here but declared nowhere around (the source declared it on an ancestor of
    // the item) is declared here, so the document stays namespace-well-formed.
    let used: Vec<String> = std::iter::once(name)
        .filter(|_| matches!(tag, Tag::Name(_)))
        .chain(attributes.iter().map(|(a, _)| a.as_str()))
        .filter_map(|n| n.split_once(':').map(|(prefix, _)| prefix))
        .filter(|prefix| !matches!(*prefix, "xml" | "xmlns"))
        .map(str::to_owned)
        .collect();
    for prefix in used {
        if !scope.contains(&prefix) {
            scope.push(prefix.clone());
            attributes.push((format!("xmlns:{prefix}"), format!("{UNDECLARED}{prefix}")));
        }
    }
    let empty = text.is_none() && children.is_empty();
    open_tag(out, &tag, &attributes, empty);
    if empty {
        return;
    }
    if let Some(text) = text {
        escape(out, &text, false);
    }
    for (key, value) in children {
        element(out, key, value, &scope);
    }
    close_tag(out, &tag);
}

/// The namespace given to a prefix an item uses without declaring it.
pub const UNDECLARED: &str = "urn:pollhook:undeclared:";

/// A string's text, or a number's or boolean's JSON text.
fn scalar(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// How a member name is written: itself where it is an XML name, else `field` carrying it.
enum Tag<'a> {
    Name(&'a str),
    Field(&'a str),
}

fn tag(name: &str) -> Tag<'_> {
    if is_name(name) {
        Tag::Name(name)
    } else {
        Tag::Field(name)
    }
}

fn open(out: &mut String, name: &str, attributes: &[(String, String)], empty: bool) {
    open_tag(out, &Tag::Name(name), attributes, empty)
}

fn close(out: &mut String, name: &str) {
    close_tag(out, &Tag::Name(name))
}

fn open_tag(out: &mut String, tag: &Tag, attributes: &[(String, String)], empty: bool) {
    match tag {
        Tag::Name(name) => {
            let _ = write!(out, "<{name}");
        }
        Tag::Field(name) => {
            out.push_str(r#"<field name=""#);
            escape(out, name, true);
            out.push('"');
        }
    }
    for (name, value) in attributes {
        let _ = write!(out, r#" {name}=""#);
        escape(out, value, true);
        out.push('"');
    }
    out.push_str(if empty { "/>" } else { ">" });
}

fn close_tag(out: &mut String, tag: &Tag) {
    match tag {
        Tag::Name(name) => {
            let _ = write!(out, "</{name}>");
        }
        Tag::Field(_) => out.push_str("</field>"),
    }
}

/// Whether `name` can be written as an element or attribute name: an XML NCName (XML 1.0 §2.3,
/// ASCII punctuation only), or `prefix:local` of two.
fn is_name(name: &str) -> bool {
    let ncname = |part: &str| {
        let mut chars = part.chars();
        chars.next().is_some_and(|c| c == '_' || c.is_alphabetic())
            && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
    };
    match name.split_once(':') {
        None => ncname(name),
        Some((prefix, local)) => ncname(prefix) && ncname(local),
    }
}

/// Escapes text for element content, or for a double-quoted attribute value (where tabs and
/// line breaks are written as references, so attribute normalization keeps them).
fn escape(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\r' => out.push_str("&#13;"),
            '\n' if attribute => out.push_str("&#10;"),
            '\t' if attribute => out.push_str("&#9;"),
            // XML 1.0 §2.2: no other control characters, no U+FFFE or U+FFFF.
            c if (c < ' ' && !matches!(c, '\t' | '\n')) || matches!(c, '\u{FFFE}' | '\u{FFFF}') => {
                out.push('\u{FFFD}')
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode;
    use serde_json::json;

    fn event(data: Value, previous: Value, changes: Value) -> String {
        json!({
            "id": "evt_1", "type": "orders.updated", "source": "erp", "resource": "orders",
            "action": "updated", "resource_id": "7", "detected_at": "2026-11-22T23:40:00.000Z",
            "data": data, "previous": previous, "changes": changes
        })
        .to_string()
    }

    #[test]
    fn json_is_the_stored_text_as_is() {
        let text = event(json!({"id": 7}), Value::Null, Value::Null);
        let encoded = encode(Format::Json, &text).unwrap();
        assert_eq!(encoded.body, text);
        assert_eq!(encoded.content_type, "application/json");
    }

    /// The known answer: these bytes are what XML receivers verify signatures over.
    #[test]
    fn xml_event_known_answer() {
        let text = event(
            json!({"@id": "7", "status": "shipped", "line": [{"sku": "A"}, {"sku": "B&C"}], "qty": 2, "ok": true, "note": null}),
            json!({"@id": "7", "status": "open"}),
            json!([{"op": "replace", "path": "/status", "value": "shipped"}]),
        );
        let encoded = encode(Format::Xml, &text).unwrap();
        assert_eq!(encoded.content_type, "application/xml");
        assert_eq!(
            encoded.body,
            concat!(
                r#"<?xml version="1.0" encoding="UTF-8"?><event><id>evt_1</id><type>orders.updated</type>"#,
                "<source>erp</source><resource>orders</resource><action>updated</action>",
                "<resource_id>7</resource_id><detected_at>2026-11-22T23:40:00.000Z</detected_at>",
                r#"<data id="7"><line><sku>A</sku></line><line><sku>B&amp;C</sku></line><note/><ok>true</ok><qty>2</qty><status>shipped</status></data>"#,
                r#"<previous id="7"><status>open</status></previous>"#,
                "<changes><change><op>replace</op><path>/status</path><value>shipped</value></change></changes>",
                "</event>"
            )
        );
        assert_eq!(
            encode(Format::Xml, &text).unwrap(),
            encoded,
            "deterministic"
        );
    }

    #[test]
    fn an_item_from_xml_round_trips() {
        let source = r#"<m:Order xmlns:m="urn:orders" m:id="1" status="open"><m:Line>A</m:Line><m:Line>B</m:Line><Total currency="EUR">9.50</Total><Empty/></m:Order>"#;
        let tree = decode::xml(source).unwrap();
        let item = tree["m:Order"].clone();
        let text = event(item.clone(), Value::Null, Value::Null);
        let body = encode(Format::Xml, &text).unwrap().body;
        let back = decode::xml(&body).unwrap();
        assert_eq!(back["event"]["data"], item);
        assert_eq!(back["event"]["previous"], Value::Null);
        assert_eq!(back["event"]["resource_id"], "7");
    }

    #[test]
    fn names_xml_cannot_carry_and_odd_text() {
        let text = event(
            json!({"odd key": "x", "1st": 1, "p:x": "unbound", "a": "tab\there\u{1}\r\n", "nested": [[1, 2]], "a b:c": 1}),
            Value::Null,
            Value::Null,
        );
        let body = encode(Format::Xml, &text).unwrap().body;
        assert!(body.contains(r#"<field name="1st">1</field>"#), "{body}");
        assert!(
            body.contains(r#"<field name="odd key">x</field>"#),
            "{body}"
        );
        assert!(
            body.contains(r#"<p:x xmlns:p="urn:pollhook:undeclared:p">unbound</p:x>"#),
            "{body}"
        );
        assert!(body.contains(r#"<field name="a b:c">1</field>"#), "{body}");
        assert!(body.contains("<a>tab\there\u{FFFD}&#13;\n</a>"), "{body}");
        assert!(
            body.contains("<nested><item>1</item><item>2</item></nested>"),
            "{body}"
        );
        decode::xml(&body).unwrap();
    }
}
