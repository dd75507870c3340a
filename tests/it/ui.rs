//! The dashboard's boundaries over HTTP, without a browser (tests/ui/ has the browser tests): the
//! pages are served with a strict CSP and the embedded assets; with a token, a page needs a
//! session, a wrong token is refused, the session cookie is `HttpOnly; SameSite=Strict` and the
//! API takes it in place of the bearer token; what another site's page could send is refused.
//!
//! The router is served on a loopback listener this test binds; nothing leaves 127.0.0.1.

use std::sync::Arc;

use pollhook::demo::FakeShop;
use reqwest::header;
use reqwest::redirect::Policy;
use serde_json::json;

use crate::support::{ConfigBuilder, Pipeline, Resource, Source};

const TOKEN: &str = "dashboard-test-token-123";

/// The admin router of a pipeline (not running: the pages only read the store) on a loopback
/// port, with a client that does not follow redirects.
struct Dashboard {
    base: String,
    client: reqwest::Client,
    _shop: FakeShop,
    _pipeline: Pipeline,
}

impl Dashboard {
    async fn start(token: Option<&str>) -> Dashboard {
        let shop = FakeShop::start(2).await.unwrap();
        let mut config = ConfigBuilder::without_storage()
            .source(Source::json_server("shop", &shop.url).resource(Resource::emitting("orders")));
        if let Some(token) = token {
            config = config.set("server.admin_token", token);
        }
        let pipeline = Pipeline::new(config.any_port());
        let running =
            pollhook::Pipeline::new(pipeline.config.clone(), pipeline.store.clone()).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let router = pollhook::api::router(Arc::new(running));
        tokio::spawn(async move { axum::serve(listener, router).await });
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(Policy::none())
            .build()
            .unwrap();
        Dashboard {
            base,
            client,
            _shop: shop,
            _pipeline: pipeline,
        }
    }

    fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.get(format!("{}{path}", self.base))
    }

    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.client.post(format!("{}{path}", self.base))
    }

    /// Logs in with `token`; the response.
    async fn login(&self, token: &str) -> reqwest::Response {
        self.post("/ui/login")
            .json(&json!({ "token": token }))
            .send()
            .await
            .unwrap()
    }
}

#[tokio::test]
async fn without_a_token_every_page_is_served_with_a_strict_csp() {
    let ui = Dashboard::start(None).await;
    for path in ["/ui/", "/ui/events", "/ui/deliveries", "/ui/endpoints"] {
        let response = ui.get(path).send().await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("default-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let html = response.text().await.unwrap();
        assert!(html.contains("<nav aria-label=\"Main\">"), "{path}: {html}");
        assert!(
            !html.contains("<script>") && !html.contains(" style="),
            "{path}: inline code"
        );
        assert!(
            !html.contains("Log out"),
            "no session to end without a token"
        );
    }
    let sources = ui.get("/ui/").send().await.unwrap().text().await.unwrap();
    assert!(
        sources.contains("data-resource=\"shop.orders\""),
        "{sources}"
    );
    let endpoints = ui
        .get("/ui/endpoints")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        endpoints.contains("No endpoints yet: add one."),
        "{endpoints}"
    );
}

