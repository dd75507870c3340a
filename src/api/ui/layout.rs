//! The frame of every dashboard page (navigation, the flash region, assets) and the small
//! pieces pages share: times, status badges, empty states, table headings, filter forms and the
//! listing under them, JSON.
//!
//! In: a page's title, which tab it is, its body. Out: a whole HTML document.
//!
//! Invariant: no inline script or style (the CSP forbids them): behaviour is asked for with
//! `data-*` attributes that `app.js` reads. A status is always text as well as colour.

use axum::http::StatusCode;
use chrono::{DateTime, SecondsFormat, Utc};
use maud::{DOCTYPE, Markup, html};

use super::{CSS, JS};

/// The four tabs.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Tab {
    Sources,
    Events,
    Deliveries,
    Endpoints,
    /// The login page and error pages: no tab is current.
    None,
}

const TABS: [(Tab, &str, &str); 4] = [
    (Tab::Sources, "Sources", "/ui/"),
    (Tab::Events, "Events", "/ui/events"),
    (Tab::Deliveries, "Deliveries", "/ui/deliveries"),
    (Tab::Endpoints, "Endpoints", "/ui/endpoints"),
];

/// A whole page; `logout` offers **Log out** (with a token configured, so a session exists).
pub(super) fn frame(title: &str, tab: Tab, logout: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                meta name="color-scheme" content="light dark";
                title { (title) " · pollhook" }
                link rel="stylesheet" href=(CSS.href());
                script src=(JS.href()) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/ui/" { "pollhook" }
                    @if tab != Tab::None {
                        nav aria-label="Main" {
                            ul {
                                @for (t, name, href) in TABS {
                                    li {
                                        a href=(href) aria-current=[(t == tab).then_some("page")] { (name) }
                                    }
                                }
                            }
                        }
                        @if logout {
                            button.link type="button" data-logout { "Log out" }
                        }
                    }
                }
                main #main {
                    div #flash role="status" aria-live="polite" {}
                    (body)
                }
            }
        }
    }
}

/// An error as a page: what went wrong and where to go.
pub(super) fn error_page(status: StatusCode, message: &str) -> Markup {
    frame(
        "Error",
        Tab::None,
        false,
        html! {
            h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("Error")) }
            p.error { (message) }
            p { a href="/ui/" { "Back to Sources" } }
        },
    )
}

/// A time in UTC; `app.js` shows it in the browser's time zone with the UTC text as its title.
pub(super) fn time(at: &DateTime<Utc>) -> Markup {
    html! {
        time datetime=(at.to_rfc3339_opts(SecondsFormat::Millis, true)) {
            (at.format("%Y-%m-%d %H:%M:%S UTC"))
        }
    }
}

/// [`time`] for an RFC 3339 text (an event's `detected_at`), or the text as it is.
pub(super) fn time_text(text: &str) -> Markup {
    match DateTime::parse_from_rfc3339(text) {
        Ok(at) => time(&at.with_timezone(&Utc)),
        Err(_) => html! { (text) },
    }
}

/// [`time`] or a dash.
pub(super) fn maybe_time(at: Option<&DateTime<Utc>>) -> Markup {
    match at {
        Some(at) => time(at),
        None => html! { span.muted { "—" } },
    }
}

/// How a status looks: good, bad, waiting, or neutral. Always shown with its text.
#[derive(Clone, Copy)]
pub(super) enum Tone {
    Good,
    Bad,
    Warn,
    Plain,
}

/// A status badge: the text, coloured by tone.
pub(super) fn badge(tone: Tone, text: &str) -> Markup {
    let class = match tone {
        Tone::Good => "badge good",
        Tone::Bad => "badge bad",
        Tone::Warn => "badge warn",
        Tone::Plain => "badge",
    };
    html! { span class=(class) { (text) } }
}

/// What to show when a list is empty: what it means and what to do.
pub(super) fn empty(what: &str, todo: Markup) -> Markup {
    html! {
        div.empty {
            p { strong { (what) } }
            p { (todo) }
        }
    }
}

/// A table column's heading: right-aligned over numbers, with a longer `title` on hover.
#[derive(Clone, Copy)]
pub(super) struct Col {
    text: &'static str,
    num: bool,
    title: Option<&'static str>,
    hidden: bool,
}

impl Col {
    /// A column of text.
    pub(super) const fn text(text: &'static str) -> Col {
        Col {
            text,
            num: false,
            title: None,
            hidden: false,
        }
    }

