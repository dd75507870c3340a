//! A response body through what a poll does to it: items extracted with a few fixed JSONPaths
//! (and with none), then each item normalized with simple, nested, composite and wildcard id and
//! ignore paths. Never a panic; a record's hash is a function of its content.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use pollhook::config::FieldPath;
use pollhook::normalize::Normalizer;
use pollhook::source::paginate::extract_items;
use serde_json::Value;
use serde_json_path::JsonPath;

const PATHS: [&str; 6] = [
    "$.data",
    "$.data[*]",
    "$..items",
    "$.result.list[*]",
    "$[*]",
    "$.data[-1]",
];

fn paths() -> &'static [(JsonPath, &'static str)] {
    static PARSED: OnceLock<Vec<(JsonPath, &'static str)>> = OnceLock::new();
    PARSED.get_or_init(|| {
        PATHS
            .iter()
            .map(|p| (JsonPath::parse(p).unwrap(), *p))
            .collect()
    })
}

fn fields(list: &[&str]) -> Vec<FieldPath> {
    list.iter().map(|p| p.parse().unwrap()).collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(body) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    let mut normalizers = [
        Normalizer::new(fields(&["id"]), vec![]),
        Normalizer::new(
            fields(&["order.id", "line"]),
            fields(&["updated_at", "meta.etag", "lines.*.seen", "*.x"]),
        ),
        Normalizer::new(fields(&["0"]), fields(&["*"])),
    ];
    let mut lists = vec![extract_items(body.clone(), None, None)];
    for (path, text) in paths() {
        lists.push(extract_items(body.clone(), Some(path), Some(text)));
    }
    for items in lists.into_iter().flatten() {
        for item in items {
            for n in normalizers.iter_mut() {
                if let Ok(first) = n.record(item.clone()) {
                    let again = n.record(item.clone()).expect("normalizing twice agrees");
                    assert_eq!(first.hash, again.hash);
                    assert_eq!(first.id, again.id);
                }
            }
        }
    }
});