#[tokio::test]
async fn assets_are_embedded_and_cached_by_their_content() {
    let ui = Dashboard::start(None).await;
    let html = ui.get("/ui/").send().await.unwrap().text().await.unwrap();
    let href = html
        .split("src=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap();
    assert!(href.starts_with("/ui/assets/app.js?v="), "{href}");
    let js = ui.get(href).send().await.unwrap();
    assert_eq!(
        js.headers()[header::CONTENT_TYPE],
        "text/javascript; charset=utf-8"
    );
    assert!(
        js.headers()[header::CACHE_CONTROL]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    assert!(js.text().await.unwrap().contains("data-live"));
    let missing = ui.get("/ui/assets/nope.js").send().await.unwrap();
    assert_eq!(missing.status(), 404);
}

#[tokio::test]
async fn an_unknown_event_is_a_page_that_says_so() {
    let ui = Dashboard::start(None).await;
    let response = ui.get("/ui/events/evt_nope").send().await.unwrap();
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("no event evt_nope"));
}

#[tokio::test]
async fn with_a_token_pages_need_a_session_and_a_wrong_token_is_refused() {
    let ui = Dashboard::start(Some(TOKEN)).await;
    let page = ui.get("/ui/deliveries").send().await.unwrap();
    assert_eq!(page.status(), 303);
    assert_eq!(page.headers()[header::LOCATION], "/ui/login");
    let form = ui.get("/ui/login").send().await.unwrap();
    assert_eq!(form.status(), 200);
    assert!(form.text().await.unwrap().contains("Admin token"));

    let wrong = ui.login("not-it").await;
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("not the admin token"));

    let right = ui.login(TOKEN).await;
    assert_eq!(right.status(), 204);
    let cookie = right.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.starts_with("pollhook_session="), "{cookie}");
    assert!(
        cookie.contains("; HttpOnly; SameSite=Strict") && cookie.contains("Path=/"),
        "{cookie}"
    );
    assert!(!cookie.contains(TOKEN), "the cookie is not the token");
    let session = cookie.split(';').next().unwrap().to_owned();

    let page = ui
        .get("/ui/deliveries")
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("Log out"));
    let api = ui
        .get("/api/v1/endpoints")
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(
        api.status(),
        200,
        "the API takes the session in place of the bearer token"
    );
    let api = ui.get("/api/v1/endpoints").send().await.unwrap();
    assert_eq!(api.status(), 401);
    let forged = ui
        .get("/api/v1/endpoints")
        .header(header::COOKIE, "pollhook_session=99999999999.00ff")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    let logout = ui
        .post("/ui/logout")
        .header(header::COOKIE, &session)
        .send()
        .await
        .unwrap();
    assert_eq!(logout.status(), 204);
    let cleared = logout.headers()[header::SET_COOKIE].to_str().unwrap();
    assert!(
        cleared.starts_with("pollhook_session=;") && cleared.contains("Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn what_another_site_could_send_is_refused() {
    let ui = Dashboard::start(Some(TOKEN)).await;
    // A plain HTML form cannot send JSON: its body is refused whatever its origin says.
    let form = ui
        .post("/ui/login")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(format!("token={TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415);
    assert!(form.headers().get(header::SET_COOKIE).is_none());
    // Another origin's page, even with JSON and a session.
    let session = ui.login(TOKEN).await.headers()[header::SET_COOKIE]
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    for (name, value) in [
        ("origin", "http://evil.example"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let response = ui
            .post("/api/v1/deliveries/retry-failed")
            .header(header::COOKIE, &session)
            .header(name, value)
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403, "{name}: {value}");
        let page = ui
            .get("/ui/")
            .header(header::COOKIE, &session)
            .header(name, value)
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 403, "a page, {name}: {value}");
    }
}

#[tokio::test]
async fn deliveries_filter_by_retrying_response_class_and_time_through_the_api() {
    let ui = Dashboard::start(None).await;
    for query in [
        "status=retrying",
        "code=5xx",
        "since=2026-01-01T00:00:00Z&until=2036-01-01T00:00:00Z",
    ] {
        let response = ui
            .get(&format!("/api/v1/deliveries?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{query}");
        let page = ui
            .get(&format!("/ui/deliveries?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{query}");
    }
    for (query, field) in [
        ("code=6xx", "code"),
        ("status=lost", "status"),
        ("since=yesterday", "since"),
    ] {
        let response = ui
            .get(&format!("/api/v1/deliveries?{query}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{query}");
        let body: serde_json::Value = response.json().await.unwrap();
        assert_eq!(body["error"]["problems"][0]["field"], field, "{body}");
    }
}
