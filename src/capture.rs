//! The log-writer process: `server-monitor __capture FILE MAX_BYTES BACKUPS`
//! copies its stdin to FILE with size rotation until end of input, then exits
//! 0 (daemontools' multilog, in one hidden subcommand of the same binary).
//!
//! The monitor starts one per stream (stdout -> `server.log`, stderr ->
//! `server_error.log`) with the read end of a pipe as stdin; the server
//! writes into the pipe. Promises (SPEC "The server's output"):
//!
//! - The server is never blocked, whatever the writes do: one thread reads
//!   stdin continuously in 64 KiB reads into a bounded queue
//!   ([`QUEUE_BYTES`]); another writes the queue to the file. When the writes
//!   stall (a disk or NFS stall, a FIFO nobody reads) or fail (a full disk),
//!   the output that does not fit is dropped, whole lines at a time, and
//!   counted; once writing works again one line
//!   `[server-monitor: N bytes dropped]` goes into the file where the gap is.
//!   Failures are also reported on stderr at most once a minute.
//! - Rotation loses no line and never leaves a partial line at the end of a
//!   rotated file: only whole pieces reach [`RotatingFile`]; a partial piece
//!   waits in memory for its end.
//! - Capture goes on while the monitor is down: this process does not talk
//!   to the monitor at all. It ends when every writer of the pipe has closed
//!   it (the server and everything it started).
//!
//! Pieces: a line ends at `'\n'`; a run of `'\r'` not followed by `'\n'`
//! (a progress bar) ends a piece too, and a piece longer than
//! [`PIECE_LIMIT`] (64 KiB, whatever MAX_BYTES) is cut. After a `'\r'` run
//! and at a cut a `'\n'` is added, so that every piece is a line of the
//! file. NOTE: the last piece of a chunk that ends in `'\r'` waits for the
//! next byte (a `'\n'` may follow), so a progress bar's latest state reaches
//! the file with the next one. At end of input a held piece is written with a
//! `'\n'` added.
//!
//! Memory is small and bounded: the 64 KiB read buffer, one held piece, and
//! the queue (at most twice [`QUEUE_BYTES`]: one half being written, one
//! filling).
//!
//! What it does not do: it does not parse, timestamp or reformat the
//! server's output (bytes in, the same bytes out but for the added `'\n'`s),
//! it handles no signals (the monitor starts it in its own process group, so
//! that a Ctrl-C meant for the monitor does not end it before the server has
//! said its last words), and it does not fsync.

use std::io::{self, Read};
use std::path::PathBuf;
use std::sync::{Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::logging::rotate::RotatingFile;
use crate::logging::throttle::{self, Throttle};

/// Bytes asked for per `read`.
pub const READ_BUFFER: usize = 64 * 1024;
/// The longest piece (without its `'\n'`); longer lines are cut.
pub const PIECE_LIMIT: usize = 64 * 1024;
/// Bytes the queue between reading and writing holds before output is
/// dropped (a stalled write may hold as much again).
pub const QUEUE_BYTES: usize = 256 * 1024;

/// `server-monitor __capture FILE MAX_BYTES BACKUPS`: copy stdin to FILE with
/// size rotation until EOF. `Err` (the message) when stdin cannot be read.
pub fn run(file: PathBuf, max_bytes: u64, backups: u32) -> Result<(), String> {
    let mut rotating = RotatingFile::new(file, max_bytes, backups);
    let path = rotating.path().to_path_buf();
    match copy(io::stdin().lock(), &mut rotating, QUEUE_BYTES) {
        Ok(_) => Ok(()),
        Err(e) => Err(format!(
            "cannot read the output for {}: {e}",
            path.display()
        )),
    }
}

/// Where the writer thread puts whole pieces: a [`RotatingFile`] in the
/// process, something slower or failing in tests.
pub trait Sink: Send {
    /// Called once, by the writer thread, before any write (may block).
    fn prepare(&mut self) {}
    /// Writes whole lines.
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()>;
    /// Names the destination in reports.
    fn name(&self) -> String;
}

impl Sink for RotatingFile {
    fn prepare(&mut self) {
        // Create the file at once, so that `tail -f` works before the first
        // line. In the writer thread: an open that blocks (a FIFO, a hung
        // NFS server) must not stop the reading.
        if let Err(e) = self.open() {
            throttle::warn_stderr(format_args!(
                "server-monitor __capture: cannot open {}: {e}",
                self.path().display()
            ));
        }
    }
    fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
        RotatingFile::write_lines(self, lines)
    }
    fn name(&self) -> String {
        self.path().display().to_string()
    }
}

