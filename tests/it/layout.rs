//! The house's layout, checked from its imports: the rooms of `src/` (a file, or a folder as one
//! room) import no cycle, the pure rooms import no I/O room and not the config parser, and the
//! store does not know the dispatcher (STYLE.md, "A layout that reads as the data flow").
//!
//! A room's imports are the `crate::room` paths its code names outside comments and its
//! `#[cfg(test)]` module.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Every room of `src/` and the rooms it names.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut rooms: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(&src).unwrap();
            let first = relative.components().next().unwrap().as_os_str();
            let room = first.to_str().unwrap().trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            // The unit tests at the end of a file may reach anywhere; comments (doc links) are
            // not imports.
            let code: String = (text
                .split("#[cfg(test)]\nmod tests")
                .next()
                .unwrap()
                .lines())
            .filter(|line| !line.trim_start().starts_with("//"))
            .collect::<Vec<_>>()
            .join("\n");
            let named = rooms.entry(room.clone()).or_default();
            for (at, _) in code.match_indices("crate::") {
                let rest = &code[at + "crate::".len()..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                let target = &rest[..end];
                if !target.is_empty() && target != room {
                    named.insert(target.to_owned());
                }
            }
        }
    }
    rooms
}

/// The rooms reachable from `from` (itself excluded unless a cycle leads back to it).
fn reachable(rooms: &BTreeMap<String, BTreeSet<String>>, from: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<&str> = rooms[from].iter().map(String::as_str).collect();
    while let Some(room) = todo.pop() {
        if seen.insert(room.to_owned())
            && let Some(next) = rooms.get(room)
        {
            todo.extend(next.iter().map(String::as_str));
        }
    }
    seen
}

#[test]
fn the_rooms_of_src_import_no_cycle() {
    let rooms = imports();
    assert!(rooms.len() > 10, "found the rooms: {:?}", rooms.keys());
    let cycles: Vec<String> = rooms
        .keys()
        .filter(|room| reachable(&rooms, room).contains(*room))
        .map(|room| {
            let back: Vec<&String> = rooms[room]
                .iter()
                .filter(|next| reachable(&rooms, next).contains(room))
                .collect();
            format!("{room} → {back:?} → … → {room}")
        })
        .collect();
    assert!(cycles.is_empty(), "import cycles in src/: {cycles:#?}");
}

#[test]
fn pure_rooms_import_no_io_room_and_not_the_config_parser() {
    let rooms = imports();
    let pure = [
        "normalize",
        "diff",
        "event",
        "sign",
        "retry",
        "secret",
        "encode",
        "decode",
    ];
    let allowed: BTreeSet<&str> = pure.into_iter().collect();
    for room in pure {
        let Some(named) = rooms.get(room) else {
            panic!("no room {room} in src/");
        };
        let outside: Vec<&String> = named
            .iter()
            .filter(|n| !allowed.contains(n.as_str()))
            .collect();
        assert!(
            outside.is_empty(),
            "{room} is a pure room but imports {outside:?}"
        );
    }
}

#[test]
fn the_store_does_not_know_the_dispatcher_the_api_or_the_poll() {
    let rooms = imports();
    let reach = reachable(&rooms, "store");
    for io in ["deliver", "api", "poll", "schedule", "pipeline"] {
        assert!(
            !reach.contains(io),
            "store reaches {io}: {:?}",
            rooms["store"]
        );
    }
}
