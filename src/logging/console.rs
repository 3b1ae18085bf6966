//! Readable console lines for the same records the JSON files get.
//!
//! `08:28:39 [WARN] health check failed (reason=refused, failures=2)`: the
//! time (UTC, as in the JSON lines), the level, the message, and the
//! record's key-values in parentheses in the order they were given. The line
//! itself is written by `simplelog` (the dependency the user chose for the
//! console); what this module adds is the key-values, which simplelog does
//! not print: it builds a new `log::Record` whose message carries them.
//!
//! What it does not do: no colours, no level filtering of its own (the
//! logger filters before it gets here), and write errors are ignored (a
//! closed stderr must not stop the program).

use std::fmt;
use std::io::Write;

use log::kv::{self, VisitSource};
use log::{LevelFilter, Log, Record};
use simplelog::{ConfigBuilder, LevelPadding, WriteLogger};

/// A simplelog writer with our line layout, writing to `W` (stderr in use).
pub(crate) struct Console<W: Write + Send + 'static> {
    inner: Box<WriteLogger<W>>,
}

impl<W: Write + Send + 'static> Console<W> {
    pub(crate) fn new(out: W) -> Console<W> {
        let config = ConfigBuilder::new()
            .set_time_level(LevelFilter::Error) // Error and above: always
            .set_level_padding(LevelPadding::Off)
            .set_thread_level(LevelFilter::Off)
            .set_target_level(LevelFilter::Off)
            .set_location_level(LevelFilter::Off)
            .build();
        Console {
            // The caller filters; simplelog passes everything it gets.
            inner: WriteLogger::new(LevelFilter::Trace, config, out),
        }
    }

    pub(crate) fn log(&self, record: &Record) {
        if record.key_values().count() == 0 {
            self.inner.log(record);
            return;
        }
        let fields = Fields(record.key_values());
        // One statement: `format_args!` borrows temporaries.
        self.inner.log(
            &Record::builder()
                .args(format_args!("{} ({fields})", record.args()))
                .metadata(record.metadata().clone())
                .module_path(record.module_path())
                .file(record.file())
                .line(record.line())
                .build(),
        );
    }

    pub(crate) fn flush(&self) {
        self.inner.flush();
    }
}

/// Displays key-values as `k=v, k2=v2` (values by their `Display`).
pub(crate) struct Fields<'a>(pub(crate) &'a dyn kv::Source);

impl fmt::Display for Fields<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Write<'a, 'b> {
            f: &'a mut fmt::Formatter<'b>,
            first: bool,
            result: fmt::Result,
        }
        impl<'kvs> VisitSource<'kvs> for Write<'_, '_> {
            fn visit_pair(
                &mut self,
                key: kv::Key<'kvs>,
                value: kv::Value<'kvs>,
            ) -> Result<(), kv::Error> {
                let sep = if self.first { "" } else { ", " };
                self.first = false;
                self.result = self
                    .result
                    .and_then(|()| write!(self.f, "{sep}{key}={value}"));
                Ok(())
            }
        }
        let mut w = Write {
            f,
            first: true,
            result: Ok(()),
        };
        let _ = self.0.visit(&mut w);
        w.result
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A writer tests can read back after handing it to a logger.
    #[derive(Clone, Default)]
    pub(crate) struct SharedBuf(pub Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl SharedBuf {
        pub(crate) fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn fields_are_key_equals_value_in_order() {
        let kvs: [(&str, kv::Value); 3] = [
            ("reason", "refused".into()),
            ("failures", 2.into()),
            ("ok", false.into()),
        ];
        assert_eq!(
            Fields(&kvs).to_string(),
            "reason=refused, failures=2, ok=false"
        );
        let none: [(&str, kv::Value); 0] = [];
        assert_eq!(Fields(&none).to_string(), "");
    }

    /// Strips the `HH:MM:SS ` prefix after checking its shape.
    fn without_time(line: &str) -> &str {
        let (time, rest) = line.split_at(9);
        let b = time.as_bytes();
        assert!(
            b[2] == b':' && b[5] == b':' && b[8] == b' ',
            "time prefix in {line:?}"
        );
        rest
    }

    #[test]
    fn console_line_has_time_level_message_and_fields() {
        // The macros check the global maximum before calling `logger:`.
        log::set_max_level(LevelFilter::Trace);
        let buf = SharedBuf::default();
        let console = Console::new(buf.clone());
        log::warn!(logger: console_log(&console), reason = "refused", failures = 2; "health check failed");
        log::info!(logger: console_log(&console), "server started");
        log::debug!(logger: console_log(&console), target: "api", "check ok");
        let text = buf.text();
        let lines: Vec<&str> = text.lines().map(without_time).collect();
        assert_eq!(
            lines,
            [
                "[WARN] health check failed (reason=refused, failures=2)",
                "[INFO] server started",
                "[DEBUG] check ok",
            ]
        );
    }

    /// Adapts a Console to `log::Log` for the macros above.
    fn console_log<W: Write + Send + 'static>(console: &Console<W>) -> ConsoleLog<'_, W> {
        ConsoleLog(console)
    }

    struct ConsoleLog<'a, W: Write + Send + 'static>(&'a Console<W>);

    impl<W: Write + Send + 'static> Log for ConsoleLog<'_, W> {
        fn enabled(&self, _: &log::Metadata) -> bool {
            true
        }
        fn log(&self, record: &Record) {
            self.0.log(record)
        }
        fn flush(&self) {
            self.0.flush()
        }
    }
}
