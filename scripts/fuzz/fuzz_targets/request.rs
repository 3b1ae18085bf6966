//! Fuzzes `status::request::parse` (the status listener's request parser,
//! issue 13) and `status::request::authorized`.
//!
//! Properties beyond "no panic":
//! - a decision on a prefix is final: the listener parses what has come so
//!   far, so a prefix that is complete or refused gives the same answer as
//!   the whole input;
//! - "incomplete" only under the 8 KiB cap;
//! - a complete request is a GET or HEAD of a path that starts with `/` and
//!   has no query;
//! - `authorized` takes a token as its own bearer, and not a longer one.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server_monitor::status::request::{authorized, parse, Method, Parse, MAX_HEAD};

fuzz_target!(|data: &[u8]| {
    let whole = parse(data);
    match &whole {
        Parse::Incomplete => assert!(data.len() < MAX_HEAD),
        Parse::Complete(r) => {
            assert!(matches!(r.method, Method::Get | Method::Head));
            assert!(r.path.starts_with('/') && !r.path.contains(['?', '#', ' ']));
        }
        Parse::Refused(code) => assert!([400, 405, 413, 431, 505].contains(code)),
    }
    if !data.is_empty() {
        let cut = usize::from(data[0]) * data.len() / 256;
        let prefix = parse(&data[..cut]);
        if prefix != Parse::Incomplete {
            assert_eq!(prefix, whole);
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = authorized(Some(text), "0123456789abcdef");
        if !text.is_empty() && !text.contains(char::is_whitespace) {
            assert!(authorized(Some(&format!("Bearer {text}")), text));
            assert!(!authorized(Some(&format!("Bearer {text}x")), text));
        }
    }
});
