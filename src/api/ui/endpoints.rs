//! The Endpoints page: each endpoint's state (and why it is disabled), its deliveries by status
//! (the pending ones are its queue), its attempts and success rate over the last 24 h, its last
//! error; **Pause / Resume**, **Send test event**, **Rotate secret**, **Remove**, and a form that
//! adds one, with optional backfill.
//!
//! In: [`Admin::endpoints`], [`Admin::endpoint_totals`], [`Admin::endpoint_activity`], each
//! endpoint's newest failure. Out:
//! the table and the form. A secret is never rendered: the hint only; a new one is shown once
//! by `app.js`, from the API's answer.

use axum::extract::State;
use maud::{Markup, html};

use super::layout::{self, Col, Tab, Tone, action, badge, confirmed_action, empty, enc, head};
use super::{Page, logout, render};
use crate::admin::{
    Admin, DeliveryQuery, EndpointActivity, EndpointState, EndpointTotals, EndpointView,
};
use crate::api::Shared;

/// `GET /ui/endpoints`.
pub(super) async fn page(State(p): State<Shared>) -> Page {
    let admin = Admin::of(&p);
    let endpoints = admin.endpoints().await?;
    let totals = admin.endpoint_totals().await?;
    let activity = admin.endpoint_activity().await?;
    let mut last_errors = Vec::with_capacity(endpoints.len());
    for e in &endpoints {
        let failed = admin
            .deliveries(DeliveryQuery {
                endpoint: Some(e.name.clone()),
                status: Some("failed".into()),
                limit: Some(1),
                ..DeliveryQuery::default()
            })
            .await?;
        last_errors.push(
            failed
                .into_iter()
                .next()
                .and_then(|d| d.delivery.last_error),
        );
    }
    let body = html! {
        h1 { "Endpoints" }
        div #endpoints data-live {
            @if endpoints.is_empty() {
                (empty("No endpoints yet: add one.", html! {
                    "An endpoint is a URL that receives every change as a signed webhook. Use the form below, "
                    code { "pollhook endpoints add" } ", or an " code { "[[endpoints]]" } " table in the config."
                }))
            } @else {
                div.scroll { table {
                    (head(&[Col::text("Endpoint"), Col::text("State"), Col::text("Signing"), Col::text("Wants"),
                        Col::num("Queued"), Col::num("Delivered"), Col::num("Failed"),
                        Col::num("Attempts 24 h").titled("attempts over the last 24 hours"),
                        Col::num("Success 24 h").titled("attempts answered 2xx over the last 24 hours"),
                        Col::text("Last error"), Col::ACTIONS]))
                    tbody {
                        @for (e, last_error) in endpoints.iter().zip(&last_errors) {
                            (row(e, totals.iter().find(|t| t.name == e.name),
                                activity.iter().find(|a| a.name == e.name), last_error.as_deref()))
                        }
                    }
                } }
            }
        }
        div #secret-shown.card hidden role="alert" {
            h2 { "New secret" }
            p { "Copy it now: pollhook shows a secret only once." }
            pre { code #secret-value {} }
            p #secret-overlap.muted {}
        }
        (add_form(&p))
    };
    render(layout::frame("Endpoints", Tab::Endpoints, logout(&p), body))
}

