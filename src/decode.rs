//! Decode: a page's body (JSON or XML) → the JSON tree the rest of the spine handles.
//!
//! In: a body's text and the resource's [`Format`] (or, when it sets none, the response's
//! `Content-Type`). Out: a [`Value`], or a message saying what the body is and what to do.
//!
//! XML follows the xmltodict convention, so `items`, `id`, `ignore` and the pagers are the same
//! JSONPaths and field paths as for JSON:
//! - the document is an object with one member, the root element: `{"feed": …}`;
//! - an element is an object keyed by its child elements' names, its attributes as `"@name"`,
//!   the namespaces it declares as `"@xmlns"` / `"@xmlns:p"`, and its text (when it also has
//!   attributes or children) as `"#text"`;
//! - an element with only text is that string; an empty one is `null`;
//! - repeated sibling elements become an array, in document order; a single one stays an object
//!   (the convention's known ambiguity: `items` treats one matched object as a one-item list);
//! - names are kept as written, prefixes included (`"soap:Envelope"`, `"@xml:lang"`);
//! - text is trimmed; whitespace-only text is dropped; mixed content (text between child
//!   elements) keeps its pieces, trimmed and joined by one space, as `"#text"`; CDATA is text;
//!   entity and character references are expanded; comments and processing instructions dropped;
//! - every value is a string: XML has no numbers.
//!
//! Invariant (safety): no DTD is read (so no entity expansion and no external entity: billion
//! laughs and XXE are refused, not defused), at most [`MAX_NODES`] nodes and [`MAX_DEPTH`] levels
//! of elements; the body has already been capped at `max_page_bytes`. Pure: no I/O.

use serde_json::{Map, Value};

use crate::encode::Format;

/// The most XML nodes (elements, attributes' owners, text) one page may hold.
pub const MAX_NODES: u32 = 1_000_000;

/// The deepest nesting of elements one page may hold. Each level can become two of JSON (an
/// object holding an array), and JSON stays under `serde_json`'s limit of 128.
pub const MAX_DEPTH: usize = 60;

/// Which format a body is in: the resource's `format` if it sets one, else its `Content-Type`
/// (`application/xml`, `text/xml`, `*+xml`), else JSON.
pub fn format_of(configured: Option<Format>, content_type: Option<&str>) -> Format {
    configured.unwrap_or_else(|| match content_type.map(media_type).as_deref() {
        Some(t) if is_xml_media(t) => Format::Xml,
        _ => Format::Json,
    })
}

/// The media type of a `Content-Type` value, lower case, parameters dropped.
fn media_type(content_type: &str) -> String {
    let media = content_type.split(';').next().unwrap_or_default();
    media.trim().to_ascii_lowercase()
}

/// `application/xml`, `text/xml` and every `+xml` type; not XHTML, which is a web page.
fn is_xml_media(media: &str) -> bool {
    media != "application/xhtml+xml"
        && (media == "application/xml" || media == "text/xml" || media.ends_with("+xml"))
}

/// A body's text, with a byte order mark dropped; UTF-16 and other non-UTF-8 bodies refused by
/// name (RFC 8259 §8.1 lets a JSON parser ignore a BOM; XML 1.0 §4.3.3 makes it the marker).
pub fn text(mut body: Vec<u8>) -> Result<String, String> {
    if body.starts_with(b"\xEF\xBB\xBF") {
        body.drain(..3);
    }
    if body.starts_with(b"\xFF\xFE") || body.starts_with(b"\xFE\xFF") {
        return Err("the response is UTF-16 (it starts with a UTF-16 byte order mark); pollhook reads UTF-8 only (hint: ask the API for UTF-8, e.g. headers = { Accept-Charset = \"utf-8\" })".into());
    }
    String::from_utf8(body).map_err(|e| format!("the response is not UTF-8 ({e})"))
}

/// Parses XML `text` into the JSON tree of the xmltodict convention (see the module header).
pub fn xml(text: &str) -> Result<Value, String> {
    let options = roxmltree::ParsingOptions {
        allow_dtd: false,
        nodes_limit: MAX_NODES,
        ..Default::default()
    };
    let doc = roxmltree::Document::parse_with_options(text, options).map_err(|e| match e {
        roxmltree::Error::DtdDetected => "the XML has a document type declaration (<!DOCTYPE …>), which pollhook refuses: DTDs bring entity expansion and external entities (hint: ask the API for the document without one)".to_owned(),
        roxmltree::Error::NodesLimitReached => format!(
            "the XML has more than {MAX_NODES} nodes; pollhook stops there (hint: ask for smaller pages)"
        ),
        e => format!("the response is not well-formed XML: {e}"),
    })?;
    let root = doc.root_element();
    let mut out = Map::new();
    out.insert(qname(text, root).to_owned(), element(text, root, 1)?);
    Ok(Value::Object(out))
}