/// The line written where output was dropped.
pub fn dropped_marker(bytes: u64) -> String {
    format!("[server-monitor: {bytes} bytes dropped]\n")
}

/// What a [`copy`] did, in bytes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    /// Bytes read from the input.
    pub read: u64,
    /// Bytes (of whole pieces, counting added newlines) dropped: the queue
    /// was full, or they failed to be written. Marker lines do not count.
    pub dropped: u64,
}

/// The queue between the reading and the writing thread.
#[derive(Debug, Default)]
struct Queue {
    /// Bytes dropped just before `data` (a gap the writer marks).
    gap: u64,
    /// Whole pieces waiting to be written.
    data: Vec<u8>,
    /// Bytes dropped after `data` since the queue filled; once the writer
    /// takes `data`, this becomes the next gap.
    overflow: u64,
    /// End of input: the writer ends when the queue is empty.
    eof: bool,
    /// When the writer last finished a write or took a batch: while it
    /// makes progress, a full queue makes the reader wait (up to [`STALL`])
    /// rather than drop.
    progress: Option<Instant>,
}

/// How long the writer may be inside one write before the reader stops
/// waiting for room and drops; while the writer makes progress the server is
/// slowed to the disk's speed (the pipe absorbs the wait), not dropped from.
pub const STALL: Duration = Duration::from_millis(200);

