//! `next_link` on arbitrary `Link` header values, and the join onto the current page's URL that
//! the pager does with its answer: never a panic, and a found target is a substring of the header.
#![no_main]

use libfuzzer_sys::fuzz_target;
use pollhook::source::paginate::next_link;

fuzz_target!(|data: &[u8]| {
    let Ok(header) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(target) = next_link(header) {
        assert!(header.contains(target.as_str()));
        let current = url::Url::parse("https://api.example.com/v1/orders?page=1").unwrap();
        let _ = current.join(&target);
    }
});
