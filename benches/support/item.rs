//! The benchmark item: a ~500-byte order, generated from its index and a version number, so the
//! stage benches and the e2e fake API hash, diff and serve exactly the same bytes without keeping
//! a listing in memory.

use std::io::Write;

const STATUSES: [&str; 4] = ["open", "paid", "packed", "shipped"];
const CITIES: [&str; 4] = ["Copenhagen", "Aarhus", "Odense", "Aalborg"];

/// Appends item `id` at `version` as compact JSON (keys deliberately not sorted, as APIs send them).
pub fn write_item(out: &mut Vec<u8>, id: u64, version: u32) {
    let status = STATUSES[(id as usize + version as usize) % STATUSES.len()];
    let city = CITIES[id as usize % CITIES.len()];
    let qty = 1 + id % 5;
    let price = (id % 97) as f64 + 0.95;
    let total = qty as f64 * price + 4.5;
    let _ = write!(
        out,
        r#"{{"id":{id},"number":"SO-{id:08}","status":"{status}","version":{version},"customer":{{"id":"cus_{cid:06}","name":"Customer {cid}","email":"customer{cid}@example.com","country":"DK"}},"shipping":{{"street":"Vesterbrogade {street}","city":"{city}","zip":"{zip}"}},"lines":[{{"sku":"SKU-{s1:05}","qty":{qty},"price":{price:.2}}},{{"sku":"SKU-{s2:05}","qty":1,"price":4.50}}],"total":{total:.2},"currency":"DKK","tags":["web","priority","gift"],"note":"Leave at the door if nobody answers.","created_at":"2026-01-01T08:00:00Z","updated_at":"2026-01-{day:02}T10:{min:02}:00Z"}}"#,
        cid = id % 100_000,
        street = 1 + id % 200,
        zip = 1000 + id % 8000,
        s1 = id % 10_000,
        s2 = (id * 7) % 10_000,
        day = 2 + version % 27,
        min = id % 60,
    );
}

/// Item `id` at `version` as bytes.
#[allow(dead_code)] // used by the stage benches, not by e2e
pub fn item_bytes(id: u64, version: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(600);
    write_item(&mut out, id, version);
    out
}
