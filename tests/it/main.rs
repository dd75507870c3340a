//! pollhook's integration tests: one binary, real servers on `127.0.0.1:0`, real SQLite files.

mod adapters;
mod api;
mod badinput;
mod cli;
mod common;
mod config;
mod crash;
mod deliver;
mod faults;
mod poll;
mod postgres;
mod props;
mod security_api;
mod security_config;
mod security_source;
mod service;
mod support_deliver;
