//! The trust boundaries of a source (DESIGN.md §3): credentials and requests stay on the source's
//! origin unless it lists another (`follow_origins`), bodies are capped (`max_page_bytes`), an exec
//! program runs in its own process group with capped output and an explicit environment; and the
//! source-side answers that used to fail or mislead: compressed bodies, a BOM, HTML, number ids,
//! an empty wildcard page.
//!
//! Servers here are raw TCP on 127.0.0.1:0, so a test can send exactly the bytes it means (an
//! endless body, a gzip body) and see exactly the request heads that arrive.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::support::{Answer, Harness, RawServer};

/// The cap the body tests set.
const CAP: u64 = 1 << 20;

/// A `200` (or other status) with a body and extra header lines (each ending in `\r\n`).
fn answer(status: &str, headers: &str, body: impl Into<Vec<u8>>) -> Answer {
    let body = body.into();
    let mut out = format!(
        "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n{headers}\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(&body);
    Answer::Bytes(out)
}

fn json(body: &str) -> Answer {
    answer("200 OK", "content-type: application/json\r\n", body)
}

fn harness(base: &str, source_extra: &str, resource_extra: &str) -> Harness {
    Harness::new(&format!(
        r#"
[[sources]]
name = "shop"
base_url = "{base}"
retries = 0
{source_extra}

  [[sources.resources]]
  name = "orders"
  path = "/orders"
  every = "30s"
  {resource_extra}
"#
    ))
}

/// A header's value in a recorded request head (names case-insensitive).
fn header<'h>(head: &'h str, name: &str) -> Option<&'h str> {
    head.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn request_line(head: &str) -> &str {
    head.lines().next().unwrap_or_default()
}

const BEARER: &str = r#"auth = { type = "bearer", token = "tok-secret" }
headers = { X-Secret = "hdr-secret" }"#;

// ───────────────────────────── 1. origins ─────────────────────────────

#[tokio::test]
async fn a_link_header_to_another_origin_is_refused_and_it_receives_nothing() {
    let other = RawServer::start(|_| json("[]")).await;
    let next = format!("{}/orders?page=2", other.url);
    let api = RawServer::start(move |_| {
        answer(
            "200 OK",
            &format!("content-type: application/json\r\nlink: <{next}>; rel=\"next\"\r\n"),
            r#"[{"id": 1}]"#,
        )
    })
    .await;
    let h = harness(
        &api.url,
        BEARER,
        r#"pagination = { style = "link-header" }"#,
    );
    let err = h.poll().await.unwrap_err().to_string();
    assert!(err.contains(&other.url), "{err}");
    assert!(err.contains("follow_origins"), "{err}");
    assert!(other.heads().is_empty(), "{:?}", other.heads());
    assert!(
        !err.contains("tok-secret") && !err.contains("hdr-secret"),
        "{err}"
    );
}

#[tokio::test]
async fn a_redirect_to_another_origin_is_refused_and_it_receives_nothing() {
    let other = RawServer::start(|_| json("[]")).await;
    let target = format!("{}/elsewhere", other.url);
    let api =
        RawServer::start(move |_| answer("302 Found", &format!("location: {target}\r\n"), ""))
            .await;
    let h = harness(&api.url, BEARER, "");
    let err = h.poll().await.unwrap_err().to_string();
    assert!(err.contains(&other.url), "{err}");
    assert!(other.heads().is_empty(), "{:?}", other.heads());
}

#[tokio::test]
async fn a_listed_origin_gets_the_next_page_without_any_credential() {
    let other = RawServer::start(|_| json("[]")).await;
    let next = format!("{}/orders?page=2", other.url);
    let api = RawServer::start(move |_| {
        answer(
            "200 OK",
            &format!("content-type: application/json\r\nlink: <{next}>; rel=\"next\"\r\n"),
            r#"[{"id": 1}]"#,
        )
    })
    .await;
    let h = harness(
        &api.url,
        &format!("{BEARER}\nfollow_origins = [\"{}\"]", other.url),
        r#"pagination = { style = "link-header" }"#,
    );
    h.poll().await.unwrap();
    let own = api.heads();
    assert_eq!(header(&own[0], "authorization"), Some("Bearer tok-secret"));
    assert_eq!(header(&own[0], "x-secret"), Some("hdr-secret"));
    let heads = other.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert_eq!(header(&heads[0], "authorization"), None, "{}", heads[0]);
    assert_eq!(header(&heads[0], "x-secret"), None, "{}", heads[0]);
}

