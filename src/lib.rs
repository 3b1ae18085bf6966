//! server-monitor: keeps a web server alive on a small VM.
//!
//! The binary (`src/main.rs`) is a thin shell over this library. The one module
//! meant for other programs is [`logging`]: the JSON-lines logger with
//! size-based rotation that the monitor itself uses, with the `app.log` /
//! `errors.log` / per-logger layout for Rust services.
#![deny(unsafe_code)]

pub mod alert;
pub mod capture;
pub mod cli;
pub mod config;
pub mod files;
pub mod health;
pub mod http;
pub mod lock;
pub mod logging;
pub mod monitor;
pub mod notify;
pub mod policy;
pub mod reexec;
pub mod restart;
pub mod server;
pub mod state;
pub mod status;
#[allow(unsafe_code)]
pub mod sys;
pub mod tls;
