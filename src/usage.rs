//! The server's resource usage from `/proc`: the memory (PSS, or RSS where
//! PSS cannot be read) and CPU time of its whole process group, for
//! MEMORY_LIMIT (SPEC "How it behaves" 8), the state file, `status` and
//! `check`.
//!
//! Which processes: the server, its descendants (through
//! `/proc/PID/task/TID/children`, so that a check reads the server's own
//! subtree and not the whole process table), and the members of its process
//! group among the monitor's own descendants (a worker whose parent died is
//! reparented to the monitor, a child subreaper, and is no longer below the
//! server). Only where the kernel has no `children` files is all of `/proc`
//! scanned (logged once).
//!
//! What per process: PSS from `/proc/PID/smaps_rollup` (shared pages divided
//! among their users, so that 20 forked workers are not counted 20 times);
//! RSS from `/proc/PID/status` where that cannot be read (no permission, an
//! old kernel; logged once, and the sample says so); the name (`comm`) and
//! the CPU ticks `utime + stime` from `/proc/PID/stat` — not `cutime` and
//! `cstime`, which would count a reaped child's time a second time.
//!
//! The parsers are pure and tested with sample texts; [`Reader`] is the thin
//! shell over them. Not here: deciding anything (see `policy`), logging
//! beyond the two one-time notes.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::time::{Duration, Instant};

use crate::config::MemoryLimit;

use serde::{Deserialize, Serialize};

/// One process of the group.
#[derive(Clone, Debug, PartialEq)]
pub struct Process {
    pub pid: u32,
    pub name: String,
    pub bytes: u64,
}

/// The group measured once.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    pub total_bytes: u64,
    /// Every figure is PSS (false: at least one is RSS).
    pub pss: bool,
    /// Biggest first.
    pub processes: Vec<Process>,
    /// CPU time (user + system) of the processes, in seconds.
    pub cpu_seconds: f64,
    /// How long the server (the leader) had run, when known.
    pub age_seconds: Option<f64>,
    pub taken: Instant,
}

impl Sample {
    /// CPU % of one core between `earlier` and this sample, by wall time;
    /// None when no time passed. Processes that ended meanwhile take their
    /// time with them: the figure never goes below 0.
    pub fn cpu_percent_since(&self, earlier: &Sample) -> Option<f64> {
        let wall = self
            .taken
            .checked_duration_since(earlier.taken)?
            .as_secs_f64();
        if wall <= 0.0 {
            return None;
        }
        Some(((self.cpu_seconds - earlier.cpu_seconds) / wall * 100.0).max(0.0))
    }

    /// CPU % of one core on average since the server started: the figure
    /// of a first sample, with none before it to compare.
    pub fn cpu_percent_average(&self) -> Option<f64> {
        // Younger than half a second: too short for a figure (10 ms ticks).
        let age = self.age_seconds.filter(|&a| a >= 0.5)?;
        Some((self.cpu_seconds / age * 100.0).max(0.0))
    }

    /// `pid 4242 python3 300 MiB, pid 4250 worker 120 MiB`: the `n` biggest.
    pub fn top(&self, n: usize) -> Vec<String> {
        self.processes
            .iter()
            .take(n)
            .map(|p| format!("pid {} {} {}", p.pid, p.name, mib(p.bytes)))
            .collect()
    }
}

/// What the state file, `status` and `status --json` show.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    /// When measured (UTC, ISO 8601).
    pub time: String,
    pub memory_bytes: u64,
    /// `PSS` or `RSS`.
    pub memory_kind: String,
    pub processes: usize,
    /// CPU % of one core since the sample before (for the first one: on
    /// average since the server started).
    pub cpu_percent: Option<f64>,
    /// The biggest processes: `pid 4242 python3 300 MiB`.
    pub top: Vec<String>,
}

impl Usage {
    pub fn from_sample(s: &Sample, cpu_percent: Option<f64>, time: String) -> Usage {
        Usage {
            time,
            memory_bytes: s.total_bytes,
            memory_kind: if s.pss { "PSS" } else { "RSS" }.into(),
            processes: s.processes.len(),
            cpu_percent: cpu_percent.map(|c| (c * 10.0).round() / 10.0),
            top: s.top(TOP_PROCESSES),
        }
    }

