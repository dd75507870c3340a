//! The Sources page: every resource's schedule, last poll, items, last change, failures and
//! held-back deletes, with **Poll now** and **Accept**.
//!
//! In: [`Admin::sources`], which says when each resource's newest event was recorded (one query
//! for the page, however many resources). Out: one table per source; a resource whose last
//! change the browser has not seen yet is marked (`app.js` keeps what was seen in
//! `localStorage`).

use axum::extract::State;
use maud::{Markup, html};

use super::layout::{self, Col, Tone, badge, empty, enc, head, maybe_time, time};
use super::{Page, logout, render};
use crate::admin::{Admin, ResourceView, SourceView};
use crate::api::Shared;
use crate::event::timestamp;

/// `GET /ui/`.
pub(super) async fn page(State(p): State<Shared>) -> Page {
    let admin = Admin::of(&p);
    let sources = admin.sources().await?;
    let body = html! {
        h1 { "Sources" }
        div #sources data-live {
            @if sources.is_empty() {
                (empty("No sources yet.", html! {
                    "Add a " code { "[[sources]]" } " table to the config file and restart pollhook; "
                    code { "pollhook check" } " tells what is wrong with it."
                }))
            }
            @for source in &sources {
                (source_table(source))
            }
        }
    };
    render(layout::frame(
        "Sources",
        layout::Tab::Sources,
        logout(&p),
        body,
    ))
}

fn source_table(source: &SourceView) -> Markup {
    html! {
        section.card {
            h2 {
                (source.name) " "
                @if let Some(engine) = source.engine { span.muted { (engine) } }
                @if !source.configured { " " (badge(Tone::Plain, "no longer configured")) }
            }
            div.scroll {
                table {
                    (head(&[Col::text("Resource"), Col::text("Schedule"), Col::text("Last poll"), Col::num("Items"),
                        Col::text("Last change"), Col::text("Failures"), Col::text("Held deletes"), Col::ACTIONS]))
                    tbody {
                        @for resource in &source.resources {
                            (resource_row(source, resource))
                        }
                    }
                }
            }
        }
    }
}

fn outcome_tone(outcome: &str) -> Tone {
    match outcome {
        "failed" => Tone::Bad,
        "held" => Tone::Warn,
        "changed" | "ok" | "baseline" | "unchanged" | "not_modified" => Tone::Good,
        _ => Tone::Plain,
    }
}

fn resource_row(source: &SourceView, r: &ResourceView) -> Markup {
    let last_change = r.last_change_at.map(timestamp);
    let poll_url = format!(
        "/api/v1/sources/{}/resources/{}/poll",
        enc(&source.name),
        enc(&r.name)
    );
    let accept_url = format!(
        "/api/v1/sources/{}/resources/{}/accept-deletes",
        enc(&source.name),
        enc(&r.name)
    );
    let failing = r.consecutive_errors > 0;
    html! {
        tr id=(format!("resource-{}", r.key)) data-resource=(r.key) data-last-change=[last_change.as_deref()] {
            th scope="row" {
                a href=(format!("/ui/events?resource={}", enc(&r.key))) { (r.name) }
                " " span.unseen hidden { (badge(Tone::Warn, "new changes")) }
            }
            td { (r.schedule.as_deref().unwrap_or("—")) }
            td {
                (maybe_time(r.last_poll_at.as_ref()))
                @if let Some(outcome) = &r.last_outcome { " " (badge(outcome_tone(outcome), outcome)) }
                @if let Some(ms) = r.last_duration_ms { " " span.muted { (ms) " ms" } }
            }
            td.num { (r.item_count) }
            td {
                @match &r.last_change_at {
                    Some(at) => (time(at)),
                    None => span.muted { "none yet" },
                }
            }
            td {
                @if failing {
                    (badge(Tone::Bad, &format!("{} in a row", r.consecutive_errors)))
                    @if let Some(error) = &r.last_error { div.error-text { (error) } }
                } @else {
                    span.muted { "none" }
                }
            }
            td {
                @if r.held_deletes > 0 {
                    (badge(Tone::Warn, &format!("{} held", r.held_deletes))) " "
                    @if r.configured {
                        (layout::confirmed_action("Accept", "POST", &accept_url,
                            &format!("Let the next poll of {} delete {} items?", r.key, r.held_deletes)))
                    }
                } @else {
                    span.muted { "none" }
                }
            }
            td.actions {
                @if r.configured { (layout::action("Poll now", "POST", &poll_url, None)) }
            }
        }
    }
}
