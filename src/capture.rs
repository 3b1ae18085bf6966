//! The log-writer process: `server-monitor __capture FILE MAX_BYTES BACKUPS`
//! copies its stdin to FILE with size rotation until end of input, then exits
//! 0 (daemontools' multilog, in one hidden subcommand of the same binary).
//!
//! The monitor starts one per stream (stdout -> `server.log`, stderr ->
//! `server_error.log`) with the read end of a pipe as stdin; the server
//! writes into the pipe. Promises (SPEC "The server's output"):
//!
//! - The server is never blocked: stdin is read continuously in 64 KiB
//!   reads; when the file cannot be written the data is dropped rather than
//!   reading stopped, and the failure reported on stderr at most once a
//!   minute.
//! - Rotation loses no line and never leaves a partial line at the end of a
//!   rotated file: only whole lines reach [`RotatingFile`]; a partial line
//!   waits in memory for its newline.
//! - Capture goes on while the monitor is down: this process does not talk
//!   to the monitor at all. It ends when every writer of the pipe has closed
//!   it (the server and everything it started).
//!
//! Memory is small and bounded: the 64 KiB read buffer and one partial line.
//! NOTE: to bound the second, a line longer than `max(MAX_BYTES, 64 KiB)`
//! bytes is cut: each `LIMIT` bytes of it are written as a line of their own
//! (a `'\n'` added), the rest follows as the next line. At end of input a
//! trailing partial line is written with a `'\n'` added.
//!
//! What it does not do: it does not parse, timestamp or reformat the
//! server's output (bytes in, the same bytes out, lines whole), it handles no
//! signals (the monitor should start it in its own process group, so that a
//! Ctrl-C meant for the monitor does not end it before the server has said
//! its last words), and it does not fsync.

use std::io::{self, Read};
use std::path::PathBuf;
use std::time::Instant;

use crate::logging::rotate::RotatingFile;
use crate::logging::throttle::{self, Throttle};

/// Bytes asked for per `read`; also the least line length that is cut.
pub const READ_BUFFER: usize = 64 * 1024;

/// `server-monitor __capture FILE MAX_BYTES BACKUPS`: copy stdin to FILE with
/// size rotation until EOF, then exit 0. Exit 1 when stdin cannot be read.
pub fn run(file: PathBuf, max_bytes: u64, backups: u32) -> i32 {
    let mut rotating = RotatingFile::new(file, max_bytes, backups);
    // Create the file at once, so that `tail -f` works before the first line.
    if let Err(e) = rotating.open() {
        throttle::warn_stderr(format_args!(
            "server-monitor __capture: cannot open {}: {e}",
            rotating.path().display()
        ));
    }
    match copy(io::stdin().lock(), &mut rotating) {
        Ok(_) => 0,
        Err(e) => {
            throttle::warn_stderr(format_args!(
                "server-monitor __capture: cannot read the output for {}: {e}",
                rotating.path().display()
            ));
            1
        }
    }
}

/// What a [`copy`] did, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Bytes read from the input.
    pub read: u64,
    /// Bytes (of whole lines, counting added newlines) that failed to be
    /// written and were dropped.
    pub dropped: u64,
}

/// Copies `reader` to `file` until end of input, whole lines only. Write
/// failures drop the lines concerned (reported on stderr at most once a
/// minute) and reading goes on; a read error ends the copy (after writing
/// the partial line held so far) and is returned.
pub fn copy(mut reader: impl Read, file: &mut RotatingFile) -> io::Result<Copied> {
    let limit = usize::try_from(file.max_bytes())
        .unwrap_or(usize::MAX)
        .max(READ_BUFFER);
    let mut splitter = LineSplitter::new(limit);
    let mut buf = vec![0u8; READ_BUFFER];
    let mut throttle = Throttle::new(throttle::REPORT_PERIOD);
    let mut copied = Copied::default();
    let mut write = |lines: &[u8]| {
        if let Err(e) = file.write_lines(lines) {
            copied.dropped += lines.len() as u64;
            if let Some(held_back) = throttle.admit(Instant::now()) {
                throttle::warn_stderr(format_args!(
                    "server-monitor __capture: {}; output is dropped until it works again",
                    throttle::failure_text("cannot write", file.path(), &e, held_back)
                ));
            }
        }
    };
    let mut read = 0u64;
    let result = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                read += n as u64;
                splitter.feed(&buf[..n], &mut write);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    splitter.finish(&mut write);
    result.map(|()| Copied { read, ..copied })
}

/// Turns a stream of chunks into runs of whole lines. Pure: no I/O.
///
/// Each call to `emit` gets one or more whole lines, each ending in `'\n'`,
/// in input order; a run of lines inside one chunk is passed in one piece
/// (no copy, one write). A partial line is held until its newline arrives. A
/// line whose content (without `'\n'`) is longer than `limit` is cut after
/// every `limit` bytes. The output depends only on the bytes fed, never on
/// where the chunks were split.
#[derive(Debug)]
pub struct LineSplitter {
    limit: usize,
    /// The partial line so far: at most `limit` bytes, never a `'\n'`.
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter cutting lines longer than `limit` (at least 1) bytes.
    pub fn new(limit: usize) -> LineSplitter {
        LineSplitter {
            limit: limit.max(1),
            pending: Vec::new(),
        }
    }

