//! `Config::parse` on arbitrary text in an empty environment: it must return `Ok` or `Err`, never
//! panic, overflow the stack or hang, whatever the TOML (interpolation, adapter merging,
//! validation of every field included).
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;
use pollhook::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // An `adapters_dir` pointing somewhere real would read it; keep the fuzzer off the disk.
    if text.contains("adapters_dir") {
        return;
    }
    let env: BTreeMap<String, String> = BTreeMap::new();
    if let Err(e) = Config::parse(Path::new("fuzz.toml"), text, &env) {
        // Rendering the error is part of the contract too.
        let _ = e.to_string();
    }
});
