//! The log writers between the server and `server.log` / `server_error.log`
//! (SPEC "The server's output"), against the real binary: memory under
//! output without newlines.

use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::util::*;

const LONG: Duration = Duration::from_secs(60);

fn settings(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("LOG_DIR", "logs".into()),
        ("HEALTH_URL", format!("http://127.0.0.1:{port}/health")),
        ("CHECK_INTERVAL", "0.5".into()),
        ("HEALTH_TIMEOUT", "2".into()),
        ("FAILURE_THRESHOLD", "3".into()),
        ("STARTUP_TIMEOUT", "20".into()),
        ("STOP_TIMEOUT", "1".into()),
    ]
}

/// The inode of the pipe behind `/proc/PID/fd/FD`, if it is a pipe.
fn pipe_of(pid: u32, fd: u32) -> Option<String> {
    let link = fs::read_link(format!("/proc/{pid}/fd/{fd}")).ok()?;
    let text = link.to_string_lossy().into_owned();
    text.starts_with("pipe:").then_some(text)
}

/// The children of process `pid` (all its threads').
fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    for task in fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let text = fs::read_to_string(task.path().join("children")).unwrap_or_default();
        out.extend(
            text.split_whitespace()
                .filter_map(|w| w.parse::<u32>().ok()),
        );
    }
    out
}

/// The monitor's child that reads the pipe the server's `fd` writes into:
/// found by the pipe, not by a name.
fn writer_of(monitor: u32, server: u32, fd: u32) -> Option<u32> {
    let pipe = pipe_of(server, fd)?;
    children(monitor)
        .into_iter()
        .find(|&c| c != server && pipe_of(c, 0).as_deref() == Some(&pipe))
}