    /// `45.2 MiB (PSS, 3 processes), CPU 1.5%`.
    pub fn summary(&self) -> String {
        let procs = if self.processes == 1 {
            "1 process".to_string()
        } else {
            format!("{} processes", self.processes)
        };
        let cpu = self
            .cpu_percent
            .map_or(String::new(), |c| format!(", CPU {c:.1}%"));
        format!(
            "{} ({}, {procs}){cpu}",
            mib_fine(self.memory_bytes),
            self.memory_kind
        )
    }
}

/// How many processes an alert and the state file name.
pub const TOP_PROCESSES: usize = 5;

/// Whole MiB, rounded: `612 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{} MiB", (bytes + (1 << 19)) >> 20)
}

/// MiB with one decimal: `45.2 MiB`.
pub fn mib_fine(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
}

/// The fields of `/proc/PID/stat` used here.
#[derive(Clone, Debug, PartialEq)]
pub struct Stat {
    pub name: String,
    pub state: char,
    pub ppid: u32,
    pub pgrp: u32,
    /// utime + stime, in clock ticks (not the children's cutime/cstime).
    pub ticks: u64,
    /// Clock ticks after boot when it started.
    pub start_ticks: u64,
    pub threads: u64,
}

/// Parses `/proc/PID/stat`. The name sits in parentheses and may itself hold
/// spaces and parentheses, so fields are counted after the last `)`.
pub fn parse_stat(text: &str) -> Option<Stat> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let name = text.get(open + 1..close)?.to_string();
    let f: Vec<&str> = text[close + 1..].split_whitespace().collect();
    // f[0] is field 3 (state): ppid 4, pgrp 5, utime 14, stime 15.
    let num = |i: usize| f.get(i)?.parse::<u64>().ok();
    Some(Stat {
        name,
        state: f.first()?.chars().next()?,
        ppid: u32::try_from(num(1)?).ok()?,
        pgrp: u32::try_from(num(2)?).ok()?,
        ticks: num(11)?.checked_add(num(12)?)?,
        start_ticks: num(19)?,
        threads: num(17)?,
    })
}

/// The `Pss:` line of `/proc/PID/smaps_rollup`, in bytes.
pub fn parse_smaps_rollup(text: &str) -> Option<u64> {
    kb_field(text, "Pss:")
}

/// The `VmRSS:` line of `/proc/PID/status`, in bytes (a kernel thread or a
/// zombie has none).
pub fn parse_status_rss(text: &str) -> Option<u64> {
    kb_field(text, "VmRSS:")
}

/// `MemTotal:` of `/proc/meminfo`, in bytes.
pub fn parse_meminfo_total(text: &str) -> Option<u64> {
    kb_field(text, "MemTotal:")
}

/// The first figure of `/proc/uptime`: seconds since boot.
pub fn parse_uptime(text: &str) -> Option<f64> {
    text.split_whitespace().next()?.parse().ok()
}

/// The pids of a `/proc/PID/task/TID/children` file: `123 456 `.
pub fn parse_children(text: &str) -> Vec<u32> {
    text.split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect()
}

fn kb_field(text: &str, key: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with(key))?;
    let mut words = line[key.len()..].split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next() {
        Some("kB") | None => n.checked_mul(1024),
        Some(_) => None,
    }
}

/// Pure: which of the processes `seen` (pid -> its stat) belong to the
/// server `leader` with process group `pgid`: the leader, whatever descends
/// from it, and every member of the group. Parents come from `ppid`, so the
/// answer is the same whether `seen` came from a walk or a scan.
pub fn members(seen: &HashMap<u32, Stat>, leader: u32, pgid: u32) -> Vec<u32> {
    let mut out: Vec<u32> = seen
        .iter()
        .filter(|(&pid, st)| {
            if !is_alive(st) {
                return false;
            }
            if pid == leader || st.pgrp == pgid {
                return true;
            }
            // Up the parent chain, bounded by the number of processes
            // (a pid reused while reading could make a loop).
            let mut p = st.ppid;
            for _ in 0..seen.len() {
                if p == leader {
                    return true;
                }
                match seen.get(&p) {
                    Some(parent) if p > 1 => p = parent.ppid,
                    _ => return false,
                }
            }
            false
        })
        .map(|(&pid, _)| pid)
        .collect();
    out.sort_unstable();
    out
}

