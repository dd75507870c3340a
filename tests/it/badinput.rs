//! Bad input: a corpus of malformed configs and adapter definitions, each refused with a message
//! that names the place, never a panic.
//!
//! `tests/bad-input/configs/*.toml` are whole config files; `tests/bad-input/adapters/*.toml` are
//! adapter definitions, each copied into a fresh `adapters_dir` and named by a minimal source
//! (`name = "shop"`, one resource `orders`, everything else from the definition). Every file
//! starts with one or more `# expect: TEXT` lines: the error's `Display` must contain each TEXT.
//! The real binary's `check` runs on every config too: exit code 2, an `error: ` prefix, no panic
//! and no Rust `Debug` dump.
//!
//! Regression tests for inputs found by fuzzing (`fuzz/`, see RELIABILITY.md) go at the end.

use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use pollhook::config::Config;

use crate::support::std_command;

fn corpus(kind: &str) -> Vec<(PathBuf, String, Vec<String>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/bad-input")
        .join(kind);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let expects: Vec<String> = text
                .lines()
                .map_while(|l| l.strip_prefix("# expect: "))
                .map(|e| e.trim().to_owned())
                .collect();
            assert!(
                !expects.is_empty(),
                "{} has no `# expect:` first line",
                path.display()
            );
            (path, text, expects)
        })
        .collect()
}

/// A Rust `Debug` struct dump (`Name { field: …`) or a panic in text meant for a user.
fn debug_noise(text: &str) -> Option<String> {
    if text.contains("panicked") || text.contains("RUST_BACKTRACE") {
        return Some("a panic".into());
    }
    for (at, _) in text.match_indices(" { ") {
        let word = text[..at]
            .rsplit(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or("");
        let field = text[at + 3..]
            .split(|c: char| !c.is_alphanumeric() && c != '_')
            .next()
            .unwrap_or("");
        if word.starts_with(|c: char| c.is_ascii_uppercase())
            && text[at + 3 + field.len()..].starts_with(':')
        {
            return Some(format!("`{word} {{ {field}:`"));
        }
    }
    None
}

/// Parses `text` as if it were `file` with an empty environment; `Err` describes what was wrong
/// with the outcome (accepted, panicked, or refused without naming the place).
fn refused(file: &Path, text: &str, expects: &[String]) -> Result<(), String> {
    let env: BTreeMap<String, String> = BTreeMap::new();
    let outcome = catch_unwind(AssertUnwindSafe(|| Config::parse(file, text, &env)));
    let message = match outcome {
        Err(_) => return Err("Config::parse panicked".into()),
        Ok(Ok(_)) => return Err("accepted".into()),
        Ok(Err(e)) => e.to_string(),
    };
    let missing: Vec<&String> = expects
        .iter()
        .filter(|e| !message.contains(e.as_str()))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "lacks {missing:?}; the error was:\n      {message}"
        ));
    }
    if let Some(noise) = debug_noise(&message) {
        return Err(format!("has {noise}:\n      {message}"));
    }
    Ok(())
}

fn report(problems: Vec<String>, total: usize) {
    assert!(
        problems.is_empty(),
        "{} of {total} bad inputs were not refused as expected:\n  {}",
        problems.len(),
        problems.join("\n  ")
    );
}