    /// Bytes held back as a partial line.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Feeds one chunk; whole lines go to `emit`.
    pub fn feed(&mut self, chunk: &[u8], emit: &mut impl FnMut(&[u8])) {
        let mut rest = chunk;
        if !self.pending.is_empty() {
            // Complete the held line: its newline must come within the
            // room left before the limit (or right after it).
            let room = self.limit - self.pending.len();
            let window = &rest[..rest.len().min(room + 1)];
            match find_newline(window) {
                Some(i) => {
                    self.pending.extend_from_slice(&rest[..=i]);
                    rest = &rest[i + 1..];
                }
                None if window.len() == room + 1 => {
                    // Longer than the limit: cut it here.
                    self.pending.extend_from_slice(&rest[..room]);
                    self.pending.push(b'\n');
                    rest = &rest[room..];
                }
                None => {
                    self.pending.extend_from_slice(rest);
                    return;
                }
            }
            emit(&self.pending);
            self.clear_pending();
        }
        // Here `rest` starts at the start of a line and nothing is held.
        let mut run_start = 0;
        let mut pos = 0;
        while pos < rest.len() {
            let window = &rest[pos..rest.len().min(pos + self.limit + 1)];
            match find_newline(window) {
                Some(i) => pos += i + 1,
                None if window.len() == self.limit + 1 => {
                    if run_start < pos {
                        emit(&rest[run_start..pos]);
                    }
                    self.pending.extend_from_slice(&rest[pos..pos + self.limit]);
                    self.pending.push(b'\n');
                    emit(&self.pending);
                    self.clear_pending();
                    pos += self.limit;
                    run_start = pos;
                }
                None => {
                    // A partial line at the end of the chunk: hold it.
                    self.pending.extend_from_slice(&rest[pos..]);
                    break;
                }
            }
        }
        if run_start < pos {
            emit(&rest[run_start..pos]);
        }
    }

    /// End of input: a held partial line goes out with a `'\n'` added.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            emit(&self.pending);
            self.clear_pending();
        }
    }

    /// Empties the held line, giving back the memory of a long one.
    fn clear_pending(&mut self) {
        self.pending.clear();
        if self.pending.capacity() > READ_BUFFER {
            self.pending = Vec::new();
        }
    }
}