#[tokio::test]
async fn a_listed_origin_gets_no_query_key_from_a_next_url_and_no_token_on_a_redirect() {
    // The query key: a next-url link to a listed origin.
    let other = RawServer::start(|_| json(r#"{"data": [], "next": null}"#)).await;
    let next = format!("{}/orders?page=2", other.url);
    let api =
        RawServer::start(move |_| json(&format!(r#"{{"data": [{{"id": 1}}], "next": "{next}"}}"#)))
            .await;
    let h = harness(
        &api.url,
        &format!(
            "auth = {{ type = \"api-key\", query = \"api_key\", value = \"key-secret\" }}\nfollow_origins = [\"{}\"]",
            other.url
        ),
        r#"items = "$.data"
  pagination = { style = "next-url", next_url = "$.next" }"#,
    );
    h.poll().await.unwrap();
    assert!(request_line(&api.heads()[0]).contains("api_key=key-secret"));
    let heads = other.heads();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(!heads[0].contains("key-secret"), "{}", heads[0]);

    // Bearer auth and headers: a redirect to a listed origin, and to one listed with credentials.
    for (credentials, expect) in [(false, None), (true, Some("Bearer tok-secret"))] {
        let other = RawServer::start(|_| json("[]")).await;
        let target = format!("{}/moved", other.url);
        let api = RawServer::start(move |_| {
            answer(
                "307 Temporary Redirect",
                &format!("location: {target}\r\n"),
                "",
            )
        })
        .await;
        let listed = format!(
            "follow_origins = [{{ origin = \"{}\", credentials = {credentials} }}]",
            other.url
        );
        let h = harness(&api.url, &format!("{BEARER}\n{listed}"), "");
        h.poll().await.unwrap();
        let heads = other.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert_eq!(header(&heads[0], "authorization"), expect, "{}", heads[0]);
        assert_eq!(
            header(&heads[0], "x-secret").is_some(),
            credentials,
            "{}",
            heads[0]
        );
    }
}

// ───────────────────────────── 3. bodies ─────────────────────────────

#[tokio::test]
async fn an_endless_chunked_body_stops_at_max_page_bytes() {
    let api = RawServer::start(|_| Answer::Endless {
        head: "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
            .into(),
        piece: [b"[".as_slice(), &[b' '; 65535]].concat(),
        chunked: true,
    })
    .await;
    let h = harness(&api.url, &format!("max_page_bytes = {CAP}"), "");
    let err = h.poll().await.unwrap_err().to_string();
    assert!(
        err.contains("max_page_bytes") && err.contains(&CAP.to_string()),
        "{err}"
    );
    let sent = api.sent_when_done().await;
    // Socket buffers hold a few MiB; reading on would have taken all of `support::ENDLESS_BOUND`.
    assert!(sent < 32 * CAP, "the server wrote {sent} bytes");
}

#[tokio::test]
async fn an_endless_error_body_is_read_only_as_far_as_it_is_quoted() {
    let api = RawServer::start(|_| Answer::Endless {
        head: "HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain\r\n\r\n".into(),
        piece: vec![b'x'; 65536],
        chunked: false,
    })
    .await;
    let h = harness(&api.url, &format!("max_page_bytes = {CAP}"), "");
    let err = h.poll().await.unwrap_err().to_string();
    assert!(err.contains("500"), "{err}");
    assert!(err.len() < 1000, "the quote is short: {err}");
    let sent = api.sent_when_done().await;
    assert!(sent < 32 * CAP, "the server wrote {sent} bytes");
}

#[tokio::test]
async fn a_declared_length_over_the_cap_is_refused_unread() {
    let big = format!("[{}]", " ".repeat(CAP as usize + 10));
    let api = RawServer::start(move |_| json(&big)).await;
    let h = harness(&api.url, &format!("max_page_bytes = {CAP}"), "");
    let err = h.poll().await.unwrap_err().to_string();
    assert!(err.contains("max_page_bytes"), "{err}");
}

// ───────────────────────────── low: encodings, BOM, HTML ─────────────────────────────

const GZIP: [u8; 36] = [
    31, 139, 8, 0, 0, 0, 0, 0, 2, 3, 139, 174, 86, 202, 76, 81, 178, 82, 48, 172, 213, 81, 128, 50,
    141, 106, 99, 1, 184, 232, 211, 40, 22, 0, 0, 0,
];
const DEFLATE: [u8; 24] = [
    120, 156, 139, 174, 86, 202, 76, 81, 178, 82, 48, 172, 213, 81, 128, 50, 141, 106, 99, 1, 72,
    18, 6, 46,
];

#[tokio::test]
async fn gzip_and_deflate_bodies_are_decoded() {
    for (encoding, body) in [("gzip", GZIP.to_vec()), ("deflate", DEFLATE.to_vec())] {
        let api = RawServer::start(move |_| {
            answer(
                "200 OK",
                &format!("content-type: application/json\r\ncontent-encoding: {encoding}\r\n"),
                body.clone(),
            )
        })
        .await;
        let h = harness(&api.url, "", "");
        h.poll().await.unwrap_or_else(|e| panic!("{encoding}: {e}"));
        assert_eq!(h.snapshot_ids(), ["1", "2"], "{encoding}");
        let asked = header(&api.heads()[0], "accept-encoding")
            .unwrap_or_default()
            .to_owned();
        assert!(asked.contains(encoding), "{asked}");
    }
}

#[tokio::test]
async fn a_utf8_byte_order_mark_is_skipped() {
    let api = RawServer::start(|_| {
        answer(
            "200 OK",
            "content-type: application/json\r\n",
            [b"\xEF\xBB\xBF".as_slice(), br#"[{"id": 1}]"#].concat(),
        )
    })
    .await;
    let h = harness(&api.url, "", "");
    h.poll().await.unwrap();
    assert_eq!(h.snapshot_ids(), ["1"]);
}

#[tokio::test]
async fn an_html_or_xml_answer_names_its_content_type_and_what_to_do() {
    let api = RawServer::start(|_| {
        answer(
            "200 OK",
            "content-type: text/html; charset=utf-8\r\n",
            "<html><body>Sign in</body></html>",
        )
    })
    .await;
    let err = harness(&api.url, "", "")
        .poll()
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("Content-Type: text/html"), "{err}");
    assert!(err.contains("check base_url"), "{err}");
    let api =
        RawServer::start(|_| answer("200 OK", "content-type: application/xml\r\n", "<orders/>"))
            .await;
    let err = harness(&api.url, "", "")
        .poll()
        .await
        .unwrap_err()
        .to_string();
    // XML is read now (tests/it/xml.rs); without `items` the error says where to point it.
    assert!(err.contains("the response is XML"), "{err}");
    assert!(err.contains("set `items`"), "{err}");
}

// ───────────────────────────── 7. ids ─────────────────────────────

#[tokio::test]
async fn number_ids_are_compared_by_exact_value() {
    let body = Arc::new(Mutex::new(String::from(
        r#"[{"id": 1}, {"id": 2}, {"id": 3}]"#,
    )));
    let served = body.clone();
    let api = RawServer::start(move |_| json(&served.lock().unwrap())).await;
    let h = harness(&api.url, "", "");
    h.poll().await.unwrap();
    assert_eq!(
        h.snapshot_ids(),
        ["1", "2", "3"],
        "integer ids are stored as before"
    );
    *body.lock().unwrap() = r#"[{"id": 1.0}, {"id": 2.0}, {"id": 3e0}]"#.into();
    h.poll().await.unwrap();
    let actions: Vec<String> = h.events().iter().map(|e| e.action.to_string()).collect();
    assert!(
        !actions
            .iter()
            .any(|a| a.contains("delete") || a.contains("create")),
        "the same items: {actions:?}"
    );
    assert_eq!(h.snapshot_ids(), ["1", "2", "3"]);

    *body.lock().unwrap() =
        r#"[{"id": 100000000000000000000001}, {"id": 100000000000000000000002}]"#.into();
    h.poll().await.unwrap();
    assert_eq!(
        h.snapshot_ids(),
        ["100000000000000000000001", "100000000000000000000002"],
        "big ids keep every digit"
    );
}

// ───────────────────────────── 8. empty pages ─────────────────────────────

#[tokio::test]
async fn a_wildcard_over_an_empty_last_page_ends_the_listing() {
    let api = RawServer::start(|head| {
        if request_line(head).contains("page=1") {
            json(r#"{"data": [{"id": 1}, {"id": 2}]}"#)
        } else {
            json(r#"{"data": []}"#)
        }
    })
    .await;
    let h = harness(
        &api.url,
        "",
        r#"items = "$.data[*]"
  pagination = { style = "page", page_param = "page", first = 1 }"#,
    );
    h.poll().await.unwrap();
    assert_eq!(h.snapshot_ids(), ["1", "2"]);
}

#[tokio::test]
async fn a_wildcard_over_an_empty_link_header_page_is_an_empty_page() {
    let api = RawServer::start(|_| json(r#"{"data": []}"#)).await;
    let h = harness(
        &api.url,
        "",
        r#"items = "$.data[*]"
  pagination = { style = "link-header" }"#,
    );
    h.poll().await.unwrap();
    assert!(h.snapshot_ids().is_empty());
    assert!(h.status().last_outcome.is_some());
}

// ───────────────────────────── 5. exec ─────────────────────────────

fn exec(script: &str, extra: &str) -> Harness {
    Harness::new(&format!(
        r#"
[[sources]]
name = "tool"
adapter = "exec"
command = ["sh", "-c", '''{script}''']
{extra}

  [[sources.resources]]
  name = "things"
  every = "1m"
"#
    ))
}

/// Whether `pid` is gone (no such process, or a zombie waiting for its reaper).
fn gone(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            stat.rsplit(')')
                .next()
                .map(|rest| rest.trim_start().starts_with('Z'))
        })
        .unwrap_or(false);
    !alive || zombie
}

#[tokio::test]
async fn an_exec_timeout_kills_what_the_program_started() {
    let dir = tempfile::tempdir().unwrap();
    let pidfile = dir.path().join("pid");
    let h = exec(
        &format!("sleep 300 & echo $! > {}; echo []", pidfile.display()),
        r#"timeout = "1s""#,
    );
    let err = h.poll().await.unwrap_err().to_string();
    assert!(err.contains("did not finish"), "{err}");
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let mut killed = false;
    for _ in 0..100 {
        if gone(pid) {
            killed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    if !killed {
        // SAFETY: the pid is the `sleep` this test started; leave nothing behind.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    assert!(killed, "the program's child {pid} outlived the timeout");
}

#[tokio::test]
async fn exec_output_past_max_page_bytes_fails_with_the_cap() {
    let h = exec(
        r#"yes '{"id": 1}' | head -n 3000000"#,
        &format!("max_page_bytes = {CAP}\ntimeout = \"60s\""),
    );
    let err = h.poll().await.unwrap_err().to_string();
    assert!(
        err.contains("max_page_bytes") && err.contains(&CAP.to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn an_exec_program_sees_only_the_base_environment_and_its_env_table() {
    let h = exec(
        r#"env | cut -d= -f1 | sed 's/.*/{"id": "&"}/'"#,
        r#"env = { MY_TOKEN = "t0k3n" }"#,
    );
    h.poll().await.unwrap();
    let names = h.snapshot_ids();
    assert!(names.contains(&"MY_TOKEN".to_owned()), "{names:?}");
    assert!(names.contains(&"POLLHOOK_RESOURCE".to_owned()), "{names:?}");
    // What sh adds itself, and the base pollhook passes on.
    let allowed = [
        "PATH",
        "HOME",
        "LANG",
        "LC_ALL",
        "TZ",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
        "MY_TOKEN",
        "POLLHOOK_SOURCE",
        "POLLHOOK_RESOURCE",
        "POLLHOOK_PATH",
    ];
    let extra: Vec<&String> = names
        .iter()
        .filter(|n| !allowed.contains(&n.as_str()))
        .collect();
    assert!(extra.is_empty(), "inherited from pollhook: {extra:?}");
}

#[tokio::test]
async fn a_secret_on_exec_stderr_is_masked_in_the_error() {
    let h = exec(
        r#"echo "login failed with token $API_TOKEN" >&2; exit 3"#,
        r#"env = { API_TOKEN = "s3cr3t-value" }"#,
    );
    let err = h.poll().await.unwrap_err().to_string();
    assert!(err.contains("login failed with token ***"), "{err}");
    assert!(!err.contains("s3cr3t-value"), "{err}");
}
