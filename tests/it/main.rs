//! pollhook's integration tests: one binary, real servers on `127.0.0.1:0`, real SQLite files.

mod common;
mod config;
mod poll;
