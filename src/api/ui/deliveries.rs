//! The Deliveries page: deliveries newest first, filtered by status and endpoint, each with its
//! attempt timeline; **Retry** on a failed one, **Retry all failed** for the endpoint filtered.
//!
//! In: the query string (`status`, `endpoint`, `code`, `since`, `until`), kept in the URL so a
//! link can be shared. Out: the table, shared with the event page.
//! `retrying` is shown for a pending delivery that has had attempts: it is waiting for its next.

use axum::extract::{Query, State};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::json;

use super::layout::{
    self, Col, Tab, Tone, action, badge, choice, empty, enc, filter_form, filtered, head,
    maybe_time, time,
};
use super::{Page, logout, render, unless_refused};
use crate::admin::deliveries::{CODE_CLASSES, STATUS_FILTERS};
use crate::admin::{Admin, DeliveryQuery, DeliveryView};
use crate::api::Shared;
use crate::store::AttemptRow;

/// The filters, as the form sends them: an empty field is no filter.
#[derive(Deserialize, Default)]
pub(super) struct Filters {
    #[serde(default)]
    status: String,
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    since: String,
    #[serde(default)]
    until: String,
}

/// `GET /ui/deliveries`.
pub(super) async fn page(State(p): State<Shared>, Query(f): Query<Filters>) -> Page {
    let admin = Admin::of(&p);
    let endpoints = admin.endpoints().await?;
    let filter = |s: &str| (!s.is_empty()).then(|| s.to_owned());
    let listed = admin
        .deliveries(DeliveryQuery {
            endpoint: filter(&f.endpoint),
            status: filter(&f.status),
            event_id: None,
            code: filter(&f.code),
            since: filter(&f.since),
            until: filter(&f.until),
            limit: Some(50),
        })
        .await;
    let (mut deliveries, problem) = unless_refused(listed)?;
    admin.with_attempts(&mut deliveries).await?;
    let retry_all = match filter(&f.endpoint) {
        Some(name) => json!({ "endpoint": name }).to_string(),
        None => "{}".to_owned(),
    };
    let body = html! {
        h1 { "Deliveries" }
        (filter_form("/ui/deliveries", html! {
            (choice("Status", "status", STATUS_FILTERS.iter().copied(), &f.status))
            (choice("Last response", "code", CODE_CLASSES.iter().copied(), &f.code))
            (choice("Endpoint", "endpoint", endpoints.iter().map(|e| e.name.as_str()), &f.endpoint))
        }, &f.since, &f.until))
        p.toolbar {
            (action(if f.endpoint.is_empty() { "Retry all failed" } else { "Retry all failed of this endpoint" },
                "POST", "/api/v1/deliveries/retry-failed", Some(&retry_all)))
        }
        (filtered("deliveries", problem.as_deref(),
            (!deliveries.is_empty()).then(|| delivery_table(&deliveries, false)),
            empty("No deliveries match.", html! {
                @if endpoints.is_empty() {
                    "No endpoints yet: " a href="/ui/endpoints" { "add one" } " and pollhook delivers every change to it."
                } @else {
                    "A delivery is queued for each endpoint that wants an event. Clear the filters to see them all."
                }
            })))
    };
    render(layout::frame(
        "Deliveries",
        Tab::Deliveries,
        logout(&p),
        body,
    ))
}

/// A delivery's status as shown: `retrying` is a pending one that has been tried.
pub(super) fn status_badge(d: &DeliveryView) -> Markup {
    let row = &d.delivery;
    match row.status.as_str() {
        "delivered" => badge(Tone::Good, "delivered"),
        "failed" => badge(Tone::Bad, "failed"),
        "pending" if row.attempts > 0 => badge(Tone::Warn, "retrying"),
        other => badge(Tone::Plain, other),
    }
}

/// The deliveries with their attempts (`attempt_log`), for this page and the event page.
pub(super) fn delivery_table(deliveries: &[DeliveryView], on_event_page: bool) -> Markup {
    const EVENT: Col = Col::text("Event");
    let event: &[Col] = if on_event_page { &[] } else { &[EVENT] };
    html! {
        div.scroll { table.deliveries {
            (head(&[&[Col::text("#")], event, &[Col::text("Endpoint"), Col::text("Status"), Col::num("Attempts"),
                Col::text("Last response"), Col::text("Created"), Col::text("Next attempt / finished"), Col::ACTIONS]].concat()))
            @for d in deliveries {
                @let row = &d.delivery;
                tbody id=(format!("delivery-{}", row.id)) data-delivery=(row.id) data-status=(row.status) {
                    tr {
                        td { (row.id) }
                        @if !on_event_page {
                            td {
                                a href=(format!("/ui/events/{}", enc(&row.event_id))) { code { (row.event_type) } }
                                " " code.muted { (row.resource_id) }
                            }
                        }
                        td { (row.endpoint) }
                        td { (status_badge(d)) }
                        td.num { (row.attempts) }
                        td {
                            @if let Some(code) = row.last_status { code { (code) } " " }
                            @if let Some(error) = &row.last_error { span.error-text { (error) } }
                        }
                        td { (time(&row.created_at)) }
                        td {
                            @if row.status == "pending" { (maybe_time(row.next_attempt_at.as_ref())) }
                            @else { (maybe_time(row.finished_at.as_ref())) }
                        }
                        td.actions {
                            @if row.status == "failed" {
                                (action("Retry", "POST", &format!("/api/v1/deliveries/{}/retry", row.id), None))
                            }
                            @if !on_event_page {
                                (action("Replay event", "POST", &format!("/api/v1/events/{}/replay", enc(&row.event_id)),
                                    Some(&json!({ "endpoint": row.endpoint }).to_string())))
                            }
                        }
                    }
                    @if let Some(attempts) = d.attempt_log.as_deref().filter(|a| !a.is_empty()) {
                        tr.timeline {
                            td colspan=(if on_event_page { 8 } else { 9 }) {
                                details id=(format!("attempts-{}", row.id)) {
                                    summary { "Attempts (" (attempts.len()) ")" }
                                    (timeline(attempts))
                                }
                            }
                        }
                    }
                }
            }
        } }
    }
}

/// One delivery's attempts, oldest first: time, status, latency, error, the response's start.
fn timeline(attempts: &[AttemptRow]) -> Markup {
    html! {
        ol.timeline {
            @for a in attempts {
                li {
                    (time(&a.at)) " "
                    @match a.status {
                        Some(code @ 200..=299) => (badge(Tone::Good, &code.to_string())),
                        Some(code) => (badge(Tone::Bad, &code.to_string())),
                        None => (badge(Tone::Bad, "no response")),
                    }
                    " " span.muted { (a.latency_ms) " ms" }
                    @if let Some(error) = &a.error { " " span.error-text { (error) } }
                    @if let Some(response) = a.response.as_deref().filter(|r| !r.is_empty()) {
                        pre.response { (response) }
                    }
                }
            }
        }
    }
}