/// One element as its value in the tree.
fn element(text: &str, node: roxmltree::Node, depth: usize) -> Result<Value, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "the XML nests elements more than {MAX_DEPTH} deep; pollhook stops there"
        ));
    }
    let mut map = Map::new();
    for (prefix, uri) in declared_namespaces(node) {
        let key = match prefix {
            Some(prefix) => format!("@xmlns:{prefix}"),
            None => "@xmlns".to_owned(),
        };
        map.insert(key, Value::String(uri.to_owned()));
    }
    for attribute in node.attributes() {
        let name = text
            .get(attribute.range_qname())
            .unwrap_or(attribute.name());
        map.insert(
            format!("@{name}"),
            Value::String(attribute.value().to_owned()),
        );
    }
    let mut pieces: Vec<&str> = Vec::new();
    let mut children = false;
    for child in node.children() {
        if child.is_element() {
            children = true;
            let value = element(text, child, depth + 1)?;
            push_child(&mut map, qname(text, child), value);
        } else if child.is_text() {
            let piece = child.text().unwrap_or_default().trim();
            if !piece.is_empty() {
                pieces.push(piece);
            }
        }
    }
    let joined = pieces.join(" ");
    Ok(match (map.is_empty() && !children, joined.is_empty()) {
        (true, true) => Value::Null,
        (true, false) => Value::String(joined),
        (false, true) => Value::Object(map),
        (false, false) => {
            map.insert("#text".into(), Value::String(joined));
            Value::Object(map)
        }
    })
}

/// Adds a child under its name; a second child of that name turns the member into an array.
fn push_child(map: &mut Map<String, Value>, name: &str, value: Value) {
    match map.get_mut(name) {
        None => {
            map.insert(name.to_owned(), value);
        }
        Some(Value::Array(list)) => list.push(value),
        Some(first) => {
            let first = first.take();
            map.insert(name.to_owned(), Value::Array(vec![first, value]));
        }
    }
}

/// An element's name as written, prefix included: roxmltree resolves prefixes to URIs, and the
/// convention keeps the prefix.
fn qname<'t>(text: &'t str, node: roxmltree::Node) -> &'t str {
    let start = node.range().start + 1;
    let rest = text.get(start..).unwrap_or_default();
    let end = rest
        .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
        .unwrap_or(rest.len());
    &rest[..end]
}

