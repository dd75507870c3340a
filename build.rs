//! Embeds every `adapters/*.toml` definition, so adding an adapter touches no Rust.

use std::fmt::Write;
use std::path::Path;

fn main() {
    let dir = Path::new("adapters");
    println!("cargo:rerun-if-changed=adapters");
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".toml"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    let mut out = String::from(
        "/// The definitions compiled into the binary: (name, TOML text).\npub const EMBEDDED: &[(&str, &str)] = &[\n",
    );
    for file in &names {
        let name = file.trim_end_matches(".toml");
        println!("cargo:rerun-if-changed=adapters/{file}");
        let _ = writeln!(
            out,
            "    ({name:?}, include_str!(concat!(env!(\"CARGO_MANIFEST_DIR\"), \"/adapters/{file}\"))),"
        );
    }
    out.push_str("];\n");
    let dest =
        Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("adapters.rs");
    std::fs::write(dest, out).expect("OUT_DIR is writable");
}