/// `VmHWM` of `/proc/PID/status` in kB.
fn peak_rss_kb(pid: u32) -> u64 {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn all_output(log_dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(log_dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("server.log"))
        .map(|n| {
            let bytes = fs::read(log_dir.join(&n)).unwrap_or_default();
            (n, bytes)
        })
        .collect();
    files.sort();
    files
}

/// Issue 8 item 14: 200 MB of `\r`-separated output with no newline at the
/// default LOG_MAX_BYTES: the writer's memory stays small (it used to hold
/// up to LOG_MAX_BYTES, 33 MiB at its peak), and the output reaches the file
/// in pieces of one progress state each.
#[test]
fn carriage_return_output_keeps_the_writer_small() {
    let dir = TestDir::new("capture-cr");
    let port = free_port();
    let script = format!(
        "{} --port {port} & yes 'progress 42%' | tr '\\n' '\\r' | head -c 200000000; echo; echo DONE; wait",
        DEMO_BIN
    );
    let m = Monitor::start(&dir, &settings(port), &["sh".into(), "-c".into(), script]);
    let log_dir = m.log_dir().to_path_buf();
    m.wait_for(LONG, "all 200 MB through the writer", || {
        fs::read_to_string(log_dir.join("server.log")).is_ok_and(|t| t.contains("DONE\n"))
    });
    let server = m.server_pid().expect("server.pid");
    let out = writer_of(m.pid(), server, 1).expect("the stdout writer");
    let err = writer_of(m.pid(), server, 2).expect("the stderr writer");
    let (peak, idle) = (peak_rss_kb(out), peak_rss_kb(err));
    eprintln!("writer peak RSS after 200 MB of \\r output: {peak} kB (an idle writer: {idle} kB)");
    assert!(
        peak <= idle + 4096,
        "the stdout writer peaked at {peak} kB, an idle one at {idle} kB\n{}",
        m.dump()
    );
    // Pieces: one progress state a line, no line longer than 64 KiB + '\n'.
    let files = all_output(&log_dir);
    assert!(
        files.len() > 2,
        "rotated: {:?}",
        files.iter().map(|f| &f.0).collect::<Vec<_>>()
    );
    for (name, bytes) in &files {
        for line in bytes.split(|&b| b == b'\n') {
            assert!(
                line.len() <= 64 * 1024,
                "{name}: a line of {} bytes",
                line.len()
            );
        }
    }
    let (_, oldest_backup) = files.last().unwrap();
    assert!(
        oldest_backup.starts_with(b"progress 42%\r\nprogress 42%\r\n"),
        "{:?}",
        String::from_utf8_lossy(&oldest_backup[..60.min(oldest_backup.len())])
    );
    assert!(http_get(port, "/health", Duration::from_secs(2)).is_some_and(|r| r.0 == 200));
}

/// Issue 8 item 3: when the writes cannot go on (here `server.log` is a FIFO
/// nobody reads, so the writer's open blocks), the server is not blocked: it
/// writes 5 MB, keeps answering, is not restarted; once the FIFO is read,
/// one line says how much was dropped.
#[test]
fn a_stalled_log_write_does_not_block_the_server() {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let dir = TestDir::new("capture-stall");
    fs::create_dir_all(dir.join("logs")).unwrap();
    let fifo = dir.join("logs/server.log");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let port = free_port();
    let m = Monitor::start(&dir, &settings(port), &demo_server_args(port, &[]));
    m.wait_for(LONG, "a healthy server", || {
        m.server_pid().is_some()
            && http_get(port, "/health", Duration::from_secs(2)).is_some_and(|r| r.0 == 200)
    });
    let server = m.server_pid().unwrap();
    // 50 000 lines of 100 bytes: far more than the pipe and the queue hold.
    let spew = http_get(port, "/spew?n=50000", Duration::from_secs(20));
    assert_eq!(
        spew.map(|r| r.0),
        Some(200),
        "the server blocked on its output\n{}",
        m.dump()
    );
    for _ in 0..10 {
        assert!(
            http_get(port, "/health", Duration::from_secs(2)).is_some_and(|r| r.0 == 200),
            "{}",
            m.dump()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        m.server_pid(),
        Some(server),
        "the server was restarted\n{}",
        m.dump()
    );
    // Writing works again: read the FIFO.
    let mut reader = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let marker = |got: &[u8]| {
        let text = String::from_utf8_lossy(got);
        text.lines().find_map(|l| {
            l.strip_prefix("[server-monitor: ")?
                .strip_suffix(" bytes dropped]")?
                .parse::<u64>()
                .ok()
        })
    };
    wait_or_panic(
        LONG,
        "the dropped-bytes line",
        || {
            match reader.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read the FIFO: {e}"),
            }
            marker(&got).is_some()
        },
        || m.dump(),
    );
    let dropped = marker(&got).unwrap();
    let text = String::from_utf8_lossy(&got).into_owned();
    let kept = text.lines().filter(|l| l.starts_with("spew ")).count() as u64;
    // Every spew line is either kept or counted (a few access lines too).
    let spewed = 50_000 * 100;
    assert!(
        dropped >= spewed - kept * 100 && dropped <= spewed - kept * 100 + 100_000,
        "dropped {dropped}, kept {kept} spew lines"
    );
    assert!(dropped >= 1_000_000, "dropped {dropped}");
    assert_eq!(m.server_pid(), Some(server), "{}", m.dump());
}

/// Issue 8 item 15: a log writer that dies (here SIGKILL, as an OOM kill
/// would) is replaced on the same pipe: the server's later output still
/// reaches `server.log`, and the server is not restarted.
#[test]
fn a_killed_log_writer_is_replaced() {
    let dir = TestDir::new("capture-writer-killed");
    let port = free_port();
    let m = Monitor::start(&dir, &settings(port), &demo_server_args(port, &[]));
    let log_dir = m.log_dir().to_path_buf();
    m.wait_for(LONG, "a healthy server", || {
        m.server_pid().is_some()
            && http_get(port, "/health", Duration::from_secs(2)).is_some_and(|r| r.0 == 200)
    });
    let server = m.server_pid().unwrap();
    let old = writer_of(m.pid(), server, 1).expect("the stdout writer");
    assert!(signal_pid(old, libc::SIGKILL));
    let mut new = None;
    m.wait_for(LONG, "a new stdout writer", || {
        new = writer_of(m.pid(), server, 1).filter(|&p| p != old && pid_alive(p));
        new.is_some()
    });
    assert_eq!(
        http_get(port, "/spew?n=5", Duration::from_secs(5)).map(|r| r.0),
        Some(200)
    );
    m.wait_for(LONG, "the later output in server.log", || {
        read_lossy(&log_dir.join("server.log")).contains("spew 000005 ")
    });
    assert_eq!(m.server_pid(), Some(server), "{}", m.dump());
    let log = read_lossy(&log_dir.join("server_monitor.log"));
    assert!(log.contains("started a new one"), "{}", m.dump());
}