/// Copies `reader` to `sink` until end of input, whole pieces only, through
/// a queue of `queue_bytes`: reading never waits for writing. See the module
/// documentation. A read error ends the copy (after writing the piece held
/// so far) and is returned.
pub fn copy(mut reader: impl Read, sink: &mut impl Sink, queue_bytes: usize) -> io::Result<Copied> {
    let queue = Mutex::new(Queue::default());
    let ready = Condvar::new();
    let room = Condvar::new();
    let lock = || queue.lock().unwrap_or_else(|e| e.into_inner());
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| write_queue(sink, &queue, &ready, &room));
        let mut splitter = LineSplitter::new(PIECE_LIMIT);
        let mut buf = vec![0u8; READ_BUFFER];
        let mut staged = Vec::new();
        let mut throttle = Throttle::new(throttle::REPORT_PERIOD);
        let mut read = 0u64;
        let mut queue_dropped = 0u64;
        let mut push = |staged: &mut Vec<u8>, eof: bool| {
            let mut q = lock();
            // A writer that is making progress is waited for; one stuck in
            // a write for STALL is not.
            while q.overflow == 0 && q.data.len() + staged.len() > queue_bytes {
                let Some(since) = q.progress else { break };
                let left = STALL.saturating_sub(since.elapsed());
                if left.is_zero() {
                    break;
                }
                q = room
                    .wait_timeout(q, left)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            let before = q.overflow;
            if q.overflow == 0 {
                let room = queue_bytes.saturating_sub(q.data.len());
                let take = fitting_prefix(staged, room);
                q.data.extend_from_slice(&staged[..take]);
                q.overflow += (staged.len() - take) as u64;
            } else {
                q.overflow += staged.len() as u64;
            }
            queue_dropped += q.overflow - before;
            q.eof = eof;
            drop(q);
            ready.notify_one();
            if queue_dropped > 0 && throttle.admit(Instant::now()).is_some() {
                throttle::warn_stderr(format_args!(
                    "server-monitor __capture: writing cannot keep up; output is dropped (and counted in the file) until it can"
                ));
            }
            staged.clear();
        };
        let result = loop {
            match reader.read(&mut buf) {
                Ok(0) => break Ok(()),
                Ok(n) => {
                    read += n as u64;
                    splitter.feed(&buf[..n], &mut |run: &[u8]| staged.extend_from_slice(run));
                    if !staged.is_empty() {
                        push(&mut staged, false);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        splitter.finish(&mut |run: &[u8]| staged.extend_from_slice(run));
        push(&mut staged, true);
        let write_failed = writer.join().unwrap_or(0);
        result.map(|()| Copied {
            read,
            dropped: queue_dropped + write_failed,
        })
    })
}

/// The writer thread: takes what the queue holds and writes it, a marker
/// line first where output was dropped. Returns the bytes whose write failed.
fn write_queue(sink: &mut impl Sink, queue: &Mutex<Queue>, ready: &Condvar, room: &Condvar) -> u64 {
    sink.prepare();
    let progressed = || {
        queue.lock().unwrap_or_else(|e| e.into_inner()).progress = Some(Instant::now());
        room.notify_one();
    };
    progressed();
    let mut batch = Vec::new();
    let mut throttle = Throttle::new(throttle::REPORT_PERIOD);
    // Dropped bytes not yet reported in the file.
    let mut owed = 0u64;
    let mut failed_total = 0u64;
    loop {
        let gap;
        {
            let mut q = queue.lock().unwrap_or_else(|e| e.into_inner());
            while q.data.is_empty() && q.gap == 0 && q.overflow == 0 && !q.eof {
                q = ready.wait(q).unwrap_or_else(|e| e.into_inner());
            }
            if q.data.is_empty() && q.gap == 0 && q.overflow == 0 {
                break; // eof and nothing left
            }
            let q = &mut *q;
            q.progress = Some(Instant::now());
            std::mem::swap(&mut q.data, &mut batch);
            gap = std::mem::replace(&mut q.gap, std::mem::take(&mut q.overflow));
        }
        room.notify_one();
        owed += gap;
        if owed > 0 {
            match sink.write_lines(dropped_marker(owed).as_bytes()) {
                Ok(()) => owed = 0,
                Err(e) => report_failure(&mut throttle, &sink.name(), &e),
            }
        }
        if !batch.is_empty() {
            if let Err(e) = sink.write_lines(&batch) {
                owed += batch.len() as u64;
                failed_total += batch.len() as u64;
                report_failure(&mut throttle, &sink.name(), &e);
            }
        }
        batch.clear();
        progressed();
    }
    failed_total
}

fn report_failure(throttle: &mut Throttle, name: &str, e: &io::Error) {
    if let Some(held_back) = throttle.admit(Instant::now()) {
        throttle::warn_stderr(format_args!(
            "server-monitor __capture: {}; output is dropped until it works again",
            throttle::failure_text("cannot write", std::path::Path::new(name), e, held_back)
        ));
    }
}

/// Length of the longest prefix of `lines` made of whole lines and at most
/// `room` bytes long.
fn fitting_prefix(lines: &[u8], room: usize) -> usize {
    if lines.len() <= room {
        return lines.len();
    }
    lines[..room]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1)
}

/// Where a piece ends within a chunk (see [`LineSplitter::scan`]).
#[derive(Debug, PartialEq)]
enum Scan {
    /// The piece ends after `take` more bytes; `newline` when a `'\n'` is
    /// to be added (a `'\r'` run or a cut).
    Ends { take: usize, newline: bool },
    /// The whole chunk belongs to the piece, which goes on.
    More,
}

/// Turns a stream of chunks into runs of whole pieces. Pure: no I/O.
///
/// Each call to `emit` gets one or more whole pieces, each ending in `'\n'`,
/// in input order; a run of lines inside one chunk is passed in one piece
/// (no copy, one write). A piece ends at `'\n'`, after a run of `'\r'` not
/// followed by `'\n'` (a `'\n'` added), or when its content reaches `limit`
/// bytes (a `'\n'` added). A partial piece is held until its end arrives.
/// The output depends only on the bytes fed, never on where the chunks were
/// split.
#[derive(Debug)]
pub struct LineSplitter {
    limit: usize,
    /// The partial piece so far: at most `limit` bytes, never a `'\n'`.
    pending: Vec<u8>,
}

impl LineSplitter {
    /// A splitter cutting pieces longer than `limit` (at least 1) bytes.
    pub fn new(limit: usize) -> LineSplitter {
        LineSplitter {
            limit: limit.max(1),
            pending: Vec::new(),
        }
    }

    /// Bytes held back as a partial piece.
    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Where the piece that has `held` bytes so far (the last one a `'\r'`
    /// when `cr`) ends in `bytes`.
    fn scan(&self, bytes: &[u8], held: usize, mut cr: bool) -> Scan {
        let (mut i, mut len) = (0, held);
        loop {
            if cr {
                // Inside a run of '\r': the next byte decides.
                match bytes.get(i) {
                    None => return Scan::More,
                    Some(b'\n') => {
                        return Scan::Ends {
                            take: i + 1,
                            newline: false,
                        }
                    }
                    Some(b'\r') if len < self.limit => {
                        i += 1;
                        len += 1;
                        continue;
                    }
                    Some(_) => {
                        return Scan::Ends {
                            take: i,
                            newline: true,
                        }
                    }
                }
            }
            let end = bytes.len().min(i + (self.limit - len));
            match bytes[i..end].iter().position(|&b| b == b'\n' || b == b'\r') {
                Some(k) if bytes[i + k] == b'\n' => {
                    return Scan::Ends {
                        take: i + k + 1,
                        newline: false,
                    }
                }
                Some(k) => {
                    i += k + 1;
                    len += k + 1;
                    cr = true;
                }
                None => {
                    len += end - i;
                    i = end;
                    if len < self.limit {
                        return Scan::More;
                    }
                    // Full: only a '\n' may still come (and end it whole).
                    return match bytes.get(i) {
                        None => Scan::More,
                        Some(b'\n') => Scan::Ends {
                            take: i + 1,
                            newline: false,
                        },
                        Some(_) => Scan::Ends {
                            take: i,
                            newline: true,
                        },
                    };
                }
            }
        }
    }

    /// Feeds one chunk; whole pieces go to `emit`.
    pub fn feed(&mut self, chunk: &[u8], emit: &mut impl FnMut(&[u8])) {
        let mut rest = chunk;
        if !self.pending.is_empty() {
            let cr = self.pending.last() == Some(&b'\r');
            match self.scan(rest, self.pending.len(), cr) {
                Scan::More => {
                    self.pending.extend_from_slice(rest);
                    return;
                }
                Scan::Ends { take, newline } => {
                    self.pending.extend_from_slice(&rest[..take]);
                    if newline {
                        self.pending.push(b'\n');
                    }
                    emit(&self.pending);
                    self.clear_pending();
                    rest = &rest[take..];
                }
            }
        }
        // Here `rest` starts at the start of a piece and nothing is held.
        let mut run_start = 0;
        let mut pos = 0;
        while pos < rest.len() {
            match self.scan(&rest[pos..], 0, false) {
                Scan::Ends {
                    take,
                    newline: false,
                } => pos += take,
                Scan::Ends {
                    take,
                    newline: true,
                } => {
                    if run_start < pos {
                        emit(&rest[run_start..pos]);
                    }
                    self.pending.extend_from_slice(&rest[pos..pos + take]);
                    self.pending.push(b'\n');
                    emit(&self.pending);
                    self.clear_pending();
                    pos += take;
                    run_start = pos;
                }
                Scan::More => {
                    // A partial piece at the end of the chunk: hold it.
                    self.pending.extend_from_slice(&rest[pos..]);
                    rest = &rest[..pos];
                    break;
                }
            }
        }
        if run_start < rest.len().min(pos) {
            emit(&rest[run_start..rest.len().min(pos)]);
        }
    }

    /// End of input: a held partial piece goes out with a `'\n'` added.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            self.pending.push(b'\n');
            emit(&self.pending);
            self.clear_pending();
        }
    }

    /// Empties the held piece, giving back the memory of a long one.
    fn clear_pending(&mut self) {
        self.pending.clear();
        if self.pending.capacity() > READ_BUFFER {
            self.pending = Vec::new();
        }
    }
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

    #[test]
    fn splitter_ends_a_piece_at_a_run_of_carriage_returns() {
        let table: [(&[u8], &str); 8] = [
            (b"10%\r20%\r30%\n", "10%\r\n20%\r\n30%\n"),
            (b"a\r\r\rb\n", "a\r\r\r\nb\n"),
            // CRLF stays one line ending.
            (b"dos\r\nln\r\n", "dos\r\nln\r\n"),
            (b"a\r\r\nb", "a\r\r\nb\n"),
            (b"\r\rx", "\r\r\nx\n"),
            (b"end\r", "end\r\n"),
            // The limit counts the '\r's too.
            (b"ab\r\r\r\r\rc", "ab\r\r\n\r\r\r\nc\n"),
            (b"abcd\r", "abcd\n\r\n"),
        ];
        for (input, want) in table {
            let got = joined(&split(4, &[input]));
            assert_eq!(got, want, "{input:?}");
        }
    }

    #[test]
    fn splitter_emits_a_progress_bar_before_the_end_of_input() {
        let mut splitter = LineSplitter::new(PIECE_LIMIT);
        let mut out = Vec::new();
        splitter.feed(b"10%\r20%\r", &mut |run: &[u8]| out.extend_from_slice(run));
        // The last piece waits: a '\n' may follow its '\r'.
        assert_eq!(out, b"10%\r\n");
        splitter.feed(b"30%", &mut |run: &[u8]| out.extend_from_slice(run));
        assert_eq!(out, b"10%\r\n20%\r\n");
    }

    #[test]
    fn splitter_cuts_at_64_kib_whatever_the_input() {
        let input: Vec<u8> = (0..PIECE_LIMIT * 3 + 5)
            .map(|i| b'a' + (i % 26) as u8)
            .collect();
        let emits = split(PIECE_LIMIT, &[&input[..1000], &input[1000..]]);
        let lens: Vec<usize> = emits.iter().map(Vec::len).collect();
        assert_eq!(lens, [PIECE_LIMIT + 1, PIECE_LIMIT + 1, PIECE_LIMIT + 1, 6]);
    }

    /// A sink that blocks every write until `open` is set, recording what it
    /// was given.
    struct Stalled {
        open: std::sync::Arc<(Mutex<bool>, Condvar)>,
        written: Vec<u8>,
    }

    impl Stalled {
        fn wait_open(&self) {
            let (lock, cond) = &*self.open;
            let mut open = lock.lock().unwrap();
            while !*open {
                open = cond.wait(open).unwrap();
            }
        }
    }

    impl Sink for Stalled {
        /// Like the open of a FIFO nobody reads.
        fn prepare(&mut self) {
            self.wait_open();
        }
        fn write_lines(&mut self, lines: &[u8]) -> io::Result<()> {
            self.wait_open();
            self.written.extend_from_slice(lines);
            Ok(())
        }
        fn name(&self) -> String {
            "stalled".into()
        }
    }

    /// A reader that gives `lines` numbered lines, then releases the sink,
    /// then gives one more line, then EOF. Reading never waits for the sink.
    struct ThenRelease {
        next: u32,
        lines: u32,
        open: std::sync::Arc<(Mutex<bool>, Condvar)>,
    }

    impl Read for ThenRelease {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.next += 1;
            if self.next <= self.lines {
                let line = format!("{:099}\n", self.next);
                buf[..100].copy_from_slice(line.as_bytes());
                return Ok(100);
            }
            if self.next == self.lines + 1 {
                let (lock, cond) = &*self.open;
                *lock.lock().unwrap() = true;
                cond.notify_all();
                std::thread::sleep(std::time::Duration::from_millis(50));
                buf[..6].copy_from_slice(b"after\n");
                return Ok(6);
            }
            Ok(0)
        }
    }

    #[test]
    fn copy_drops_and_counts_when_writes_stall_and_marks_the_gap() {
        let open = std::sync::Arc::new((Mutex::new(false), Condvar::new()));
        let mut sink = Stalled {
            open: open.clone(),
            written: Vec::new(),
        };
        let lines = 2000; // 200 kB through a 10 kB queue
        let reader = ThenRelease {
            next: 0,
            lines,
            open,
        };
        let copied = copy(reader, &mut sink, 10_000).unwrap();
        let text = String::from_utf8(sink.written).unwrap();
        let markers: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("[server-monitor:"))
            .collect();
        assert_eq!(markers.len(), 1, "{markers:?}");
        let kept = text.lines().filter(|l| l.len() == 99).count() as u64;
        assert_eq!(kept, 100, "the queue's 10 kB are kept");
        assert_eq!(copied.dropped, (u64::from(lines) - kept) * 100);
        assert_eq!(
            markers[0],
            format!("[server-monitor: {} bytes dropped]", copied.dropped)
        );
        assert!(text.ends_with("after\n"), "{text}");
        // The marker stands where the gap is: after the lines kept.
        let marker_at = text.find("[server-monitor:").unwrap();
        assert_eq!(text[..marker_at].lines().count() as u64, kept);
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
        let copied = copy(reader, &mut file, QUEUE_BYTES).unwrap();
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
        copy(&input[..], &mut file, QUEUE_BYTES).unwrap();
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
        let copied = copy(&input[..], &mut file, QUEUE_BYTES).unwrap();
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
        assert!(copy(Fails(false), &mut file, QUEUE_BYTES).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a\npartial\n");
    }
}