#[test]
fn every_bad_config_is_refused_naming_the_place() {
    let corpus = corpus("configs");
    assert!(
        corpus.len() >= 30,
        "the corpus has {} configs",
        corpus.len()
    );
    let problems: Vec<String> = corpus
        .iter()
        .filter_map(|(path, text, expects)| {
            refused(path, text, expects)
                .err()
                .map(|e| format!("{}: {e}", path.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    report(problems, corpus.len());
}

/// Each bad adapter definition written as `STEM.toml` in a fresh dir, tried by `check` with that
/// dir, its stem and what its error must say; every failure is reported together.
fn for_each_bad_adapter(check: impl Fn(&Path, &str, &[String]) -> Result<(), String>) {
    let corpus = corpus("adapters");
    let problems: Vec<String> = corpus
        .iter()
        .filter_map(|(path, text, expects)| {
            let dir = tempfile::tempdir().unwrap();
            let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
            std::fs::write(dir.path().join(format!("{stem}.toml")), text).unwrap();
            check(dir.path(), &stem, expects)
                .err()
                .map(|e| format!("adapters/{stem}.toml: {e}"))
        })
        .collect();
    report(problems, corpus.len());
}

/// The config each adapter definition is tried with: everything but the names comes from it.
fn adapter_config(dir: &Path, adapter: &str) -> String {
    format!(
        r#"adapters_dir = "{}"

[[sources]]
name = "shop"
adapter = "{adapter}"

  [[sources.resources]]
  name = "orders"
"#,
        dir.display()
    )
}

#[test]
fn every_bad_adapter_definition_is_refused_naming_the_place() {
    for_each_bad_adapter(|dir, stem, expects| {
        let config = adapter_config(dir, stem);
        refused(&dir.join("pollhook.toml"), &config, expects)
    });
}

/// `pollhook check` on a bad file: exit code 2, `error: ` first, the expected text, no noise.
fn check_refuses(config: &Path, expects: &[String]) -> Result<(), String> {
    let out = std_command()
        .arg("check")
        .arg("--config")
        .arg(config)
        .env_remove("BADINPUT_UNSET_TOKEN")
        .output()
        .expect("the pollhook binary runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.code() != Some(2) {
        return Err(format!("exit {:?}:\n      {stderr}", out.status.code()));
    }
    if !stderr.starts_with("error: ") {
        return Err(format!("no `error: ` prefix:\n      {stderr}"));
    }
    if let Some(e) = expects.iter().find(|e| !stderr.contains(e.as_str())) {
        return Err(format!("lacks {e:?}:\n      {stderr}"));
    }
    if let Some(noise) = debug_noise(&stderr) {
        return Err(format!("has {noise}:\n      {stderr}"));
    }
    if !out.stdout.is_empty() {
        return Err(format!(
            "printed to stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(())
}

#[test]
fn check_refuses_every_bad_config_with_exit_code_2() {
    let corpus = corpus("configs");
    let problems: Vec<String> = corpus
        .iter()
        .filter_map(|(path, _, expects)| {
            check_refuses(path, expects)
                .err()
                .map(|e| format!("{}: {e}", path.file_name().unwrap().to_string_lossy()))
        })
        .collect();
    report(problems, corpus.len());
}

#[test]
fn check_refuses_every_bad_adapter_definition_with_exit_code_2() {
    for_each_bad_adapter(|dir, stem, expects| {
        let config = dir.join("pollhook.toml");
        std::fs::write(&config, adapter_config(dir, stem)).unwrap();
        check_refuses(&config, expects)
    });
}

/// Text that is not a config at all: binary noise, a BOM, a NUL, deep nesting, huge numbers.
/// Each is an error, never a panic.
#[test]
fn arbitrary_text_is_an_error_not_a_panic() {
    let deep_arrays = format!("x = {}{}", "[".repeat(5000), "]".repeat(5000));
    let deep_tables = format!("x = {}1{}", "{a=".repeat(2000), "}".repeat(2000));
    let inputs: Vec<String> = vec![
        String::new(),
        "\u{feff}".into(),
        "\0".into(),
        "[[sources]]\n".into(),
        "[[sources]]\nname = \"\"\n[[sources.resources]]\nname = \"\"\n".into(),
        "[[sources]]\nname = \"s\"\nbase_url = \"http://[::1\"\n".into(),
        "[[endpoints]]\n".into(),
        "sources = [1, 2, 3]".into(),
        "[delivery]\nretries = []\n".into(),
        "[delivery]\ntimeout = \"18446744073709551616s\"\n".into(),
        "[delivery]\ntimeout = \"99999999999999999999h\"\n".into(),
        "[[sources]]\nname=\"s\"\nbase_url=\"http://h\"\n[[sources.resources]]\nname=\"r\"\npath=\"/r\"\nevery=\"1000000000000000000000000000000000000d\"\n".into(),
        "[[sources]]\nname=\"s\"\nbase_url=\"http://h\"\n[[sources.resources]]\nname=\"r\"\npath=\"/r\"\nschedule=\"0 0 30 2 *\"\n".into(),
        "[[sources]]\nname=\"s\"\nbase_url=\"http://h\"\n[[sources.resources]]\nname=\"r\"\npath=\"/{\"\nevery=\"1s\"\n".into(),
        "x = \"${\"\ny = \"${A:-${B}}\"\nz = \"$${C}\"\n".into(),
        deep_arrays,
        deep_tables,
        String::from_utf8_lossy(&(0u8..=255).cycle().take(4096).collect::<Vec<u8>>()).into_owned(),
    ];
    let env: BTreeMap<String, String> = BTreeMap::new();
    for (i, text) in inputs.iter().enumerate() {
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            Config::parse(Path::new("fuzz.toml"), text, &env)
        }));
        match outcome {
            Err(_) => panic!("input {i} panicked Config::parse: {:?}", truncate(text)),
            Ok(Ok(_)) if i == 0 || i == 1 => {} // an empty config is a valid (idle) one
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                if let Some(noise) = debug_noise(&e.to_string()) {
                    panic!("input {i}: {noise} in {e}");
                }
            }
        }
    }
}

fn truncate(text: &str) -> String {
    text.chars().take(120).collect()
}

// ───────────────────────────── found by fuzzing ─────────────────────────────
//
// None yet: 60 s of each target (config_parse, link_header, items) found no crash; figures in
// RELIABILITY.md.