fn is_alive(st: &Stat) -> bool {
    st.state != 'Z' && st.state != 'X'
}

/// Host memory in bytes (`/proc/meminfo`), for a MEMORY_LIMIT in percent.
pub fn host_memory() -> Option<u64> {
    parse_meminfo_total(&fs::read_to_string("/proc/meminfo").ok()?)
}

/// Reads samples; remembers what it has logged once.
#[derive(Debug)]
pub struct Reader {
    ticks_per_second: f64,
    /// Logged once: no `children` files, all of /proc is scanned instead.
    scan_noted: bool,
    /// Logged once: PSS could not be read for some process, RSS taken.
    rss_noted: bool,
    /// The monitor's own pid: the root of the walk when the server is its
    /// child (it also finds group members reparented to the monitor).
    me: u32,
    file: ProcFile,
}

impl Default for Reader {
    fn default() -> Reader {
        Reader::new()
    }
}

impl Reader {
    pub fn new() -> Reader {
        Reader {
            ticks_per_second: crate::sys::clock_ticks_per_second() as f64,
            scan_noted: false,
            rss_noted: false,
            me: std::process::id(),
            file: ProcFile::default(),
        }
    }

    /// Measures the group of server `leader` (process group `pgid`); None
    /// when the leader is gone and nothing of the group is found.
    pub fn sample(&mut self, leader: u32, pgid: u32) -> Option<Sample> {
        let taken = Instant::now();
        let seen = self.processes_near(leader);
        let uptime = self.file.read("/proc/uptime").ok().and_then(parse_uptime);
        let pids = members(&seen, leader, pgid);
        if pids.is_empty() {
            return None;
        }
        let mut processes = Vec::with_capacity(pids.len());
        let mut ticks = 0u64;
        let mut pss = true;
        for pid in pids {
            let st = &seen[&pid];
            ticks = ticks.saturating_add(st.ticks);
            let bytes = match self.file.read(&format!("/proc/{pid}/smaps_rollup")) {
                Ok(t) if parse_smaps_rollup(t).is_some() => parse_smaps_rollup(t),
                other => {
                    let why = match other {
                        Ok(_) => "no Pss line".to_string(),
                        Err(e) => e.to_string(),
                    };
                    let rss = self
                        .file
                        .read(&format!("/proc/{pid}/status"))
                        .ok()
                        .and_then(parse_status_rss);
                    if rss.is_some() {
                        pss = false;
                        if !self.rss_noted {
                            self.rss_noted = true;
                            log::warn!(pid = pid, error = why.as_str();
                                "cannot read PSS from /proc/PID/smaps_rollup; counting RSS for such processes (shared pages are then counted in each)");
                        }
                    }
                    rss
                }
            };
            // Gone meanwhile, or a zombie: nothing to count.
            let Some(bytes) = bytes else { continue };
            processes.push(Process {
                pid,
                name: st.name.clone(),
                bytes,
            });
        }
        processes.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.pid.cmp(&b.pid)));
        let age_seconds = seen
            .get(&leader)
            .zip(uptime)
            .map(|(st, up)| up - st.start_ticks as f64 / self.ticks_per_second);
        Some(Sample {
            total_bytes: processes.iter().map(|p| p.bytes).sum(),
            pss,
            processes,
            cpu_seconds: ticks as f64 / self.ticks_per_second,
            age_seconds,
            taken,
        })
    }

    /// The stats of the processes below the walk's root (the monitor when
    /// the server is its child, else the server), or of all of /proc where
    /// the kernel has no `children` files.
    fn processes_near(&mut self, leader: u32) -> HashMap<u32, Stat> {
        let mut seen = HashMap::new();
        let Some(leader_stat) = self.stat(leader) else {
            return self.scan();
        };
        let root = if leader_stat.ppid == self.me {
            self.me
        } else {
            leader
        };
        let mut queue = vec![root];
        let mut visited = HashSet::new();
        let mut kids = Vec::new();
        while let Some(pid) = queue.pop() {
            if !visited.insert(pid) {
                continue;
            }
            let st = if pid == self.me && pid != leader {
                None
            } else {
                self.stat(pid)
            };
            let threads = st.as_ref().map_or(0, |st| st.threads);
            kids.clear();
            match self.children(pid, threads, &mut kids) {
                true => queue.extend_from_slice(&kids),
                false if pid == root => return self.scan(),
                false => {}
            }
            if let Some(st) = st {
                seen.insert(pid, st);
            }
        }
        seen
    }

    fn scan(&mut self) -> HashMap<u32, Stat> {
        if !self.scan_noted {
            self.scan_noted = true;
            log::warn!("/proc/PID/task/TID/children cannot be read on this kernel: each memory sample scans all of /proc");
        }
        let Ok(dir) = fs::read_dir("/proc") else {
            return HashMap::new();
        };
        dir.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
            .filter_map(|pid| Some((pid, self.stat(pid)?)))
            .collect()
    }

    fn stat(&mut self, pid: u32) -> Option<Stat> {
        parse_stat(self.file.read(&format!("/proc/{pid}/stat")).ok()?)
    }

    /// Adds the children of every thread of `pid` (`threads` of them, 0 if
    /// not known) to `out`; false when the files do not exist (the process
    /// is gone, or the kernel lacks CONFIG_PROC_CHILDREN). A process of one
    /// thread is read without listing its task directory.
    fn children(&mut self, pid: u32, threads: u64, out: &mut Vec<u32>) -> bool {
        if threads == 1 {
            return match self.file.read(&format!("/proc/{pid}/task/{pid}/children")) {
                Ok(text) => {
                    out.extend(parse_children(text));
                    true
                }
                Err(_) => false,
            };
        }
        let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
            return false;
        };
        let mut any = false;
        for task in tasks.flatten() {
            let Some(tid) = task.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if let Ok(text) = self.file.read(&format!("/proc/{pid}/task/{tid}/children")) {
                any = true;
                out.extend(parse_children(text));
            }
        }
        any
    }
}