fn row(
    e: &EndpointView,
    totals: Option<&EndpointTotals>,
    activity: Option<&EndpointActivity>,
    last_error: Option<&str>,
) -> Markup {
    let base = format!("/api/v1/endpoints/{}", enc(&e.name));
    let (pending, delivered, failed) =
        totals.map_or((0, 0, 0), |t| (t.pending, t.delivered, t.failed));
    let (attempts, succeeded) = activity.map_or((0, 0), |a| (a.attempts, a.succeeded));
    html! {
        tr id=(format!("endpoint-{}", e.name)) data-endpoint=(e.name) data-state=(e.state.as_str()) {
            th scope="row" {
                (e.name)
                div.muted.url { (e.url) }
            }
            td {
                @match e.state {
                    EndpointState::Active => (badge(Tone::Good, "active")),
                    EndpointState::Paused => (badge(Tone::Warn, "paused")),
                    EndpointState::Disabled => (badge(Tone::Bad, "disabled")),
                }
                @if let Some(reason) = &e.disabled_reason { div.error-text { (reason) } }
            }
            td { (e.signing) div.muted { "secret " code { (e.secret_hint) } } }
            td {
                @if e.resources.is_empty() || e.resources.iter().any(|r| r == "*") { "all resources" } @else { (e.resources.join(", ")) }
                div.muted { @if e.actions.is_empty() { "all actions" } @else { (e.actions.join(", ")) } }
            }
            td.num { a href=(format!("/ui/deliveries?endpoint={}&status=pending", enc(&e.name))) { (pending) } }
            td.num { (delivered) }
            td.num { a href=(format!("/ui/deliveries?endpoint={}&status=failed", enc(&e.name))) { (failed) } }
            td.num { (attempts) }
            td.num {
                @if attempts > 0 {
                    (success_rate(succeeded, attempts))
                } @else { span.muted { "—" } }
            }
            td { @match last_error { Some(error) => span.error-text { (error) }, None => span.muted { "none" } } }
            td.actions {
                @if e.active {
                    (action("Pause", "POST", &format!("{base}/pause"), None))
                } @else {
                    (action("Resume", "POST", &format!("{base}/resume"), None))
                }
                (action("Send test event", "POST", &format!("{base}/test"), None))
                button type="button" data-api=(format!("{base}/rotate-secret")) data-method="POST"
                    data-body=r#"{"overlap":"24h"}"# data-show-secret
                    data-confirm=(format!("Rotate the secret of {}? The old one keeps signing for 24 h too.", e.name)) {
                    "Rotate secret"
                }
                @if e.origin != "config" {
                    (confirmed_action("Remove", "DELETE", &base, &format!("Remove {}? Its queued deliveries are dropped.", e.name)))
                }
            }
        }
    }
}

/// `succeeded / attempts` as a whole percentage, never rounded up to 100 while one failed.
fn success_rate(succeeded: i64, attempts: i64) -> String {
    let percent = succeeded.saturating_mul(100) / attempts.max(1);
    format!("{percent} %")
}

fn add_form(p: &Shared) -> Markup {
    let resources: Vec<String> = p
        .config
        .sources
        .iter()
        .flat_map(|s| s.resources.iter().map(|r| r.key(&s.name)))
        .collect();
    html! {
        section.card {
            h2 { "Add an endpoint" }
            form #add-endpoint data-api-form="/api/v1/endpoints" data-show-secret {
                div.grid {
                    label { "Name" input name="name" required pattern="[A-Za-z0-9_.-]+" placeholder="erp"; }
                    label.wide { "URL" input name="url" type="url" required placeholder="https://erp.example.com/hooks/pollhook"; }
                    label { "Signing"
                        select name="signing" {
                            option value="jwt" { "jwt" }
                            option value="standard-webhooks" { "standard-webhooks" }
                        }
                    }
                    label { "Resources (comma-separated, empty: all)"
                        input name="resources" data-list placeholder=(resources.first().map_or("shop.orders", String::as_str)) list="resource-keys";
                    }
                    datalist #resource-keys { @for r in &resources { option value=(r) {} } }
                    label { "Actions (comma-separated, empty: all)" input name="actions" data-list placeholder="created, updated"; }
                }
                label.check { input type="checkbox" name="backfill" data-bool; " Backfill: also send every item of its resources now, as " code { "created" } }
                label.check { input type="checkbox" name="active" data-bool checked; " Active (else added paused)" }
                p { "A secret is generated and shown once." }
                button type="submit" { "Add endpoint" }
            }
        }
    }
}