fn find_newline(bytes: &[u8]) -> Option<usize> {
    bytes.iter().position(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logging::rotate::backup_path;
    use crate::logging::rotate::tests::TempDir;

    /// Feeds `chunks` and returns what was emitted, one entry per `emit`.
    fn split(limit: usize, chunks: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut splitter = LineSplitter::new(limit);
        let mut out = Vec::new();
        for chunk in chunks {
            splitter.feed(chunk, &mut |run: &[u8]| out.push(run.to_vec()));
            assert!(splitter.pending_len() <= limit);
        }
        splitter.finish(&mut |run: &[u8]| out.push(run.to_vec()));
        out
    }

    fn joined(emits: &[Vec<u8>]) -> String {
        String::from_utf8(emits.concat()).unwrap()
    }

    #[test]
    fn splitter_emits_whole_lines_only() {
        let table: [(&[&[u8]], &str); 9] = [
            (&[b"a\nb\n"], "a\nb\n"),
            (&[b"a\nb"], "a\nb\n"),
            (&[b"ab", b"c\n"], "abc\n"),
            (&[b"", b"x\n", b""], "x\n"),
            (&[b"\n\n"], "\n\n"),
            (&[b"partial"], "partial\n"),
            (&[b"one\ntw", b"o\nthr", b"ee"], "one\ntwo\nthree\n"),
            (&[], ""),
            (&[b""], ""),
        ];
        for (chunks, want) in table {
            let emits = split(100, chunks);
            assert_eq!(joined(&emits), want, "{chunks:?}");
            for run in &emits {
                assert_eq!(run.last(), Some(&b'\n'), "emitted a partial line: {run:?}");
            }
        }
    }

    #[test]
    fn splitter_passes_a_run_of_lines_in_one_piece() {
        let emits = split(100, &[b"a\nb\nc\nd", b"\ne\nf\n"]);
        let as_text: Vec<String> = emits
            .iter()
            .map(|e| String::from_utf8(e.clone()).unwrap())
            .collect();
        assert_eq!(as_text, ["a\nb\nc\n", "d\n", "e\nf\n"]);
    }

    #[test]
    fn splitter_cuts_lines_longer_than_the_limit() {
        let table: [(&[u8], &str); 7] = [
            (b"abcd\n", "abcd\n"),
            (b"abcde\n", "abcd\ne\n"),
            (b"abcdefgh\n", "abcd\nefgh\n"),
            (b"abcdefghi\nxy\n", "abcd\nefgh\ni\nxy\n"),
            (b"abcdefgh", "abcd\nefgh\n"),
            (b"ab\nabcd\nabcdefgh\n", "ab\nabcd\nabcd\nefgh\n"),
            (b"\n\n", "\n\n"),
        ];
        for (input, want) in table {
            assert_eq!(joined(&split(4, &[input])), want, "{input:?}");
        }
    }

    /// The rule that makes chunk boundaries harmless: for every way of
    /// cutting the input into two or three chunks, the output is the same.
    #[test]
    fn splitter_output_does_not_depend_on_chunk_boundaries() {
        let inputs: [&[u8]; 5] = [
            b"one\ntwo\n\nthree\nfour",
            b"abcdefghij\nk\nlmnopq\n",
            b"\n\n\nabcd\nabcde\nabcdef",
            b"xyz",
            b"abcd\n",
        ];
        for input in inputs {
            for limit in [1, 3, 4, 5, 100] {
                let want = joined(&split(limit, &[input]));
                for i in 0..=input.len() {
                    for j in i..=input.len() {
                        let got = split(limit, &[&input[..i], &input[i..j], &input[j..]]);
                        assert_eq!(joined(&got), want, "{input:?} limit {limit} cut at {i},{j}");
                        assert!(got.iter().all(|run| run.ends_with(b"\n")));
                    }
                }
            }
        }
    }

    /// Reads from a slice in the chunk sizes given, then the rest, and can
    /// fail with EINTR in between.
    struct Chunked<'a> {
        data: &'a [u8],
        sizes: Vec<usize>,
        interrupt_next: bool,
    }

    impl Read for Chunked<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if std::mem::take(&mut self.interrupt_next) {
                return Err(io::ErrorKind::Interrupted.into());
            }
            self.interrupt_next = true;
            let want = if self.sizes.is_empty() {
                buf.len()
            } else {
                self.sizes.remove(0)
            };
            let n = want.min(buf.len()).min(self.data.len());
            buf[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn copy_loses_no_line_and_splits_none_across_rotation() {
        let dir = TempDir::new("capture");
        let path = dir.join("server.log");
        let mut input = Vec::new();
        for i in 0..3000 {
            input.extend_from_slice(format!("{i:05} {}\n", "y".repeat(i % 90)).as_bytes());
        }
        input.extend_from_slice(b"no newline at the end");
        let backups = 200;
        let mut file = RotatingFile::new(path.clone(), 4096, backups);
        let reader = Chunked {
            data: &input,
            sizes: (1..500).map(|i| i * 37 % 1000).collect(),
            interrupt_next: false,
        };
        let copied = copy(reader, &mut file).unwrap();
        assert_eq!(
            copied,
            Copied {
                read: input.len() as u64,
                dropped: 0
            }
        );
        let mut all = String::new();
        for n in (1..=backups).rev() {
            let text = std::fs::read_to_string(backup_path(&path, n)).unwrap_or_default();
            assert!(
                text.is_empty() || text.ends_with('\n'),
                "backup {n} ends mid-line"
            );
            assert!(text.len() <= 4096);
            all.push_str(&text);
        }
        all.push_str(&std::fs::read_to_string(&path).unwrap());
        assert!(
            backup_path(&path, 10).exists(),
            "the test must rotate many times"
        );
        let mut want = String::from_utf8(input).unwrap();
        want.push('\n');
        assert_eq!(all, want);
    }

    #[test]
    fn copy_cuts_an_endless_line_to_bound_memory() {
        let dir = TempDir::new("capture-long");
        let path = dir.join("server.log");
        let mut file = RotatingFile::new(path.clone(), 4096, 5);
        let input = vec![b'z'; READ_BUFFER * 2 + 10];
        copy(&input[..], &mut file).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lens: Vec<usize> = text.lines().map(str::len).collect();
        // The limit is max(4096, 64 KiB); each piece went to a file of its own.
        assert_eq!(lens, [10]);
        let b1 = std::fs::read_to_string(backup_path(&path, 1)).unwrap();
        let b2 = std::fs::read_to_string(backup_path(&path, 2)).unwrap();
        assert_eq!((b1.len(), b2.len()), (READ_BUFFER + 1, READ_BUFFER + 1));
    }

    #[test]
    fn copy_keeps_reading_when_the_file_cannot_be_written() {
        let dir = TempDir::new("capture-fail");
        std::fs::write(dir.join("logs"), "a file, not a directory").unwrap();
        let mut file = RotatingFile::new(dir.join("logs").join("server.log"), 4096, 5);
        let input = b"one\ntwo\nthree".repeat(10_000);
        let copied = copy(&input[..], &mut file).unwrap();
        assert_eq!(copied.read, input.len() as u64);
        assert_eq!(copied.dropped, input.len() as u64 + 1);
    }

    #[test]
    fn copy_writes_the_held_line_before_returning_a_read_error() {
        struct Fails(bool);
        impl Read for Fails {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                if std::mem::replace(&mut self.0, true) {
                    return Err(io::Error::other("broken"));
                }
                buf[..9].copy_from_slice(b"a\npartial");
                Ok(9)
            }
        }
        let dir = TempDir::new("capture-err");
        let path = dir.join("server.log");
        let mut file = RotatingFile::new(path.clone(), 4096, 5);
        assert!(copy(Fails(false), &mut file).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\npartial\n");
    }
}