/// Reads small /proc files into one buffer kept between samples: an open
/// and, as a rule, one read — no metadata call (std's `read_to_string` asks
/// for a size that /proc does not know) and no reading in small steps.
///
/// NOTE: a read shorter than the space left is taken as the end of the file:
/// a /proc file of one record (stat, status, smaps_rollup, uptime) comes
/// whole in its first read, and `children` lists as many pids as fit. A
/// full buffer is grown and read on.
#[derive(Debug, Default)]
struct ProcFile {
    buf: Vec<u8>,
}

impl ProcFile {
    fn read(&mut self, path: &str) -> std::io::Result<&str> {
        use std::io::Read;
        let mut f = fs::File::open(path)?;
        if self.buf.len() < 8192 {
            self.buf.resize(8192, 0);
        }
        let mut len = 0;
        loop {
            let n = f.read(&mut self.buf[len..])?;
            len += n;
            if n == 0 || len < self.buf.len() {
                break;
            }
            let grown = self.buf.len() * 2;
            self.buf.resize(grown, 0);
        }
        if std::str::from_utf8(&self.buf[..len]).is_err() {
            // A name (comm) need not be UTF-8: its other bytes become `?`.
            for b in &mut self.buf[..len] {
                if !b.is_ascii() {
                    *b = b'?';
                }
            }
        }
        std::str::from_utf8(&self.buf[..len]).map_err(std::io::Error::other)
    }
}

/// How often the server's usage is measured for the state file when no
/// MEMORY_LIMIT asks for a sample at every check.
pub const REFRESH_WITHOUT_LIMIT: Duration = Duration::from_secs(60);

/// What the main loop keeps about the server's usage: the limit in bytes
/// (resolved once at start), the last sample, and the biggest processes at
/// the last sample over the limit (for the alert).
#[derive(Debug)]
pub struct Watch {
    reader: Reader,
    setting: Option<MemoryLimit>,
    limit: Option<u64>,
    /// The last sample and the server (pid) it was of.
    last: Option<(u32, Sample)>,
    usage: Option<Usage>,
    next_refresh: Instant,
    over_top: Vec<String>,
}