/// The namespaces `node` declares itself (roxmltree lists every namespace in scope).
fn declared_namespaces<'a>(node: roxmltree::Node<'a, 'a>) -> Vec<(Option<&'a str>, &'a str)> {
    let inherited: Vec<(Option<&str>, &str)> = node
        .parent_element()
        .map(|p| p.namespaces().map(|ns| (ns.name(), ns.uri())).collect())
        .unwrap_or_default();
    node.namespaces()
        .map(|ns| (ns.name(), ns.uri()))
        .filter(|ns| ns.0 != Some("xml") && !inherited.contains(ns))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tree(text: &str) -> Value {
        xml(text).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    // Known answers: these decide every XML item's hash, so a change here is a change of every
    // snapshot taken from XML.

    #[test]
    fn attributes_text_and_children() {
        assert_eq!(
            tree(
                r#"<order id="7" status="open"><total currency="EUR">12.50</total><note/></order>"#
            ),
            json!({"order": {
                "@id": "7", "@status": "open",
                "total": {"@currency": "EUR", "#text": "12.50"},
                "note": null
            }})
        );
        assert_eq!(tree("<a>  x  </a>"), json!({"a": "x"}));
        assert_eq!(tree("<a>\n  </a>"), json!({"a": null}));
    }

    #[test]
    fn repeated_siblings_are_an_array_and_a_single_one_is_not() {
        assert_eq!(
            tree("<orders><order><id>1</id></order><order><id>2</id></order><n>2</n></orders>"),
            json!({"orders": {"order": [{"id": "1"}, {"id": "2"}], "n": "2"}})
        );
        assert_eq!(
            tree("<orders><order><id>1</id></order></orders>"),
            json!({"orders": {"order": {"id": "1"}}})
        );
        // Interleaved: still one array, in document order.
        assert_eq!(
            tree("<r><a>1</a><b>x</b><a>2</a></r>"),
            json!({"r": {"a": ["1", "2"], "b": "x"}})
        );
    }

    #[test]
    fn namespaces_keep_their_prefixes() {
        let soap = r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" xmlns:m="urn:orders">
            <soap:Body><m:Orders><m:Order m:id="1" xml:lang="da">A</m:Order></m:Orders></soap:Body>
        </soap:Envelope>"#;
        assert_eq!(
            tree(soap),
            json!({"soap:Envelope": {
                "@xmlns:soap": "http://schemas.xmlsoap.org/soap/envelope/",
                "@xmlns:m": "urn:orders",
                "soap:Body": {"m:Orders": {"m:Order": {"@m:id": "1", "@xml:lang": "da", "#text": "A"}}}
            }})
        );
        assert_eq!(
            tree(r#"<feed xmlns="http://www.w3.org/2005/Atom"><id>x</id></feed>"#),
            json!({"feed": {"@xmlns": "http://www.w3.org/2005/Atom", "id": "x"}})
        );
    }

    #[test]
    fn cdata_entities_and_mixed_content() {
        assert_eq!(
            tree("<a><![CDATA[<b>1 & 2</b>]]></a>"),
            json!({"a": "<b>1 & 2</b>"})
        );
        assert_eq!(
            tree(r#"<a t="&quot;q&quot;">&lt;&amp;&gt; &#233;&#x263A;</a>"#),
            json!({"a": {"@t": "\"q\"", "#text": "<&> é☺"}})
        );
        assert_eq!(
            tree("<p>Hello <b>bold</b> world<!-- c --><?pi x?></p>"),
            json!({"p": {"b": "bold", "#text": "Hello world"}})
        );
    }

    #[test]
    fn a_bom_is_dropped_and_utf16_refused_by_name() {
        let mut body = b"\xEF\xBB\xBF".to_vec();
        body.extend_from_slice(br#"<?xml version="1.0" encoding="UTF-8"?><a>1</a>"#);
        assert_eq!(tree(&text(body).unwrap()), json!({"a": "1"}));
        let utf16: Vec<u8> = [0xFF, 0xFE]
            .into_iter()
            .chain("<a/>".encode_utf16().flat_map(u16::to_le_bytes))
            .collect();
        let err = text(utf16).unwrap_err();
        assert!(
            err.contains("UTF-16") && err.contains("UTF-8 only"),
            "{err}"
        );
    }

    #[test]
    fn hostile_documents_are_refused() {
        let laughs = r#"<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;">]><lolz>&lol2;</lolz>"#;
        let err = xml(laughs).unwrap_err();
        assert!(err.contains("DOCTYPE") && err.contains("refuses"), "{err}");
        let xxe = r#"<!DOCTYPE r [<!ENTITY x SYSTEM "file:///etc/passwd">]><r>&x;</r>"#;
        assert!(xml(xxe).unwrap_err().contains("DOCTYPE"));
        let deep = format!("{}{}", "<a>".repeat(100_000), "</a>".repeat(100_000));
        let err = xml(&deep).unwrap_err();
        assert!(
            err.contains(&format!("more than {MAX_DEPTH} deep")),
            "{err}"
        );
        let wide = format!("<r>{}</r>", "<a/>".repeat(MAX_NODES as usize));
        assert!(xml(&wide).unwrap_err().contains("nodes"));
        let err = xml("<a><b></a>").unwrap_err();
        assert!(
            err.starts_with("the response is not well-formed XML"),
            "{err}"
        );
    }

    #[test]
    fn format_comes_from_config_then_content_type() {
        assert_eq!(format_of(None, Some("application/xml")), Format::Xml);
        assert_eq!(
            format_of(None, Some("text/xml; charset=utf-8")),
            Format::Xml
        );
        assert_eq!(format_of(None, Some("application/atom+xml")), Format::Xml);
        assert_eq!(format_of(None, Some("application/xhtml+xml")), Format::Json);
        assert_eq!(format_of(None, Some("application/json")), Format::Json);
        assert_eq!(format_of(None, None), Format::Json);
        assert_eq!(
            format_of(Some(Format::Xml), Some("application/json")),
            Format::Xml
        );
    }
}
