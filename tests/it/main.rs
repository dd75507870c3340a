//! pollhook's integration tests: one binary, real servers on `127.0.0.1:0`, real SQLite files.

mod adapters;
mod admin;
mod api;
mod badinput;
mod cli;
mod config;
mod crash;
mod deliver;
mod edges;
mod faults;
mod layout;
mod newuser;
mod pager_ahead;
mod pager_fast;
mod pager_total;
mod poll;
mod postgres;
mod props;
mod security_api;
mod security_config;
mod security_source;
mod service;
mod store;
mod support;
mod ui;
mod xml;