impl Watch {
    /// Resolves a MEMORY_LIMIT in percent against the host's memory, once.
    pub fn new(setting: Option<MemoryLimit>, now: Instant) -> Watch {
        let limit = setting.and_then(|m| match m {
            MemoryLimit::Bytes(n) => Some(n),
            MemoryLimit::Percent(_) => match host_memory() {
                Some(total) => Some(m.bytes(total)),
                None => {
                    log::error!(memory_limit = m.to_string().as_str();
                        "cannot read MemTotal from /proc/meminfo: MEMORY_LIMIT in percent is ignored");
                    None
                }
            },
        });
        if let (Some(m), Some(bytes)) = (setting, limit) {
            log::info!(memory_limit = m.to_string().as_str(), bytes = bytes;
                "MEMORY_LIMIT {}: the server's process group is measured at every check", mib(bytes));
        }
        Watch {
            reader: Reader::new(),
            setting,
            limit,
            last: None,
            usage: None,
            next_refresh: now,
            over_top: Vec::new(),
        }
    }

    /// At a regular check (not a startup probe), with MEMORY_LIMIT: measures
    /// the group of `server` (pid, pgid); `(used, limit)` for the policy.
    /// Without MEMORY_LIMIT nothing is read.
    pub fn at_check(&mut self, server: Option<(u32, u32)>, now: Instant) -> Option<(u64, u64)> {
        let limit = self.limit?;
        let sample = self.measure(server?, now)?;
        let (used, count, top) = (
            sample.total_bytes,
            sample.processes.len(),
            sample.top(TOP_PROCESSES),
        );
        if used > limit {
            self.over_top = top;
            let cause = crate::policy::memory_cause(used, limit, self.setting);
            log::warn!(bytes = used, limit = limit, processes = count,
                biggest = self.over_top.join(", ").as_str(); "server {cause}");
        } else {
            self.over_top.clear();
        }
        Some((used, limit))
    }

    /// Without MEMORY_LIMIT: measures the group at most every
    /// [`REFRESH_WITHOUT_LIMIT`], for the state file.
    pub fn refresh_if_due(&mut self, server: Option<(u32, u32)>, now: Instant) {
        if self.limit.is_some() || now < self.next_refresh {
            return;
        }
        if let Some(s) = server {
            // A server a moment old has no CPU figure yet: look again soon.
            let young = self
                .measure(s, now)
                .map(|s| s.age_seconds.is_none_or(|a| a < 1.0));
            self.next_refresh = match young {
                Some(false) => now + REFRESH_WITHOUT_LIMIT,
                Some(true) => now + Duration::from_secs(1),
                None => now,
            };
        }
    }

    /// The last sample and the server (pid) it was of: the status
    /// endpoints' memory (the group's PSS) and CPU seconds.
    pub fn last_sample(&self) -> Option<(u32, &Sample)> {
        self.last.as_ref().map(|(pid, s)| (*pid, s))
    }

    /// The last measurement, for the state file.
    pub fn usage(&self) -> Option<&Usage> {
        self.usage.as_ref()
    }

    fn measure(&mut self, (pid, pgid): (u32, u32), _now: Instant) -> Option<&Sample> {
        let sample = self.reader.sample(pid, pgid)?;
        let cpu = match &self.last {
            Some((before, earlier)) if *before == pid => sample.cpu_percent_since(earlier),
            _ => sample.cpu_percent_average(),
        };
        let time = crate::logging::utc_iso8601_millis(std::time::SystemTime::now());
        self.usage = Some(Usage::from_sample(&sample, cpu, time));
        log::debug!(bytes = sample.total_bytes, processes = sample.processes.len(),
            pss = sample.pss; "measured the server's memory");
        self.last = Some((pid, sample));
        self.last.as_ref().map(|(_, s)| s)
    }

    /// Adds the biggest processes of the group below the `Cause:` line of an
    /// alert whose cause is the memory.
    pub fn annotate(&self, alert: &crate::policy::Alert, body: &mut String) {
        use crate::policy::Alert;
        let cause = match alert {
            Alert::Restarted { cause, .. } | Alert::Down { cause, .. } => cause,
            _ => return,
        };
        if !cause.starts_with(crate::policy::MEMORY_CAUSE_PREFIX) || self.over_top.is_empty() {
            return;
        }
        let kind = self
            .usage
            .as_ref()
            .map_or("PSS", |u| u.memory_kind.as_str());
        let mut lines = vec![format!("Biggest processes of the group ({kind}):")];
        lines.extend(self.over_top.iter().map(|p| format!("  {p}")));
        *body = insert_after_cause(body, &lines);
    }
}

