//! The one integration-test binary.
//!
//! Cargo builds every `tests/*.rs` as a binary of its own, and linking each
//! costs minutes on two cores; so this is the only file directly under
//! `tests/`, and every test module lives under `tests/it/` and is declared
//! below. Support code is in `tests/util/`.
mod util;

mod it {
    mod alerts;
    mod capture;
    mod demo_server;
    mod env_file;
    mod heartbeat;
    mod history;
    mod hostile;
    mod http;
    mod lifecycle;
    mod memory;
    mod oncall;
    mod process;
    mod properties;
    mod report_html;
    mod restart;
    mod service;
    mod status;
}
