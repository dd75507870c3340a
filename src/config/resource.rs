//! A resource of a source: when it is polled, where its items are and what identifies them,
//! how its listing is paged, and its incremental and delete settings.

use std::collections::BTreeMap;
use std::time::Duration;

use super::problem::Problems;
use super::raw::*;
use super::values::*;
use super::*;

pub(super) fn validate_resource(
    mut raw: RawResource,
    source_at: &str,
    kind: &SourceKind,
    params: &BTreeMap<String, String>,
    p: &mut Problems,
) -> Option<ResourceConfig> {
    let exec = matches!(kind, SourceKind::Exec(_));
    let graphql = matches!(kind, SourceKind::Graphql(_));
    let feed = matches!(kind, SourceKind::Feed(_));
    let at = format!("{source_at}.resources[{}]", raw.name);
    if !valid_name(&raw.name) {
        p.push(
            format!("{at}.name"),
            format!("`{}` is not a usable name", raw.name),
            Some("use letters, digits, `-` and `_`"),
        );
    }
    let (when, jitter) = when(&raw, &at, p);
    let pagination = pagination(raw.pagination.take(), &at, p);
    let (format, request) = request(&raw, kind, pagination.as_ref(), &at, p);
    let items = raw
        .items
        .as_deref()
        .and_then(|text| json_path(text, &format!("{at}.items"), p));
    let id_texts = match raw.id {
        None => vec!["id".to_owned()],
        Some(OneOrMany::One(one)) => vec![one],
        Some(OneOrMany::Many(many)) => many,
    };
    if id_texts.is_empty() {
        p.push(format!("{at}.id"), "needs at least one field", None);
    }
    let field_paths = |texts: &[String], key: &str, p: &mut Problems| -> Vec<FieldPath> {
        texts
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                t.parse()
                    .map_err(|m: String| p.push(format!("{at}.{key}[{i}]"), m, None))
                    .ok()
            })
            .collect()
    };
    let id = field_paths(&id_texts, "id", p);
    let ignore = field_paths(&raw.ignore, "ignore", p);
    let variables = raw
        .query
        .iter()
        .filter_map(|(k, v)| Some((k.clone(), serde_json::to_value(v).ok()?)))
        .collect();
    let query = raw
        .query
        .into_iter()
        .filter_map(|(k, v)| match v {
            toml::Value::String(s) => Some((k, s)),
            toml::Value::Integer(_) | toml::Value::Float(_) | toml::Value::Boolean(_) => {
                Some((k, v.to_string()))
            }
            toml::Value::Table(table) => {
                // `orderby.id = "asc"` is TOML for a table `orderby` holding `id`.
                let (dotted, value) = dotted_key(&k, &table);
                p.push(
                    format!("{at}.query.{k}"),
                    "a query value must be a string, number or boolean, and this is a table",
                    Some(&format!(
                        "a dotted key makes a table in TOML; to send the parameter `{dotted}`, quote the key: \"{dotted}\" = {value}"
                    )),
                );
                None
            }
            _ => {
                p.push(
                    format!("{at}.query.{k}"),
                    "a query value must be a string, number or boolean",
                    None,
                );
                None
            }
        })
        .collect();
    let pagination = pagination?;
    if exec && !matches!(pagination, Pagination::None) {
        p.push(
            format!("{at}.pagination"),
            "an exec source prints the whole listing; it has no pages",
            Some("remove pagination"),
        );
    }
    let initial = match raw.initial.as_deref() {
        None | Some("baseline") => Initial::Baseline,
        Some("emit") => Initial::Emit,
        Some(other) => {
            p.push(
                format!("{at}.initial"),
                format!("`{other}` is not a choice"),
                Some(r#"initial = "baseline" (default) or "emit""#),
            );
            Initial::Baseline
        }
    };
    let max_delete_ratio = raw.max_delete_ratio.unwrap_or(0.5);
    if !(0.0..=1.0).contains(&max_delete_ratio) {
        p.push(
            format!("{at}.max_delete_ratio"),
            format!("{max_delete_ratio} is not between 0 and 1"),
            Some("0.5 holds back a listing that would delete more than half the snapshot"),
        );
    }
    let item_path = (raw.item_path).and_then(|item_path| {
        let item_path = item_path.replace("{path}", raw.path.as_deref().unwrap_or_default());
        let fail = |message: String, p: &mut Problems| {
            p.push(
                format!("{at}.item_path"),
                message,
                Some(r#"item_path = "/orders/{id}" (`{path}` stands for the resource's path)"#),
            );
            None
        };
        if exec || graphql {
            return fail(
                "only a REST resource can fetch an item alone by its URL".into(),
                p,
            );
        }
        if !item_path.contains("{id}") {
            return fail(format!("`{item_path}` has no `{{id}}` placeholder"), p);
        }
        // Source params are filled now; `{id}` per item, when a delete is confirmed.
        let filled: Result<Vec<String>, String> = (item_path.split("{id}"))
            .map(|part| fill_params(part, params))
            .collect();
        match filled {
            Ok(parts) => Some(parts.join("{id}")),
            Err(missing) => fail(
                format!("`{item_path}` needs `{{{missing}}}`, which the source does not set"),
                p,
            ),
        }
    });
    let deleted_after = match raw.deleted_after {
        // An item missing from the listing is fetched alone first: a 404 is proof enough.
        None if item_path.is_some() => 1,
        // Page and offset listings shift when an item is deleted between two requests: the item
        // after it slides onto a page already fetched and looks deleted. Waiting for a second
        // complete listing that lacks it keeps that from becoming a false `deleted`.
        None if matches!(
            pagination,
            Pagination::Page { .. } | Pagination::Offset { .. } | Pagination::Range { .. }
        ) =>
        {
            2
        }
        None => 1,
        Some(n) => number(
            Some(n),
            1,
            limits::DELETED_AFTER,
            format!("{at}.deleted_after"),
            p,
        ),
    };
    let incremental = (raw.incremental.take()).and_then(|inc| incremental(inc, exec, &at, p));
    let path = match raw.path {
        Some(path) => fill_params(&path, params).unwrap_or_else(|missing| {
            p.push(
                format!("{at}.path"),
                format!("`{path}` needs `{{{missing}}}`, which the source does not set"),
                Some(&format!(
                    "add params = {{ {missing} = \"…\" }} to the source"
                )),
            );
            path.clone()
        }),
        None if exec => raw.name.clone(),
        None if graphql => String::new(),
        None => {
            p.push(
                format!("{at}.path"),
                "a REST resource needs a path",
                Some(r#"path = "/orders""#),
            );
            String::new()
        }
    };
    match (&raw.document, graphql) {
        (None, true) => p.push(
            format!("{at}.document"),
            "a GraphQL resource needs its query",
            Some(r#"document = "query($after: String) { orders(after: $after) { nodes { id } pageInfo { hasNextPage endCursor } } }""#),
        ),
        (Some(_), false) => p.push(
            format!("{at}.document"),
            "only a GraphQL source (adapter = \"graphql\") sends a document",
            None,
        ),
        _ => {}
    }
    if feed && raw.items.is_some() {
        p.push(
            format!("{at}.items"),
            "a feed's items are its entries",
            Some("remove items"),
        );
    }
    if feed && !matches!(pagination, Pagination::None) {
        p.push(
            format!("{at}.pagination"),
            "a feed is one document; it has no pages",
            Some("remove pagination"),
        );
    }
    if graphql && raw.items.is_none() {
        p.push(
            format!("{at}.items"),
            "a GraphQL resource needs `items`, the JSONPath of its list",
            Some(r#"items = "$.data.orders.nodes""#),
        );
    }
    Some(ResourceConfig {
        name: raw.name,
        document: raw.document,
        variables,
        path,
        query,
        when: when?,
        jitter,
        items,
        items_text: raw.items,
        id,
        ignore,
        pagination,
        initial,
        max_delete_ratio,
        alert_after: 3,
        deleted_after,
        item_path,
        conditional: raw.conditional,
        incremental,
        format,
        request,
        // A feed lists its newest entries: an entry leaving it has aged out, not gone.
        window: raw.window.unwrap_or(feed),
    })
}

/// How a REST resource's pages are written and requested: `format`, `method`, `body`,
/// `content_type`. Only the REST engine reads them.
fn request(
    raw: &RawResource,
    kind: &SourceKind,
    pagination: Option<&Pagination>,
    at: &str,
    p: &mut Problems,
) -> (Option<Format>, Request) {
    let rest = matches!(kind, SourceKind::Rest(_));
    for (key, set) in [
        ("format", raw.format.is_some()),
        ("method", raw.method.is_some()),
        ("body", raw.body.is_some()),
        ("content_type", raw.content_type.is_some()),
    ] {
        if set && !rest {
            p.push(
                format!("{at}.{key}"),
                format!(
                    "only a REST source reads `{key}`; {} sources do not",
                    kind.engine()
                ),
                Some("remove it"),
            );
        }
    }
    let format = raw.format.as_deref().and_then(|text| {
        text.parse()
            .map_err(|m: String| {
                p.push(
                    format!("{at}.format"),
                    m,
                    Some("leave it out to go by each response's Content-Type"),
                )
            })
            .ok()
    });
    let post = match raw
        .method
        .as_deref()
        .map(str::to_ascii_uppercase)
        .as_deref()
    {
        None | Some("GET") => false,
        Some("POST") => true,
        Some(_) => {
            p.push(
                format!("{at}.method"),
                format!(
                    "`{}` is not a method pollhook lists with",
                    raw.method.as_deref().unwrap_or_default()
                ),
                Some(r#"method = "GET" (default) or "POST""#),
            );
            false
        }
    };
    if raw.body.is_some() && !post {
        p.push(
            format!("{at}.body"),
            "a GET request carries no body",
            Some(r#"method = "POST""#),
        );
    }
    if let Some(body) = &raw.body {
        for token in ["{page}", "{offset}", "{cursor}"] {
            if body.contains(token) && pagination.and_then(placeholder_of) != Some(token) {
                p.push(
                    format!("{at}.body"),
                    format!("`{token}` is filled in only under its own pagination style"),
                    Some("set the matching pagination, or remove the placeholder"),
                );
            }
        }
    }
    let content_type = match (&raw.content_type, &raw.body) {
        (Some(t), _) => {
            if reqwest::header::HeaderValue::from_str(t).is_err() {
                p.push(
                    format!("{at}.content_type"),
                    "not a value a Content-Type header can carry",
                    Some(r#"content_type = "text/xml; charset=utf-8""#),
                );
            }
            t.clone()
        }
        // SOAP 1.1 wants text/xml; a body that opens with a tag is XML, anything else JSON.
        (None, Some(body)) if body.trim_start().starts_with('<') => {
            "text/xml; charset=utf-8".into()
        }
        _ => "application/json".into(),
    };
    (
        format,
        Request {
            post,
            body: raw.body.clone(),
            content_type,
        },
    )
}

/// The body placeholder a pagination style fills in.
fn placeholder_of(pagination: &Pagination) -> Option<&'static str> {
    match pagination {
        Pagination::Page { .. } => Some("{page}"),
        Pagination::Offset { .. } => Some("{offset}"),
        Pagination::Cursor { .. } => Some("{cursor}"),
        _ => None,
    }
}

/// Replaces each `{name}` in a resource path with the source's `params` value.
pub(super) fn fill_params(path: &str, params: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(path.len());
    let mut rest = path;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        let name = &rest[start + 1..start + len];
        let value = params.get(name).ok_or_else(|| name.to_owned())?;
        out.push_str(&rest[..start]);
        out.push_str(value);
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

pub(super) fn page_size(size: Option<u32>, at: &str, p: &mut Problems) -> u32 {
    number(
        size,
        100,
        limits::PAGE_SIZE,
        format!("{at}.pagination.size"),
        p,
    )
}

/// When a resource is polled: `every` or a cron `schedule` (in `tz`), and the jitter.
fn when(raw: &RawResource, at: &str, p: &mut Problems) -> (Option<When>, Duration) {
    let when = match (raw.every.as_deref(), raw.schedule.as_deref()) {
        (Some(_), Some(_)) => {
            p.push(
                at,
                "both `every` and `schedule` are set",
                Some("keep one of them"),
            );
            None
        }
        (None, None) => {
            p.push(
                at,
                "no `every` or `schedule`: when should it be polled?",
                Some(r#"every = "30s" or schedule = "*/5 * * * *""#),
            );
            None
        }
        (Some(every), None) => {
            checked_duration(every, limits::EVERY, format!("{at}.every"), p).map(When::Every)
        }
        (None, Some(schedule)) => {
            let tz = match raw.tz.as_deref().map(str::parse::<chrono_tz::Tz>) {
                None => Some(chrono_tz::UTC),
                Some(Ok(tz)) => Some(tz),
                Some(Err(_)) => {
                    p.push(
                        format!("{at}.tz"),
                        format!("`{}` is not a time zone", raw.tz.as_deref().unwrap_or("")),
                        Some("use an IANA name such as Europe/Copenhagen or UTC"),
                    );
                    None
                }
            };
            let cron = parse_cron(schedule).map_err(|m| p.push(format!("{at}.schedule"), m, Some("write a crontab line: minute hour day-of-month month day-of-week, e.g. \"0 9 * * 1-5\"")));
            match (cron, tz) {
                (Ok(cron), Some(tz)) => {
                    let now = chrono::Utc::now().with_timezone(&tz);
                    if cron.find_next_occurrence(&now, false).is_ok() {
                        Some(When::Cron {
                            cron: Box::new(cron),
                            tz,
                        })
                    } else {
                        p.push(
                            format!("{at}.schedule"),
                            format!("`{schedule}` never fires: no date matches it"),
                            Some("check the day-of-month and month fields (February has no 30th)"),
                        );
                        None
                    }
                }
                _ => None,
            }
        }
    };
    if raw.tz.is_some() && raw.schedule.is_none() {
        p.push(
            format!("{at}.tz"),
            "`tz` only applies to a cron `schedule`",
            None,
        );
    }
    let jitter = match (&when, raw.jitter.as_deref()) {
        (_, Some(text)) => duration_in(
            Some(text),
            Duration::ZERO,
            limits::JITTER,
            format!("{at}.jitter"),
            p,
        ),
        // Default: a tenth of the interval, at most five seconds, so many resources started
        // together do not hit an API in the same instant.
        (Some(When::Every(every)), None) => (*every / 10).min(Duration::from_secs(5)),
        _ => Duration::from_secs(1),
    };
    (when, jitter)
}

/// How a resource's listing is paged.
fn pagination(raw: Option<RawPagination>, at: &str, p: &mut Problems) -> Option<Pagination> {
    Some(match raw {
        None | Some(RawPagination::None) => Pagination::None,
        Some(RawPagination::LinkHeader) => Pagination::LinkHeader,
        Some(RawPagination::Page {
            page_param,
            size_param,
            size,
            first,
            total_header,
            total,
        }) => Pagination::Page {
            page_param: page_param.unwrap_or_else(|| "page".into()),
            size_param,
            size: page_size(size, at, p),
            first: number(
                first,
                1,
                limits::FIRST_PAGE,
                format!("{at}.pagination.first"),
                p,
            ),
            total: stated_total(total_header, total, at, p),
        },
        Some(RawPagination::Offset {
            offset_param,
            limit_param,
            size,
            total_header,
            total,
        }) => Pagination::Offset {
            offset_param: offset_param.unwrap_or_else(|| "offset".into()),
            limit_param: limit_param.unwrap_or_else(|| "limit".into()),
            size: page_size(size, at, p),
            total: stated_total(total_header, total, at, p),
        },
        Some(RawPagination::Cursor {
            cursor_param,
            next_cursor,
            has_more,
        }) => Pagination::Cursor {
            cursor_param: cursor_param.unwrap_or_else(|| "cursor".into()),
            next_cursor: json_path(&next_cursor, &format!("{at}.pagination.next_cursor"), p)?,
            has_more: match has_more {
                Some(text) => Some(json_path(&text, &format!("{at}.pagination.has_more"), p)?),
                None => None,
            },
        },
        Some(RawPagination::NextUrl { next_url }) => Pagination::NextUrl {
            next_url: json_path(&next_url, &format!("{at}.pagination.next_url"), p)?,
        },
        Some(RawPagination::Range { unit, size }) => Pagination::Range {
            unit: match unit {
                Some(unit)
                    if unit.is_empty()
                        || !unit
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') =>
                {
                    p.push(
                        format!("{at}.pagination.unit"),
                        format!("`{unit}` is not a range unit"),
                        Some(r#"unit = "items" (the default, PostgREST's)"#),
                    );
                    unit
                }
                Some(unit) => unit,
                None => "items".into(),
            },
            size: page_size(size, at, p),
        },
    })
}

/// Where a page or offset listing's answers state its length: `total_header` (a header name) or
/// `total` (a JSONPath into the body), at most one of them.
fn stated_total(
    header: Option<String>,
    path: Option<String>,
    at: &str,
    p: &mut Problems,
) -> Option<Total> {
    match (header, path) {
        (None, None) => None,
        (Some(_), Some(_)) => {
            p.push(
                format!("{at}.pagination"),
                "both `total_header` and `total` are set",
                Some("keep the one where the API states the count: a header or the body"),
            );
            None
        }
        (Some(name), None) => match reqwest::header::HeaderName::from_bytes(name.as_bytes()) {
            Ok(name) => Some(Total::Header(name)),
            Err(_) => {
                p.push(
                    format!("{at}.pagination.total_header"),
                    format!("`{}` is not a header name", name.escape_debug()),
                    Some(r#"total_header = "X-Total-Count""#),
                );
                None
            }
        },
        (None, Some(text)) => {
            json_path(&text, &format!("{at}.pagination.total"), p).map(Total::Body)
        }
    }
}

/// Incremental polling: the `since` parameter, the item field it follows, its format, the
/// overlap and how often a full listing is taken anyway.
fn incremental(inc: RawIncremental, exec: bool, at: &str, p: &mut Problems) -> Option<Incremental> {
    let iat = format!("{at}.incremental");
    if exec {
        p.push(&iat, "an exec source cannot be polled incrementally", None);
    }
    let field = inc
        .field
        .parse()
        .map_err(|m: String| p.push(format!("{iat}.field"), m, None))
        .ok()?;
    let format = match inc.format.as_deref() {
        None | Some("rfc3339") => SinceFormat::Rfc3339,
        Some("unix") => SinceFormat::Unix,
        Some("unix_ms") => SinceFormat::UnixMs,
        Some(other) => {
            p.push(
                format!("{iat}.format"),
                format!("`{other}` is not a time format"),
                Some("rfc3339 (default), unix or unix_ms"),
            );
            SinceFormat::Rfc3339
        }
    };
    Some(Incremental {
        since_param: inc.since_param,
        field,
        overlap: duration_in(
            inc.overlap.as_deref(),
            secs(MINUTE),
            limits::OVERLAP,
            format!("{iat}.overlap"),
            p,
        ),
        full_sync: duration_in(
            inc.full_sync.as_deref(),
            secs(HOUR),
            limits::FULL_SYNC,
            format!("{iat}.full_sync"),
            p,
        ),
        format,
    })
}

/// The dotted key and first value a TOML table was written from (`orderby.id = "asc"` gives
/// `orderby.id` and `"asc"`), for the hint that tells how to quote it.
fn dotted_key(key: &str, table: &toml::Table) -> (String, String) {
    match table.iter().next() {
        Some((inner, toml::Value::Table(deeper))) => dotted_key(&format!("{key}.{inner}"), deeper),
        Some((inner, value)) => (format!("{key}.{inner}"), value.to_string()),
        None => (key.to_owned(), "\"…\"".to_owned()),
    }
}
