//! Fuzzes `config::split_words` (SERVER_COMMAND / STOP_COMMAND) and its
//! inverse `config::join_words` (what `server-monitor config` prints).
//!
//! Properties beyond "no panic":
//! - a command line that is not blank after trimming (resolve trims every
//!   value) gives at least one word or an error, never an empty list;
//!   untrimmed, only whitespace and backslash-newline pairs (removed, as
//!   sh removes them) may give no words;
//! - whatever it splits into, joined and split again, gives the same words;
//! - any list of words (the input cut at NUL bytes) survives join -> split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use server_monitor::config::{join_words, split_words};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(words) = split_words(text) {
        if words.is_empty() {
            assert!(
                text.replace("\\\n", "").trim().is_empty(),
                "no words from non-blank {text:?}"
            );
        }
        let joined = join_words(&words);
        assert_eq!(split_words(&joined), Ok(words.clone()), "via {joined:?}");
    }
    let trimmed = text.trim();
    if !trimmed.is_empty() {
        if let Ok(words) = split_words(trimmed) {
            assert!(!words.is_empty(), "no words from {trimmed:?}");
        }
    }
    let words: Vec<String> = text.split('\0').map(str::to_string).collect();
    let joined = join_words(&words);
    assert_eq!(split_words(&joined), Ok(words), "via {joined:?}");
});