/// Pure: `body` with `lines` after its `Cause:` line (at the end if none).
pub fn insert_after_cause(body: &str, lines: &[String]) -> String {
    let mut out = String::with_capacity(body.len() + 64 * lines.len());
    let mut done = false;
    for line in body.split_inclusive('\n') {
        out.push_str(line);
        if !done && line.starts_with("Cause: ") {
            done = true;
            for l in lines {
                out.push_str(l);
                out.push('\n');
            }
        }
    }
    if !done {
        for l in lines {
            out.push_str(l);
            out.push('\n');
        }
    }
    out
}

/// For `server-monitor check`: `; memory 45.2 MiB (PSS, 3 processes), CPU 1.5%`
/// (CPU on average since the server started: one sample, no wait) when the
/// server of `server.pid` in `dir` runs, else nothing.
pub fn check_line(dir: &std::path::Path) -> String {
    let Some(Ok(record)) = crate::server::PidFile::read(dir) else {
        return String::new();
    };
    let Some(st) = crate::server::ProcStat::read(record.pid) else {
        return String::new();
    };
    if st.start_time != record.start_time || !st.is_alive() {
        return String::new();
    }
    match Reader::new().sample(record.pid, st.pgrp) {
        Some(s) => {
            let cpu = s.cpu_percent_average();
            format!(
                "; memory {}",
                Usage::from_sample(&s, cpu, String::new()).summary()
            )
        }
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "4242 (python3 (w) x) S 4200 4242 4242 0 -1 4194560 1234 0 0 0 \
                        150 30 7 9 20 0 3 0 123456 456789 1234 18446744073709551615";

    #[test]
    fn stat_counts_utime_and_stime_but_not_the_children() {
        let st = parse_stat(STAT).unwrap();
        assert_eq!(st.name, "python3 (w) x");
        assert_eq!((st.state, st.ppid, st.pgrp), ('S', 4200, 4242));
        assert_eq!(st.ticks, 180, "150 + 30; cutime 7 and cstime 9 left out");
        assert_eq!((st.start_ticks, st.threads), (123456, 3));
        assert_eq!(parse_stat("4242 (x) S 1"), None, "truncated");
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn pss_comes_from_smaps_rollup_in_bytes() {
        let text = "55b2d487f000-7ffc3fb0e000 ---p 00000000 00:00 0   [rollup]\n\
                    Rss:                1624 kB\nPss:                 260 kB\n\
                    Pss_Dirty:           112 kB\nPss_Anon:            112 kB\n";
        assert_eq!(parse_smaps_rollup(text), Some(260 * 1024));
        assert_eq!(parse_smaps_rollup("Rss: 1 kB\n"), None);
        assert_eq!(parse_smaps_rollup("Pss: x kB\n"), None);
    }

    #[test]
    fn rss_and_host_memory_are_read_in_kb() {
        let status = "Name:\tpython3\nVmPeak:\t  9999 kB\nVmRSS:\t    1764 kB\nRssAnon:\t 112 kB\n";
        assert_eq!(parse_status_rss(status), Some(1764 * 1024));
        assert_eq!(parse_status_rss("Name:\tkthreadd\n"), None);
        let meminfo = "MemTotal:        2013888 kB\nMemFree:          123456 kB\n";
        assert_eq!(parse_meminfo_total(meminfo), Some(2_013_888 * 1024));
    }

    #[test]
    fn children_lists_pids() {
        assert_eq!(parse_children("123 456 \n"), vec![123, 456]);
        assert_eq!(parse_children(""), Vec::<u32>::new());
    }

    fn st(ppid: u32, pgrp: u32, state: char) -> Stat {
        Stat {
            name: "p".into(),
            state,
            ppid,
            pgrp,
            ticks: 0,
            start_ticks: 0,
            threads: 1,
        }
    }

    #[test]
    fn members_are_descendants_and_the_group_but_no_zombies() {
        let seen = HashMap::from([
            (100, st(1, 100, 'S')),   // the monitor
            (200, st(100, 200, 'S')), // the server, its own group
            (201, st(200, 200, 'S')), // a worker
            (202, st(201, 300, 'S')), // a grandchild in a group of its own
            (203, st(100, 200, 'S')), // an orphan of the group, reparented to the monitor
            (204, st(200, 200, 'Z')), // a zombie
            (150, st(100, 150, 'S')), // a log writer of the monitor
        ]);
        assert_eq!(members(&seen, 200, 200), vec![200, 201, 202, 203]);
    }

    fn sample(cpu: f64, at: Instant) -> Sample {
        Sample {
            total_bytes: 0,
            pss: true,
            processes: vec![],
            cpu_seconds: cpu,
            age_seconds: Some(4.0),
            taken: at,
        }
    }

    #[test]
    fn cpu_percent_is_cpu_time_over_wall_time() {
        let t0 = Instant::now();
        let t1 = t0 + std::time::Duration::from_secs(2);
        let p = sample(3.0, t1).cpu_percent_since(&sample(2.0, t0)).unwrap();
        assert!((p - 50.0).abs() < 1e-9, "{p}");
        assert_eq!(
            sample(1.0, t1).cpu_percent_since(&sample(2.0, t0)),
            Some(0.0)
        );
        assert_eq!(sample(1.0, t0).cpu_percent_since(&sample(0.0, t0)), None);
        assert_eq!(sample(1.0, t0).cpu_percent_average(), Some(25.0));
        assert_eq!(parse_uptime("350735.47 234388.90\n"), Some(350_735.47));
    }

    #[test]
    fn figures_read_like_people_write_them() {
        assert_eq!(mib(612 << 20), "612 MiB");
        assert_eq!(mib((612 << 20) + (600 << 10)), "613 MiB");
        let s = Sample {
            total_bytes: 3 << 20,
            pss: false,
            processes: vec![
                Process {
                    pid: 7,
                    name: "big".into(),
                    bytes: 2 << 20,
                },
                Process {
                    pid: 8,
                    name: "small".into(),
                    bytes: 1 << 20,
                },
            ],
            cpu_seconds: 0.0,
            age_seconds: None,
            taken: Instant::now(),
        };
        assert_eq!(s.top(1), vec!["pid 7 big 2 MiB"]);
        let u = Usage::from_sample(&s, Some(1.25), "t".into());
        assert_eq!(u.summary(), "3.0 MiB (RSS, 2 processes), CPU 1.3%");
    }

    #[test]
    fn alert_lines_go_below_the_cause() {
        let body = "Server was down for 0 checks.\nCause: memory 9 MiB above MEMORY_LIMIT 8 MiB\n\nHost: h\n";
        let lines = vec!["Biggest:".to_string(), "  pid 1 a 9 MiB".to_string()];
        assert_eq!(
            insert_after_cause(body, &lines),
            "Server was down for 0 checks.\nCause: memory 9 MiB above MEMORY_LIMIT 8 MiB\nBiggest:\n  pid 1 a 9 MiB\n\nHost: h\n"
        );
        assert_eq!(insert_after_cause("x\n", &lines[..1]), "x\nBiggest:\n");
    }

    #[test]
    fn proc_files_are_read_whole_into_one_buffer() {
        let dir = std::env::temp_dir().join(format!("sm-usage-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let big = "x".repeat(20_000);
        fs::write(dir.join("big"), &big).unwrap();
        fs::write(dir.join("odd"), b"1 (a\xffb) S").unwrap();
        let mut f = ProcFile::default();
        assert_eq!(f.read(dir.join("big").to_str().unwrap()).unwrap(), big);
        assert_eq!(
            f.read(dir.join("odd").to_str().unwrap()).unwrap(),
            "1 (a?b) S"
        );
        assert!(f.read(dir.join("none").to_str().unwrap()).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn reader_measures_this_test_process_group() {
        // The test process itself as the "server": no walk below it needed.
        let me = std::process::id();
        let pgid = parse_stat(&fs::read_to_string("/proc/self/stat").unwrap())
            .unwrap()
            .pgrp;
        let s = Reader::new().sample(me, pgid).expect("a sample");
        assert!(s.processes.iter().any(|p| p.pid == me));
        assert!(s.total_bytes > 0);
    }
}
