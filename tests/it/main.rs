//! pollhook's integration tests: one binary, real servers on `127.0.0.1:0`, real SQLite files.

mod adapters;
mod api;
mod cli;
mod common;
mod config;
mod deliver;
mod poll;
mod support_deliver;
