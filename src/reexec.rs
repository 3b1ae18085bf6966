//! A panic must not leave the server unmanaged.
//!
//! The release build aborts on a panic (`panic = "abort"`: unwinding would
//! cost about 220 KB of the 3.2 MiB budget), so nothing can be caught there.
//! Instead the panic hook of a running monitor re-executes the monitor in
//! place: the same pid (systemd's main pid, the lock file's pid and the
//! server's parent all stay right), the same arguments and environment. The
//! new monitor adopts the server through `server.pid` — it is still this
//! process's child — and resumes its attempt count from the state file (see
//! `state::resumable`). Descriptors are all close-on-exec, so the lock is free
//! for it.
//!
//! A panic within [`REEXEC_GUARD`] of the last re-exec is not re-executed (a
//! monitor that panics at start would loop): the process then ends as any
//! panic ends it, and the supervisor above it (systemd's `Restart=`) takes
//! over. The panic message travels to the new monitor in [`REEXEC_ENV`], so
//! that its JSON log says what happened; the variable never reaches the server.
//!
//! Not done: a panic inside the logger itself is only reported on stderr.

use std::ffi::{CString, OsString};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `SECONDS MESSAGE`: when the last re-exec happened, and why.
pub const REEXEC_ENV: &str = "SERVER_MONITOR_REEXEC";
/// No second re-exec this soon after the last one.
pub const REEXEC_GUARD: Duration = Duration::from_secs(60);

/// Fault injection for the tests, in debug builds only: with
/// `SERVER_MONITOR_TEST_PANIC_AT_CHECK=N` the monitor panics at its N-th
/// check, unless it was re-executed after a panic already.
#[cfg(debug_assertions)]
pub fn test_fault_panic() {
    use std::sync::atomic::{AtomicU32, Ordering};
    static CHECKS: AtomicU32 = AtomicU32::new(0);
    let n = CHECKS.fetch_add(1, Ordering::Relaxed) + 1;
    let at = std::env::var("SERVER_MONITOR_TEST_PANIC_AT_CHECK")
        .ok()
        .and_then(|v| v.parse::<u32>().ok());
    if at == Some(n) && previous_panic().is_none() {
        panic!("test fault: SERVER_MONITOR_TEST_PANIC_AT_CHECK={n}");
    }
}

/// Installs the hook; for the `run` subcommand only (a one-shot subcommand
/// that panics just fails).
pub fn install() {
    let args: Vec<OsString> = std::env::args_os().collect();
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default(info);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let last = std::env::var(REEXEC_ENV).ok();
        if !may_reexec(last.as_deref(), now) {
            eprintln!("server-monitor: panic again within {REEXEC_GUARD:?} of a re-exec: ending");
            return;
        }
        let message: String = info
            .to_string()
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(300)
            .collect();
        eprintln!("server-monitor: re-executing the monitor after a panic; the server keeps running and is adopted");
        let err = exec_self(&args, &format!("{} {message}", now.as_secs()));
        eprintln!("server-monitor: cannot re-execute the monitor: {err}");
    }));
}

/// What a monitor that was re-executed after a panic should log at start:
/// the panic's message; `None` on an ordinary start.
pub fn previous_panic() -> Option<String> {
    let v = std::env::var(REEXEC_ENV).ok()?;
    Some(v.split_once(' ').map_or(v.clone(), |(_, m)| m.to_string()))
}

/// Pure: a re-exec is allowed unless the last one (`SECONDS …` in
/// [`REEXEC_ENV`]) was less than [`REEXEC_GUARD`] before `now`.
pub fn may_reexec(last: Option<&str>, now: Duration) -> bool {
    let Some(secs) = last.and_then(|v| v.split(' ').next()?.parse::<u64>().ok()) else {
        return true;
    };
    now.as_secs().saturating_sub(secs) >= REEXEC_GUARD.as_secs()
}

/// execve(this program, args, environment + REEXEC_ENV); returns only on
/// failure. The program by its path, so that the process keeps its name
/// (`/proc/PID/comm`, which `lock` looks at); by /proc/self/exe when that path
/// is gone (the binary was replaced by an upgrade).
fn exec_self(args: &[OsString], reexec: &str) -> std::io::Error {
    let cstr = |b: &[u8]| CString::new(b).ok();
    let argv: Vec<CString> = args.iter().filter_map(|a| cstr(a.as_bytes())).collect();
    let mut envp: Vec<CString> = std::env::vars_os()
        .filter(|(k, _)| k != REEXEC_ENV)
        .filter_map(|(k, v)| {
            let mut kv = k.as_bytes().to_vec();
            kv.push(b'=');
            kv.extend_from_slice(v.as_bytes());
            cstr(&kv)
        })
        .collect();
    if let Some(e) = cstr(format!("{REEXEC_ENV}={reexec}").as_bytes()) {
        envp.push(e);
    }
    if let Some(path) = std::env::current_exe()
        .ok()
        .and_then(|p| cstr(p.as_os_str().as_bytes()))
    {
        let _ = crate::sys::execve(&path, &argv, &envp);
    }
    crate::sys::execve(c"/proc/self/exe", &argv, &envp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_panic_soon_after_a_reexec_is_not_reexecuted() {
        let now = Duration::from_secs(1_000_000);
        assert!(may_reexec(None, now));
        assert!(may_reexec(Some("garbage"), now));
        assert!(!may_reexec(Some("999990 boom"), now));
        assert!(!may_reexec(Some("1000000 boom"), now));
        assert!(may_reexec(Some("999940 boom"), now));
    }
}
