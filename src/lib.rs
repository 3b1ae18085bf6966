//! server-monitor: keeps a web server alive on a small VM.
//!
//! The library behind the `server-monitor` binary. Its one public API, meant
//! for other programs, is [`logging`]: the JSON-lines logger with size-based
//! rotation that the monitor itself uses, with the `app.log` / `errors.log` /
//! per-logger layout for Rust services.
//!
//! Everything else is the monitor's own and crate-private. A few modules are
//! `#[doc(hidden)] pub` only because code outside this crate needs them, and
//! are no API: `cli`, `command` and `config` for `src/main.rs`; `sys` for the
//! demo server (`src/bin/demo-server.rs`); `config` and `health` for the
//! property tests (`tests/it/properties.rs`); `history` for the history
//! tests (`tests/it/history.rs`, `tests/it/report_html.rs`);
//! `status` (its `request` parser alone) for the property tests and the
//! fuzz target.
//!
//! This file holds the module list and the lint settings, nothing else.
#![deny(unsafe_code)]

pub(crate) mod alert;
pub(crate) mod capture;
pub(crate) mod chores;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod command;
#[doc(hidden)]
pub mod config;
pub(crate) mod deadline;
pub(crate) mod escalation;
pub(crate) mod files;
#[doc(hidden)]
pub mod health;
pub(crate) mod heartbeat;
#[doc(hidden)]
pub mod history;
pub(crate) mod http;
pub(crate) mod lock;
pub mod logging;
pub(crate) mod monitor;
pub(crate) mod notify;
pub(crate) mod pause;
pub(crate) mod policy;
pub(crate) mod reexec;
pub(crate) mod report;
pub(crate) mod restart;
pub(crate) mod server;
pub(crate) mod state;
#[doc(hidden)]
pub mod status;
#[doc(hidden)]
#[allow(unsafe_code)]
pub mod sys;
pub(crate) mod tls;
pub(crate) mod usage;