    /// A column of numbers.
    pub(super) const fn num(text: &'static str) -> Col {
        Col {
            num: true,
            ..Col::text(text)
        }
    }

    /// The heading abbreviates `title`.
    pub(super) const fn titled(self, title: &'static str) -> Col {
        Col {
            title: Some(title),
            ..self
        }
    }

    /// The buttons' column: its heading is for screen readers only.
    pub(super) const ACTIONS: Col = Col {
        hidden: true,
        ..Col::text("Actions")
    };
}

/// A table's header row.
pub(super) fn head(cols: &[Col]) -> Markup {
    html! {
        thead { tr {
            @for c in cols {
                th scope="col" class=[c.num.then_some("num")] {
                    @if c.hidden { span.visually-hidden { (c.text) } }
                    @else if let Some(title) = c.title { abbr title=(title) { (c.text) } }
                    @else { (c.text) }
                }
            }
        } }
    }
}

/// A listing's filter form: `fields`, then the time range every listing has, **Filter** and
/// **Clear**. It GETs `page`, so the filters stay in the URL and a link can be shared.
pub(super) fn filter_form(page: &str, fields: Markup, since: &str, until: &str) -> Markup {
    html! {
        form.filters method="get" action=(page) {
            (fields)
            label { "Since" input name="since" value=(since) placeholder="2026-11-22T00:00:00Z"; }
            label { "Until" input name="until" value=(until) placeholder="RFC 3339"; }
            button type="submit" { "Filter" }
            a href=(page) { "Clear" }
        }
    }
}

/// A labelled `select` for a filter: `any` (no filter) first, then `options`; `current` selected.
pub(super) fn choice<'a>(
    label: &str,
    name: &str,
    options: impl IntoIterator<Item = &'a str>,
    current: &str,
) -> Markup {
    html! {
        label { (label)
            select name=(name) {
                option value="" { "any" }
                @for o in options { option value=(o) selected[current == o] { (o) } }
            }
        }
    }
}

/// A filtered listing, refreshed live (`id` names it for `app.js`): a filter the server refused
/// is said in an alert above it and nothing is listed; else `list`, or `none` without rows.
pub(super) fn filtered(
    id: &str,
    problem: Option<&str>,
    list: Option<Markup>,
    none: Markup,
) -> Markup {
    html! {
        @if let Some(problem) = problem { p.error role="alert" { "Filter not applied: " (problem) } }
        div id=(id) data-live {
            @if problem.is_some() {
                // The alert above says why nothing is listed.
            } @else if let Some(list) = list {
                (list)
            } @else {
                (none)
            }
        }
    }
}

/// JSON text pretty-printed, in a `<pre>`.
pub(super) fn json(value: &serde_json::Value) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string());
    html! { pre.json { code { (text) } } }
}

/// A button that calls the JSON API: `app.js` sends `method` to `url` with `body` (JSON text)
/// and refreshes the page's live regions after.
pub(super) fn action(label: &str, method: &str, url: &str, body: Option<&str>) -> Markup {
    html! {
        button type="button" data-api=(url) data-method=(method) data-body=[body] { (label) }
    }
}

/// [`action`] that asks first.
pub(super) fn confirmed_action(label: &str, method: &str, url: &str, question: &str) -> Markup {
    html! {
        button.danger type="button" data-api=(url) data-method=(method) data-confirm=(question) { (label) }
    }
}

/// A path segment or query value, percent-encoded (a space as `%20`, which both accept; the
/// form encoding's `+` means a plus sign in a path).
pub(super) fn enc(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enc_makes_a_path_segment_and_a_query_value() {
        assert_eq!(enc("shop.orders"), "shop.orders");
        assert_eq!(enc("a b+c/d?e&f"), "a%20b%2Bc%2Fd%3Fe%26f");
    }

    #[test]
    fn a_time_is_utc_text_with_a_machine_readable_datetime() {
        let at = DateTime::parse_from_rfc3339("2026-11-22T23:40:00.5+01:00").unwrap();
        let html = time(&at.with_timezone(&Utc)).into_string();
        assert_eq!(
            html,
            r#"<time datetime="2026-11-22T22:40:00.500Z">2026-11-22 22:40:00 UTC</time>"#
        );
        assert_eq!(time_text("not a time").into_string(), "not a time");
    }

    #[test]
    fn text_is_escaped() {
        let html = badge(Tone::Bad, "<script>").into_string();
        assert_eq!(html, r#"<span class="badge bad">&lt;script&gt;</span>"#);
    }
}
