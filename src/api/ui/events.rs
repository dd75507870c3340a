//! The Events page: events newest first, filtered by source, resource, action, item id and time,
//! the filters kept in the URL so a link can be shared; and one event: its RFC 6902 `changes`
//! as a before/after table, `data` and `previous`, and its deliveries with their attempts.
//!
//! In: the query string, as [`EventQuery`] takes it. Out: a page of events with an **Older**
//! link (the cursor), or one event with **Replay**.

use axum::extract::{Path, Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::Value;

use super::deliveries::delivery_table;
use super::layout::{
    self, Col, Tab, action, choice, empty, enc, filter_form, filtered, head, time_text,
};
use super::{Page, logout, render, unless_refused};
use crate::admin::{Admin, EventPage, EventQuery, EventView};
use crate::api::Shared;

/// The filters, as the form sends them: an empty field is no filter.
#[derive(Deserialize, Default)]
pub(super) struct Filters {
    #[serde(default)]
    source: String,
    #[serde(default)]
    resource: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    resource_id: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
    cursor: Option<i64>,
}

fn some(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

impl Filters {
    fn query(&self) -> EventQuery {
        EventQuery {
            source: some(&self.source),
            resource: some(&self.resource),
            action: some(&self.action),
            resource_id: some(&self.resource_id),
            since: some(&self.since),
            until: some(&self.until),
            cursor: self.cursor,
            limit: Some(50),
        }
    }

    /// This page's URL with another cursor.
    fn href(&self, cursor: Option<i64>) -> String {
        let mut query = url::form_urlencoded::Serializer::new(String::new());
        for (key, value) in [
            ("source", &self.source),
            ("resource", &self.resource),
            ("action", &self.action),
            ("resource_id", &self.resource_id),
            ("since", &self.since),
            ("until", &self.until),
        ] {
            if !value.is_empty() {
                query.append_pair(key, value);
            }
        }
        if let Some(cursor) = cursor {
            query.append_pair("cursor", &cursor.to_string());
        }
        format!("/ui/events?{}", query.finish())
    }
}

/// `GET /ui/events`.
pub(super) async fn list(State(p): State<Shared>, Query(f): Query<Filters>) -> Page {
    let (events, problem): (EventPage, _) = unless_refused(Admin::of(&p).events(f.query()).await)?;
    let sources: Vec<&str> = p.config.sources.iter().map(|s| s.name.as_str()).collect();
    let body = html! {
        h1 { "Events" }
        (filter_form("/ui/events", html! {
            (choice("Source", "source", sources, &f.source))
            label { "Resource" input name="resource" value=(f.resource) placeholder="shop.orders"; }
            (choice("Action", "action", ["created", "updated", "deleted"], &f.action))
            label { "Item id" input name="resource_id" value=(f.resource_id); }
        }, &f.since, &f.until))
        (filtered("events", problem.as_deref(),
            (!events.data.is_empty()).then(|| event_table(&events.data)),
            empty("No events match.", html! {
                "Events appear when a poll finds an item created, updated or deleted (the first poll of a resource records a baseline silently). Clear the filters, or press Poll now on "
                a href="/ui/" { "Sources" } "."
            })))
        nav.pager aria-label="Pages" {
            @if f.cursor.is_some() { a href=(f.href(None)) { "← Newest" } }
            @if let Some(next) = events.next_cursor { a href=(f.href(Some(next))) { "Older →" } }
        }
    };
    render(layout::frame("Events", Tab::Events, logout(&p), body))
}

/// A page of events, newest first.
fn event_table(events: &[EventView]) -> Markup {
    html! {
        div.scroll { table {
            (head(&[Col::text("Detected"), Col::text("Type"), Col::text("Resource"), Col::text("Item"), Col::text("Event")]))
            tbody {
                @for e in events {
                    tr {
                        td { (time_text(&e.detected_at)) }
                        td { (action_badge(&e.action)) " " code { (e.kind) } }
                        td { (e.source) "." (e.resource) }
                        td { code { (e.resource_id) } }
                        td { a href=(format!("/ui/events/{}", enc(&e.id))) { code { (e.id) } } }
                    }
                }
            }
        } }
    }
}

/// `created`, `updated`, `deleted` as a badge.
pub(super) fn action_badge(action: &str) -> Markup {
    let tone = match action {
        "created" => layout::Tone::Good,
        "deleted" => layout::Tone::Bad,
        "updated" => layout::Tone::Warn,
        _ => layout::Tone::Plain,
    };
    layout::badge(tone, action)
}

/// `GET /ui/events/{id}`.
pub(super) async fn show(State(p): State<Shared>, Path(id): Path<String>) -> Page {
    let admin = Admin::of(&p);
    let event = admin.event(&id).await?;
    let deliveries = admin.event_deliveries(&id).await?;
    let body = html! {
        p { a href="/ui/events" { "← Events" } }
        h1 { code { (event.kind) } " " (action_badge(&event.action)) }
        dl.facts {
            dt { "Event" } dd { code { (event.id) } }
            dt { "Resource" } dd { (event.source) "." (event.resource) }
            dt { "Item" } dd {
                a href=(format!("/ui/events?resource={}&resource_id={}",
                    enc(&format!("{}.{}", event.source, event.resource)), enc(&event.resource_id))) {
                    code { (event.resource_id) }
                }
            }
            dt { "Detected" } dd { (time_text(&event.detected_at)) }
        }
        (changes(&event))
        section.card {
            h2 { "Payload" }
            details open[event.changes.is_null()] {
                summary { code { "data" } " (the item now)" }
                (layout::json(&event.data.value()))
            }
            @if !event.previous.is_null() {
                details {
                    summary { code { "previous" } " (the item before)" }
                    (layout::json(&event.previous.value()))
                }
            }
        }
        section.card {
            h2 { "Deliveries" }
            p { (action("Replay to every endpoint", "POST", &format!("/api/v1/events/{}/replay", enc(&event.id)), None)) }
            div #event-deliveries data-live {
                @if deliveries.is_empty() {
                    (empty("No deliveries.", html! {
                        "No endpoint wanted this event when it was detected. "
                        a href="/ui/endpoints" { "Add an endpoint" } ", then Replay."
                    }))
                } @else {
                    (delivery_table(&deliveries, true))
                }
            }
        }
    };
    render(layout::frame(&event.kind, Tab::Events, logout(&p), body))
}

/// The RFC 6902 `changes` as rows of path, before and after.
fn changes(event: &EventView) -> Markup {
    let ops = event.changes.value();
    let Some(ops) = ops.as_array() else {
        return html! {};
    };
    let previous = event.previous.value();
    html! {
        section.card {
            h2 { "Changes" }
            table.diff {
                (head(&[Col::text("Field"), Col::text("Before"), Col::text("After")]))
                tbody {
                    @for op in ops {
                        @let kind = op["op"].as_str().unwrap_or("?");
                        @let path = op["path"].as_str().unwrap_or("");
                        @let before = match kind {
                            "replace" | "remove" => previous.pointer(path),
                            _ => None,
                        };
                        @let after = match kind {
                            "add" | "replace" | "test" => op.get("value"),
                            "move" | "copy" => op["from"].as_str().and_then(|from| previous.pointer(from)),
                            _ => None,
                        };
                        tr class=(kind) {
                            th scope="row" { code { (if path.is_empty() { "/" } else { path }) } " " span.muted { (kind) } }
                            td.before { (value_cell(before)) }
                            td.after { (value_cell(after)) }
                        }
                    }
                }
            }
        }
    }
}

fn value_cell(value: Option<&Value>) -> Markup {
    match value {
        None => html! { span.muted { "—" } },
        Some(v) => html! { code { (serde_json::to_string(v).unwrap_or_default()) } },
    }
}
