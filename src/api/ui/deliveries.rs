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

use super::layout::{self, Tab, Tone, action, badge, empty, enc, maybe_time, time};
use super::{Page, logout, render};
use crate::admin::deliveries::{CODE_CLASSES, STATUS_FILTERS};
use crate::admin::{Admin, AdminError, DeliveryQuery, DeliveryView};
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
    // A bad filter is shown beside the form that has it, not as an error page.
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
    let (mut deliveries, problem) = match listed {
        Ok(list) => (list, None),
        Err(e @ AdminError::Invalid(_)) => (Vec::new(), Some(e.to_string())),
        Err(e) => return Err(e.into()),
    };
    for d in &mut deliveries {
        d.attempt_log = Some(admin.attempts(d.delivery.id).await?);
    }
    let retry_all = match filter(&f.endpoint) {
        Some(name) => json!({ "endpoint": name }).to_string(),
        None => "{}".to_owned(),
    };
    let body = html! {
        h1 { "Deliveries" }
        form.filters method="get" action="/ui/deliveries" {
            label { "Status"
                select name="status" {
                    option value="" { "any" }
                    @for s in STATUS_FILTERS {
                        option value=(s) selected[f.status == s] { (s) }
                    }
                }
            }
            label { "Last response"
                select name="code" {
                    option value="" { "any" }
                    @for c in CODE_CLASSES {
                        option value=(c) selected[f.code == c] { (c) }
                    }
                }
            }
            label { "Endpoint"
                select name="endpoint" {
                    option value="" { "any" }
                    @for e in &endpoints { option value=(e.name) selected[f.endpoint == e.name] { (e.name) } }
                }
            }
            label { "Since" input name="since" value=(f.since) placeholder="2026-11-22T00:00:00Z"; }
            label { "Until" input name="until" value=(f.until) placeholder="RFC 3339"; }
            button type="submit" { "Filter" }
            a href="/ui/deliveries" { "Clear" }
        }
        p.toolbar {
            (action(if f.endpoint.is_empty() { "Retry all failed" } else { "Retry all failed of this endpoint" },
                "POST", "/api/v1/deliveries/retry-failed", Some(&retry_all)))
        }
        @if let Some(problem) = &problem { p.error role="alert" { "Filter not applied: " (problem) } }
        div #deliveries data-live {
            @if problem.is_some() {
                // The alert above says why nothing is listed.
            } @else if deliveries.is_empty() {
                (empty("No deliveries match.", html! {
                    @if endpoints.is_empty() {
                        "No endpoints yet: " a href="/ui/endpoints" { "add one" } " and pollhook delivers every change to it."
                    } @else {
                        "A delivery is queued for each endpoint that wants an event. Clear the filters to see them all."
                    }
                }))
            } @else {
                (delivery_table(&deliveries, false))
            }
        }
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
    html! {
        div.scroll { table.deliveries {
            thead { tr {
                th scope="col" { "#" }
                @if !on_event_page { th scope="col" { "Event" } }
                th scope="col" { "Endpoint" }
                th scope="col" { "Status" }
                th scope="col" class="num" { "Attempts" }
                th scope="col" { "Last response" }
                th scope="col" { "Created" }
                th scope="col" { "Next attempt / finished" }
                th scope="col" { span.visually-hidden { "Actions" } }
            } }
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
